//! A long night, compressed (bench/README.md, "A long night"): the release binary plays short
//! tracks back to back (an 8-hour party's thousands of plays in an hour) while 100 phones come
//! and go the way phones do at a party (the screen locks, the socket closes, the guest looks
//! again and resumes its session, or starts afresh when it has expired) and like, vote and
//! request throughout. Every minute it records the jukebox's RSS, its open file descriptors, and
//! the sizes of the database and its WAL. RSS and descriptors must plateau (the last third of
//! the night no higher than the middle third, within a margin), the WAL must stay bounded, and
//! the database may only grow by what the night's history is.
//!
//! `#[ignore]`d: it takes about an hour. Environment: `JUKEBOX_RELEASE_BIN` (or `cargo test
//! --release`), `SOAK_PLAYS` (5000), `SOAK_TRACK_MS` (500), `SOAK_PHONES` (100),
//! `SOAK_SAMPLE_SECS` (60).

mod common;

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::live::{Phone, Server, PIN};
use futures_util::StreamExt;
use serde_json::{json, Value};

fn env(key: &str, default: u64) -> u64 {
    std::env::var(key).map_or(default, |v| v.parse().unwrap())
}

/// A small xorshift: each phone's own schedule, the same on every run.
struct Dice(u64);

impl Dice {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

/// One minute's look at the jukebox.
#[derive(Debug, Clone)]
struct Sample {
    at_s: u64,
    plays: i64,
    rss_kb: u64,
    fds: usize,
    db_bytes: u64,
    wal_bytes: u64,
    phones: u64,
    underruns: u64,
}

fn sample(pid: u32, db: &Path, started: Instant, server: &Server) -> Sample {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let rss_kb = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").parse().ok())
        .unwrap();
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count();
    let size = |p: &Path| std::fs::metadata(p).map_or(0, |m| m.len());
    let conn =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap();
    let plays = conn
        .query_row("SELECT count(*) FROM plays", [], |r| r.get(0))
        .unwrap();
    let health = server.get("/healthz").1;
    Sample {
        at_s: started.elapsed().as_secs(),
        plays,
        rss_kb,
        fds,
        db_bytes: size(db),
        wal_bytes: size(&db.with_extension("db-wal")),
        phones: health["phones_connected"].as_u64().unwrap_or(0),
        underruns: health["audio"]["underruns"].as_u64().unwrap_or(0),
    }
}

/// A guest's night: looks at the party for a while (liking, voting and requesting now and
/// then), locks the screen, comes back.
async fn guest(
    addr: String,
    token: String,
    seed: u64,
    tracks: Arc<Vec<String>>,
    stop: Arc<AtomicBool>,
) {
    let mut dice = Dice(seed | 1);
    let mut session: Option<(String, u64)> = None;
    let mut liked: Option<String> = None;
    while !stop.load(Ordering::Relaxed) {
        let mut p = match &session {
            Some((s, seq)) => Phone::resume(&addr, &token, s, *seq).await,
            None => Phone::connect(&addr, &token, &["now_playing", "queue"]).await,
        };
        if p.welcome["resumed"] == false && session.is_some() {
            // Away too long: the session has gone, so the page starts afresh.
            p = Phone::connect(&addr, &token, &["now_playing", "queue"]).await;
        }
        let mut play: Option<String> = None;
        let mut entries: Vec<String> = Vec::new();
        let awake = Instant::now() + Duration::from_secs(20 + dice.below(70));
        let mut next_act = Instant::now() + Duration::from_secs(2 + dice.below(10));
        while Instant::now() < awake && !stop.load(Ordering::Relaxed) {
            let wait = next_act.saturating_duration_since(Instant::now());
            match tokio::time::timeout(wait, p.ws.next()).await {
                Ok(Some(Ok(frame))) => {
                    let Ok(m) = serde_json::from_str::<Value>(frame.to_text().unwrap_or("")) else {
                        continue;
                    };
                    if let Some(seq) = m["seq"].as_u64() {
                        p.last_seq = seq;
                    }
                    match m["topic"].as_str() {
                        Some("now_playing") => {
                            play = m["data"]["play_id"].as_str().map(String::from)
                        }
                        Some("queue") => {
                            if let Some(order) = m["order"].as_array() {
                                entries = order
                                    .iter()
                                    .filter_map(|e| e.as_str().map(String::from))
                                    .collect();
                            }
                        }
                        _ => {}
                    }
                }
                Ok(_) => break,
                Err(_) => {
                    let action = match dice.below(3) {
                        0 => play.clone().map(|play| {
                            let on = liked.as_ref() != Some(&play);
                            liked = on.then(|| play.clone());
                            json!({"cmd": "like", "play_id": play, "on": on})
                        }),
                        1 if !entries.is_empty() => {
                            let e = &entries[dice.below(entries.len() as u64) as usize];
                            Some(json!({"cmd": "vote", "entry_id": e, "on": dice.below(2) == 0}))
                        }
                        _ => {
                            let t = &tracks[dice.below(tracks.len() as u64) as usize];
                            Some(json!({"cmd": "request", "track_id": t}))
                        }
                    };
                    if let Some(a) = action {
                        p.request(a).await;
                    }
                    next_act = Instant::now() + Duration::from_secs(5 + dice.below(20));
                }
            }
        }
        // The screen locks: the socket goes without a goodbye.
        session = Some((p.session.clone(), p.last_seq));
        drop(p);
        tokio::time::sleep(Duration::from_secs(5 + dice.below(60))).await;
    }
}

#[test]
#[ignore = "a benchmark of about an hour: bench/README.md, \"A long night\", says how to run it"]
fn a_long_night() {
    let plays_wanted = env("SOAK_PLAYS", 5000) as i64;
    let track_ms = env("SOAK_TRACK_MS", 500);
    let phones = env("SOAK_PHONES", 100) as usize;
    let every = Duration::from_secs(env("SOAK_SAMPLE_SECS", 60));

    let dir = common::tempdir();
    // Short tracks of many artists (and every format), so that the auto-DJ and the requests
    // never run dry.
    let music = common::music(dir.path(), 60, track_ms as f64 / 1000.0);
    let db = dir.path().join("j.db");
    // A phone that comes back within 15 minutes resumes; later it starts afresh.
    let mut extra = vec!["--unused-session-ttl", "900"];
    extra.extend(common::live::ONE_ADDRESS);
    let template = Server::command(&db, &music, "null", Some(PIN), &extra);
    // At the priority the systemd unit gives it (Nice=-5): the music first, whatever else
    // this machine is doing.
    let mut cmd = std::process::Command::new("nice");
    cmd.args(["-n", "-5"])
        .arg(common::release_bin())
        .args(template.get_args());
    let server = Server::spawn(cmd, &db, &music);
    let pid = server.child.id();
    let tokens: Vec<String> = (0..phones)
        .map(|i| server.guest(&format!("G{i}")))
        .collect();
    let (_, found) = server.get("/api/search?q=&limit=100");
    let tracks: Arc<Vec<String>> = Arc::new(
        found["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["id"].as_str().unwrap().to_string())
            .collect(),
    );

    let stop = Arc::new(AtomicBool::new(false));
    let rt = tokio::runtime::Runtime::new().unwrap();
    let guests: Vec<_> = tokens
        .into_iter()
        .enumerate()
        .map(|(i, token)| {
            rt.spawn(guest(
                server.addr.clone(),
                token,
                0x9E37_79B9_7F4A_7C15 ^ i as u64,
                tracks.clone(),
                stop.clone(),
            ))
        })
        .collect();

    let started = Instant::now();
    let limit =
        Duration::from_millis(track_ms * plays_wanted as u64 * 2) + Duration::from_secs(300);
    let mut samples = vec![sample(pid, &db, started, &server)];
    eprintln!("   s   plays  RSS kB  fds  db bytes  WAL bytes  phones  underruns");
    while samples.last().unwrap().plays < plays_wanted {
        assert!(
            started.elapsed() < limit,
            "{plays_wanted} plays not reached in {limit:?}: {samples:?}"
        );
        std::thread::sleep(every);
        let s = sample(pid, &db, started, &server);
        eprintln!(
            "{:5} {:6} {:7} {:4} {:9} {:9} {:6} {:10}",
            s.at_s, s.plays, s.rss_kb, s.fds, s.db_bytes, s.wal_bytes, s.phones, s.underruns
        );
        samples.push(s);
    }
    stop.store(true, Ordering::Relaxed);
    let health = server.get("/healthz").1;
    assert!(server.stop().success(), "the jukebox did not stop cleanly");
    // The guests may be asleep (screens locked): they are dropped, not waited for.
    for g in guests {
        g.abort();
    }
    rt.shutdown_timeout(Duration::from_secs(2));

    // Plateau: the last third of the night against the middle third.
    let n = samples.len();
    assert!(n >= 6, "too short a night to see a plateau: {samples:?}");
    let (middle, last) = (&samples[n / 3..2 * n / 3], &samples[2 * n / 3..]);
    let max = |s: &[Sample], f: fn(&Sample) -> u64| s.iter().map(f).max().unwrap();
    let (rss_mid, rss_last) = (max(middle, |s| s.rss_kb), max(last, |s| s.rss_kb));
    let (fd_mid, fd_last) = (max(middle, |s| s.fds as u64), max(last, |s| s.fds as u64));
    let wal_max = max(&samples, |s| s.wal_bytes);
    let first = &samples[1];
    let end = samples.last().unwrap();
    let per_play = (end.db_bytes - first.db_bytes) as f64 / (end.plays - first.plays) as f64;
    eprintln!(
        "{} plays in {} s: RSS peak {rss_mid} kB (middle third) → {rss_last} kB (last third); \
         fds {fd_mid} → {fd_last}; WAL at most {wal_max} bytes; database {} → {} bytes \
         ({per_play:.0} bytes per play); underruns {}",
        end.plays, end.at_s, first.db_bytes, end.db_bytes, health["audio"]["underruns"]
    );
    assert!(
        rss_last <= rss_mid + rss_mid / 10 + 2048,
        "RSS climbs: {rss_mid} kB → {rss_last} kB"
    );
    assert!(
        fd_last <= fd_mid + 16,
        "descriptors climb: {fd_mid} → {fd_last}"
    );
    assert!(wal_max <= 16 << 20, "the WAL grew to {wal_max} bytes");
    assert!(
        per_play < 2048.0,
        "the database grows {per_play:.0} bytes per play"
    );
    assert_eq!(health["audio"]["underruns"], 0, "the music dropped out");
}
