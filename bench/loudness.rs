//! Loudness analysis cost: CPU seconds per audio-minute of `loudness::measure` (decode + EBU
//! R128 integrated loudness and sample peak) per format, then the background pass over a
//! generated library, and the store's reply times (search, a small write) with the pass
//! running against without it.
//!   cargo bench --bench loudness
//! `JUKEBOX_BENCH_LOUDNESS_TRACKS=N` sets the library size (default 200 tracks of 30 s).

#[path = "common.rs"]
mod common;

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::media;
use jukebox::library::scan;
use jukebox::loudness::{measure, Pass};
use jukebox::store::Store;

/// Stereo pink noise through a limiter, encoded as `path`'s extension says.
fn pink(path: &Path, secs: u32, seed: u32, tags: &[(&str, String)]) {
    if path.exists() {
        return;
    }
    let graph = format!(
        "anoisesrc=color=pink:amplitude=1:sample_rate=44100:duration={secs}:seed={seed}[a];\
         anoisesrc=color=pink:amplitude=1:sample_rate=44100:duration={secs}:seed={}[b];\
         [a][b]amerge=inputs=2,volume=-{}dB,alimiter=limit=0.9:level=0",
        seed + 7919,
        seed % 15
    );
    let mut cmd = media::ffmpeg();
    cmd.arg("-filter_complex").arg(graph);
    media::tags(&mut cmd, tags).args(media::lossy_codec(path));
    media::write(&mut cmd, path);
}

/// CPU time of the calling thread (ns resolution, from the scheduler's own accounting).
fn thread_cpu() -> Duration {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").unwrap_or_default();
    let ns: u64 = s
        .split_whitespace()
        .next()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    Duration::from_nanos(ns)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn analysis_cost(dir: &Path) {
    println!("analysis: one 120 s stereo 44.1 kHz pink-noise file per format, median of 3");
    println!("| format | CPU s per audio-minute | x real time |");
    println!("|---|---|---|");
    for (ext, what) in [
        ("mp3", "MP3 192k"),
        ("flac", "FLAC 16-bit"),
        ("ogg", "Ogg Vorbis q5"),
        ("m4a", "AAC 192k"),
        ("wav", "WAV 16-bit"),
    ] {
        let path = dir.join(format!("analysis.{ext}"));
        pink(&path, 120, 3, &[]);
        let mut runs = Vec::new();
        for _ in 0..3 {
            let before = thread_cpu();
            let m = measure(&path).expect("measures");
            let cpu = (thread_cpu() - before).as_secs_f64();
            let minutes = m.frames as f64 / f64::from(m.rate) / 60.0;
            runs.push(cpu / minutes);
        }
        let per_min = median(runs);
        println!(
            "| {what} | {per_min:.3} | {:.0}x |",
            60.0 / per_min.max(1e-9)
        );
    }
}

fn library(music: &Path, n: usize, secs: u32) -> Vec<PathBuf> {
    let exts = ["flac", "mp3", "ogg"];
    let mut out = Vec::new();
    for i in 0..n {
        let album = i / 10;
        let d = music.join(format!("Artist {:03}/Album {album:03}", album / 2));
        std::fs::create_dir_all(&d).unwrap();
        let p = d.join(format!("{:02}.{}", i % 10 + 1, exts[album % exts.len()]));
        pink(
            &p,
            secs,
            i as u32,
            &[
                ("title", format!("Song {i}")),
                ("album", format!("Album {album}")),
                ("track", format!("{}", i % 10 + 1)),
            ],
        );
        out.push(p);
    }
    out
}

/// Reply times of store jobs, one search and one small durable write every 5 ms (a busy
/// party's phones), for `jobs` rounds or, with `until`, as long as it says no.
fn store_replies(
    store: &Store,
    track: &Path,
    jobs: usize,
    until: Option<&dyn Fn() -> bool>,
) -> (Vec<Duration>, Vec<Duration>) {
    let mut reads = Vec::new();
    let mut writes = Vec::new();
    for i in 0.. {
        match until {
            Some(done) if done() => break,
            None if i >= jobs => break,
            _ => {}
        }
        let q = common::WORDS[i % common::WORDS.len()].to_string();
        let t = Instant::now();
        store.read_blocking(move |db| db.search(&q, 20, 0)).unwrap();
        reads.push(t.elapsed());
        // A durable one-row write, like a like, through the same group commit.
        let p = track.to_path_buf();
        let t = Instant::now();
        store
            .write_blocking(move |db| db.set_present(&p, true))
            .unwrap();
        writes.push(t.elapsed());
        std::thread::sleep(Duration::from_millis(5));
    }
    reads.sort();
    writes.sort();
    (reads, writes)
}

fn line(what: &str, v: &[Duration]) {
    println!(
        "{what}: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        common::percentile(v, 0.5).as_secs_f64() * 1e3,
        common::percentile(v, 0.99).as_secs_f64() * 1e3,
        v.last().copied().unwrap_or_default().as_secs_f64() * 1e3
    );
}

fn main() {
    let (dir, _keep) = common::workdir("loudness");
    analysis_cost(&dir);

    let n: usize = std::env::var("JUKEBOX_BENCH_LOUDNESS_TRACKS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let secs = 30;
    let music = dir.join("music");
    let t = Instant::now();
    let files = library(&music, n, secs);
    println!(
        "\nlibrary: {n} tracks of {secs} s (FLAC, MP3, Ogg Vorbis by album, 10 tracks an album), \
         ready in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let db = dir.join("loudness.db");
    for ext in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{ext}", db.display()));
    }
    let (store, thread) = Store::open(&db).unwrap();
    scan(&music, &store, &|_| {}, &AtomicBool::new(false)).unwrap();

    let (idle_reads, idle_writes) = store_replies(&store, &files[0], 1000, None);
    line("store without the pass, search", &idle_reads);
    line("store without the pass, one-row write", &idle_writes);

    let (tx, rx) = mpsc::channel();
    let cpu0 = common::cpu_time(std::process::id());
    let started = Instant::now();
    let pass = Pass::spawn(store.clone(), move |id, _| {
        let _ = tx.send(id);
    })
    .unwrap();
    // The phones' work, for as long as the pass runs.
    let done = || {
        let p = pass.progress();
        p.total > 0 && p.measured + p.failed == p.total
    };
    let (busy_reads, busy_writes) = store_replies(&store, &files[0], 0, Some(&done));
    let wall = started.elapsed().as_secs_f64();
    let cpu = (common::cpu_time(std::process::id()) - cpu0).as_secs_f64();
    let reports = rx.try_iter().count();
    let p = pass.progress();
    let minutes = n as f64 * f64::from(secs) / 60.0;
    line("store during the pass, search", &busy_reads);
    line("store during the pass, one-row write", &busy_writes);
    println!(
        "({} rounds without the pass, {} while it ran)",
        idle_reads.len(),
        busy_reads.len()
    );
    println!(
        "pass: {} measured, {} failed of {} in {wall:.1} s wall, {cpu:.1} s CPU (whole process) = \
         {:.3} CPU s per audio-minute; {reports} reports",
        p.measured,
        p.failed,
        p.total,
        cpu / minutes
    );
    println!(
        "extrapolated: 10,000 tracks of 4 min = {:.1} CPU hours on this machine",
        cpu / minutes * 40_000.0 / 3600.0
    );
    pass.stop();
    drop(store);
    thread.join().unwrap();
}
