//! mpc, python-mpd2 and ncmpcpp drive the party.

use super::*;

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
    let paused = ok(port, &[&pin[..], &["pause"]].concat());
    assert!(paused.contains("[paused]"), "{paused}");
    until("the party is paused", || {
        state(&s)["now_playing"]["paused"] == true
    });
    let played = ok(port, &[&pin[..], &["play"]].concat());
    assert!(played.contains("[playing]"), "{played}");
    until("the party plays again", || {
        state(&s)["now_playing"]["paused"] == false
    });
    ok(port, &[&pin[..], &["del", "2"]].concat());
    until("the delete shows", || queued(&s) == before);
    let next = ok(port, &[&pin[..], &["next"]].concat());
    // The status mpc prints at once already names the next song (the skip's fade-out is
    // waited for), as the party does.
    let now = state(&s)["now_playing"].clone();
    assert_ne!(now["play_id"], np["play_id"]);
    assert_eq!(
        next.lines().next(),
        Some(
            format!(
                "{} - {}",
                now["track"]["artist"].as_str().unwrap(),
                now["track"]["title"].as_str().unwrap()
            )
            .as_str()
        ),
        "{next}"
    );

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
    // The picture the phones show for the second song (the one embedded in it).
    let (_, found) = s.get("/api/search?q=second&limit=1");
    let second = found["results"][0]["id"].as_str().unwrap().to_string();
    let phones_art = ureq::get(s.url(&format!("/api/art/{second}")))
        .call()
        .unwrap()
        .body_mut()
        .read_to_vec()
        .unwrap();
    let phones = dir.path().join("phones-art");
    std::fs::write(&phones, &phones_art).unwrap();
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
# readpicture, chunk by chunk, gives what the phones get from /api/art.
pic = c.readpicture("ArtistA/AlbumOne/02 Second Song.flac")
assert pic["binary"] == open({phones:?}, "rb").read(), len(pic["binary"])
assert pic["type"] == "image/png", pic.keys()
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

/// ncmpcpp in a detached tmux session of its own (a private tmux server), ended when dropped.
struct Ncmpcpp {
    socket: String,
}

impl Ncmpcpp {
    fn start(home: &Path, port: u16) -> Ncmpcpp {
        let socket = format!("jukebox-test-{}-{port}", std::process::id());
        // Its status bar messages ("Connected to…") for one second, not five.
        let conf = home.join(".ncmpcpp");
        std::fs::create_dir_all(&conf).unwrap();
        std::fs::write(conf.join("config"), "message_delay_time = 1\n").unwrap();
        let cmd = format!(
            "env HOME={} TERM=xterm-256color ncmpcpp -h 127.0.0.1 -p {port}",
            home.display()
        );
        let ok = Command::new("tmux")
            .args([
                "-L",
                &socket,
                "new-session",
                "-d",
                "-x",
                "120",
                "-y",
                "35",
                &cmd,
            ])
            .status()
            .expect("tmux runs (scripts/deps.sh test installs it)");
        assert!(ok.success(), "tmux starts ncmpcpp");
        Ncmpcpp { socket }
    }

    fn screen(&self) -> String {
        let out = Command::new("tmux")
            .args(["-L", &self.socket, "capture-pane", "-p"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn keys(&self, keys: &[&str]) {
        let ok = Command::new("tmux")
            .args(["-L", &self.socket, "send-keys"])
            .args(keys)
            .status()
            .unwrap();
        assert!(ok.success());
    }

    /// Waits until the status bar says it plays `title`: `Playing: Artist "Album" (Date) -
    /// Title`, once its messages ("Connected to…") have gone.
    fn plays(&self, title: &str) {
        self.until(&format!("Playing: … - {title}"), |screen| {
            screen
                .lines()
                .any(|l| l.starts_with("Playing: ") && l.contains(&format!(" - {title} ")))
        });
    }

    /// Waits until the screen shows `text`.
    fn shows(&self, text: &str) {
        self.until(text, |screen| screen.contains(text));
    }

    fn until(&self, text: &str, f: impl Fn(&str) -> bool) {
        let t = Instant::now();
        loop {
            let screen = self.screen();
            if f(&screen) {
                return;
            }
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "ncmpcpp never showed {text:?}:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Ncmpcpp {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["-L", &self.socket, "kill-server"])
            .stderr(Stdio::null())
            .status();
    }
}

#[test]
fn ncmpcpp_shows_what_plays_and_skips_after_the_pin() {
    let dir = common::tempdir();
    let (s, port) = jukebox(dir.path());
    let np = state(&s)["now_playing"].clone();
    let title = np["track"]["title"].as_str().unwrap().to_string();

    let ncm = Ncmpcpp::start(dir.path(), port);
    // Its playlist (MPD's queue: what plays first) and its status bar name the playing song.
    ncm.shows("Playlist (1 item");
    ncm.plays(&title);

    // Skipping needs the PIN: ncmpcpp asks for it, and nothing changes until it is given.
    ncm.keys(&[">"]);
    ncm.shows("Password:");
    assert_eq!(state(&s)["now_playing"]["play_id"], np["play_id"]);
    ncm.keys(&[PIN, "Enter"]);
    std::thread::sleep(Duration::from_millis(300));
    ncm.keys(&[">"]);
    let mut next = String::new();
    until("ncmpcpp's skip reaches the party", || {
        let now = state(&s)["now_playing"].clone();
        next = now["track"]["title"].as_str().unwrap_or("").to_string();
        now["play_id"] != np["play_id"] && !next.is_empty()
    });
    ncm.plays(&next);
    ncm.keys(&["q"]);
    assert!(!s.log.lock().unwrap().contains("panicked"));
}
