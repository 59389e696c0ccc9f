//! A party on a Pi's budget. The release binary runs in a cgroup (this kernel's cgroup v1 `cpu`,
//! `cpuacct` and `memory` controllers under /sys/fs/cgroup) with a CPU quota and a memory limit
//! standing in for a Pi Zero 2 W (bench/README.md, "A Pi's budget", says which and why),
//! playing to `wav:` with levelling and a crossfade, while from outside the cgroup: phones
//! connect and stay connected, guests like, vote, request and search at a steady rate, the host
//! changes the volume, an MPD client (mpc) polls `status` and another idles, and a rescan of a large
//! library runs (and the loudness pass measures what it found).
//!
//! - [`a_party_on_a_pi_budget`] (scripts/test.sh): 50 phones, 10 actions a second, a 2,000-file
//!   rescan, 30 s: no underrun, the WAV as long as the wall time it played (within 0.5 %), every
//!   acknowledged action in the database afterwards, nothing OOM-killed.
//! - [`pi_budget_bench`] (bench/README.md): 300 phones, 30 actions a second, a 10,000-file
//!   rescan and the loudness pass, at each quota of `PI_BUDGET_QUOTAS`; prints underruns, the
//!   phones' reply and update p50/p99, the memory peak, and the lowest quota with no underrun.
//!
//! Both need the release binary (`JUKEBOX_RELEASE_BIN`, or `cargo test --release`): a debug
//! build on this budget would measure the compiler's work, not the jukebox. Both need root for
//! the cgroup. They are `#[ignore]`d so that a plain `cargo test` passes without either;
//! scripts/test.sh runs the test after its release build.

mod common;

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::live::{Phone, Server, PIN};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

/// The stand-in for a Pi Zero 2 W (bench/README.md, "A Pi's budget"): a quarter of one of this
/// machine's cores, and what a 512 MB Pi leaves one service.
const PI_CPU_PERCENT: u32 = 25;
const PI_MEMORY_MB: u64 = 192;

/// How much a party asks of the jukebox.
#[derive(Clone, Debug)]
struct Load {
    phones: usize,
    actions_per_s: u32,
    /// Files added to the library and rescanned while the party goes on.
    library: usize,
    secs: u64,
}

/// What the party measured.
#[derive(Debug)]
struct Report {
    underruns: u64,
    /// The WAV's growth and the wall time between two looks at it while the load ran.
    wav_secs: f64,
    wall_secs: f64,
    sent: usize,
    acked: Vec<Acked>,
    /// Acknowledged actions the database does not hold.
    missing: Vec<Acked>,
    refused: HashMap<String, usize>,
    reply_ms: Vec<f64>,
    update_ms: Vec<f64>,
    scan_secs: Option<f64>,
    library_size: u64,
    mpd_status: u32,
    mpd_idle_wakeups: u32,
    mpd_errors: Vec<String>,
    memory_peak_mb: f64,
    rss_peak_mb: f64,
    cpu_secs: f64,
    throttled: u64,
    oom_kills: u64,
    exit_ok: bool,
}

/// An action a phone had acknowledged, as the database must hold it: a like or a vote
/// switched on or off, a new queue entry.
#[derive(Clone, Debug)]
enum Acked {
    Like { play: i64, guest: i64, on: bool },
    Vote { entry: i64, guest: i64, on: bool },
    Request { entry: i64 },
    Search,
}

/// What the action loop asks a phone to do; the phone decides the details from what it did
/// before (a like or a vote it gave is taken back next time, so that every acknowledged like
/// and vote changes what every phone sees).
#[derive(Debug)]
enum Act {
    Like,
    Vote(String),
    Request(String),
    Search(&'static str),
}

// -------------------------------------------------------------------------------------------
// The cgroup

/// A cgroup v1 of its own in the `cpu`, `cpuacct` and `memory` hierarchies, removed on drop
/// (with anything still in it killed).
struct Cgroup {
    name: String,
}

const CONTROLLERS: [&str; 3] = ["cpu", "cpuacct", "memory"];

impl Cgroup {
    fn new(cpu_percent: u32, memory_mb: u64) -> Cgroup {
        static N: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "jukebox-pi-budget-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        let cg = Cgroup { name };
        for c in CONTROLLERS {
            let dir = cg.dir(c);
            std::fs::create_dir(&dir).unwrap_or_else(|e| {
                panic!(
                    "cannot make the cgroup {} ({e}): this test needs root and the cgroup v1 \
                     controllers cpu, cpuacct and memory mounted under /sys/fs/cgroup",
                    dir.display()
                )
            });
        }
        cg.write("cpu", "cpu.cfs_period_us", "100000");
        cg.write("cpu", "cpu.cfs_quota_us", &(cpu_percent * 1000).to_string());
        cg.write(
            "memory",
            "memory.limit_in_bytes",
            &(memory_mb << 20).to_string(),
        );
        cg
    }

    fn dir(&self, controller: &str) -> PathBuf {
        Path::new("/sys/fs/cgroup")
            .join(controller)
            .join(&self.name)
    }

    fn write(&self, controller: &str, file: &str, value: &str) {
        let path = self.dir(controller).join(file);
        std::fs::write(&path, value)
            .unwrap_or_else(|e| panic!("cannot write {value} to {}: {e}", path.display()));
    }

    fn read(&self, controller: &str, file: &str) -> String {
        let path = self.dir(controller).join(file);
        std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
    }

    /// A `key value` line of a stat file.
    fn stat(&self, controller: &str, file: &str, key: &str) -> u64 {
        let text = self.read(controller, file);
        text.lines()
            .find_map(|l| l.strip_prefix(key)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {key} in {file}: {text}"))
    }

    /// `program args…` started inside the cgroup: a shell puts itself in it, then becomes the
    /// program (so the child is the jukebox itself, and everything it starts stays inside).
    fn wrap(&self, program: &Path, args: &[&std::ffi::OsStr]) -> Command {
        let join: String = CONTROLLERS
            .iter()
            .map(|c| format!("echo $$ > {}/cgroup.procs && ", self.dir(c).display()))
            .collect();
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(format!("{join}exec \"$0\" \"$@\""))
            .arg(program)
            .args(args);
        cmd
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        for c in CONTROLLERS {
            let dir = self.dir(c);
            if let Ok(procs) = std::fs::read_to_string(dir.join("cgroup.procs")) {
                for pid in procs.split_whitespace() {
                    let _ = Command::new("kill").args(["-KILL", pid]).status();
                }
            }
            for _ in 0..50 {
                if std::fs::remove_dir(&dir).is_ok() || !dir.exists() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

// -------------------------------------------------------------------------------------------
// The phones

/// What the phones share: what plays, what is queued, and what happened to every action.
#[derive(Default)]
struct Party {
    play: Option<String>,
    entries: HashSet<String>,
    tracks: Vec<String>,
    acked: Vec<Acked>,
    refused: HashMap<String, usize>,
    reply_ms: Vec<f64>,
    /// Sent actions whose change the watching phone has not seen yet, by what they change
    /// (`like p7`, `vote r3`, `new`): (action id, sent).
    awaiting: HashMap<String, VecDeque<(u64, Instant)>>,
    next_action: u64,
    /// What the watching phone last saw: the play and its likes, each entry's votes.
    likes: Option<(String, u64)>,
    votes: HashMap<String, u64>,
    update_ms: Vec<f64>,
}

impl Party {
    /// `n` changes of `key` seen at `at`: the oldest actions waiting for them are timed.
    fn seen(&mut self, key: &str, n: u64, at: Instant) {
        let Some(waiting) = self.awaiting.get_mut(key) else {
            return;
        };
        for _ in 0..n {
            let Some((_, sent)) = waiting.pop_front() else {
                break;
            };
            self.update_ms
                .push(at.duration_since(sent).as_secs_f64() * 1000.0);
        }
    }

    /// An action that changed nothing others see (refused, or an up-vote by request).
    fn forget(&mut self, key: &str, id: u64) {
        if let Some(waiting) = self.awaiting.get_mut(key) {
            waiting.retain(|(i, _)| *i != id);
        }
    }

    /// What the watching phone reads: now_playing's likes, the queue's entries and votes.
    fn watch(&mut self, m: &Value, at: Instant) {
        match m["topic"].as_str() {
            Some("now_playing") => {
                let d = &m["data"];
                let play = d["play_id"].as_str().map(String::from);
                self.play = play.clone();
                let likes = d["likes"].as_u64().unwrap_or(0);
                if let (Some(play), Some((was, before))) = (&play, self.likes.clone()) {
                    if *play == was && likes != before {
                        self.seen(&format!("like {play}"), likes.abs_diff(before), at);
                    }
                }
                self.likes = play.map(|p| (p, likes));
            }
            Some("queue") => {
                if let Some(items) = m["items"].as_array() {
                    self.votes = items
                        .iter()
                        .map(|i| {
                            (
                                i["id"].as_str().unwrap().to_string(),
                                i["votes"].as_u64().unwrap_or(0),
                            )
                        })
                        .collect();
                }
                if let Some(order) = m["order"].as_array() {
                    self.entries = order
                        .iter()
                        .filter_map(|e| e.as_str().map(String::from))
                        .collect();
                }
                let Some(id) = m["id"].as_str() else { return };
                if m["data"].is_null() {
                    self.entries.remove(id);
                    self.votes.remove(id);
                    self.awaiting.remove(&format!("vote {id}"));
                    return;
                }
                let votes = m["data"]["votes"].as_u64().unwrap_or(0);
                match self.votes.insert(id.to_string(), votes) {
                    None => {
                        self.entries.insert(id.to_string());
                        self.seen("new", 1, at);
                    }
                    Some(before) if before != votes => {
                        self.seen(&format!("vote {id}"), votes.abs_diff(before), at);
                    }
                    Some(_) => {}
                }
            }
            _ => {}
        }
    }
}

/// The number in an id's spelling (`p77`, `r42`, `g_17`).
fn num(id: &str) -> i64 {
    id.trim_start_matches(|c: char| !c.is_ascii_digit())
        .parse()
        .unwrap_or_else(|_| panic!("not an id: {id}"))
}

/// What one phone gave: the play it likes, the entries it votes for, its own requests.
#[derive(Default)]
struct Mine {
    liked: Option<String>,
    voted: HashSet<String>,
    own: HashSet<String>,
}

/// A sent action: when, what, and what change it waits for.
struct Sent {
    at: Instant,
    action: Value,
    awaits: Option<(String, u64)>,
}

/// One phone's socket: does what the action loop asks, reads everything the jukebox sends
/// (as a phone that stays on the page does), and records replies; the watching phone
/// (`watch`) also keeps what plays and what is queued, and times the updates.
async fn phone(
    mut p: Phone,
    guest: i64,
    watch: bool,
    party: Arc<Mutex<Party>>,
    mut acts: mpsc::Receiver<Act>,
) {
    let mut mine = Mine::default();
    let mut sent: HashMap<u64, Sent> = HashMap::new();
    loop {
        tokio::select! {
            act = acts.recv() => {
                let Some(act) = act else { break };
                let (action, key) = {
                    let play = party.lock().unwrap().play.clone();
                    match act {
                        Act::Like => match play {
                            Some(play) => {
                                let on = mine.liked.as_ref() != Some(&play);
                                (json!({"cmd": "like", "play_id": play, "on": on}), Some(format!("like {play}")))
                            }
                            None => (json!({"cmd": "search", "q": "song"}), None),
                        },
                        // A vote for one's own request cannot be taken back.
                        Act::Vote(e) if !mine.own.contains(&e) => {
                            let on = !mine.voted.contains(&e);
                            (json!({"cmd": "vote", "entry_id": e, "on": on}), Some(format!("vote {e}")))
                        }
                        Act::Vote(_) => (json!({"cmd": "search", "q": "album"}), None),
                        Act::Request(t) => (json!({"cmd": "request", "track_id": t}), Some("new".to_string())),
                        Act::Search(q) => (json!({"cmd": "search", "q": q}), None),
                    }
                };
                let mut action = action;
                p.rid += 1;
                action["rid"] = json!(p.rid);
                let at = Instant::now();
                let awaits = key.map(|key| {
                    let mut party = party.lock().unwrap();
                    party.next_action += 1;
                    let id = party.next_action;
                    party.awaiting.entry(key.clone()).or_default().push_back((id, at));
                    (key, id)
                });
                sent.insert(p.rid, Sent { at, action: action.clone(), awaits });
                if p.ws.send(Message::text(action.to_string())).await.is_err() {
                    break;
                }
            }
            frame = p.ws.next() => {
                let Some(Ok(frame)) = frame else { break };
                let Message::Text(text) = frame else { continue };
                let Ok(m) = serde_json::from_str::<Value>(&text) else { continue };
                let at = Instant::now();
                match m["cmd"].as_str() {
                    Some("reply") => {
                        let Some(s) = m["rid"].as_u64().and_then(|r| sent.remove(&r)) else {
                            continue;
                        };
                        let mut party = party.lock().unwrap();
                        party.reply_ms.push(at.duration_since(s.at).as_secs_f64() * 1000.0);
                        let a = &s.action;
                        if m["ok"] != true {
                            let code = m["error"]["code"].as_str().unwrap_or("?").to_string();
                            *party.refused.entry(code).or_default() += 1;
                            if let Some((key, id)) = &s.awaits {
                                party.forget(key, *id);
                            }
                            continue;
                        }
                        let acked = match a["cmd"].as_str().unwrap() {
                            "like" => {
                                let play = a["play_id"].as_str().unwrap().to_string();
                                let on = a["on"] == true;
                                mine.liked = on.then(|| play.clone());
                                Acked::Like { play: num(&play), guest, on }
                            }
                            "vote" => {
                                let entry = a["entry_id"].as_str().unwrap().to_string();
                                let on = a["on"] == true;
                                if on { mine.voted.insert(entry.clone()); } else { mine.voted.remove(&entry); }
                                Acked::Vote { entry: num(&entry), guest, on }
                            }
                            "request" => {
                                let entry = m["data"]["entry_id"].as_str().unwrap().to_string();
                                mine.voted.insert(entry.clone());
                                if m["data"]["upvoted"] == true {
                                    // An up-vote of the entry already queued: a vote, no new entry.
                                    if let Some((key, id)) = &s.awaits {
                                        party.forget(key, *id);
                                    }
                                    Acked::Vote { entry: num(&entry), guest, on: true }
                                } else {
                                    mine.own.insert(entry.clone());
                                    party.entries.insert(entry.clone());
                                    Acked::Request { entry: num(&entry) }
                                }
                            }
                            _ => Acked::Search,
                        };
                        party.acked.push(acked);
                    }
                    Some("update") if watch => party.lock().unwrap().watch(&m, at),
                    _ => {}
                }
            }
        }
    }
}

// -------------------------------------------------------------------------------------------
// The MPD clients: mpc, which we did not write

/// `mpc status` every 500 ms as the host (the PIN is mpc's password) until `stop`: how many
/// answered, and what failed.
fn mpc_status(port: u16, stop: Arc<AtomicBool>) -> (u32, Vec<String>) {
    let (mut n, mut errors) = (0, Vec::new());
    while !stop.load(Ordering::Relaxed) {
        let out = Command::new("timeout")
            .args(["5", "mpc", "--host", &format!("{PIN}@127.0.0.1"), "--port"])
            .arg(port.to_string())
            .arg("status")
            .output()
            .expect("mpc runs (./scripts/deps.sh test installs it)");
        if out.status.success() {
            n += 1;
        } else {
            errors.push(format!(
                "mpc status: {} {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    (n, errors)
}

/// `mpc idleloop`: one line for every change it was woken for.
fn mpc_idleloop(port: u16) -> std::process::Child {
    Command::new("mpc")
        .args(["--host", "127.0.0.1", "--port"])
        .arg(port.to_string())
        .arg("idleloop")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("mpc runs (./scripts/deps.sh test installs it)")
}

fn mpd_port(server: &Server) -> u16 {
    common::wait::wait_for_blocking(Duration::from_secs(10), "the MPD port in the log", || {
        server
            .log
            .lock()
            .unwrap()
            .split("MPD clients on 127.0.0.1:")
            .nth(1)?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    })
}

// -------------------------------------------------------------------------------------------
// The party

/// A WAV's length in seconds, from its header's format and its size on disk.
fn wav_seconds(path: &Path, bytes: u64) -> f64 {
    let spec = hound::WavReader::open(path).unwrap().spec();
    let per_s = f64::from(spec.sample_rate)
        * f64::from(spec.channels)
        * f64::from(spec.bits_per_sample / 8);
    bytes as f64 / per_s
}

fn party(cpu_percent: u32, memory_mb: u64, load: &Load) -> Report {
    let dir = common::tempdir();
    // What plays: four 40 s tones, each an album of its own, so that every seam is a crossfade.
    let music = common::music(dir.path(), 4, 40.0);
    // What the rescan finds: copies of one short untagged file.
    let seed = common::tone(dir.path(), "seed.ogg", 500, 2.0, &[]);
    let db = dir.path().join("j.db");
    let wav = dir.path().join("out.wav");

    let cg = Cgroup::new(cpu_percent, memory_mb);
    let mut extra = vec![
        "--mpd-listen",
        "127.0.0.1:0",
        "--normalize",
        "track",
        "--crossfade-s",
        "3",
        "--max-connections",
        "16384",
    ];
    extra.extend(common::live::ONE_ADDRESS);
    let template = Server::command(
        &db,
        &music,
        &format!("wav:{}", wav.display()),
        Some(PIN),
        &extra,
    );
    let args: Vec<_> = template.get_args().collect();
    let server = Server::spawn(cg.wrap(&common::release_bin(), &args), &db, &music);
    let host = server.host();
    server.wait_health("something playing", |h| h["audio"]["playing"] == true);
    let pid = server.child.id();

    let guests: Vec<(String, i64)> = (0..load.phones)
        .map(|i| {
            let (st, v) = server.post("/api/guest", &json!({"name": format!("P{i}")}), None);
            assert_eq!(st, 201, "{v}");
            (
                v["token"].as_str().unwrap().to_string(),
                num(v["guest_id"].as_str().unwrap()),
            )
        })
        .collect();
    let (_, found) = server.get("/api/search?q=song&limit=100");
    let party = Arc::new(Mutex::new(Party {
        tracks: found["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["id"].as_str().unwrap().to_string())
            .collect(),
        ..Party::default()
    }));

    let stop = Arc::new(AtomicBool::new(false));
    let mpd_port = mpd_port(&server);
    let status = {
        let stop = stop.clone();
        std::thread::spawn(move || mpc_status(mpd_port, stop))
    };
    let idle = mpc_idleloop(mpd_port);

    let rt = tokio::runtime::Runtime::new().unwrap();
    let (senders, tasks): (Vec<mpsc::Sender<Act>>, Vec<_>) = rt.block_on(async {
        let mut out = Vec::new();
        for (i, (token, guest)) in guests.iter().enumerate() {
            let p = Phone::connect(&server.addr, token, &["now_playing", "queue", "room"]).await;
            let (tx, rx) = mpsc::channel(64);
            out.push((
                tx,
                tokio::spawn(phone(p, *guest, i == 0, party.clone(), rx)),
            ));
        }
        out.into_iter().unzip()
    });
    common::wait::wait_until_blocking(
        Duration::from_secs(10),
        "the watching phone's state",
        || party.lock().unwrap().play.is_some(),
    );

    // The WAV is looked at twice while the load runs; its growth between the looks must be the
    // wall time between them.
    let look = || (Instant::now(), std::fs::metadata(&wav).unwrap().len());
    let first_look = look();
    let started = Instant::now();

    // The rescan: the large library appears in the music folder, and the host rescans.
    let bulk = music.join("bulk");
    std::fs::create_dir_all(&bulk).unwrap();
    for i in 0..load.library {
        std::fs::copy(&seed, bulk.join(format!("{i:05}.ogg"))).unwrap();
    }
    let (st, v) = server.post("/api/host/rescan", &json!({}), Some(&host));
    assert_eq!(st, 200, "{v}");
    let rescan_at = Instant::now();

    let interval = Duration::from_secs_f64(1.0 / f64::from(load.actions_per_s));
    let mut sent = 0usize;
    let mut scan_secs = None;
    let mut next_volume = started + Duration::from_secs(5);
    let mut volume_now = 60;
    let words = ["song", "artist", "album", "0", "bulk"];
    while started.elapsed() < Duration::from_secs(load.secs) {
        let k = sent;
        let action = {
            let p = party.lock().unwrap();
            match k % 4 {
                0 => Act::Like,
                1 => match p.entries.iter().nth(k % p.entries.len().max(1)) {
                    Some(e) => Act::Vote(e.clone()),
                    None => Act::Search("song"),
                },
                2 => Act::Request(p.tracks[(k / 4) % p.tracks.len()].clone()),
                _ => Act::Search(words[(k / 4) % words.len()]),
            }
        };
        // The phones take turns: each acts every `phones / rate` seconds.
        if senders[k % senders.len()].try_send(action).is_ok() {
            sent += 1;
        }
        if Instant::now() >= next_volume {
            let volume = if volume_now == 60 { 70 } else { 60 };
            let (st, v) = server.post("/api/host/volume", &json!({"volume": volume}), Some(&host));
            assert_eq!(st, 200, "{v}");
            next_volume += Duration::from_secs(5);
            volume_now = volume;
        }
        if scan_secs.is_none() {
            let (_, state) = server.get("/api/state");
            if state["room"]["scan"]["done"] == true
                && state["room"]["library_size"].as_u64() >= Some((4 + load.library) as u64)
            {
                scan_secs = Some(rescan_at.elapsed().as_secs_f64());
                // From now on the guests request from the whole library.
                let (_, all) = server.get("/api/search?q=&limit=100");
                let mut p = party.lock().unwrap();
                p.tracks.extend(
                    all["results"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|t| t["id"].as_str().unwrap().to_string()),
                );
            }
        }
        let due = started + interval * (sent as u32 + 1);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
    }
    let last_look = look();
    // The last replies.
    std::thread::sleep(Duration::from_secs(1));

    drop(senders);
    rt.block_on(async {
        for t in tasks {
            let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
        }
    });
    stop.store(true, Ordering::Relaxed);
    let (mpd_status, mut mpd_errors) = status.join().unwrap();
    // idleloop runs until it is stopped; a loop that ended by itself lost its connection.
    let mut idle = idle;
    if let Ok(Some(st)) = idle.try_wait() {
        mpd_errors.push(format!("mpc idleloop ended by itself: {st}"));
    }
    let _ = idle.kill();
    let out = idle.wait_with_output().unwrap();
    let mpd_idle_wakeups = String::from_utf8_lossy(&out.stdout).lines().count() as u32;
    let idle_errors = String::from_utf8_lossy(&out.stderr).trim().to_string();
    if !idle_errors.is_empty() {
        mpd_errors.push(format!("mpc idleloop: {idle_errors}"));
    }

    let health = server.get("/healthz").1;
    let underruns = health["audio"]["underruns"].as_u64().unwrap();
    let library_size = health["library_size"].as_u64().unwrap();
    let rss_peak_mb = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").parse::<f64>().ok())
        .unwrap()
        / 1024.0;
    let exit_ok = server.stop().success();

    let party = Arc::try_unwrap(party).ok().unwrap().into_inner().unwrap();
    let missing = in_database(&db, &party.acked);
    let wav_secs = wav_seconds(&wav, last_look.1 - first_look.1);
    Report {
        underruns,
        wav_secs,
        wall_secs: last_look.0.duration_since(first_look.0).as_secs_f64(),
        sent,
        acked: party.acked,
        missing,
        refused: party.refused,
        reply_ms: party.reply_ms,
        update_ms: party.update_ms,
        scan_secs,
        library_size,
        mpd_status,
        mpd_idle_wakeups,
        mpd_errors,
        memory_peak_mb: cg.stat("memory", "memory.max_usage_in_bytes", "") as f64 / 1048576.0,
        rss_peak_mb,
        cpu_secs: cg.stat("cpuacct", "cpuacct.usage", "") as f64 / 1e9,
        throttled: cg.stat("cpu", "cpu.stat", "nr_throttled"),
        oom_kills: cg.stat("memory", "memory.oom_control", "oom_kill"),
        exit_ok,
    }
}

/// The acknowledged actions the database (opened read-only, after the jukebox stopped) does
/// not hold: a request with no entry, a like or a vote whose last acknowledged state is not
/// the one stored.
fn in_database(db: &Path, acked: &[Acked]) -> Vec<Acked> {
    let conn =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap();
    let has = |sql: &str, a: i64, b: Option<i64>| -> bool {
        let mut q = conn.prepare_cached(sql).unwrap();
        match b {
            Some(b) => q.exists(rusqlite::params![a, b]),
            None => q.exists(rusqlite::params![a]),
        }
        .unwrap()
    };
    // The last acknowledged state of each like and vote is what the database must hold.
    let mut last: HashMap<(bool, i64, i64), &Acked> = HashMap::new();
    let mut missing = Vec::new();
    for a in acked {
        match *a {
            Acked::Like { play, guest, .. } => {
                last.insert((true, play, guest), a);
            }
            Acked::Vote { entry, guest, .. } => {
                last.insert((false, entry, guest), a);
            }
            Acked::Request { entry } => {
                if !has("SELECT 1 FROM requests WHERE id = ?1", entry, None) {
                    missing.push(a.clone());
                }
            }
            Acked::Search => {}
        }
    }
    for a in last.into_values() {
        let ok = match *a {
            Acked::Like { play, guest, on } => {
                on == has(
                    "SELECT 1 FROM likes WHERE play_id = ?1 AND guest_id = ?2",
                    play,
                    Some(guest),
                )
            }
            Acked::Vote { entry, guest, on } => {
                on == has(
                    "SELECT 1 FROM votes WHERE request_id = ?1 AND guest_id = ?2",
                    entry,
                    Some(guest),
                )
            }
            _ => true,
        };
        if !ok {
            missing.push(a.clone());
        }
    }
    missing
}

fn percentile(v: &[f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * p).round() as usize]
}

impl Report {
    fn kinds(&self) -> [usize; 4] {
        let mut n = [0; 4];
        for a in &self.acked {
            n[match a {
                Acked::Like { .. } => 0,
                Acked::Vote { .. } => 1,
                Acked::Request { .. } => 2,
                Acked::Search => 3,
            }] += 1;
        }
        n
    }

    fn print(&self, what: &str) {
        let [likes, votes, requests, searches] = self.kinds();
        eprintln!(
            "{what}: underruns {}, WAV {:.3} s for {:.3} s of wall time ({:+.3} %), \
             {} actions sent, acked {likes} likes, {votes} votes, {requests} requests, \
             {searches} searches, refused {:?}; reply p50 {:.1} ms p99 {:.1} ms, update p50 \
             {:.1} ms p99 {:.1} ms; rescan {} ({} tracks); MPD {} status, {} idle wakeups; \
             memory peak {:.1} MB (RSS {:.1} MB), CPU {:.1} s, throttled {} times, \
             OOM kills {}",
            self.underruns,
            self.wav_secs,
            self.wall_secs,
            (self.wav_secs / self.wall_secs - 1.0) * 100.0,
            self.sent,
            self.refused,
            percentile(&self.reply_ms, 0.5),
            percentile(&self.reply_ms, 0.99),
            percentile(&self.update_ms, 0.5),
            percentile(&self.update_ms, 0.99),
            self.scan_secs
                .map_or("not done".to_string(), |s| format!("{s:.1} s")),
            self.library_size,
            self.mpd_status,
            self.mpd_idle_wakeups,
            self.memory_peak_mb,
            self.rss_peak_mb,
            self.cpu_secs,
            self.throttled,
            self.oom_kills,
        );
    }
}

#[test]
#[ignore = "needs root and the release binary: scripts/test.sh runs it (JUKEBOX_RELEASE_BIN)"]
fn a_party_on_a_pi_budget() {
    let load = Load {
        phones: 50,
        actions_per_s: 10,
        library: 2_000,
        secs: 30,
    };
    let r = party(PI_CPU_PERCENT, PI_MEMORY_MB, &load);
    r.print(&format!(
        "{PI_CPU_PERCENT} % of a core, {PI_MEMORY_MB} MB, {load:?}"
    ));
    assert_eq!(r.oom_kills, 0, "the jukebox was OOM-killed");
    assert!(r.exit_ok, "the jukebox did not stop cleanly");
    assert_eq!(r.underruns, 0, "the music dropped out");
    assert!(
        (r.wav_secs / r.wall_secs - 1.0).abs() < 0.005,
        "the WAV grew {:.3} s in {:.3} s of wall time",
        r.wav_secs,
        r.wall_secs
    );
    assert!(
        r.missing.is_empty(),
        "acknowledged, not in the database: {:?}",
        r.missing
    );
    assert!(r.mpd_errors.is_empty(), "MPD: {:?}", r.mpd_errors);
    assert!(
        r.mpd_status >= 40,
        "MPD status answered {} times",
        r.mpd_status
    );
    assert!(r.mpd_idle_wakeups >= 1, "MPD idle never woke");
    assert!(
        r.scan_secs.is_some(),
        "the rescan of {} files did not end within the party ({} tracks)",
        load.library,
        r.library_size
    );
    // The party really happened: most actions were sent, and each kind was acknowledged.
    assert!(
        r.sent as u64 >= u64::from(load.actions_per_s) * load.secs * 9 / 10,
        "{} actions sent",
        r.sent
    );
    assert!(r.kinds().iter().all(|&n| n > 0), "acked {:?}", r.kinds());
}

/// bench/README.md, "A Pi's budget". `PI_BUDGET_QUOTAS` (percent of one core, comma-separated,
/// default "40,25,15,10"), `PI_BUDGET_PHONES` (300), `PI_BUDGET_RATE` (30),
/// `PI_BUDGET_LIBRARY` (10000), `PI_BUDGET_SECS` (60).
#[test]
#[ignore = "a benchmark: bench/README.md says how to run it"]
fn pi_budget_bench() {
    let env = |k: &str, d: &str| std::env::var(k).unwrap_or_else(|_| d.to_string());
    let load = Load {
        phones: env("PI_BUDGET_PHONES", "300").parse().unwrap(),
        actions_per_s: env("PI_BUDGET_RATE", "30").parse().unwrap(),
        library: env("PI_BUDGET_LIBRARY", "10000").parse().unwrap(),
        secs: env("PI_BUDGET_SECS", "60").parse().unwrap(),
    };
    let mut clean = Vec::new();
    for quota in env("PI_BUDGET_QUOTAS", "40,25,15,10").split(',') {
        let quota: u32 = quota.trim().parse().unwrap();
        let r = party(quota, PI_MEMORY_MB, &load);
        r.print(&format!("{quota} % of a core, {PI_MEMORY_MB} MB, {load:?}"));
        if r.underruns == 0 && r.oom_kills == 0 && r.missing.is_empty() {
            clean.push(quota);
        }
    }
    eprintln!(
        "lowest quota with no underrun, no OOM kill and nothing lost: {:?} % of a core",
        clean.iter().min()
    );
}
