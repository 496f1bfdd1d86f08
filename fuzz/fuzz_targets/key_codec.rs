#![no_main]
//! Target `key_codec`: see `ferrops_net::fuzzing::key_codec`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| ferrops_net::fuzzing::key_codec(data));
