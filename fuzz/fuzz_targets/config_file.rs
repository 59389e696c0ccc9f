//! The configuration file's text.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        jukebox::untrusted::config_file(text);
    }
});
