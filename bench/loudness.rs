//! Loudness analysis cost: CPU seconds per audio-minute of `loudness::measure` (decode + EBU
//! R128 integrated loudness and sample peak) per format, then the background pass over a
//! generated library, and the store's reply times (search, a small write) with the pass
//! running against without it; then the same seen from phones, through the release binary's
//! websocket (`search` and `like` reply times while its own pass runs, and after it finished);
//! and last the whole pass over a library of 10,000 files.
//!   cargo bench --bench loudness
//! `JUKEBOX_BENCH_LOUDNESS_TRACKS=N` sets the library size (default 200 tracks of 30 s);
//! `JUKEBOX_BENCH_LOUDNESS_BIG=N` the large library's (default 10,000 files of 5 s; 0 skips it).

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
    pink_as(path, secs, seed, tags, media::lossy_codec(path));
}

/// [`pink`] with the encoder's arguments given.
fn pink_as(path: &Path, secs: u32, seed: u32, tags: &[(&str, String)], codec: &[&str]) {
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
    media::tags(&mut cmd, tags).args(codec);
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

fn analysis_cost(dir: &Path) {
    println!("analysis: one 120 s stereo 44.1 kHz pink-noise file per format, median of 3");
    println!("| format | CPU s per audio-minute | x real time |");
    println!("|---|---|---|");
    for (name, what, codec) in [
        (
            "analysis.mp3",
            "MP3 192k",
            media::lossy_codec(Path::new("a.mp3")),
        ),
        ("analysis.flac", "FLAC 16-bit", &[][..]),
        (
            "analysis.ogg",
            "Ogg Vorbis q5",
            media::lossy_codec(Path::new("a.ogg")),
        ),
        (
            "analysis.m4a",
            "AAC 192k",
            media::lossy_codec(Path::new("a.m4a")),
        ),
        // Opus is always 48 kHz.
        (
            "analysis.opus",
            "Opus 160k",
            &["-c:a", "libopus", "-b:a", "160k", "-ar", "48000"],
        ),
        (
            "analysis-alac.m4a",
            "ALAC 16-bit (m4a)",
            &["-c:a", "alac", "-sample_fmt", "s16p"],
        ),
        ("analysis.aiff", "AIFF 16-bit", &["-c:a", "pcm_s16be"]),
        ("analysis.wav", "WAV 16-bit", &[]),
    ] {
        let path = dir.join(name);
        pink_as(&path, 120, 3, &[], codec);
        let mut runs = Vec::new();
        for _ in 0..3 {
            let before = thread_cpu();
            let m = measure(&path).expect("measures");
            let cpu = (thread_cpu() - before).as_secs_f64();
            let minutes = m.frames as f64 / f64::from(m.rate) / 60.0;
            runs.push(cpu / minutes);
        }
        let per_min = common::median(runs);
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

mod live {
    //! Phones against the release binary: guests on their websockets, each sending a `search`
    //! every tick and, every `LIKE_EVERY` ticks, a `like` instead (toggled, so every one is a
    //! durable write), timed from the send to the reply. The pace stays inside the jukebox's
    //! limits for one phone (20 requests a second, 2 like changes a second).

    use std::path::Path;
    use std::process::{Child, Command, Stdio};
    use std::time::{Duration, Instant};

    use futures_util::{SinkExt, StreamExt};
    use serde_json::{json, Value};
    use tokio_tungstenite::tungstenite::Message;

    pub const PHONES: usize = 8;
    /// Each phone's pace: one request every this long.
    pub const EVERY: Duration = Duration::from_millis(60);
    pub const LIKE_EVERY: u64 = 10;

    pub struct Server {
        child: Child,
        pub addr: String,
    }

    impl Server {
        pub fn start(music: &Path, db: &Path) -> Server {
            let mut child = Command::new(env!("CARGO_BIN_EXE_jukebox"))
                .arg("--music")
                .arg(music)
                .arg("--db")
                .arg(db)
                .args([
                    "--listen",
                    "127.0.0.1:0",
                    "--output",
                    "null",
                    "--no-mdns",
                    "--no-mpd",
                ])
                .args(["--host-pin", "43218765"])
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .expect("the jukebox starts");
            let stderr = child.stderr.take().unwrap();
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                use std::io::BufRead;
                for line in std::io::BufReader::new(stderr)
                    .lines()
                    .map_while(Result::ok)
                {
                    if let Some(rest) = line.split("listening on http://").nth(1) {
                        let _ = tx.send(rest.trim().to_string());
                    }
                }
            });
            let addr = rx
                .recv_timeout(Duration::from_secs(60))
                .expect("a 'listening on' line");
            Server { child, addr }
        }

        pub fn pid(&self) -> u32 {
            self.child.id()
        }

        fn post(&self, path: &str, body: Value) -> Value {
            ureq::post(&format!("http://{}{path}", self.addr))
                .send_json(body)
                .expect("answers")
                .body_mut()
                .read_json()
                .expect("json")
        }

        pub fn get(&self, path: &str) -> Value {
            ureq::get(&format!("http://{}{path}", self.addr))
                .call()
                .expect("answers")
                .body_mut()
                .read_json()
                .expect("json")
        }

        pub fn guest(&self, name: &str) -> String {
            self.post("/api/guest", json!({ "name": name }))["token"]
                .as_str()
                .expect("a token")
                .to_string()
        }
    }

    impl Drop for Server {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    /// Reply times of searches and likes from `PHONES` phones until `stop` says so.
    pub async fn phones(
        addr: &str,
        tokens: &[String],
        stop: impl Fn() -> bool + Clone + Send + 'static,
    ) -> (Vec<Duration>, Vec<Duration>) {
        let mut tasks = Vec::new();
        let count = tokens.len() as u32;
        for (i, token) in tokens.iter().enumerate() {
            let url = format!("ws://{addr}/ws?v=1");
            let token = token.clone();
            let stop = stop.clone();
            tasks.push(tokio::spawn(async move {
                let (mut ws, _) = tokio_tungstenite::connect_async(url).await.expect("ws");
                let hello =
                    json!({"cmd": "hello", "v": 1, "token": token, "topics": ["now_playing"]});
                ws.send(Message::text(hello.to_string())).await.unwrap();
                let mut play_id = Value::Null;
                let mut searches = Vec::new();
                let mut likes = Vec::new();
                let mut rid = 0u64;
                let mut on = false;
                let mut tick = tokio::time::interval(EVERY);
                // Phones start out of step, as real ones do.
                tokio::time::sleep(EVERY * i as u32 / count).await;
                while !stop() {
                    tick.tick().await;
                    rid += 1;
                    let like = rid.is_multiple_of(LIKE_EVERY) && !play_id.is_null();
                    let req = if like {
                        on = !on;
                        json!({"cmd": "like", "rid": rid, "play_id": play_id, "on": on})
                    } else {
                        let q = super::common::WORDS[rid as usize % 30];
                        json!({"cmd": "search", "rid": rid, "q": q, "limit": 20})
                    };
                    let sent = Instant::now();
                    ws.send(Message::text(req.to_string())).await.unwrap();
                    loop {
                        let Some(Ok(Message::Text(t))) = ws.next().await else {
                            panic!("the socket closed");
                        };
                        let v: Value = serde_json::from_str(&t).unwrap();
                        if v["topic"] == "now_playing" {
                            play_id = v["data"]["play_id"].clone();
                        }
                        if v["cmd"] == "reply" && v["rid"] == rid {
                            assert_eq!(v["ok"], true, "{req}: {v}");
                            let took = sent.elapsed();
                            if like {
                                likes.push(took)
                            } else {
                                searches.push(took)
                            }
                            break;
                        }
                    }
                }
                (searches, likes)
            }));
        }
        let (mut searches, mut likes) = (Vec::new(), Vec::new());
        for t in tasks {
            let (s, l) = t.await.unwrap();
            searches.extend(s);
            likes.extend(l);
        }
        searches.sort();
        likes.sort();
        (searches, likes)
    }
}

/// Tracks the pass has measured (or given up on), read from the database beside the server.
fn measured(db: &Path) -> u64 {
    let c = rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .unwrap();
    c.query_row(
        "SELECT count(*) FROM tracks WHERE lufs IS NOT NULL OR loudness_error IS NOT NULL",
        [],
        |r| r.get::<_, i64>(0),
    )
    .unwrap() as u64
}

/// The phones' view: `search` and `like` through the live server while its own pass runs
/// (on a fresh database), then once it has finished, the same length of time.
fn live_replies(dir: &Path, music: &Path, n: usize) {
    let db = dir.join("live.db");
    for ext in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{ext}", db.display()));
    }
    let server = live::Server::start(music, &db);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let scanned = Instant::now();
    while server.get("/healthz")["library_size"].as_u64() != Some(n as u64) {
        assert!(
            scanned.elapsed() < Duration::from_secs(120),
            "the scan ends"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let tokens: Vec<String> = (0..live::PHONES)
        .map(|i| server.guest(&format!("Phone {i}")))
        .collect();
    let window = Duration::from_secs(15);
    let (before, cpu0, t0) = (
        measured(&db),
        common::cpu_time(server.pid()),
        Instant::now(),
    );
    let db2 = db.clone();
    let (busy_s, busy_l) = rt.block_on(live::phones(&server.addr, &tokens, move || {
        t0.elapsed() >= window || measured(&db2) == n as u64
    }));
    let busy_wall = t0.elapsed();
    let busy_cpu = common::cpu_time(server.pid()) - cpu0;
    let during = measured(&db) - before;
    assert!(during > 0, "the pass ran during the window");
    // Then the rest of the pass, alone, and the same load without it.
    let t = Instant::now();
    while measured(&db) < n as u64 {
        assert!(t.elapsed() < Duration::from_secs(600), "the pass ends");
        std::thread::sleep(Duration::from_millis(200));
    }
    let t1 = Instant::now();
    let cpu1 = common::cpu_time(server.pid());
    let (idle_s, idle_l) = rt.block_on(live::phones(&server.addr, &tokens, move || {
        t1.elapsed() >= busy_wall
    }));
    let idle_cpu = common::cpu_time(server.pid()) - cpu1;
    println!(
        "\nphones through the live server ({} phones, one request each every {} ms: a search, \
         and every {}th a like instead):",
        live::PHONES,
        live::EVERY.as_millis(),
        live::LIKE_EVERY
    );
    println!(
        "during the pass: {:.1} s, {during} tracks measured meanwhile, server CPU {:.1} s",
        busy_wall.as_secs_f64(),
        busy_cpu.as_secs_f64()
    );
    line("  search during the pass", &busy_s);
    line("  like during the pass", &busy_l);
    println!(
        "after the pass: {:.1} s, server CPU {:.1} s",
        busy_wall.as_secs_f64(),
        idle_cpu.as_secs_f64()
    );
    line("  search without the pass", &idle_s);
    line("  like without the pass", &idle_l);
    drop(server);
}

/// A library of `n` files of 5 s: copies of 30 generated ones (so it is made in seconds), 10 to
/// a folder and album; then the whole pass over it, in the library's own process.
fn big_pass(dir: &Path, n: usize) {
    let secs = 5;
    let seeds = dir.join("seeds");
    std::fs::create_dir_all(&seeds).unwrap();
    let exts = ["flac", "mp3", "ogg"];
    let seed_files: Vec<PathBuf> = (0..30)
        .map(|i| {
            let p = seeds.join(format!("{i:02}.{}", exts[i % 3]));
            pink(&p, secs, 100 + i as u32, &[("album", "Seeds".to_string())]);
            p
        })
        .collect();
    let music = dir.join(format!("big-{n}"));
    let t = Instant::now();
    for i in 0..n {
        let d = music.join(format!("{:03}/{:03}", i / 1000, i / 10 % 100));
        let src = &seed_files[i % seed_files.len()];
        let p = d.join(format!(
            "{:02}.{}",
            i % 10,
            src.extension().unwrap().to_str().unwrap()
        ));
        if !p.exists() {
            std::fs::create_dir_all(&d).unwrap();
            std::fs::copy(src, &p).unwrap();
        }
    }
    println!(
        "\nlarge library: {n} files of {secs} s (FLAC, MP3, Ogg Vorbis; {} albums), ready in {:.1} s",
        n.div_ceil(10),
        t.elapsed().as_secs_f64()
    );
    let db = dir.join("big.db");
    for ext in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{ext}", db.display()));
    }
    let (store, thread) = Store::open(&db).unwrap();
    let t = Instant::now();
    scan(&music, &store, &|_| {}, &AtomicBool::new(false)).unwrap();
    println!("scan: {:.1} s", t.elapsed().as_secs_f64());
    let cpu0 = common::cpu_time(std::process::id());
    let started = Instant::now();
    let pass = Pass::spawn(store.clone(), |_, _| {}).unwrap();
    loop {
        let p = pass.progress();
        if p.total > 0 && p.measured + p.failed == p.total {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(3600),
            "the pass ends"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let wall = started.elapsed().as_secs_f64();
    let cpu = (common::cpu_time(std::process::id()) - cpu0).as_secs_f64();
    let p = pass.progress();
    let albums: i64 = rusqlite::Connection::open(&db)
        .unwrap()
        .query_row(
            "SELECT count(*) FROM tracks WHERE album_lufs IS NOT NULL",
            [],
            |r| r.get(0),
        )
        .unwrap();
    let minutes = n as f64 * f64::from(secs) / 60.0;
    println!(
        "pass: {} measured, {} failed of {} in {wall:.1} s wall, {cpu:.1} s CPU = {:.2} ms per \
         track, {:.3} CPU s per audio-minute; {albums} tracks with an album loudness",
        p.measured,
        p.failed,
        p.total,
        cpu * 1e3 / n as f64,
        cpu / minutes
    );
    pass.stop();
    drop(store);
    thread.join().unwrap();
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

    live_replies(&dir, &music, n);

    let big: usize = std::env::var("JUKEBOX_BENCH_LOUDNESS_BIG")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    if big > 0 {
        big_pass(&dir, big);
    }
}
