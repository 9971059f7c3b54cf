//! Fuzz target: see `multiproc_runtime::fuzzing::ring`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| multiproc_runtime::fuzzing::ring(data));
