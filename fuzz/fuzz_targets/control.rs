#![no_main]
//! Target `control`: see `ferrops_engine::fuzzing::control`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| ferrops_engine::fuzzing::control(data));
