//! Every reader of what comes from outside, one function each, running the code the server
//! runs on that input: the live protocol's frames, the HTTP API's JSON bodies, MPD's request
//! lines, the configuration file, and audio files (their tags, then their decoding). The
//! fuzz targets (`fuzz/`) drive these; each must return for any input, without a panic, in
//! bounded time and memory.

use std::path::Path;

use axum::body::Bytes;

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

/// One MPD request line (its newline taken off, as the connection reads it).
pub fn mpd_line(data: &[u8]) {
    let Ok(line) = std::str::from_utf8(data) else {
        return;
    };
    let _ = crate::mpd::read_request(line);
}

/// The text of a configuration file.
pub fn config_file(text: &str) {
    let _ = crate::config::Config::from_file_text(Path::new("jukebox.toml"), text);
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
