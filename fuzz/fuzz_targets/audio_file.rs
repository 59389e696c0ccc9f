//! An audio file: the first byte picks the file name's extension (the decoders are chosen by
//! it and by what the bytes say), the rest is the file. Written to a file of this process's
//! own, as the scan and the player only read files.
#![no_main]

use std::sync::OnceLock;

const EXTENSIONS: [&str; 9] = [
    "flac", "ogg", "opus", "mp3", "wav", "m4a", "aiff", "oga", "bin",
];

fn dir() -> &'static std::path::Path {
    static DIR: OnceLock<std::path::PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let d = std::env::temp_dir().join(format!("jukebox-fuzz-{}", std::process::id()));
        std::fs::create_dir_all(&d).expect("a temporary directory");
        d
    })
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some((&pick, bytes)) = data.split_first() else {
        return;
    };
    let ext = EXTENSIONS[pick as usize % EXTENSIONS.len()];
    let path = dir().join(format!("input.{ext}"));
    std::fs::write(&path, bytes).expect("the input is written");
    jukebox::untrusted::audio_file(&path);
});
