//! An audio file: the first byte picks the file name's extension, the rest is the file,
//! written into a directory of this process's own.
#![no_main]

use std::sync::OnceLock;

fn dir() -> &'static std::path::Path {
    static DIR: OnceLock<std::path::PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let d = std::env::temp_dir().join(format!("jukebox-fuzz-{}", std::process::id()));
        std::fs::create_dir_all(&d).expect("a temporary directory");
        d
    })
}

libfuzzer_sys::fuzz_target!(
    init: {
        // The jukebox catches a panic of the tag reader or a decoder (a damaged file costs
        // that file): one raised inside those calls unwinds to where it is caught. Any other
        // panic is a crash.
        let abort = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !jukebox::untrusted::panic_is_guarded() {
                abort(info);
            }
        }));
    },
    |data: &[u8]| jukebox::untrusted::audio_file_input(data, dir())
);
