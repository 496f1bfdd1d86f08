#![no_main]
//! Target `handshake`: see `ferrops_net::fuzzing::handshake`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| ferrops_net::fuzzing::handshake(data));
