//! Start-up to playing, and to systemd's READY=1 (read from a NOTIFY_SOCKET the bench owns),
//! with 10,000 tracks already scanned, and idle memory while playing.
//! Runs the release binary with the null output.
//!   cargo bench --bench startup

#[path = "common.rs"]
mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn main() {
    let n = 10_000;
    let (dir, _keep) = common::workdir("startup");
    let music = dir.join("music");
    // One real 60 s track, hard-linked 10,000 times under different names: a real library
    // of real files, at no disk cost.
    if !music.join("links").exists() {
        common::wav_library(&music.join("src"), 1, 60_000);
        let src = std::fs::read_dir(music.join("src/Artist 0000"))
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path();
        let links = music.join("links");
        for i in 0..n {
            let d = links.join(format!("a{:03}", i / 100));
            std::fs::create_dir_all(&d).unwrap();
            std::fs::hard_link(&src, d.join(format!("{i:05}.wav"))).unwrap();
        }
    }
    let db = dir.join("startup.db");
    let bin = env!("CARGO_BIN_EXE_jukebox");
    let run = |secs: u64| -> (Duration, Duration, (u64, u64), Duration) {
        let sock_path = dir.join("notify.sock");
        let _ = std::fs::remove_file(&sock_path);
        let sock = std::os::unix::net::UnixDatagram::bind(&sock_path).unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(60)))
            .unwrap();
        let t = Instant::now();
        let ready = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            loop {
                let n = sock.recv(&mut buf).expect("READY=1 within a minute");
                if String::from_utf8_lossy(&buf[..n]).contains("READY=1") {
                    return t.elapsed();
                }
            }
        });
        let mut child = Command::new(bin)
            .env("NOTIFY_SOCKET", &sock_path)
            .arg("--music")
            .arg(music.join("links"))
            .arg("--db")
            .arg(&db)
            .args([
                "--output",
                "null",
                "--no-mdns",
                "--no-mpd",
                "--host-pin",
                "12345678",
                "--listen",
                "127.0.0.1:0",
            ])
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let pid = child.id();
        let err = child.stderr.take().unwrap();
        let mut first_play = None;
        let mut lines = BufReader::new(err).lines();
        for line in lines.by_ref() {
            let line = line.unwrap();
            if line.contains("playing:") {
                first_play = Some(t.elapsed());
                break;
            }
            assert!(
                t.elapsed() < Duration::from_secs(60),
                "no play within a minute"
            );
        }
        // Keep reading: a log pipe nobody reads would stall the jukebox.
        std::thread::spawn(move || lines.for_each(drop));
        // Let the background rescan finish, then measure a quiet stretch of playing.
        std::thread::sleep(Duration::from_secs(2));
        let cpu0 = common::cpu_time(pid);
        std::thread::sleep(Duration::from_secs(secs));
        let cpu = common::cpu_time(pid) - cpu0;
        let rss = common::rss_kb(pid);
        let _ = Command::new("kill")
            .args(["-INT", &pid.to_string()])
            .status();
        let _ = child.wait();
        let ready = ready.join().expect("READY=1");
        (first_play.expect("it played"), ready, rss, cpu)
    };
    // First start scans the library; not measured.
    let (first, _, _, _) = run(6);
    println!("first start (empty database, scan of {n} files running): {first:?} to playing");
    // Five starts while the loudness pass has the library still to measure (it runs from the
    // start, at idle priority), then five once every track is measured (nothing for it to do),
    // to show that the pass does not delay start-up.
    for pass in ["running", "idle"] {
        if pass == "idle" {
            let c = rusqlite::Connection::open(&db).unwrap();
            c.execute(
                "UPDATE tracks SET lufs = -14.0, peak = 0.5, measured_ms = 0 WHERE lufs IS NULL",
                [],
            )
            .unwrap();
        }
        let mut times = Vec::new();
        let mut readies = Vec::new();
        let mut rss = (0, 0);
        let mut cpu = Duration::ZERO;
        for _ in 0..5 {
            let (t, ready, r, c) = run(5);
            times.push(t);
            readies.push(ready);
            rss = r;
            cpu = c;
        }
        times.sort();
        readies.sort();
        println!("with the loudness pass {pass}:");
        println!(
            "  start-up to READY=1 (port bound, library loaded) with {n} tracks scanned: median \
             {:?} (min {:?}, max {:?})",
            readies[2], readies[0], readies[4]
        );
        println!(
            "  start-up to playing with {n} tracks scanned: median {:?} (min {:?}, max {:?})",
            times[2], times[0], times[4]
        );
        println!("  RSS while playing: {} kB (peak {} kB)", rss.0, rss.1);
        println!(
            "  CPU while playing (null output, 44.1 kHz WAV): {:.1}% of one core",
            cpu.as_secs_f64() / 5.0 * 100.0
        );
    }
}
