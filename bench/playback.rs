//! Playback CPU per audio-minute, the jukebox against MPD, on the same files through each one's
//! null output (paced in real time by both); and idle CPU per minute while paused with no
//! phones. Median of 3 runs per format and player.
//!   cargo bench --bench playback
//! Environment: `JUKEBOX_BENCH_SECS` (track length, default 60: an audio-minute),
//! `JUKEBOX_BENCH_RUNS` (default 3), `JUKEBOX_BENCH_FORMATS` (default `flac,mp3,ogg,opus`;
//! empty: only the idle part), `JUKEBOX_BENCH_PLAYERS` (default `jukebox,jukebox-flat,mpd`;
//! `jukebox-flat` is the jukebox with `JUKEBOX_NORMALIZE=off`), `JUKEBOX_BENCH_IDLE_SECS`
//! (default 30; 0 skips idle), `JUKEBOX_BENCH_MPD` (default `/usr/bin/mpd`).
//!
//! CPU is the player process's user + system time from /proc, from the moment the track starts
//! (jukebox: its play is recorded; MPD: `mpc play` is sent) to the moment it has ended, divided
//! by the track's length in minutes. Everything the process does in that time counts (for the
//! jukebox: the hub, the store and the server too), as for MPD.

#[path = "common.rs"]
mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{env_or, median, Proc, PIN};
use jukebox::store::Db;

fn env_list(name: &str, default: &str) -> Vec<String> {
    std::env::var(name)
        .unwrap_or_else(|_| default.into())
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

/// A music-like 44.1 kHz stereo signal (pink noise under a few drifting tones, different in
/// each channel) encoded by ffmpeg: decoders work harder on it than on a sine.
fn make_track(dir: &Path, format: &str, secs: u32) -> PathBuf {
    let path = dir.join(format!("track.{format}"));
    if path.exists() {
        return path;
    }
    let codec: &[&str] = match format {
        "flac" => &["-c:a", "flac"],
        "mp3" => &["-c:a", "libmp3lame", "-b:a", "256k"],
        "ogg" => &["-c:a", "libvorbis", "-q:a", "6"],
        // Opus is 48 kHz by definition.
        "opus" => &["-c:a", "libopus", "-b:a", "160k", "-ar", "48000"],
        "wav" => &["-c:a", "pcm_s16le"],
        other => panic!("no encoder set up for {other}"),
    };
    let signal = format!(
        "anoisesrc=color=pink:amplitude=0.25:duration={secs}:sample_rate=44100[n];\
         aevalsrc=0.2*sin(2*PI*(220+20*sin(t))*t)+0.1*sin(2*PI*660*t)|\
         0.2*sin(2*PI*(330+30*sin(0.7*t))*t)+0.1*sin(2*PI*990*t):s=44100:d={secs}[t];\
         [n]aformat=channel_layouts=stereo[ns];[ns][t]amix=inputs=2:normalize=0"
    );
    let mut cmd = common::media::ffmpeg();
    cmd.args(["-filter_complex", &signal]).args(["-ac", "2"]);
    common::media::tags(&mut cmd, &[("title", format!("Bench {format}"))]).args(codec);
    common::media::write(&mut cmd, &path)
}

/// Each live thread's CPU time in nanoseconds, the scheduler's own count
/// (/proc/PID/task/*/schedstat): idle costs are far below the 10 ms ticks of /proc/PID/stat.
fn thread_cpu(pid: u32) -> HashMap<u64, u64> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return HashMap::new();
    };
    tasks
        .filter_map(Result::ok)
        .filter_map(|t| {
            let tid = t.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(t.path().join("schedstat")).ok()?;
            Some((tid, stat.split_whitespace().next()?.parse().ok()?))
        })
        .collect()
}

/// CPU seconds per minute a process spends over `secs` seconds, by thread: a thread that
/// exits meanwhile (a runtime's idle worker) keeps what it had at the start, so its last
/// moments are missed rather than its whole life counted negative.
fn idle_cpu_per_minute(pid: u32, secs: u64) -> f64 {
    let before = thread_cpu(pid);
    std::thread::sleep(Duration::from_secs(secs));
    let spent: u64 = thread_cpu(pid)
        .iter()
        .map(|(tid, ns)| ns.saturating_sub(before.get(tid).copied().unwrap_or(0)))
        .sum();
    spent as f64 / 1e9 * 60.0 / secs as f64
}

/// Plays `track` once in a fresh jukebox; CPU seconds from its start to its end.
fn jukebox_play(work: &Path, track: &Path, flat: bool) -> f64 {
    let music = work.join("jukebox-music");
    let _ = std::fs::remove_dir_all(&music);
    std::fs::create_dir_all(&music).unwrap();
    std::fs::hard_link(track, music.join(track.file_name().unwrap())).unwrap();
    let db = work.join("jukebox.db");
    for ext in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{ext}", db.display()));
    }
    let env: &[(&str, &str)] = if flat {
        &[("JUKEBOX_NORMALIZE", "off")]
    } else {
        &[]
    };
    let (child, _) = common::start_jukebox(&music, &db, "null", &[], env);
    let pid = child.0.id();
    let deadline = Instant::now() + Duration::from_secs(600);
    let plays = || {
        Db::open_readonly(&db)
            .ok()
            .and_then(|d| d.plays_since(0).ok())
            .unwrap_or_default()
    };
    while plays().is_empty() {
        assert!(Instant::now() < deadline, "nothing played");
        std::thread::sleep(Duration::from_millis(20));
    }
    let cpu0 = common::cpu_time(pid);
    while !plays().iter().any(|p| p.ended_ms.is_some()) {
        assert!(Instant::now() < deadline, "the play did not end");
        std::thread::sleep(Duration::from_millis(20));
    }
    (common::cpu_time(pid) - cpu0).as_secs_f64()
}

/// CPU per minute of a jukebox paused by the host, with no phones connected.
fn jukebox_idle(work: &Path, track: &Path, secs: u64) -> f64 {
    let music = work.join("jukebox-idle-music");
    let _ = std::fs::remove_dir_all(&music);
    std::fs::create_dir_all(&music).unwrap();
    std::fs::hard_link(track, music.join(track.file_name().unwrap())).unwrap();
    let db = work.join("jukebox-idle.db");
    for ext in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{ext}", db.display()));
    }
    let (child, addr) = common::start_jukebox(&music, &db, "null", &[], &[]);
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into();
    let post = |path: &str, body: &str, token: Option<&str>| {
        let mut req = agent
            .post(format!("http://{addr}{path}"))
            .header("Content-Type", "application/json");
        if let Some(t) = token {
            req = req.header("Authorization", format!("Bearer {t}"));
        }
        let mut resp = req.send(body.to_string()).unwrap();
        let status = resp.status().as_u16();
        let text = resp.body_mut().read_to_string().unwrap_or_default();
        (status, text)
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while Db::open_readonly(&db)
        .ok()
        .and_then(|d| d.open_play().ok().flatten())
        .is_none()
    {
        assert!(Instant::now() < deadline, "nothing played");
        std::thread::sleep(Duration::from_millis(20));
    }
    let (st, login) = post("/api/host/login", &format!("{{\"pin\":\"{PIN}\"}}"), None);
    assert_eq!(st, 200, "{login}");
    let token: serde_json::Value = serde_json::from_str(&login).unwrap();
    let token = token["token"].as_str().unwrap().to_string();
    let (st, body) = post("/api/host/pause", "{}", Some(&token));
    assert_eq!(st, 200, "{body}");
    drop(agent);
    // Let the pause settle (the fade, the last position write) before measuring.
    std::thread::sleep(Duration::from_secs(2));
    idle_cpu_per_minute(child.0.id(), secs)
}

/// A private MPD: its own config, database, socket and null output (paced, `sync "yes"`).
struct Mpd {
    proc: Proc,
    socket: PathBuf,
}

impl Mpd {
    fn start(mpd: &str, work: &Path, track: &Path) -> Mpd {
        let dir = work.join("mpd");
        let _ = std::fs::remove_dir_all(&dir);
        let music = dir.join("music");
        std::fs::create_dir_all(&music).unwrap();
        std::fs::hard_link(track, music.join(track.file_name().unwrap())).unwrap();
        let socket = dir.join("socket");
        let conf = dir.join("mpd.conf");
        std::fs::write(
            &conf,
            format!(
                "music_directory \"{}\"\ndb_file \"{}\"\nbind_to_address \"{}\"\n\
                 log_file \"{}\"\nzeroconf_enabled \"no\"\nauto_update \"no\"\n\
                 audio_output {{\n  type \"null\"\n  name \"null\"\n  sync \"yes\"\n}}\n",
                music.display(),
                dir.join("db").display(),
                socket.display(),
                dir.join("log").display(),
            ),
        )
        .unwrap();
        let proc = Proc(
            Command::new(mpd)
                .arg("--no-daemon")
                .arg(&conf)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("mpd starts (JUKEBOX_BENCH_MPD names it)"),
        );
        let deadline = Instant::now() + Duration::from_secs(30);
        while !socket.exists() {
            assert!(Instant::now() < deadline, "mpd made no socket");
            std::thread::sleep(Duration::from_millis(20));
        }
        let m = Mpd { proc, socket };
        m.mpc(&["update", "--wait"]);
        m.mpc(&["add", "/"]);
        m
    }

    fn mpc(&self, args: &[&str]) -> String {
        let out = Command::new("mpc")
            .env("MPD_HOST", &self.socket)
            .args(args)
            .output()
            .expect("mpc runs (apt-get install mpc)");
        assert!(
            out.status.success(),
            "mpc {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn playing(&self) -> bool {
        self.mpc(&["status"]).contains("[playing]")
    }
}

/// Plays `track` once in a fresh MPD; CPU seconds from `play` to the end.
fn mpd_play(mpd: &str, work: &Path, track: &Path) -> f64 {
    let m = Mpd::start(mpd, work, track);
    let pid = m.proc.0.id();
    let cpu0 = common::cpu_time(pid);
    m.mpc(&["play"]);
    let deadline = Instant::now() + Duration::from_secs(600);
    while m.playing() {
        assert!(Instant::now() < deadline, "mpd did not finish");
        std::thread::sleep(Duration::from_millis(50));
    }
    (common::cpu_time(pid) - cpu0).as_secs_f64()
}

fn mpd_idle(mpd: &str, work: &Path, track: &Path, secs: u64) -> f64 {
    let m = Mpd::start(mpd, work, track);
    m.mpc(&["play"]);
    std::thread::sleep(Duration::from_millis(500));
    m.mpc(&["pause"]);
    std::thread::sleep(Duration::from_secs(2));
    idle_cpu_per_minute(m.proc.0.id(), secs)
}

fn main() {
    let secs: u32 = env_or("JUKEBOX_BENCH_SECS", 60);
    let runs: usize = env_or("JUKEBOX_BENCH_RUNS", 3);
    let idle_secs: u64 = env_or("JUKEBOX_BENCH_IDLE_SECS", 30);
    let formats = env_list("JUKEBOX_BENCH_FORMATS", "flac,mp3,ogg,opus");
    let players = env_list("JUKEBOX_BENCH_PLAYERS", "jukebox,jukebox-flat,mpd");
    let mpd = std::env::var("JUKEBOX_BENCH_MPD").unwrap_or_else(|_| "/usr/bin/mpd".into());
    let (work, _keep) = common::workdir("playback");
    let minutes = f64::from(secs) / 60.0;
    println!("playback CPU per audio-minute: {secs} s tracks, median of {runs} runs, null outputs");
    println!("| format | player | CPU-s per audio-minute (median) | runs |");
    println!("|---|---|---|---|");
    for format in &formats {
        let track = make_track(&work, format, secs);
        for player in &players {
            let per_min: Vec<f64> = (0..runs)
                .map(|_| {
                    let cpu = match player.as_str() {
                        "jukebox" => jukebox_play(&work, &track, false),
                        "jukebox-flat" => jukebox_play(&work, &track, true),
                        "mpd" => mpd_play(&mpd, &work, &track),
                        other => panic!("unknown player {other}"),
                    };
                    cpu / minutes
                })
                .collect();
            let shown: Vec<String> = per_min.iter().map(|v| format!("{v:.3}")).collect();
            println!(
                "| {format} | {player} | **{:.3}** | {} |",
                median(per_min.clone()),
                shown.join(", ")
            );
        }
    }
    if idle_secs > 0 {
        let track = make_track(&work, formats.first().map_or("flac", |f| f.as_str()), secs);
        println!("\nidle, paused, no phones ({idle_secs} s each, median of {runs}):");
        println!("| player | CPU-ms per minute (median) | runs |");
        println!("|---|---|---|");
        for player in players.iter().filter(|p| p.as_str() != "jukebox-flat") {
            let per_min: Vec<f64> = (0..runs)
                .map(|_| match player.as_str() {
                    "jukebox" => jukebox_idle(&work, &track, idle_secs),
                    "mpd" => mpd_idle(&mpd, &work, &track, idle_secs),
                    other => panic!("unknown player {other}"),
                } * 1000.0)
                .collect();
            let shown: Vec<String> = per_min.iter().map(|v| format!("{v:.2}")).collect();
            println!(
                "| {player} | **{:.2}** | {} |",
                median(per_min.clone()),
                shown.join(", ")
            );
        }
    }
}
