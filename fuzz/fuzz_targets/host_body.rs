//! The body of `POST /api/host/{action}`: the first byte picks the action, the rest is the body.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| jukebox::untrusted::host_body_input(data));
