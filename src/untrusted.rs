//! Every reader of what comes from outside, one function each, running the code the server
//! runs on that input: the live protocol's frames, the HTTP API's JSON bodies, MPD's request
//! lines, the configuration file, and audio files (their tags, then their decoding). The
//! fuzz targets (`fuzz/`) drive these; each must return for any input, without a panic, in
//! bounded time and memory.

use std::cell::Cell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

use axum::body::Bytes;

thread_local! {
    /// How many [`guarded`] calls this thread is inside.
    static GUARDED: Cell<u32> = const { Cell::new(0) };
}

/// Runs code that reads a file with a crate not hardened against every damaged one (the
/// decoders, the tag reader): a panic in it is that file's error, not the caller's end.
pub(crate) fn guarded<T>(f: impl FnOnce() -> T) -> std::thread::Result<T> {
    GUARDED.with(|g| g.set(g.get() + 1));
    let r = catch_unwind(AssertUnwindSafe(f));
    GUARDED.with(|g| g.set(g.get() - 1));
    r
}

/// Whether a panic on this thread now would be caught by [`guarded`] (and so cost one file):
/// the fuzz targets treat every other panic as a crash.
pub fn panic_is_guarded() -> bool {
    GUARDED.with(|g| g.get() > 0)
}

/// A text frame from a phone: parsed as the socket does, and a refusal encoded as the
/// phone would get it. Bytes that are not UTF-8 never get this far (the socket closes 1007).
pub fn live_frame(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if text.len() > crate::protocol::MAX_FRAME {
        return;
    }
    if let Err(e) = crate::protocol::parse(text) {
        let wire = crate::protocol::WireError::from(&e);
        let _ = crate::protocol::error_frame(&wire);
    }
}

/// The body of `POST /api/host/{action}`: read as a JSON object, then as that host command.
pub fn host_body(action: &str, data: &[u8]) {
    let Ok(v) = crate::server::http::body_json(&Bytes::copy_from_slice(data)) else {
        return;
    };
    let _ = crate::protocol::host_command(action, &v);
}

/// A fuzzer's input for [`host_body`]: the first byte picks the action, the rest is the body.
pub fn host_body_input(data: &[u8]) {
    // Every command's name (the guests' too, which are no host action), and one that is none.
    let names = crate::protocol::CMD_NAMES;
    if let Some((&pick, body)) = data.split_first() {
        let name = names.get(usize::from(pick) % (names.len() + 1));
        host_body(name.copied().unwrap_or("frobnicate"), body);
    }
}

/// One MPD request line (its newline taken off, as the connection reads it). A longer line
/// than the connection reads never gets this far (MPD drops such a client).
pub fn mpd_line(data: &[u8]) {
    if data.len() > crate::mpd::MAX_LINE {
        return;
    }
    let Ok(line) = std::str::from_utf8(data) else {
        return;
    };
    let _ = crate::mpd::read_request(line);
}

/// The text of a configuration file.
pub fn config_file(text: &str) {
    let _ = crate::config::Config::from_file_text(Path::new("jukebox.toml"), text);
}

/// The extensions a fuzzed file is written with (its first byte picks one): the decoders are
/// chosen by the extension and by what the bytes say.
const EXTENSIONS: [&str; 9] = [
    "flac", "ogg", "opus", "mp3", "wav", "m4a", "aiff", "oga", "bin",
];

/// A fuzzer's input for [`audio_file`]: the first byte picks the file name's extension, the
/// rest is the file, written into `dir` (the scan and the player only read files).
pub fn audio_file_input(data: &[u8], dir: &Path) {
    let Some((&pick, bytes)) = data.split_first() else {
        return;
    };
    let ext = EXTENSIONS[usize::from(pick) % EXTENSIONS.len()];
    let path = dir.join(format!("input.{ext}"));
    if std::fs::write(&path, bytes).is_ok() {
        audio_file(&path);
    }
}

/// The samples decoded from one audio file at most: enough for a few seconds, so that a
/// mutated length cannot make one input run for minutes.
const MAX_SAMPLES: usize = 1 << 20;

/// An audio file: its tags and length read as the library scan reads them, then opened and
/// decoded as the player opens it.
pub fn audio_file(path: &Path) {
    let size = std::fs::metadata(path).map_or(0, |m| m.len());
    let _ = crate::library::read_file(path, size, 0);
    let _ = crate::library::cover_art(path);
    if let Ok(mut native) = crate::player::decode::open_native(path) {
        let mut out = Vec::new();
        native.read(&mut out, MAX_SAMPLES);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every input a fuzz target once crashed on (`fuzz/corpus/TARGET/regress-*`) is run again
    /// in the tests' build, which checks overflows as the fuzz build does.
    #[test]
    fn what_the_fuzzers_found_stays_fixed() {
        let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
        let dir = tempfile::tempdir().unwrap();
        let mut ran = Vec::new();
        for target in [
            "live_frame",
            "host_body",
            "mpd_line",
            "config_file",
            "audio_file",
        ] {
            for entry in std::fs::read_dir(corpus.join(target)).unwrap() {
                let path = entry.unwrap().path();
                let name = path.file_name().unwrap().to_string_lossy().to_string();
                if !name.starts_with("regress-") {
                    continue;
                }
                let data = std::fs::read(&path).unwrap();
                match target {
                    "live_frame" => live_frame(&data),
                    "host_body" => host_body_input(&data),
                    "mpd_line" => mpd_line(&data),
                    "config_file" => config_file(&String::from_utf8_lossy(&data)),
                    _ => audio_file_input(&data, dir.path()),
                }
                ran.push(name);
            }
        }
        assert!(ran.len() >= 2, "the regression inputs are there: {ran:?}");
    }

    /// The MP4 whose sample table claimed 4 billion entries is refused by name, not opened.
    #[test]
    fn the_impossible_sample_table_is_refused() {
        let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/audio_file");
        let data = std::fs::read(corpus.join("regress-stts-count.bin")).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("damaged.m4a");
        std::fs::write(&path, &data[1..]).unwrap();
        let err = crate::player::decode::open_native(&path).err().unwrap();
        assert!(err.contains("stts table claims"), "{err}");
    }
}
