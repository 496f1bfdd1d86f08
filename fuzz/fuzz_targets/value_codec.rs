#![no_main]
//! Target `value_codec`: see `ferrops_net::fuzzing::value_codec`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| ferrops_net::fuzzing::value_codec(data));
