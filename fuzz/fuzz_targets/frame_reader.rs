#![no_main]
//! Target `frame_reader`: see `ferrops_net::fuzzing::frame_reader`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| ferrops_net::fuzzing::frame_reader(data));
