//! The snapcast output: the jukebox's CPU per audio-minute writing to snapserver's pipe against
//! the null output (same files, same levelling), and the time from a host skip to the next
//! track's first sample at a snapclient. Debian's snapserver and snapclient on loopback.
//!   cargo bench --bench snapcast
//! Environment: `JUKEBOX_BENCH_SECS` (seconds of play measured per run, default 60),
//! `JUKEBOX_BENCH_RUNS` (default 3; the median is printed), `JUKEBOX_BENCH_SKIPS` (default 8),
//! `JUKEBOX_BENCH_BUFFER_MS` (snapserver's `buffer`, default 1000).
//!
//! CPU is the jukebox process's user + system time from /proc over the measured seconds (the
//! hub, the store and the server count too); snapserver's and snapclient's own are printed
//! beside it. The skip time is from the host's `POST /api/host/skip` to when the snapclient
//! plays the first sample of the next track (its output read with wall-clock times, as the
//! tests do): snapserver's buffer is most of it.

#[path = "common.rs"]
mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime};

use common::snap::{Snapclient, Snapserver};
use common::{env_or, median, Proc, PIN};
use serde_json::{json, Value};

/// Two FLAC tracks (tones over noise) of `secs` at `rate`.
fn library(dir: &Path, secs: u32, rate: u32) -> Vec<PathBuf> {
    [("Garden", 440), ("Kitchen", 660)]
        .iter()
        .map(|(title, f)| {
            let folder = dir.join(title);
            std::fs::create_dir_all(&folder).unwrap();
            let path = folder.join(format!("{title}.flac"));
            if !path.exists() {
                let mut cmd = common::media::ffmpeg();
                common::media::tone_in_noise(&mut cmd, *f, f64::from(secs), rate)
                    // 16-bit, as the room's output is: the generator's samples are floats,
                    // which FLAC would keep as 24-bit.
                    .args(["-c:a", "flac", "-sample_fmt", "s16"]);
                common::media::tags(&mut cmd, &[("title", *title), ("album", *title)]);
                common::media::write(&mut cmd, &path);
            }
            path
        })
        .collect()
}

/// A fresh database, and the release jukebox on it.
fn start_jukebox(music: &Path, db: &Path, output: &str, extra: &[&str]) -> (Proc, String) {
    for ext in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{ext}", db.display()));
    }
    common::start_jukebox(music, db, output, extra, &[])
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .new_agent()
}

fn get(addr: &str, path: &str) -> Value {
    let mut r = agent().get(format!("http://{addr}{path}")).call().unwrap();
    serde_json::from_str(&r.body_mut().read_to_string().unwrap_or_default()).unwrap_or_default()
}

fn post(addr: &str, path: &str, body: Value, token: Option<&str>) -> Value {
    let mut req = agent()
        .post(format!("http://{addr}{path}"))
        .header("Content-Type", "application/json");
    if let Some(t) = token {
        req = req.header("Authorization", format!("Bearer {t}"));
    }
    let mut r = req.send(body.to_string()).unwrap();
    serde_json::from_str(&r.body_mut().read_to_string().unwrap_or_default()).unwrap_or_default()
}

fn wait(limit: Duration, what: &str, mut ok: impl FnMut() -> bool) {
    let t = Instant::now();
    while !ok() {
        assert!(t.elapsed() < limit, "timed out after {limit:?}: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// snapserver with one snapclient, connected and settled.
fn snapcast(dir: &Path, buffer: u32) -> (Snapserver, Snapclient, PathBuf) {
    let fifo = dir.join("jukebox.fifo");
    let server = Snapserver::start(dir, &fifo, buffer);
    let room = Snapclient::start(&server, "bench", 1);
    wait(Duration::from_secs(15), "the snapclient connects", || {
        server.connected_clients().len() == 1
    });
    std::thread::sleep(Duration::from_secs(3));
    (server, room, fifo)
}

/// CPU seconds per audio-minute of the jukebox playing to `output` for `secs`.
fn cpu_per_minute(music: &Path, db: &Path, output: &str, secs: u64) -> f64 {
    let (child, addr) = start_jukebox(music, db, output, &[]);
    wait(Duration::from_secs(30), "something plays", || {
        !get(&addr, "/api/state")["now_playing"].is_null()
    });
    let pid = child.0.id();
    let cpu0 = common::cpu_time(pid);
    std::thread::sleep(Duration::from_secs(secs));
    (common::cpu_time(pid) - cpu0).as_secs_f64() * 60.0 / secs as f64
}

fn main() {
    let secs: u64 = env_or("JUKEBOX_BENCH_SECS", 60);
    let runs: usize = env_or("JUKEBOX_BENCH_RUNS", 3);
    let skips: usize = env_or("JUKEBOX_BENCH_SKIPS", 8);
    let buffer: u32 = env_or("JUKEBOX_BENCH_BUFFER_MS", 1000);
    let (work, _tmp) = common::workdir("snapcast");
    // 44.1 kHz, resampled on the way to the pipe, as most of a library is; long enough that no
    // track ends while it is measured.
    let music = work.join("music");
    library(&music, (secs as u32 + 30).max(60), 44_100);
    // 48 kHz for the skips: copied to the pipe as they are, so the room's output shows where
    // each starts.
    let music48 = work.join("music48");
    let tracks = library(&music48, 60, 48_000);
    let db = work.join("jukebox.db");

    // CPU: null against snapcast, alternating, on the same files.
    let (mut null, mut snap, mut server_cpu, mut client_cpu) = (vec![], vec![], vec![], vec![]);
    for _ in 0..runs {
        null.push(cpu_per_minute(&music, &db, "null", secs));
        let dir = work.join("snap");
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let (server, room, fifo) = snapcast(&dir, buffer);
        let s0 = common::cpu_time(server.pid());
        let c0 = common::cpu_time(room.pid());
        snap.push(cpu_per_minute(
            &music,
            &db,
            &format!("snapcast:{}", fifo.display()),
            secs,
        ));
        server_cpu.push((common::cpu_time(server.pid()) - s0).as_secs_f64() * 60.0 / secs as f64);
        client_cpu.push((common::cpu_time(room.pid()) - c0).as_secs_f64() * 60.0 / secs as f64);
    }
    let (n, s) = (median(null), median(snap));
    println!(
        "CPU per audio-minute, median of {runs} runs of {secs} s (levelling on, FLAC 44.1 kHz):"
    );
    println!("  jukebox, null output:     {:.2} s", n);
    println!(
        "  jukebox, snapcast output: {:.2} s ({:+.2} s, {:.2}x)",
        s,
        s - n,
        s / n
    );
    println!(
        "  beside it (not the jukebox's): snapserver {:.2} s, one snapclient {:.2} s ",
        median(server_cpu),
        median(client_cpu)
    );

    // Skip to the next track's first sample at the room (levelling off: the samples are the
    // file's, so the room's output can be searched for them).
    let dir = work.join("snap");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let (_server, room, fifo) = snapcast(&dir, buffer);
    let (_child, addr) = start_jukebox(
        &music48,
        &db,
        &format!("snapcast:{}", fifo.display()),
        &[
            "--normalize",
            "off",
            "--volume",
            "100",
            "--snapcast-buffer-ms",
            &buffer.to_string(),
        ],
    );
    let heads: Vec<(String, Vec<i16>)> = tracks
        .iter()
        .map(|p| {
            let title = p.file_stem().unwrap().to_string_lossy().to_string();
            (title, head_48k(p))
        })
        .collect();
    let host = post(&addr, "/api/host/login", json!({"pin": PIN}), None)["token"]
        .as_str()
        .expect("the host logs in")
        .to_string();
    wait(Duration::from_secs(30), "something plays", || {
        !get(&addr, "/api/state")["now_playing"].is_null()
    });
    std::thread::sleep(Duration::from_secs(3));
    let mut took = Vec::new();
    for _ in 0..skips {
        let from = room.frames();
        let asked = SystemTime::now();
        post(&addr, "/api/host/skip", json!({}), Some(&host));
        let title = {
            let mut t = String::new();
            wait(Duration::from_secs(10), "the next play", || {
                let np = get(&addr, "/api/state")["now_playing"].clone();
                t = np["track"]["title"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                np["position_ms"].as_u64().is_some() && !t.is_empty()
            });
            t
        };
        let head = &heads
            .iter()
            .find(|(t, _)| *t == title)
            .expect("a known track")
            .1;
        let mut at = None;
        wait(
            Duration::from_secs(u64::from(buffer) / 1000 + 10),
            "the next track at the room",
            || {
                let played = room.samples();
                at = (from..played.len().saturating_sub(head.len()) / 2)
                    .find(|f| close(&played[f * 2..f * 2 + head.len()], head));
                at.is_some()
            },
        );
        let heard = room.heard_at(at.unwrap());
        took.push(
            heard
                .duration_since(asked)
                .unwrap_or_default()
                .as_secs_f64()
                * 1000.0,
        );
        std::thread::sleep(Duration::from_secs(3));
    }
    took.sort_by(|a, b| a.total_cmp(b));
    println!(
        "host skip to the next track's first sample at a snapclient (buffer {buffer} ms), {skips} skips: \
         median {:.0} ms, max {:.0} ms",
        took[took.len() / 2],
        took[took.len() - 1]
    );
}

/// The first 20 ms of a 48 kHz track, 16-bit stereo: what the jukebox writes to the pipe.
fn head_48k(path: &Path) -> Vec<i16> {
    let out = common::media::ffmpeg()
        .arg("-i")
        .arg(path)
        .args(["-t", "0.02", "-ac", "2", "-f", "s16le", "-"])
        .stdout(Stdio::piped())
        .output()
        .expect("ffmpeg decodes");
    out.stdout
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]))
        .collect()
}

/// The same samples (the jukebox copies a file already at 48 kHz to the pipe bit for bit).
fn close(a: &[i16], b: &[i16]) -> bool {
    a == b
}
