//! The MPD front end against clients we did not write, on loopback, against the real binary:
//! Debian's mpc and ncmpcpp and python-mpd2 (what Home Assistant speaks) in `clients`, the
//! answers of a real MPD beside ours in `golden`, hostile input in `hostile`.

mod clients;
#[path = "../common/mod.rs"]
mod common;
mod golden;
mod hostile;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::live::{Phone, Server, PIN};
use serde_json::{json, Value};

/// A library of three tagged tracks in two artists' folders, and a cover in one. The tags are
/// written in MPD's order of tags, which is how MPD prints a file's (the golden comparison
/// compares the order of lines).
pub fn library(music: &Path) {
    let one = [
        ("album_artist", "Artist A"),
        ("genre", "Party"),
        ("date", "2024"),
    ];
    for (dir, file, title, artist, album, track, more, freq) in [
        (
            "ArtistA/AlbumOne",
            "01 First Song.flac",
            "First Song",
            "Artist A",
            "Album One",
            "1",
            &one[..],
            440,
        ),
        (
            "ArtistA/AlbumOne",
            "02 Second Song.flac",
            "Second Song",
            "Artist A",
            "Album One",
            "2",
            &one[..],
            550,
        ),
        (
            "ArtistB/AlbumTwo",
            "01 Last One.ogg",
            "Last One",
            "Artist B",
            "Album Two",
            "1",
            &[("date", "2023")][..],
            660,
        ),
    ] {
        let d = music.join(dir);
        std::fs::create_dir_all(&d).unwrap();
        let mut tags = vec![("artist", artist), ("album", album)];
        tags.extend(more.iter().filter(|(k, _)| *k == "album_artist"));
        tags.extend([("title", title), ("track", track)]);
        tags.extend(more.iter().filter(|(k, _)| *k != "album_artist"));
        common::tone(&d, file, freq, 60.0, &tags);
    }
    let mut cover = common::media::ffmpeg();
    cover.args(["-f", "lavfi", "-i", "color=c=red:s=48x48", "-frames:v", "1"]);
    common::media::write(&mut cover, &music.join("ArtistA/AlbumOne/cover.png"));
    // The second song also carries a picture of its own (a blue one), for `readpicture`.
    let mut blue = common::media::ffmpeg();
    blue.args([
        "-f",
        "lavfi",
        "-i",
        "color=c=blue:s=32x32",
        "-frames:v",
        "1",
    ]);
    let blue = common::media::write(&mut blue, &music.join("blue.png"));
    let second = music.join("ArtistA/AlbumOne/02 Second Song.flac");
    let plain = music.join("second.flac");
    std::fs::rename(&second, &plain).unwrap();
    let mut embed = common::media::ffmpeg();
    embed
        .arg("-i")
        .arg(&plain)
        .arg("-i")
        .arg(&blue)
        .args(["-map", "0:a", "-map", "1:v", "-c", "copy"])
        .args([
            "-disposition:v",
            "attached_pic",
            "-metadata:s:v",
            "comment=Cover (front)",
        ]);
    common::media::write(&mut embed, &second);
    std::fs::remove_file(plain).unwrap();
    std::fs::remove_file(blue).unwrap();
}

/// The jukebox with MPD clients on a free loopback port; that port.
pub fn jukebox(dir: &Path) -> (Server, u16) {
    jukebox_with(dir, &[])
}

/// The same, with `extra` arguments.
pub fn jukebox_with(dir: &Path, extra: &[&str]) -> (Server, u16) {
    let music = dir.join("music");
    library(&music);
    let mut args = vec![
        "--mpd-listen",
        "127.0.0.1:0",
        // Any track may be requested after any other.
        "--artist-spacing",
        "0",
        "--no-repeat-minutes",
        "0",
    ];
    args.extend(extra);
    let s = Server::start(&dir.join("j.db"), &music, &args);
    let t = Instant::now();
    let port = loop {
        let log = s.log.lock().unwrap().clone();
        if let Some(p) = log
            .split("MPD clients on 127.0.0.1:")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .and_then(|p| p.parse().ok())
        {
            break p;
        }
        assert!(t.elapsed() < Duration::from_secs(20), "no MPD line: {log}");
        std::thread::sleep(Duration::from_millis(50));
    };
    s.playing();
    (s, port)
}

/// Runs mpc against `port`; its exit status, stdout and stderr.
pub fn mpc(port: u16, args: &[&str]) -> (bool, String, String) {
    let out = Command::new("mpc")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("mpc runs (scripts/deps.sh test installs it)");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

pub fn ok(port: u16, args: &[&str]) -> String {
    let (ok, out, err) = mpc(port, args);
    assert!(ok, "mpc {args:?}: {err}{out}");
    out
}

pub fn state(s: &Server) -> Value {
    s.get("/api/state").1
}

pub fn until(what: &str, mut f: impl FnMut() -> bool) {
    let t = Instant::now();
    while !f() {
        assert!(t.elapsed() < Duration::from_secs(10), "timed out: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A raw client from the local address `from`.
pub fn raw(port: u16, from: &str) -> std::net::TcpStream {
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.bind(
        &format!("{from}:0")
            .parse::<std::net::SocketAddr>()
            .unwrap()
            .into(),
    )
    .unwrap();
    sock.connect(
        &format!("127.0.0.1:{port}")
            .parse::<std::net::SocketAddr>()
            .unwrap()
            .into(),
    )
    .unwrap();
    let s: std::net::TcpStream = sock.into();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s
}

/// Reads until `end` (a line) or the connection closes; what came, and whether it closed.
pub fn read_until(s: &mut std::net::TcpStream, end: &str) -> (String, bool) {
    use std::io::Read;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return (String::from_utf8_lossy(&got).into_owned(), true),
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
        let text = String::from_utf8_lossy(&got);
        if text.lines().any(|l| l == end || l.starts_with("ACK ")) {
            return (text.into_owned(), false);
        }
    }
}
