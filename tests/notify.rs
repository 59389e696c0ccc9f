//! systemd notifications from the real binary: `READY=1` (with a `STATUS=`) once `/healthz`
//! answers, `WATCHDOG=1` at half of `WATCHDOG_USEC`, and `STOPPING=1` on SIGTERM — read from
//! a datagram socket the test owns, as systemd's `NOTIFY_SOCKET` would be.

mod common;

use std::io::{BufRead, BufReader};
use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn next(sock: &UnixDatagram) -> String {
    let mut buf = [0u8; 4096];
    let n = sock
        .recv(&mut buf)
        .expect("a notification within the timeout");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[test]
fn ready_after_healthz_watchdog_and_stopping() {
    let dir = common::tempdir();
    let sock_path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let music = dir.path().join("music");
    std::fs::create_dir_all(&music).unwrap();
    common::tone(&music, "a.flac", 440, 2.0, &[("title", "A")]);

    let started = Instant::now();
    let mut child = Command::new(common::bin())
        .arg("--music")
        .arg(&music)
        .arg("--db")
        .arg(dir.path().join("j.db"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--output",
            "null",
            "--no-mdns",
            "--no-mpd",
        ])
        .env("NOTIFY_SOCKET", &sock_path)
        .env("WATCHDOG_USEC", "1000000")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(a) = line.split("listening on http://").nth(1) {
                let _ = tx.send(a.trim().to_string());
            }
        }
    });

    // Before READY there may be STATUS lines and, while a first scan runs, requests to wait
    // longer; READY comes with a STATUS, and then the port works and the library is there.
    let ready = loop {
        let msg = next(&sock);
        if msg.contains("READY=1") {
            break msg;
        }
        assert!(
            msg.starts_with("STATUS=")
                || msg.starts_with("EXTEND_TIMEOUT_USEC=")
                || msg.contains("WATCHDOG=1"),
            "unexpected before READY: {msg:?}"
        );
    };
    let boot = started.elapsed();
    assert!(ready.contains("STATUS=serving http://"), "{ready:?}");
    let addr = rx
        .recv_timeout(Duration::from_secs(5))
        .expect("the address");
    let health: serde_json::Value = ureq::get(&format!("http://{addr}/healthz"))
        .call()
        .expect("/healthz answers once READY=1 was sent")
        .body_mut()
        .read_json()
        .unwrap();
    assert_eq!(health["status"], "ok");
    assert_eq!(health["library_size"], 1, "the library is loaded: {health}");
    eprintln!("start to READY=1: {boot:?}");

    // Pings at half the interval: at least 3 in 2.5 s.
    let t = Instant::now();
    let mut pings = 0;
    while t.elapsed() < Duration::from_millis(2500) {
        if next(&sock).contains("WATCHDOG=1") {
            pings += 1;
        }
    }
    assert!(pings >= 3, "{pings} watchdog pings in 2.5 s");

    // STOPPING=1 on SIGTERM.
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let t = Instant::now();
    loop {
        let msg = next(&sock);
        if msg.contains("STOPPING=1") {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(10), "no STOPPING=1");
    }
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
}
