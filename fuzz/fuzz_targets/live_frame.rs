//! A phone's text frame, as the live socket reads it.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| jukebox::untrusted::live_frame(data));
