#![no_main]
//! Target `libsvm`: see `ferrops::internal::fuzzing::libsvm_line`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| ferrops::internal::fuzzing::libsvm_line(data));
