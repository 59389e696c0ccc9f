//! The snapcast output against Debian's snapserver and snapclients, on loopback: two rooms get
//! the party's audio (PCM codec, levelling off, volume 100: the files' own samples, bit for
//! bit, see `locate`) in sync, and in the order played; a skip, a pause and a volume change
//! reach every room within snapserver's buffer + 400 ms; the phones' progress bars follow what
//! the rooms hear within 50 ms; the stream plugin shows what plays and controls it only when
//! the host allows; and a snapserver that is absent, killed, hung or restarted, or a
//! plain file where its pipe should be, never stalls the party.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::live::{Phone, Server, PIN};
use common::snap::{self, Listener, Snapclient, Snapserver};
use serde_json::{json, Value};

/// A 48 kHz 16-bit stereo WAV tone (over a little noise: see `tone_in_noise`) in its own folder (its own album), `title` tagged.
fn track(music: &Path, title: &str, freq: u32, secs: f64) -> PathBuf {
    let dir = music.join(title);
    std::fs::create_dir_all(&dir).unwrap();
    let mut cmd = common::media::ffmpeg();
    common::media::tone_in_noise(&mut cmd, freq, secs, 48_000).args([
        "-c:a",
        "pcm_s16le",
        "-ar",
        "48000",
    ]);
    common::media::tags(&mut cmd, &[("title", title), ("album", title)]);
    common::media::write(&mut cmd, &dir.join(format!("{title}.wav")))
}

/// How long a snapclient takes to synchronise its clock with snapserver's after it connects.
const SETTLE: Duration = Duration::from_secs(3);

fn wall_ms(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH).unwrap().as_secs_f64() * 1000.0
}

/// The jukebox writing into `fifo`, everything as mastered and at full volume.
fn jukebox(dir: &Path, music: &Path, fifo: &Path, buffer_ms: u32) -> Server {
    Server::start_with(
        &dir.join("j.db"),
        music,
        &format!("snapcast:{}", fifo.display()),
        Some(PIN),
        &[
            "--normalize",
            "off",
            "--volume",
            "100",
            "--snapcast-buffer-ms",
            &buffer_ms.to_string(),
        ],
    )
}

fn wait(limit: Duration, what: &str, mut ok: impl FnMut() -> bool) {
    let t = Instant::now();
    while !ok() {
        assert!(t.elapsed() < limit, "timed out after {limit:?}: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A play as the phones see it: which track, and when its first sample is heard by the
/// jukebox's account (`server_time_ms - position_ms`, read once it has started moving).
struct Seen {
    title: String,
    heard_ms: f64,
}

/// Reads `now_playing` until `n` plays have been seen moving.
fn plays(server: &Server, n: usize) -> Vec<Seen> {
    let mut seen: Vec<Seen> = Vec::new();
    let mut last_id = Value::Null;
    wait(Duration::from_secs(40), "the plays to start", || {
        let (_, s) = server.get("/api/state");
        let np = &s["now_playing"];
        let pos = np["position_ms"].as_f64().unwrap_or(0.0);
        if !np.is_null() && np["play_id"] != last_id && pos >= 300.0 {
            last_id = np["play_id"].clone();
            seen.push(Seen {
                title: np["track"]["title"].as_str().unwrap().to_string(),
                heard_ms: np["server_time_ms"].as_f64().unwrap() - pos,
            });
        }
        seen.len() >= n
    });
    seen
}

/// Where a track's audio is in a client's output: the frame its first sample would be at,
/// found by the samples from 0.5 s in to 0.5 s before its end (the fades a start or a skip may
/// add are outside that window).
///
/// Bit-exact: the jukebox passes a file already in the output's format through untouched with
/// levelling off at volume 100, and snapserver and snapclient deliver what they are given (PCM
/// codec, no client mixer), with one exception of snapclient's own: to stay in sync it now and
/// then plays a frame twice or leaves one out (its log calls them frames inserted/removed), so
/// the audio may step by one frame, and must match exactly on either side of the step; a few
/// such steps over a track are allowed.
fn locate(played: &[i16], file: &[i16]) -> Option<usize> {
    let at = starts_at(played, file)?;
    follow(played, file, at)
}

/// The most frames snapclient's corrections may add or remove over one track here.
const MOST_CORRECTIONS: usize = 20;

/// The samples [`locate`] compares: from 0.5 s in to 0.5 s before the end.
fn window(file: &[i16]) -> &[i16] {
    let skip = 24_000 * 2;
    &file[skip..file.len() - skip]
}

/// Where a track's audio begins in a client's output (the frame its first sample would be
/// at), by the first 256 frames of [`window`] alone: tone over seeded noise, they match
/// nowhere else. For timing: whether the rest arrived intact is [`locate`]'s question.
fn starts_at(played: &[i16], file: &[i16]) -> Option<usize> {
    let head = &window(file)[..512];
    (0..played.len().saturating_sub(head.len()) / 2)
        .find(|&f| played[f * 2..f * 2 + 512] == *head)
        .and_then(|f| f.checked_sub(24_000))
}

/// Checks that the whole [`window`] follows from frame `at + 0.5 s`, frame by frame;
/// `Some(at)` once it has all been played.
fn follow(played: &[i16], file: &[i16], at: usize) -> Option<usize> {
    let window = window(file);
    let close = |a: &[i16], b: &[i16]| a == b;
    // Frame by frame, following snapclient's one-frame steps.
    let frames = window.len() / 2;
    let got = |f: isize| -> Option<&[i16]> {
        usize::try_from(f)
            .ok()
            .and_then(|f| played.get(f * 2..f * 2 + 2))
    };
    let (mut offset, mut corrections, mut i) = ((at + 24_000) as isize, 0, 0);
    while i < frames {
        let want = &window[i * 2..i * 2 + 2];
        match got(offset + i as isize) {
            None => return None, // not all played yet
            Some(g) if close(g, want) => {
                i += 1;
                continue;
            }
            Some(_) => {}
        }
        let run = 256.min(frames - i);
        let step = [-1isize, 1].into_iter().find(|d| {
            (0..run).all(|k| {
                got(offset + d + (i + k) as isize)
                    .is_some_and(|g| close(g, &window[(i + k) * 2..(i + k) * 2 + 2]))
            })
        });
        match step {
            Some(d) if corrections < MOST_CORRECTIONS => {
                offset += d;
                corrections += 1;
            }
            _ => {
                let g = offset as usize + i;
                panic!(
                    "the track's audio is not what the jukebox played at the room: from frame \
                     {i} of the window ({:.3} s in; {corrections} one-frame steps before), \
                     {:?} where the file has {:?}",
                    i as f64 / 48_000.0 + 0.5,
                    &played[g * 2..(g * 2 + 8).min(played.len())],
                    &window[i * 2..(i * 2 + 8).min(window.len())]
                );
            }
        }
    }
    if corrections > 0 {
        println!("snapclient stepped {corrections} frame(s) to stay in sync");
    }
    Some(at)
}

#[test]
fn two_rooms_play_the_party_in_sync_and_in_order() {
    let dir = common::tempdir();
    let music = dir.path().join("music");
    let files = [
        ("Low", track(&music, "Low", 440, 4.0)),
        ("High", track(&music, "High", 660, 4.0)),
    ];
    let fifo = dir.path().join("jukebox.fifo");
    let server = Snapserver::start(dir.path(), &fifo, 1000);
    let rooms = [
        Snapclient::start(&server, "kitchen", 1),
        Snapclient::start(&server, "garden", 2),
    ];
    wait(Duration::from_secs(15), "both rooms connected", || {
        server.connected_clients().len() == 2
    });
    // Their clocks synchronise with snapserver's first: until then they correct by dropping
    // or repeating frames.
    std::thread::sleep(SETTLE);
    let jukebox = jukebox(dir.path(), &music, &fifo, 1000);
    let seen = plays(&jukebox, 2);
    let samples: Vec<(String, Vec<i16>)> = files
        .iter()
        .map(|(t, p)| (t.to_string(), snap::wav_samples(p)))
        .collect();
    // Both rooms have heard the second track's end (by the phones' account) before looking.
    let second_len_ms = 4000.0;
    wait(Duration::from_secs(20), "the second track to end", || {
        wall_ms(SystemTime::now()) > seen[1].heard_ms + second_len_ms + 500.0
    });
    let h = jukebox.get("/healthz").1;
    assert_eq!(h["audio"]["underruns"], 0, "the player kept up: {h}");
    let mut heard = Vec::new();
    for room in &rooms {
        let played = room.samples();
        let at: Vec<usize> = seen
            .iter()
            .map(|s| {
                let file = &samples.iter().find(|(t, _)| *t == s.title).unwrap().1;
                locate(&played, file).unwrap_or_else(|| panic!("{} in {}", s.title, room.id))
            })
            .collect();
        // In the order played, one after the other, and nothing but silence before and between.
        let first_len = samples
            .iter()
            .find(|(t, _)| *t == seen[0].title)
            .unwrap()
            .1
            .len()
            / 2;
        // One after the other, gapless (two albums, no crossfade): the second's first frame
        // follows the first's last, give or take snapclient's one-frame steps.
        let gap = at[1] as f64 - (at[0] + first_len) as f64;
        println!(
            "{}: the second track starts {:.2} ms after the first one's end",
            room.id,
            gap / 48.0
        );
        assert!(
            gap.abs() <= MOST_CORRECTIONS as f64,
            "{}: {gap} frames between the tracks",
            room.id
        );
        assert!(
            played[..at[0] * 2].iter().all(|s| *s == 0),
            "{}: only silence before the party",
            room.id
        );
        heard.push(at.iter().map(|f| room.heard_at(*f)).collect::<Vec<_>>());
    }
    // The two rooms in sync.
    for (i, s) in seen.iter().enumerate() {
        let offset = wall_ms(heard[0][i]) - wall_ms(heard[1][i]);
        println!("{}: the rooms {offset:+.2} ms apart", s.title);
        assert!(
            offset.abs() < 1.0,
            "{}: rooms {offset:.2} ms apart",
            s.title
        );
    }
    // The progress bar: when the phones say the second play started (the hub's account of
    // the player's position, less `audio.latency_ms`), against when the rooms heard it.
    for room in 0..2 {
        let lag = wall_ms(heard[room][1]) - seen[1].heard_ms;
        println!(
            "{}: heard {lag:+.1} ms from the phones' account (latency_ms {})",
            rooms[room].id, h["audio"]["latency_ms"]
        );
        assert!(
            lag.abs() <= 50.0,
            "{}: the progress bar is {lag:.0} ms off what the room hears",
            rooms[room].id
        );
    }
}

/// The first frame at or after `from` from which the samples stay within `level` for 0.3 s.
fn quiet_from(played: &[i16], from: usize, level: i16) -> Option<usize> {
    let run = 14_400;
    let frames = played.len() / 2;
    let mut start = None;
    for f in from..frames {
        let loud = played[f * 2].abs() > level || played[f * 2 + 1].abs() > level;
        match (loud, start) {
            (true, _) => start = None,
            (false, None) => start = Some(f),
            (false, Some(s)) if f - s >= run => return Some(s),
            _ => {}
        }
    }
    None
}

#[test]
fn a_skip_a_pause_and_a_volume_change_reach_every_room_within_the_buffer_and_400_ms() {
    let buffer = 1000;
    let dir = common::tempdir();
    let music = dir.path().join("music");
    let files = [
        track(&music, "One", 440, 30.0),
        track(&music, "Two", 660, 30.0),
    ];
    let fifo = dir.path().join("jukebox.fifo");
    let server = Snapserver::start(dir.path(), &fifo, buffer);
    let room = Snapclient::start(&server, "hall", 1);
    wait(Duration::from_secs(15), "the room connected", || {
        server.connected_clients().len() == 1
    });
    std::thread::sleep(SETTLE);
    let jukebox = jukebox(dir.path(), &music, &fifo, buffer);
    let host = jukebox.host();
    let act = |what: &str, body: Value| {
        let (st, v) = jukebox.post(&format!("/api/host/{what}"), &body, Some(&host));
        assert_eq!(st, 200, "{what}: {v}");
        SystemTime::now()
    };
    let bound = f64::from(buffer) + 400.0;
    let first = plays(&jukebox, 1).remove(0).title;
    let idx = |t: &str| usize::from(t == "Two");
    let [a, b] = [
        snap::wav_samples(&files[idx(&first)]),
        snap::wav_samples(&files[1 - idx(&first)]),
    ];
    wait(
        Duration::from_secs(10),
        "the room plays the first track",
        || starts_at(&room.samples(), &a).is_some(),
    );

    // Skip: the next track's first sample, heard.
    let asked = act("skip", json!({}));
    wait(
        Duration::from_secs(10),
        "the room plays the next track",
        || starts_at(&room.samples(), &b).is_some(),
    );
    let played = room.samples();
    let at_b = starts_at(&played, &b).unwrap();
    assert!(starts_at(&played, &a).is_some_and(|at_a| at_a < at_b));
    let took = wall_ms(room.heard_at(at_b)) - wall_ms(asked);
    println!("skip: the next track heard {took:.0} ms after the host asked");
    assert!(took <= bound, "skip took {took:.0} ms > {bound} ms");

    // Pause: silence from there on.
    std::thread::sleep(Duration::from_secs(2));
    let asked = act("pause", json!({}));
    std::thread::sleep(Duration::from_millis(buffer as u64 + 1500));
    let played = room.samples();
    let quiet = quiet_from(&played, at_b + 24_000, 0).expect("silence after the pause");
    let took = wall_ms(room.heard_at(quiet)) - wall_ms(asked);
    println!("pause: silence {took:.0} ms after the host asked");
    assert!(took <= bound, "pause took {took:.0} ms > {bound} ms");

    // Volume 50 (a quarter of the amplitude): the level drops.
    act("play", json!({}));
    std::thread::sleep(Duration::from_secs(3));
    let asked = act("volume", json!({"volume": 50}));
    std::thread::sleep(Duration::from_millis(buffer as u64 + 1500));
    let played = room.samples();
    // Below 60% of the track's peak is the new volume arriving.
    let full = b.iter().map(|s| s.unsigned_abs()).max().unwrap();
    let resumed = (quiet..played.len() / 2)
        .find(|f| played[f * 2].unsigned_abs() > full / 2)
        .expect("the music again after the pause");
    let lower =
        quiet_from(&played, resumed, (u32::from(full) * 6 / 10) as i16).expect("the lower volume");
    let took = wall_ms(room.heard_at(lower)) - wall_ms(asked);
    println!("volume: the lower level {took:.0} ms after the host asked");
    assert!(took <= bound, "volume took {took:.0} ms > {bound} ms");
}

/// Like replies from `phone` over `secs` (a like every 60 ms, toggled).
struct Likes {
    p50: Duration,
    max: Duration,
}

impl Likes {
    /// Likes that wait on snapserver wait every time: the median shows it. One slow reply
    /// (a WAL fsync on a busy disk took 400 ms once) is the machine, and only a stall of
    /// seconds is something else.
    fn assert_unhindered(&self, what: &str) {
        assert!(
            self.p50 < Duration::from_millis(100) && self.max < Duration::from_secs(2),
            "likes wait on {what}: p50 {:?}, max {:?}",
            self.p50,
            self.max
        );
    }
}

async fn likes(phone: &mut Phone, play_id: &Value, secs: u64) -> Likes {
    let mut times = Vec::new();
    let t = Instant::now();
    let mut on = true;
    while t.elapsed() < Duration::from_secs(secs) {
        let sent = Instant::now();
        phone
            .ok(json!({"cmd": "like", "play_id": play_id, "on": on}))
            .await;
        times.push(sent.elapsed());
        on = !on;
        tokio::time::sleep(Duration::from_millis(60)).await;
    }
    times.sort();
    Likes {
        p50: times[times.len() / 2],
        max: times[times.len() - 1],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_killed_or_restarted_snapserver_never_stalls_the_party() {
    let dir = common::tempdir();
    let music = dir.path().join("music");
    track(&music, "Long", 440, 60.0);
    let fifo = dir.path().join("jukebox.fifo");
    // A plain file where the pipe should be, and no snapserver: the party starts anyway.
    std::fs::write(&fifo, b"not a pipe").unwrap();
    let jukebox = jukebox(dir.path(), &music, &fifo, 500);
    let np = jukebox.playing();
    let log = |s: &Server| s.log.lock().unwrap().clone();
    wait(Duration::from_secs(10), "a warning about the file", || {
        log(&jukebox).contains("is not a pipe")
    });
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        log(&jukebox).matches("is not a pipe").count(),
        1,
        "said once: {}",
        log(&jukebox)
    );
    assert_eq!(
        std::fs::read(&fifo).unwrap(),
        b"not a pipe",
        "never written into"
    );
    std::fs::remove_file(&fifo).unwrap();
    wait(
        Duration::from_secs(10),
        "a line about the missing pipe",
        || log(&jukebox).contains("does not exist yet"),
    );

    // snapserver comes: its pipe is found and fed, and a room hears the party.
    let mut server = Snapserver::start(dir.path(), &fifo, 500);
    let room = Snapclient::start(&server, "porch", 1);
    let loud = |r: &Snapclient, from: usize| r.samples()[from * 2..].iter().any(|s| *s != 0);
    wait(Duration::from_secs(15), "the room hears the party", || {
        loud(&room, 0)
    });
    assert!(
        log(&jukebox).contains("snapcast: writing to"),
        "{}",
        log(&jukebox)
    );

    // A phone liking and unliking, with snapserver up and then killed. The host's own phone:
    // a guest may change a like only twice a second.
    let host = jukebox.host();
    let mut phone = Phone::connect(&jukebox.addr, &host, &[]).await;
    let up = likes(&mut phone, &np["play_id"], 2).await;
    server.kill();
    let down = likes(&mut phone, &np["play_id"], 3).await;
    println!(
        "like p50/max: {:?}/{:?} with snapserver, {:?}/{:?} without",
        up.p50, up.max, down.p50, down.max
    );
    down.assert_unhindered("a killed snapserver");
    assert!(
        log(&jukebox).contains("snapserver stopped reading"),
        "{}",
        log(&jukebox)
    );
    // The party went on meanwhile.
    let (_, s) = jukebox.get("/api/state");
    assert_eq!(s["now_playing"]["play_id"], np["play_id"]);
    assert!(s["now_playing"]["position_ms"].as_u64().unwrap() > 3000);

    // Back: the room (which reconnects by itself) hears it again within 2 s of its return.
    let before = room.frames();
    server.restart();
    let back = Instant::now();
    wait(
        Duration::from_secs(10),
        "the room hears the party again",
        || room.frames() > before && loud(&room, before),
    );
    let took = back.elapsed();
    println!("audio back at the room {took:?} after snapserver's return");
    assert!(took <= Duration::from_secs(2), "{took:?}");

    // Hung (SIGSTOP): the pipe fills and stays full; the phones do not notice. Then it goes
    // on (SIGCONT), and so does the room.
    server.signal("STOP");
    let hung = likes(&mut phone, &np["play_id"], 3).await;
    println!(
        "like p50/max while snapserver is stopped: {:?}/{:?}",
        hung.p50, hung.max
    );
    hung.assert_unhindered("a hung snapserver");
    let (_, s) = jukebox.get("/api/state");
    assert_eq!(
        s["now_playing"]["play_id"], np["play_id"],
        "the party went on"
    );
    let before = room.frames();
    server.signal("CONT");
    let back = Instant::now();
    wait(
        Duration::from_secs(10),
        "the room hears the party after snapserver goes on",
        || room.frames() > before + 48_000 && loud(&room, before + 24_000),
    );
    println!("audio back at the room {:?} after SIGCONT", back.elapsed());
    let h = jukebox.get("/healthz").1;
    assert_eq!(h["audio"]["ok"], true, "{h}");
    drop(phone);
}

/// The `Stream.OnProperties` notification of the jukebox's stream whose properties `pred`
/// accepts.
fn properties(l: &Listener, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    l.wait(Duration::from_secs(15), what, |v| {
        v["method"] == "Stream.OnProperties"
            && v["params"]["id"] == "jukebox"
            && pred(&v["params"]["properties"])
    })["params"]["properties"]
        .clone()
}

#[test]
fn the_stream_plugin_shows_what_plays_and_controls_it_only_when_the_host_allows() {
    let dir = common::tempdir();
    let music = dir.path().join("music");
    for (t, f) in [("First", 440), ("Second", 550), ("Third", 660)] {
        track(&music, t, f, 60.0);
    }
    let fifo = dir.path().join("jukebox.fifo");
    let port = snap::free_port();
    let listen = format!("127.0.0.1:{port}");
    let start = || {
        Server::spawn(
            Server::command_on(
                &listen,
                &dir.path().join("j.db"),
                &music,
                "null",
                Some(PIN),
                &[],
            ),
            &dir.path().join("j.db"),
            &music,
        )
    };
    let jukebox = start();
    // snapserver 0.26 passes the plugin only its own arguments: a wrapper gives ours.
    let script = dir.path().join("jukebox-plugin");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nexec {} snapcast-plugin --jukebox http://{listen} --pin {PIN} \"$@\"\n",
            common::bin()
        ),
    )
    .unwrap();
    let mut perms = std::fs::metadata(&script).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
    std::fs::set_permissions(&script, perms).unwrap();
    let server = Snapserver::with_plugin(dir.path(), &fifo, 1000, &script);
    let mut snapweb = Listener::connect(&server);

    // What plays, as Snapweb sees it; no control while the host has not allowed it.
    let np = jukebox.playing();
    let title = np["track"]["title"].as_str().unwrap().to_string();
    // The plugin told snapserver before this client connected: it asks, as Snapweb does.
    let mut p = Value::Null;
    wait(Duration::from_secs(15), "the first title", || {
        let status = snapweb.request("Server.GetStatus", json!({}));
        p = status["result"]["server"]["streams"]
            .as_array()
            .and_then(|s| s.iter().find(|s| s["id"] == "jukebox"))
            .map(|s| s["properties"].clone())
            .unwrap_or_default();
        p["metadata"]["title"] == title.as_str()
    });
    assert_eq!(p["playbackStatus"], "playing", "{p}");
    assert_eq!(p["metadata"]["duration"], 60.0, "{p}");
    assert_eq!(p["canGoNext"], false, "{p}");
    assert_eq!(p["canControl"], false, "{p}");
    let r = snapweb.request(
        "Stream.Control",
        json!({"id": "jukebox", "command": "next"}),
    );
    assert!(r["error"].is_object(), "refused while not allowed: {r}");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        jukebox.playing()["play_id"],
        np["play_id"],
        "nothing skipped"
    );

    // The host allows it: next skips, pause pauses, each shown to Snapweb.
    let host = jukebox.host();
    let (st, v) = jukebox.post(
        "/api/host/settings",
        &json!({"snapcast_control": true}),
        Some(&host),
    );
    assert_eq!(st, 200, "{v}");
    properties(&snapweb, "control allowed", |p| p["canGoNext"] == true);
    let r = snapweb.request(
        "Stream.Control",
        json!({"id": "jukebox", "command": "next"}),
    );
    assert_eq!(r["result"], "ok", "{r}");
    let next = jukebox.wait_state("the next play", |s| {
        (s["now_playing"]["play_id"] != np["play_id"] && !s["now_playing"].is_null())
            .then(|| s["now_playing"].clone())
    });
    let next_title = next["track"]["title"].as_str().unwrap().to_string();
    properties(&snapweb, "the next title", |p| {
        p["metadata"]["title"] == next_title.as_str()
    });
    let r = snapweb.request(
        "Stream.Control",
        json!({"id": "jukebox", "command": "pause"}),
    );
    assert_eq!(r["result"], "ok", "{r}");
    properties(&snapweb, "paused", |p| p["playbackStatus"] == "paused");
    assert_eq!(jukebox.get("/api/state").1["now_playing"]["paused"], true);
    let r = snapweb.request(
        "Stream.Control",
        json!({"id": "jukebox", "command": "playPause"}),
    );
    assert_eq!(r["result"], "ok", "{r}");
    properties(&snapweb, "playing again", |p| {
        p["playbackStatus"] == "playing"
    });

    // The jukebox restarts: the plugin says the stream stopped, and comes back by itself
    // (snapserver would not start it again).
    let pid = jukebox.child.id();
    let _ = std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status();
    drop(jukebox);
    properties(&snapweb, "stopped while the jukebox is away", |p| {
        p["playbackStatus"] == "stopped" && p["canGoNext"] == false
    });
    let jukebox = start();
    let np = jukebox.playing();
    let p = properties(&snapweb, "what plays after the restart", |p| {
        p["metadata"]["title"] == np["track"]["title"] && p["canGoNext"] == true
    });
    assert_eq!(p["playbackStatus"], "playing", "{p}");
    // The host's switch off again: refused.
    let host = jukebox.host();
    jukebox.post(
        "/api/host/settings",
        &json!({"snapcast_control": false}),
        Some(&host),
    );
    properties(&snapweb, "control withdrawn", |p| p["canGoNext"] == false);
    let r = snapweb.request(
        "Stream.Control",
        json!({"id": "jukebox", "command": "next"}),
    );
    assert!(r["error"].is_object(), "{r}");
}

/// The volume snapserver holds for client `id`.
fn snap_volume(server: &Snapserver, id: &str) -> Value {
    let status = server.rpc("Server.GetStatus", json!({}));
    status["result"]["server"]["groups"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|g| g["clients"].as_array().cloned().unwrap_or_default())
        .find(|c| c["id"] == id)
        .map(|c| c["config"]["volume"].clone())
        .unwrap_or(Value::Null)
}

/// The next `rooms` update about room `id` whose data `pred` accepts.
async fn room_update(phone: &mut Phone, id: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let seen = phone
        .until(|v| v["topic"] == "rooms" && v["id"] == id && pred(&v["data"]))
        .await;
    seen.last().unwrap()["data"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_host_sees_every_room_and_sets_its_volume_through_snapserver() {
    let dir = common::tempdir();
    let music = dir.path().join("music");
    track(&music, "Long", 440, 60.0);
    let fifo = dir.path().join("jukebox.fifo");
    let mut server = Snapserver::start(dir.path(), &fifo, 500);
    let rpc = format!("127.0.0.1:{}", server.control_port);
    let jukebox = Server::start_with(
        &dir.path().join("j.db"),
        &music,
        &format!("snapcast:{}", fifo.display()),
        Some(PIN),
        &["--snapcast-rpc", &rpc],
    );
    let host = jukebox.host();
    let mut phone = Phone::connect(&jukebox.addr, &host, &["rooms"]).await;
    assert!(
        phone.welcome["features"]
            .as_array()
            .unwrap()
            .contains(&json!("rooms")),
        "{}",
        phone.welcome
    );
    let first = phone.until(|v| v["topic"] == "rooms").await.pop().unwrap();
    assert_eq!(first["items"], json!([]), "no room yet: {first}");
    assert_eq!(first["snapserver"]["address"], json!(rpc), "{first}");
    if first["snapserver"]["reachable"] != true {
        phone
            .until(|v| v["topic"] == "rooms" && v["snapserver"]["reachable"] == true)
            .await;
    }

    // A room connects: it appears, named, with snapserver's volume.
    let kitchen = Snapclient::start(&server, "kitchen", 1);
    let room = room_update(&mut phone, "kitchen", |d| d["connected"] == true).await;
    assert_eq!(room["name"], "kitchen", "its --hostID names it: {room}");
    let order = phone
        .until(|v| v["topic"] == "rooms" && v.get("order").is_some())
        .await;
    assert_eq!(order.last().unwrap()["order"], json!(["kitchen"]));

    // The host sets its volume: snapserver holds it, the topic shows it before the reply, and
    // Snapcast's other apps are told.
    let mut snapweb = Listener::connect(&server);
    let rid = phone
        .request(json!({"cmd": "room_volume", "room": "kitchen", "volume": 35}))
        .await;
    let (reply, before) = phone.reply(rid).await;
    assert_eq!(reply["ok"], true, "{reply}");
    assert!(
        before
            .iter()
            .any(|v| v["topic"] == "rooms" && v["data"]["volume"] == 35),
        "the update comes before the reply: {before:?}"
    );
    assert_eq!(snap_volume(&server, "kitchen")["percent"], 35);
    snapweb.wait(Duration::from_secs(5), "Snapweb told", |v| {
        v["method"] == "Client.OnVolumeChanged" && v["params"]["volume"]["percent"] == 35
    });
    phone
        .ok(json!({"cmd": "room_mute", "room": "kitchen", "on": true}))
        .await;
    assert_eq!(
        snap_volume(&server, "kitchen"),
        json!({"muted": true, "percent": 35})
    );
    // Over HTTP as well, with the host's token.
    let (st, v) = jukebox.post(
        "/api/host/room_mute",
        &json!({"room": "kitchen", "on": false}),
        Some(&host),
    );
    assert_eq!(st, 200, "{v}");
    assert_eq!(snap_volume(&server, "kitchen")["muted"], false);

    // Changed in another app (Snapweb): the host page follows.
    snapweb.request(
        "Client.SetVolume",
        json!({"id": "kitchen", "volume": {"muted": false, "percent": 60}}),
    );
    room_update(&mut phone, "kitchen", |d| d["volume"] == 60).await;

    // Wrong rooms and volumes are refused, and guests do not see the rooms at all.
    let code = phone
        .refused(json!({"cmd": "room_volume", "room": "attic", "volume": 10}))
        .await;
    assert_eq!(code, "not_found");
    let code = phone
        .refused(json!({"cmd": "room_volume", "room": "kitchen", "volume": 101}))
        .await;
    assert_eq!(code, "bad_request");
    let guest = jukebox.guest("Mia");
    let mut mia = Phone::connect(&jukebox.addr, &guest, &[]).await;
    assert_eq!(
        mia.refused(json!({"cmd": "sub", "topics": ["rooms"]}))
            .await,
        "forbidden"
    );
    assert_eq!(
        mia.refused(json!({"cmd": "room_volume", "room": "kitchen", "volume": 0}))
            .await,
        "forbidden"
    );

    // A second room, then the first one leaves.
    let garden = Snapclient::start(&server, "garden", 2);
    room_update(&mut phone, "garden#2", |d| d["connected"] == true).await;
    drop(kitchen);
    room_update(&mut phone, "kitchen", |d| d["connected"] == false).await;

    // snapserver gone: the panel says so, a volume change says why, the party plays on;
    // back: the rooms are there again.
    server.kill();
    let down = phone
        .until(|v| v["topic"] == "rooms" && v["snapserver"]["reachable"] == false)
        .await;
    let why = down.last().unwrap()["snapserver"]["error"].clone();
    assert!(why.is_string(), "{why}");
    let rid = phone
        .request(json!({"cmd": "room_volume", "room": "garden#2", "volume": 50}))
        .await;
    let (reply, _) = phone.reply(rid).await;
    assert_eq!(reply["error"]["code"], "internal", "{reply}");
    let message = reply["error"]["message"].as_str().unwrap();
    assert!(message.contains("cannot be reached"), "{message}");
    let np = jukebox.playing();
    assert!(!np.is_null());
    server.restart();
    phone
        .until(|v| v["topic"] == "rooms" && v["snapserver"]["reachable"] == true)
        .await;
    // garden's snapclient reconnects by itself, before or after the jukebox does. Before, the
    // room never looks gone and no update comes: what counts is the panel's state, in a
    // fresh snapshot.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mut fresh = Phone::connect(&jukebox.addr, &host, &["rooms"]).await;
        let snapshot = fresh
            .until(|v| v["topic"] == "rooms" && v["items"].is_array())
            .await
            .pop()
            .unwrap();
        let items = snapshot["items"].as_array().unwrap();
        if items
            .iter()
            .any(|r| r["id"] == "garden#2" && r["connected"] == true)
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "garden#2 is not back: {snapshot}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    phone
        .ok(json!({"cmd": "room_volume", "room": "garden#2", "volume": 50}))
        .await;
    assert_eq!(snap_volume(&server, "garden#2")["percent"], 50);
    assert_eq!(
        jukebox
            .log
            .lock()
            .unwrap()
            .matches("rooms: snapserver at")
            .count(),
        1,
        "one warning for the outage: {}",
        jukebox.log.lock().unwrap()
    );
    drop(garden);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_or_hung_control_port_costs_only_the_rooms_panel() {
    use std::io::{Read, Write};
    let dir = common::tempdir();
    let music = dir.path().join("music");
    track(&music, "Long", 440, 60.0);
    // Not snapserver: the first connection gets a line that is not JSON and then one without
    // end; the second is never answered.
    let fake = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = fake.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for n in 0..2 {
            let Ok((mut s, _)) = fake.accept() else {
                return;
            };
            let _ = s.read(&mut [0u8; 512]);
            if n == 0 {
                let _ = s.write_all(b"not json\r\n");
                let _ = s.write_all(&vec![b'x'; 5 << 20]);
            }
            held.push(s);
        }
        std::thread::sleep(Duration::from_secs(30));
    });
    let jukebox = Server::start_with(
        &dir.path().join("j.db"),
        &music,
        "null",
        Some(PIN),
        &["--snapcast-rpc", &addr],
    );
    let host = jukebox.host();
    let mut phone = Phone::connect(&jukebox.addr, &host, &["rooms", "now_playing"]).await;
    let error = |v: &Value, s: &str| {
        v["topic"] == "rooms"
            && v["snapserver"]["error"]
                .as_str()
                .is_some_and(|e| e.contains(s))
    };
    phone.until(|v| error(v, "a line longer than 4 MiB")).await;
    let np = jukebox.playing();
    phone
        .ok(json!({"cmd": "like", "play_id": np["play_id"], "on": true}))
        .await;
    phone.until(|v| error(v, "did not answer within 5 s")).await;
    let rid = phone
        .request(json!({"cmd": "room_volume", "room": "kitchen", "volume": 5}))
        .await;
    assert_eq!(phone.reply(rid).await.0["error"]["code"], "internal");
    let h = jukebox.get("/healthz").1;
    assert_eq!(
        (&h["status"], &h["audio"]["playing"]),
        (&json!("ok"), &json!(true)),
        "{h}"
    );
    assert_eq!(
        jukebox.log.lock().unwrap().matches("WARN").count(),
        1,
        "one warning: {}",
        jukebox.log.lock().unwrap()
    );
}
