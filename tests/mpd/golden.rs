//! The same read-only session against a real MPD 0.23 (Debian's `mpd`: a null output, the same
//! generated library, its own loopback port, the PIN as its password with `read` for everyone)
//! and against the jukebox, the responses compared line by line: keys, order and the format of
//! every value, and the values themselves wherever the two must agree (the library's tags,
//! paths, positions, counts, errors, cover art bytes).

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::Child;

use super::*;

/// A real MPD on a free loopback port, stopped when dropped.
struct Mpd {
    child: Child,
    port: u16,
}

impl Mpd {
    fn start(dir: &Path, music: &Path) -> Mpd {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let conf = dir.join("mpd.conf");
        let d = dir.display();
        std::fs::write(
            &conf,
            format!(
                "music_directory \"{}\"\ndb_file \"{d}/mpd.db\"\nstate_file \"{d}/mpd.state\"\n\
                 playlist_directory \"{d}\"\n\
                 log_file \"{d}/mpd.log\"\nbind_to_address \"127.0.0.1\"\nport \"{port}\"\n\
                 auto_update \"no\"\nzeroconf_enabled \"no\"\n\
                 password \"{PIN}@read,add,player,control,admin\"\ndefault_permissions \"read\"\n\
                 audio_output {{\n  type \"null\"\n  name \"Null Out\"\n  mixer_type \"software\"\n}}\n",
                music.display()
            ),
        )
        .unwrap();
        let child = Command::new("mpd")
            .arg("--no-daemon")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("mpd runs (scripts/deps.sh test installs it)");
        let mpd = Mpd { child, port };
        // A new database is made at start: wait until it holds the library.
        until("MPD has scanned the library", || {
            TcpStream::connect(("127.0.0.1", port)).is_ok_and(|s| {
                let mut w = Wire::on(s);
                w.text("stats").contains("songs: 3") && !w.text("status").contains("updating_db")
            })
        });
        mpd
    }
}

impl Drop for Mpd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One line of a response: text, or the raw bytes of a binary chunk.
#[derive(Debug, PartialEq)]
enum Line {
    Text(String),
    Binary(Vec<u8>),
}

/// A client connection that reads whole responses, binary chunks included.
struct Wire {
    r: BufReader<TcpStream>,
    w: TcpStream,
}

impl Wire {
    fn on(s: TcpStream) -> Wire {
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut w = Wire {
            r: BufReader::new(s.try_clone().unwrap()),
            w: s,
        };
        let greeting = w.line();
        assert_eq!(greeting, "OK MPD 0.23.5", "the greeting");
        w
    }

    fn connect(port: u16) -> Wire {
        Wire::on(TcpStream::connect(("127.0.0.1", port)).unwrap())
    }

    fn line(&mut self) -> String {
        let mut l = String::new();
        let port = self.w.peer_addr().map(|a| a.port());
        if let Err(e) = self.r.read_line(&mut l) {
            panic!("no whole line from port {port:?}: {e}, got {l:?}");
        }
        assert!(l.ends_with('\n'), "a whole line, got {l:?}");
        l.pop();
        l
    }

    /// Sends `request` (one or more lines) and reads the response to its end.
    fn call(&mut self, request: &str) -> Vec<Line> {
        self.w.write_all(format!("{request}\n").as_bytes()).unwrap();
        let mut out = Vec::new();
        loop {
            let l = self.line();
            if l.is_empty() && out.is_empty() {
                eprintln!("{request:?}: an empty line first");
            }
            let done = l == "OK" || l.starts_with("ACK ");
            if let Some(n) = l.strip_prefix("binary: ") {
                let mut bytes = vec![0; n.parse::<usize>().unwrap() + 1];
                self.r.read_exact(&mut bytes).unwrap();
                assert_eq!(bytes.pop(), Some(b'\n'), "a newline after the chunk");
                out.push(Line::Text(l));
                out.push(Line::Binary(bytes));
                continue;
            }
            out.push(Line::Text(l));
            if done {
                return out;
            }
        }
    }

    fn text(&mut self, request: &str) -> String {
        self.call(request)
            .iter()
            .map(|l| match l {
                Line::Text(t) => format!("{t}\n"),
                Line::Binary(b) => format!("<{} bytes>\n", b.len()),
            })
            .collect()
    }
}

/// Keys whose values the two servers must agree on, given the same files and the same queue.
const EXACT: [&str; 27] = [
    "file",
    "directory",
    "Last-Modified",
    "Format",
    "Artist",
    "Album",
    "AlbumArtist",
    "Title",
    "Track",
    "Genre",
    "Date",
    "Disc",
    "Pos",
    "cpos",
    "repeat",
    "random",
    "single",
    "consume",
    "partition",
    "playlistlength",
    "mixrampdb",
    "state",
    "song",
    "nextsong",
    "artists",
    "albums",
    "songs",
];

/// What a value looks like, for keys whose values differ by nature (times, ids, versions).
fn format_of(v: &str) -> &'static str {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let parts: Vec<&str> = v.split(':').collect();
    if parts.len() == 3 && digits(parts[0]) && digits(parts[2]) {
        return "<audio format>";
    }
    match v.split_once(['.', ':']) {
        None if digits(v) => "<int>",
        Some((a, b)) if digits(a) && b.len() == 3 && digits(b) && v.contains('.') => "<secs>",
        Some((a, b)) if digits(a) && digits(b) => "<m:s>",
        _ => "<text>",
    }
}

/// A response as the comparison sees it. `Prio` is left out: the jukebox's is the guests'
/// votes on an entry, which a real MPD's queue has no counterpart for.
fn shape(lines: &[Line]) -> Vec<String> {
    lines
        .iter()
        .filter(|l| !matches!(l, Line::Text(t) if t.starts_with("Prio: ")))
        .map(|l| match l {
            Line::Binary(b) => format!("<{} bytes, sum {}>", b.len(), {
                b.iter().map(|&x| x as u64).sum::<u64>()
            }),
            Line::Text(t) => match t.split_once(": ") {
                Some((k, v)) if !t.starts_with("ACK ") => {
                    if EXACT.contains(&k) || (k == "size" || k == "binary") {
                        t.clone()
                    } else {
                        format!("{k}: {}", format_of(v))
                    }
                }
                _ => t.clone(),
            },
        })
        .collect()
}

/// The keys of a list response, each once, in order (for lists whose members differ by
/// design: the decoders, outputs and tag types each server has).
fn keys(lines: &[Line]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for l in lines {
        if let Line::Text(t) = l {
            let k = t.split_once(": ").map_or(t.as_str(), |(k, _)| k);
            if !out.iter().any(|o| o == k) {
                out.push(k.to_string());
            }
        }
    }
    out
}

#[test]
fn read_only_answers_have_the_shape_of_a_real_mpds() {
    let dir = common::tempdir();
    let (jukebox, port) = super::jukebox(dir.path());
    let mpd = Mpd::start(dir.path(), &dir.path().join("music"));

    // The same queue on both: what the jukebox plays, then the two other files.
    let mut host = Wire::connect(port);
    host.text(&format!("password {PIN}"));
    let now = host.text("currentsong");
    let playing = now
        .lines()
        .find_map(|l| l.strip_prefix("file: "))
        .expect("the jukebox plays")
        .to_string();
    let files = [
        "ArtistA/AlbumOne/01 First Song.flac",
        "ArtistA/AlbumOne/02 Second Song.flac",
        "ArtistB/AlbumTwo/01 Last One.ogg",
    ];
    let others: Vec<&str> = files.iter().copied().filter(|f| *f != playing).collect();
    let mut mpd_host = Wire::connect(mpd.port);
    assert_eq!(mpd_host.text(&format!("password {PIN}")), "OK\n");
    for f in std::iter::once(playing.as_str()).chain(others.iter().copied()) {
        assert_eq!(mpd_host.text(&format!("add \"{f}\"")), "OK\n");
    }
    for f in &others {
        assert_eq!(host.text(&format!("add \"{f}\"")), "OK\n");
    }
    assert_eq!(mpd_host.text("consume 1"), "OK\n");
    assert_eq!(mpd_host.text("play 0"), "OK\n");
    until("both queues hold three songs, the first playing", || {
        let j = host.text("status");
        let m = mpd_host.text("status");
        [j, m]
            .iter()
            .all(|s| s.contains("playlistlength: 3\n") && s.contains("\naudio: "))
    });

    let session: &[&str] = &[
        "status",
        "currentsong",
        "stats",
        "playlistinfo",
        "playlistinfo 1",
        "playlistinfo 0:2",
        "playlistid",
        "plchanges 0",
        "plchangesposid 0",
        "playlist",
        "lsinfo",
        "lsinfo \"ArtistA\"",
        "lsinfo \"ArtistA/AlbumOne\"",
        "lsinfo \"ArtistB/AlbumTwo/01 Last One.ogg\"",
        "listall",
        "listall \"ArtistB\"",
        "listallinfo",
        "list artist",
        "list album",
        "list albumartist",
        "list album group albumartist",
        "list album group albumartist group date",
        "list title artist \"Artist A\"",
        "list genre",
        "list date",
        "find artist \"Artist A\"",
        "find album \"Album One\" title \"Second Song\"",
        "search title \"song\"",
        "search any \"one\"",
        "find \"(Artist == \\\"Artist B\\\")\"",
        "search \"(Title contains \\\"Song\\\")\"",
        "find \"(Date == \\\"2024\\\")\"",
        "find \"(AlbumArtist == \\\"Artist B\\\")\"",
        "find file \"ArtistB/AlbumTwo/01 Last One.ogg\"",
        "find \"(Title =~ \\\"^F.*g$\\\")\"",
        "search \"(Artist !~ \\\"artist a\\\")\"",
        "playlistfind file \"ArtistB/AlbumTwo/01 Last One.ogg\"",
        "playlistsearch title \"song\"",
        "playlistfind \"(Album == \\\"Album One\\\")\"",
        "subscribe \"party\"",
        "listplaylist \"nope\"",
        "count artist \"Artist A\"",
        "count group artist",
        "count \"(Album == \\\"Album One\\\")\"",
        "command_list_begin\ntagtypes \"clear\"\ntagtypes enable Artist Title\nplaylistinfo\n\
         command_list_end",
        "tagtypes all",
        "command_list_ok_begin\nstatus\ncurrentsong\ncommand_list_end",
        "command_list_begin\nstatus\nplay 99\ncurrentsong\ncommand_list_end",
        "albumart \"ArtistA/AlbumOne/01 First Song.flac\" 0",
        "binarylimit 64",
        "albumart \"ArtistA/AlbumOne/01 First Song.flac\" 64",
        "albumart \"ArtistB/AlbumTwo/01 Last One.ogg\" 0",
        "albumart \"ArtistA/AlbumOne/01 First Song.flac\" 99999",
        "readpicture \"ArtistA/AlbumOne/01 First Song.flac\" 0",
        "readpicture \"ArtistA/AlbumOne/02 Second Song.flac\" 0",
        "readpicture \"ArtistA/AlbumOne/02 Second Song.flac\" 64",
        "ping",
        // Not idling: noidle prints nothing, so this reads ping's OK alone.
        "noidle\nping",
        "lsinfo \"Nowhere\"",
        "plchanges abc",
        "idle bogus",
        "status 1",
        "setvol 50",
        "next",
        "random 1",
        "password wrong",
        "ping",
    ];
    let t = Instant::now();
    let mut j = Wire::connect(port);
    let mut m = Wire::connect(mpd.port);
    let mut differ = Vec::new();
    for &cmd in session {
        let t = Instant::now();
        let a = j.call(cmd);
        let tj = t.elapsed();
        let b = m.call(cmd);
        eprintln!("> {cmd:?} jukebox {tj:?}, mpd {:?}", t.elapsed() - tj);
        let (sa, sb) = (shape(&a), shape(&b));
        if sa != sb {
            differ.push(format!("{cmd:?}\n  jukebox: {sa:?}\n  mpd:     {sb:?}"));
        }
    }

    // The embedded picture was compared byte for byte above: it was there to compare.
    let pic = j.text("readpicture \"ArtistA/AlbumOne/02 Second Song.flac\" 0");
    assert!(pic.contains("type: image/png\nbinary: 64\n"), "{pic}");

    // A bad pattern: the same error, in each one's words after the first.
    let bad = "find \"(Artist =~ \\\"(\\\")\"";
    for w in [&mut j, &mut m] {
        let a = w.text(bad);
        assert!(a.starts_with("ACK [2@0] {find} Error in regex"), "{a}");
    }

    // The host's side, where the queues agree: swapping two songs.
    for w in [&mut j, &mut m] {
        assert_eq!(w.text(&format!("password {PIN}")), "OK\n");
    }
    for cmd in [
        "swap 1 2",
        "playlistinfo",
        "swap 2 1",
        "playlistinfo",
        "swap 0 1",
    ] {
        let (a, b) = (shape(&j.call(cmd)), shape(&m.call(cmd)));
        if cmd == "swap 0 1" {
            // What plays stays first in the jukebox: a refusal, where MPD moves it.
            assert!(a[0].starts_with("ACK [2@0] {swap} "), "{a:?}");
            continue;
        }
        if a != b {
            differ.push(format!("{cmd:?}\n  jukebox: {a:?}\n  mpd:     {b:?}"));
        }
    }

    // Lists whose members differ by design: the keys, in order.
    for cmd in ["tagtypes", "outputs", "decoders", "commands", "notcommands"] {
        let (a, b) = (keys(&j.call(cmd)), keys(&m.call(cmd)));
        if a != b {
            differ.push(format!("{cmd:?} keys\n  jukebox: {a:?}\n  mpd:     {b:?}"));
        }
    }
    // No Internet, ever: no URL handlers (MPD lists its streams' here).
    assert_eq!(j.text("urlhandlers"), "OK\n");
    // Each value of a list's `key`, as a set.
    let set = |w: &mut Wire, cmd: &str, key: &str| -> BTreeSet<String> {
        w.text(cmd)
            .lines()
            .filter_map(|l| l.strip_prefix(key).map(str::to_string))
            .collect()
    };
    // A guest (a new connection, without the password) is offered no command MPD's read
    // permission does not give.
    let (mut guest_j, mut guest_m) = (Wire::connect(port), Wire::connect(mpd.port));
    let ours = set(&mut guest_j, "commands", "command: ");
    let theirs = set(&mut guest_m, "commands", "command: ");
    assert!(
        ours.contains("status") && !ours.contains("next"),
        "{ours:?}"
    );
    let extra: Vec<&String> = ours.difference(&theirs).collect();
    if !extra.is_empty() {
        differ.push(format!("beyond MPD's read set: {extra:?}"));
    }
    // The tag types offered are MPD's.
    let ours = set(&mut j, "tagtypes", "tagtype: ");
    let theirs = set(&mut m, "tagtypes", "tagtype: ");
    if !ours.is_subset(&theirs) {
        differ.push(format!("tag types {ours:?} vs {theirs:?}"));
    }

    // An unknown command gets the same ACK, and both go on.
    assert_eq!(j.text("bogus"), m.text("bogus"));
    assert_eq!(j.text("ping"), "OK\n");
    assert_eq!(m.text("ping"), "OK\n");
    // A first byte that is no lowercase letter (a stray HTTP request, say) closes both.
    for w in [&mut j, &mut m] {
        w.w.write_all(b"Status\n").unwrap();
        let mut rest = String::new();
        let t = Instant::now();
        let read = w.r.read_line(&mut rest);
        assert!(matches!(read, Ok(0)), "closed, not {read:?} {rest:?}");
        assert!(t.elapsed() < Duration::from_secs(2), "closed at once");
    }

    eprintln!("the session took {:?}", t.elapsed());
    assert!(differ.is_empty(), "{}", differ.join("\n"));
    drop(jukebox);
}
