//! The audio files tests and benches play: made by ffmpeg, patched where ffmpeg has no option
//! for what a test needs. One file for three kinds of crate (the integration tests, the
//! benches, the decoder's unit tests), which share no module: the others include it by path.
#![allow(dead_code)]

use std::fmt::Display;
use std::path::{Path, PathBuf};
use std::process::Command;

/// ffmpeg that never reads stdin, prints only its errors and overwrites its output; the
/// caller adds the input, the codec and the rest, then hands it to [`write`].
pub fn ffmpeg() -> Command {
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-nostdin", "-loglevel", "error", "-y"]);
    cmd
}

/// Adds ffmpeg's stereo sine input: `freq` Hz, `secs` long, at `rate` Hz.
pub fn sine(cmd: &mut Command, freq: u32, secs: f64, rate: u32) -> &mut Command {
    cmd.args(["-f", "lavfi", "-i"])
        .arg(format!(
            "sine=frequency={freq}:duration={secs}:sample_rate={rate}"
        ))
        .args(["-ac", "2"])
}

/// A tone at `freq` over a little noise, stereo: unlike a pure sine (whose waveform repeats
/// every few milliseconds), no stretch of it looks like another, so a test can tell exactly
/// where in the track a stretch of played audio is. ffmpeg's `random` is seeded the same every
/// time: the file is the same on every run.
pub fn tone_in_noise(cmd: &mut Command, freq: u32, secs: f64, rate: u32) -> &mut Command {
    cmd.args(["-f", "lavfi", "-i"])
        .arg(format!(
            "aevalsrc=exprs='0.3*sin(2*PI*{freq}*t)+0.05*(random(0)-0.5)':d={secs}:s={rate}"
        ))
        .args(["-ac", "2"])
}

/// Adds a `-metadata key=value` for each tag.
pub fn tags<'c>(cmd: &'c mut Command, tags: &[(&str, impl Display)]) -> &'c mut Command {
    for (k, v) in tags {
        cmd.arg("-metadata").arg(format!("{k}={v}"));
    }
    cmd
}

/// The encoder for a lossy file named `path`, at the quality the loudness fixtures use
/// (about 192 kbit/s); any other extension is left to ffmpeg's choice for it.
pub fn lossy_codec(path: &Path) -> &'static [&'static str] {
    match path.extension().and_then(|e| e.to_str()) {
        Some("mp3") => &["-c:a", "libmp3lame", "-b:a", "192k"],
        Some("ogg") => &["-c:a", "libvorbis", "-q:a", "5"],
        Some("m4a") => &["-c:a", "aac", "-b:a", "192k"],
        _ => &[],
    }
}

/// Runs `cmd` with `path` as its output. A file that cannot be made is a broken machine,
/// not a result: it panics with ffmpeg's own message.
pub fn write(cmd: &mut Command, path: &Path) -> PathBuf {
    let out = cmd
        .arg(path)
        .output()
        .expect("ffmpeg runs (scripts/deps.sh test installs it)");
    assert!(
        out.status.success(),
        "ffmpeg {}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    path.to_owned()
}

/// Redoes the checksum of the Ogg page that holds byte `at`, after a test patched that byte
/// (the demuxers reject a page whose checksum is wrong).
pub fn fix_ogg_crc(bytes: &mut [u8], at: usize) {
    let start = bytes[..at]
        .windows(4)
        .rposition(|w| w == b"OggS")
        .expect("an Ogg page holds the patched byte");
    let mut page = ogg_pager::Page::read(&mut std::io::Cursor::new(&bytes[start..]))
        .expect("the patched page is whole");
    page.gen_crc();
    let page = page.as_bytes();
    bytes[start..start + page.len()].copy_from_slice(&page);
}

/// Runs ffmpeg with `args` after flags that keep it quiet and non-interactive; returns what
/// it printed (its meters print to stderr). Panics with its message when it fails.
pub fn run(args: &[&str]) -> String {
    let out = Command::new("ffmpeg")
        .args(["-nostdin", "-hide_banner", "-nostats", "-y"])
        .args(args)
        .output()
        .expect("ffmpeg runs (scripts/deps.sh test installs it)");
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "ffmpeg {args:?}: {err}");
    err
}

/// ffmpeg's `astats` over [start, end) seconds of `path` (the whole file when `None`), all
/// channels together, as floats with full scale 1.0: "Peak level dB", "RMS level dB",
/// "Max difference", … The meter is ffmpeg's, never ours.
pub fn astats(path: &Path, span: Option<(f64, f64)>) -> std::collections::HashMap<String, f64> {
    let trim = span.map_or(String::new(), |(a, b)| format!("atrim=start={a}:end={b},"));
    astats_after(path, &trim)
}

/// `astats` after the filters `trim` (empty, or ending in a comma).
pub fn astats_after(path: &Path, trim: &str) -> std::collections::HashMap<String, f64> {
    let filters = format!("{trim}aformat=sample_fmts=flt,astats=measure_perchannel=none");
    let err = run(&[
        "-i",
        path.to_str().expect("a UTF-8 path"),
        "-af",
        &filters,
        "-f",
        "null",
        "-",
    ]);
    let mut stats = std::collections::HashMap::new();
    let overall = err
        .split("Overall")
        .nth(1)
        .unwrap_or_else(|| panic!("astats printed no summary: {err}"));
    for line in overall.lines() {
        let Some(kv) = line.split("] ").nth(1) else {
            continue;
        };
        if let Some((k, v)) = kv.split_once(": ") {
            if let Ok(v) = v.trim().parse::<f64>() {
                stats.insert(k.trim().to_string(), v);
            }
        }
    }
    stats
}
