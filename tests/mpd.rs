//! The MPD front end against clients we did not write: Debian's mpc and python-mpd2 (what
//! Home Assistant speaks), on loopback, against the real binary.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::live::{Phone, Server, PIN};
use serde_json::{json, Value};

/// A library of three tagged tracks in two artists' folders, and a cover in one.
fn library(music: &Path) {
    for (dir, file, title, artist, album, freq) in [
        (
            "ArtistA/AlbumOne",
            "01 First Song.flac",
            "First Song",
            "Artist A",
            "Album One",
            440,
        ),
        (
            "ArtistA/AlbumOne",
            "02 Second Song.flac",
            "Second Song",
            "Artist A",
            "Album One",
            550,
        ),
        (
            "ArtistB/AlbumTwo",
            "01 Last One.ogg",
            "Last One",
            "Artist B",
            "Album Two",
            660,
        ),
    ] {
        let d = music.join(dir);
        std::fs::create_dir_all(&d).unwrap();
        common::tone(
            &d,
            file,
            freq,
            60.0,
            &[("title", title), ("artist", artist), ("album", album)],
        );
    }
    let mut cover = common::media::ffmpeg();
    cover.args(["-f", "lavfi", "-i", "color=c=red:s=48x48", "-frames:v", "1"]);
    common::media::write(&mut cover, &music.join("ArtistA/AlbumOne/cover.png"));
}

/// The jukebox with MPD clients on a free loopback port; that port.
fn jukebox(dir: &Path) -> (Server, u16) {
    let music = dir.join("music");
    library(&music);
    let s = Server::start(
        &dir.join("j.db"),
        &music,
        &[
            "--mpd-listen",
            "127.0.0.1:0",
            // Any track may be requested after any other.
            "--artist-spacing",
            "0",
            "--no-repeat-minutes",
            "0",
        ],
    );
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
fn mpc(port: u16, args: &[&str]) -> (bool, String, String) {
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

fn ok(port: u16, args: &[&str]) -> String {
    let (ok, out, err) = mpc(port, args);
    assert!(ok, "mpc {args:?}: {err}{out}");
    out
}

fn state(s: &Server) -> Value {
    s.get("/api/state").1
}

fn until(what: &str, mut f: impl FnMut() -> bool) {
    let t = Instant::now();
    while !f() {
        assert!(t.elapsed() < Duration::from_secs(10), "timed out: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn mpc_sees_the_party_and_drives_it_only_with_the_pin() {
    let dir = common::tempdir();
    let (s, port) = jukebox(dir.path());

    // What a guest's phone sees, mpc sees without a password.
    let status = ok(port, &["status"]);
    assert!(status.contains("[playing]"), "{status}");
    assert!(status.contains("consume: on"), "{status}");
    let np = state(&s)["now_playing"].clone();
    let current = ok(port, &["current"]);
    assert_eq!(
        current.trim(),
        format!(
            "{} - {}",
            np["track"]["artist"].as_str().unwrap(),
            np["track"]["title"].as_str().unwrap()
        )
    );
    let artists = ok(port, &["list", "artist"]);
    assert_eq!(
        artists.lines().collect::<Vec<_>>(),
        ["Artist A", "Artist B"]
    );
    assert_eq!(
        ok(port, &["search", "title", "second"]).trim(),
        "ArtistA/AlbumOne/02 Second Song.flac"
    );
    assert_eq!(
        ok(port, &["find", "album", "Album Two"]).trim(),
        "ArtistB/AlbumTwo/01 Last One.ogg"
    );
    assert_eq!(
        ok(port, &["ls"]).lines().collect::<Vec<_>>(),
        ["ArtistA", "ArtistB"]
    );
    assert!(ok(port, &["playlist"]).contains(np["track"]["title"].as_str().unwrap()));
    let art = Command::new("mpc")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(["albumart", "ArtistA/AlbumOne/01 First Song.flac"])
        .output()
        .unwrap();
    assert_eq!(
        art.stdout,
        std::fs::read(dir.path().join("music/ArtistA/AlbumOne/cover.png")).unwrap(),
        "albumart in chunks, as the file is"
    );

    // The host's powers need the PIN: refused, and nothing changes.
    let (done, _, err) = mpc(port, &["next"]);
    assert!(
        !done && err.contains("you don't have permission for \"next\""),
        "{err}"
    );
    assert_eq!(state(&s)["now_playing"]["play_id"], np["play_id"]);
    let (done, _, err) = mpc(port, &["-P", "00000000", "next"]);
    assert!(!done && err.contains("incorrect password"), "{err}");

    // A guest's request wakes an idle client with `playlist`.
    let mut idle = Command::new("mpc")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "idle",
            "playlist",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let guest = s.guest("Mia");
    let other = s.other_track(&np);
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let mut phone = Phone::connect(&s.addr, &guest, &[]).await;
        phone.ok(json!({"cmd": "request", "track_id": other})).await;
    });
    let t = Instant::now();
    let woke = loop {
        if let Some(status) = idle.try_wait().unwrap() {
            break status;
        }
        assert!(t.elapsed() < Duration::from_secs(10), "idle was not woken");
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut out = String::new();
    std::io::Read::read_to_string(idle.stdout.as_mut().unwrap(), &mut out).unwrap();
    assert!(woke.success() && out.trim() == "playlist", "{out}");

    // With the PIN: add, volume, move, delete, next.
    let queued = |s: &Server| state(s)["queue"]["order"].as_array().unwrap().len();
    let before = queued(&s);
    let pin = ["-P", PIN];
    ok(
        port,
        &[&pin[..], &["add", "ArtistB/AlbumTwo/01 Last One.ogg"]].concat(),
    );
    until("the host's request is queued", || queued(&s) == before + 1);
    let vol = ok(port, &[&pin[..], &["volume", "40"]].concat());
    assert!(
        vol.contains("volume: 40%"),
        "mpc's status after setvol shows it: {vol}"
    );
    assert_eq!(state(&s)["room"]["volume"], 40);
    let order = |s: &Server| state(s)["queue"]["order"].clone();
    let was = order(&s);
    ok(port, &[&pin[..], &["move", "3", "2"]].concat());
    until("the move shows", || {
        let now = order(&s);
        now[0] == was[1] && now[1] == was[0]
    });
    ok(port, &[&pin[..], &["del", "2"]].concat());
    until("the delete shows", || queued(&s) == before);
    ok(port, &[&pin[..], &["next"]].concat());
    until("the next song plays", || {
        state(&s)["now_playing"]["play_id"] != np["play_id"]
    });

    // A client idling does not hold up the jukebox's shutdown.
    let mut idle = Command::new("mpc")
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "idle"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let t = Instant::now();
    assert!(s.stop().success());
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    let _ = idle.kill();
    let _ = idle.wait();
}

#[test]
fn python_mpd2_reads_status_lists_art_and_waits_in_idle() {
    let dir = common::tempdir();
    let (s, port) = jukebox(dir.path());
    let cover = dir.path().join("music/ArtistA/AlbumOne/cover.png");
    let script = format!(
        r#"
import mpd, sys
c = mpd.MPDClient()
c.timeout = 10
c.connect("127.0.0.1", {port})
st = c.status()
assert st["consume"] == "1" and st["state"] == "play", st
song = c.currentsong()
assert song["pos"] == "0" and song["id"] == st["songid"], (song, st)
assert len(c.playlistinfo()) == int(st["playlistlength"])
c.command_list_ok_begin()
c.ping()
c.status()
r = c.command_list_end()
assert r[0] is None and r[1]["volume"], r
c.binarylimit(64)
art = c.albumart("ArtistA/AlbumOne/01 First Song.flac")
assert art["binary"] == open({cover:?}, "rb").read(), len(art["binary"])
try:
    c.password("00000000")
    sys.exit("a wrong password was taken")
except mpd.CommandError as e:
    assert "incorrect password" in str(e), e
try:
    c.next()
    sys.exit("next without the password")
except mpd.CommandError as e:
    assert "permission" in str(e), e
# Changes since the connection count too: the pause may come before or after the idle.
print("idling", flush=True)
print(c.idle("player"))
c.password("{PIN}")
c.setvol(30)
assert c.status()["volume"] == "30"
"#
    );
    let mut py = Command::new("python3")
        .args(["-c", &script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs (scripts/deps.sh test installs python-mpd2)");
    let mut out = std::io::BufReader::new(py.stdout.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut out, &mut line).unwrap();
    if line.trim() != "idling" {
        let out = py.wait_with_output().unwrap();
        panic!(
            "python-mpd2: {line}{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // The host pauses on the phones' API: the idle client hears `player`.
    let host = s.host();
    let (st, v) = s.post("/api/host/pause", &json!({}), Some(&host));
    assert_eq!(st, 200, "{v}");
    let result = py.wait_with_output().unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut out, &mut rest).unwrap();
    assert!(
        result.status.success(),
        "{}{rest}",
        String::from_utf8_lossy(&result.stderr)
    );
    assert_eq!(rest.trim(), "['player']");
}

/// A raw client from the local address `from`.
fn raw(port: u16, from: &str) -> std::net::TcpStream {
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
fn read_until(s: &mut std::net::TcpStream, end: &str) -> (String, bool) {
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

#[test]
fn hostile_clients_get_mpds_answers_and_the_party_goes_on() {
    use rand::{Rng, SeedableRng};
    use std::io::Write;
    let dir = common::tempdir();
    let (s, port) = jukebox(dir.path());
    let greet = |c: &mut std::net::TcpStream| {
        let (g, closed) = read_until(c, "OK MPD 0.23.5");
        assert!(!closed && g.starts_with("OK MPD 0.23.5"), "{g}");
    };

    // An unterminated quote and a bad argument: an ACK, and the connection goes on.
    let mut c = raw(port, "127.0.0.1");
    greet(&mut c);
    c.write_all(b"lsinfo \"open\n").unwrap();
    let (a, _) = read_until(&mut c, "OK");
    assert_eq!(a, "ACK [5@0] {} Missing closing '\"'\n");
    c.write_all(b"plchanges abc\n").unwrap();
    let (a, _) = read_until(&mut c, "OK");
    assert!(
        a.starts_with("ACK [2@0] {plchanges} Integer expected: abc"),
        "{a}"
    );
    c.write_all(b"ping\n").unwrap();
    let (a, closed) = read_until(&mut c, "OK");
    assert!(a == "OK\n" && !closed, "{a}");
    // A line over 8 KiB closes the connection, as MPD's full input buffer does.
    c.write_all(&vec![b'a'; 9000]).unwrap();
    let _ = c.write_all(b"\n");
    assert!(read_until(&mut c, "OK").1, "closed");
    // A binary blob: its first byte is no command.
    let mut c = raw(port, "127.0.0.1");
    greet(&mut c);
    c.write_all(&[0xff, 0x00, 0x13, b'\n']).unwrap();
    assert!(read_until(&mut c, "OK").1, "closed");

    // Seeded random lines, a fresh connection whenever one is closed: never a crash.
    let mut rng = rand::rngs::StdRng::seed_from_u64(1305);
    let mut c = raw(port, "127.0.0.1");
    greet(&mut c);
    let words = [
        "status",
        "idle",
        "noidle",
        "play",
        "list",
        "find",
        "command_list_begin",
        "command_list_end",
        "plchanges",
        "albumart",
        "tagtypes",
        "\"",
        "\\",
        "(",
        ")",
    ];
    for _ in 0..2_000 {
        let mut line = String::new();
        for _ in 0..rng.random_range(1..6) {
            if rng.random_bool(0.5) {
                line.push_str(words[rng.random_range(0..words.len())]);
            } else {
                let n = rng.random_range(0..12);
                line.extend((0..n).map(|_| rng.random_range(0x20u8..0x7f) as char));
            }
            line.push(' ');
        }
        line.push('\n');
        let closed = c.write_all(line.as_bytes()).is_err() || {
            // Idle and unfinished lists wait for more: a ping tells them apart from a close.
            let _ = c.write_all(b"noidle\ncommand_list_end\nping\n");
            read_until(&mut c, "OK").1
        };
        if closed {
            c = raw(port, "127.0.0.1");
            greet(&mut c);
        }
    }
    assert!(
        !s.log.lock().unwrap().contains("panicked"),
        "{}",
        s.log.lock().unwrap()
    );

    // Many idle clients from several addresses: MPD's 100 are served and woken, the rest
    // closed; the phones do not notice.
    let mut idle = Vec::new();
    let mut refused = 0;
    for i in 0..150 {
        let mut c = raw(port, &format!("127.0.0.{}", 2 + i / 25));
        let (g, closed) = read_until(&mut c, "OK MPD 0.23.5");
        if closed || g.is_empty() {
            refused += 1;
            continue;
        }
        c.write_all(b"idle player\n").unwrap();
        idle.push(c);
    }
    assert!(
        idle.len() >= 95 && refused >= 45,
        "{} served, {refused} refused",
        idle.len()
    );
    let t = Instant::now();
    let (st, _) = s.get("/api/state");
    assert_eq!(st, 200);
    assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
    let host = s.host();
    let (st, v) = s.post("/api/host/pause", &json!({}), Some(&host));
    assert_eq!(st, 200, "{v}");
    for c in &mut idle {
        let (a, closed) = read_until(c, "OK");
        assert!(!closed && a == "changed: player\nOK\n", "{a}");
    }
    assert!(!s.log.lock().unwrap().contains("panicked"));
}
