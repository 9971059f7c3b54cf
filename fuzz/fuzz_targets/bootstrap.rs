//! Fuzz target: see `multiproc_runtime::fuzzing::bootstrap`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| multiproc_runtime::fuzzing::bootstrap(data));
