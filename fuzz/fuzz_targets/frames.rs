//! Fuzz target: see `multiproc_runtime::fuzzing::frames`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| multiproc_runtime::fuzzing::frames(data));
