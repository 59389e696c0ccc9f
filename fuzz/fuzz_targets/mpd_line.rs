//! One MPD request line.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| jukebox::untrusted::mpd_line(data));
