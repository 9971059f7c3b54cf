//! Fuzz target: see `multiproc_runtime::fuzzing::courier`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| multiproc_runtime::fuzzing::courier(data));
