#![no_main]
//! Target `worker_replies`: see `ferrops_engine::fuzzing::worker_replies`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| ferrops_engine::fuzzing::worker_replies(data));
