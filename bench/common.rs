//! Helpers shared by the benchmarks: generated libraries, percentile maths, the release
//! jukebox as a child process.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use lofty::config::WriteOptions;
use lofty::prelude::*;
use lofty::tag::{Tag, TagType};

// ffmpeg and the fixtures, as the integration tests make them.
#[path = "../tests/common/media.rs"]
pub mod media;
// Debian's snapserver and snapclients, as the integration tests run them.
#[path = "../tests/common/snap.rs"]
pub mod snap;

/// Writes `n` tagged WAV files of `ms` milliseconds (a quiet tone) under `dir/<artist>/`.
pub fn wav_library(dir: &Path, n: usize, ms: u32) -> Vec<PathBuf> {
    let spec = hound::WavSpec {
        channels: 2,
        sample_rate: 44_100,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let frames = 44_100 * ms / 1000;
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let artist = format!("Artist {:04}", i / 10);
        let d = dir.join(&artist);
        std::fs::create_dir_all(&d).unwrap();
        let p = d.join(format!("{i:05}.wav"));
        let mut w = hound::WavWriter::create(&p, spec).unwrap();
        for f in 0..frames {
            let v = ((f as f32 * 0.05).sin() * 3000.0) as i16;
            w.write_sample(v).unwrap();
            w.write_sample(v).unwrap();
        }
        w.finalize().unwrap();
        let mut tag = Tag::new(TagType::RiffInfo);
        tag.set_title(format!("{} song {i}", WORDS[i % WORDS.len()]));
        tag.set_artist(artist);
        tag.set_album(format!("Album {}", i / 100));
        tag.save_to_path(&p, WriteOptions::default()).unwrap();
        out.push(p);
    }
    out
}

#[rustfmt::skip]
pub const WORDS: &[&str] = &[
    "love", "night", "dance", "heart", "queen", "fire", "summer", "dream", "rain", "blue",
    "café", "beyoncé", "señorita", "über", "road", "light", "gold", "river", "moon", "star",
    "city", "baby", "wild", "sweet", "home", "time", "world", "girl", "boy", "soul",
];

pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

pub fn rss_kb(pid: u32) -> (u64, u64) {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        s.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// A bench's working folder: `JUKEBOX_BENCH_DIR` or a temp dir.
pub fn workdir(name: &str) -> (PathBuf, Option<tempfile::TempDir>) {
    match std::env::var_os("JUKEBOX_BENCH_DIR") {
        Some(d) => {
            let p = PathBuf::from(d).join(name);
            std::fs::create_dir_all(&p).unwrap();
            (p, None)
        }
        None => {
            let t = tempfile::Builder::new()
                .prefix("jukebox-bench-")
                .tempdir()
                .unwrap();
            (t.path().to_owned(), Some(t))
        }
    }
}

/// CPU time (user + system) a process has used, from /proc.
pub fn cpu_time(pid: u32) -> Duration {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may contain spaces) start after the last ')'.
    let rest = s.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    // utime and stime are fields 14 and 15 of the whole line: 11 and 12 after the name.
    let hz = 100; // USER_HZ on Linux
    Duration::from_millis((ticks(11) + ticks(12)) * 1000 / hz)
}

/// The host PIN the benchmarks' jukeboxes are started with.
pub const PIN: &str = "43218765";

/// The environment variable `name` parsed, or `default`.
pub fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// Kills the child when dropped (a failed run leaves nothing behind).
pub struct Proc(pub Child);
impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The release jukebox on 127.0.0.1:0 playing to `output`, with `extra` arguments and `env`;
/// returns it and its address.
pub fn start_jukebox(
    music: &Path,
    db: &Path,
    output: &str,
    extra: &[&str],
    env: &[(&str, &str)],
) -> (Proc, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_jukebox"));
    cmd.arg("--music")
        .arg(music)
        .arg("--db")
        .arg(db)
        .args([
            "--output",
            output,
            "--no-mdns",
            "--no-mpd",
            "--listen",
            "127.0.0.1:0",
        ])
        .args(["--host-pin", PIN])
        .args(extra)
        .envs(env.iter().copied())
        .env_remove("JUKEBOX_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = Proc(cmd.spawn().expect("the jukebox starts"));
    let stderr = child.0.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(rest) = line.split("listening on http://").nth(1) {
                let _ = tx.send(rest.trim().to_string());
            }
        }
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("the jukebox listens");
    (child, addr)
}
