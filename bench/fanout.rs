//! Fan-out: N phones on loopback (100, 1,000, 3,000) subscribed to now_playing, K likes at a
//! fixed rate. Reports delivered/expected, latency from the server's timestamp to each phone
//! (p50/p99/max), server RSS and CPU seconds, CPU µs per delivered message, and memory per
//! idle connection — for the jukebox, and in the same run for a minimal axum broadcast server
//! (the floor: no sessions, no sequencing, no party; just one shared frame to every socket).
//! Each like comes from a different guest, so the like count rises with every like and a
//! phone counts exactly the updates the likes caused.
//!   cargo bench --bench fanout
//!   JUKEBOX_FANOUT_SIZES=100,1000 cargo bench --bench fanout
//!   JUKEBOX_FANOUT_MPD=50 cargo bench --bench fanout   # also a row with 50 MPD clients on
//! (half of them idling as ncmpcpp does, half polling status as Home Assistant does, and one
//! sending garbage), to show what MPD clients cost the phones.

#[path = "common.rs"]
mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

static GAPS: AtomicU64 = AtomicU64::new(0);
static LIKER_ANSWERS: Mutex<std::collections::BTreeMap<String, usize>> =
    Mutex::new(std::collections::BTreeMap::new());
static OTHER: AtomicU64 = AtomicU64::new(0);
const FLOOR_ENV: &str = "JUKEBOX_FANOUT_FLOOR";
const LIKES: usize = 60;
/// Longer than the hub's 250 ms tick, which coalesces the like counts of a burst: each like
/// is then its own `now_playing` update.
const LIKE_EVERY: Duration = Duration::from_millis(300);

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn main() {
    if std::env::var_os(FLOOR_ENV).is_some() {
        floor::serve();
        return;
    }
    let sizes: Vec<usize> = std::env::var("JUKEBOX_FANOUT_SIZES")
        .ok()
        .map(|s| s.split(',').filter_map(|n| n.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![100, 1000, 3000]);
    let (dir, _keep) = common::workdir("fanout");
    let music = dir.join("music");
    if !music.exists() {
        common::wav_library(&music, 3, 300_000);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    println!(
        "{:<8} {:>6} {:>14} {:>8} {:>8} {:>8} {:>9} {:>9} {:>10} {:>11}",
        "server",
        "phones",
        "delivered",
        "p50 ms",
        "p99 ms",
        "max ms",
        "RSS kB",
        "CPU s",
        "µs/msg",
        "kB/idle"
    );
    for n in sizes {
        let db = dir.join(format!("fanout-{n}.db"));
        for ext in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{ext}", db.display()));
        }
        let jb = Target::jukebox(&music, &db);
        let r = rt.block_on(run(&jb, n));
        r.print("jukebox", n);
        for (kind, count) in jb.notes.lock().unwrap().iter() {
            println!("         server log, {count} times: {kind}");
        }
        drop(jb);
        let mpd_clients: usize = std::env::var("JUKEBOX_FANOUT_MPD")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        if mpd_clients > 0 {
            for ext in ["", "-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("{}{ext}", db.display()));
            }
            let jm = Target::jukebox_with_mpd(&music, &db);
            let mpd = mpd::Load::start(jm.mpd.expect("an MPD port"), mpd_clients);
            let m = rt.block_on(run(&jm, n));
            let answers = mpd.stop();
            m.print("jb+mpd", n);
            println!(
                "         {mpd_clients} MPD clients meanwhile: {} answers, {} idle wakes, {} garbage lines",
                answers.answers, answers.wakes, answers.garbage
            );
            drop(jm);
        }
        let fl = Target::floor();
        let f = rt.block_on(run(&fl, n));
        f.print("floor", n);
        drop(fl);
        println!(
            "{:<8} {:>6}  CPU/delivery {:.2}x the floor, p99 {:.2}x the floor",
            "ratio",
            n,
            r.cpu_us_per_msg / f.cpu_us_per_msg.max(0.001),
            r.p99 as f64 / (f.p99.max(1)) as f64
        );
    }
}

type Notes = Arc<Mutex<std::collections::BTreeMap<String, usize>>>;

struct Target {
    child: Child,
    addr: String,
    jukebox: bool,
    /// Warnings and session notes from the server's log, counted by kind.
    notes: Notes,
    /// The MPD front end's port, when it is on.
    mpd: Option<u16>,
}

impl Target {
    fn spawn(mut cmd: Command, jukebox: bool) -> Target {
        let mut child = cmd
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let err = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let (mpd_tx, mpd_rx) = std::sync::mpsc::channel();
        let notes: Notes = Default::default();
        let notes2 = notes.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                if let Some(a) = line.split("listening on http://").nth(1) {
                    let _ = tx.send(a.trim().to_string());
                } else if let Some(p) = line.split("MPD clients on 127.0.0.1:").nth(1) {
                    let _ = mpd_tx.send(p.trim().parse::<u16>().ok());
                } else if line.contains("WARN")
                    || line.contains("ERROR")
                    || line.contains("session s_")
                {
                    // Count what the server had to say, by kind.
                    let kind = line.split(": ").last().unwrap_or("").to_string();
                    *notes2.lock().unwrap().entry(kind).or_default() += 1;
                }
            }
        });
        let addr = rx.recv_timeout(Duration::from_secs(60)).expect("listening");
        // The MPD line comes before the HTTP one.
        let mpd = mpd_rx.try_recv().ok().flatten();
        Target {
            child,
            addr,
            jukebox,
            notes,
            mpd,
        }
    }

    fn jukebox(music: &std::path::Path, db: &std::path::Path) -> Target {
        Target::jukebox_args(music, db, &["--no-mpd"])
    }

    /// The jukebox with its MPD front end on a free loopback port.
    fn jukebox_with_mpd(music: &std::path::Path, db: &std::path::Path) -> Target {
        Target::jukebox_args(music, db, &["--mpd-listen", "127.0.0.1:0"])
    }

    fn jukebox_args(music: &std::path::Path, db: &std::path::Path, extra: &[&str]) -> Target {
        // JUKEBOX_FANOUT_WRAP="heaptrack -o /tmp/fanout" profiles the server under this load.
        let mut cmd = match std::env::var("JUKEBOX_FANOUT_WRAP") {
            Ok(wrap) if !wrap.trim().is_empty() => {
                let mut words = wrap.split_whitespace();
                let mut c = Command::new(words.next().expect("a command"));
                c.args(words).arg(env!("CARGO_BIN_EXE_jukebox"));
                c
            }
            _ => Command::new(env!("CARGO_BIN_EXE_jukebox")),
        };
        cmd.arg("--music").arg(music).arg("--db").arg(db).args([
            "--listen",
            "127.0.0.1:0",
            "--output",
            "null",
            "--no-mdns",
            "--host-pin",
            "12345678",
            "--guest-rate",
            "100000",
            "--guest-rate-total",
            "1000000",
            "--guests-per-address",
            "100000",
            "--ws-rate",
            "10000",
            "--ws-burst",
            "100000",
            // Every phone comes from 127.0.0.1.
            "--max-connections",
            "16384",
            "--connections-per-address",
            "16384",
            "--log",
            "warn,jukebox::server=info,jukebox::app=info",
        ]);
        cmd.args(extra);
        Target::spawn(cmd, true)
    }

    fn floor() -> Target {
        let mut cmd = Command::new(std::env::current_exe().unwrap());
        cmd.env(FLOOR_ENV, "1");
        Target::spawn(cmd, false)
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// A token for one phone (the floor needs none).
    fn token(&self, agent: &ureq::Agent, i: usize) -> String {
        if !self.jukebox {
            return format!("t{i}");
        }
        let mut r = agent
            .post(format!("http://{}/api/guest", self.addr))
            .header("Content-Type", "application/json")
            .send(json!({"name": format!("p{i}")}).to_string())
            .unwrap();
        let v: Value = serde_json::from_str(&r.body_mut().read_to_string().unwrap()).unwrap();
        v["token"].as_str().unwrap().to_string()
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Result_ {
    delivered: u64,
    expected: u64,
    p50: i64,
    p99: i64,
    max: i64,
    rss_kb: u64,
    cpu_s: f64,
    cpu_us_per_msg: f64,
    kb_per_idle: f64,
}

impl Result_ {
    fn print(&self, name: &str, n: usize) {
        println!(
            "{:<8} {:>6} {:>14} {:>8} {:>8} {:>8} {:>9} {:>9.2} {:>10.1} {:>11.1}",
            name,
            n,
            format!("{}/{}", self.delivered, self.expected),
            self.p50,
            self.p99,
            self.max,
            self.rss_kb,
            self.cpu_s,
            self.cpu_us_per_msg,
            self.kb_per_idle
        );
    }
}

async fn run(t: &Target, n: usize) -> Result_ {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .new_agent();
    let rss_before = common::rss_kb(t.pid()).0;
    let lat = Arc::new(Mutex::new(Vec::with_capacity(n * LIKES)));
    let delivered = Arc::new(AtomicU64::new(0));
    // Every frame the likes caused (the floor sends one per like; the jukebox an update and an
    // event), for the CPU cost per delivered message.
    let frames = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    let mut ready = Vec::new();
    let mut per_phone: Vec<Arc<AtomicU64>> = Vec::new();
    for i in 0..n {
        let token = t.token(&agent, i);
        let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/ws?v=1", t.addr))
            .await
            .unwrap();
        ws.send(Message::text(
            json!({"cmd":"hello","v":1,"token":token,"topics":["now_playing"]}).to_string(),
        ))
        .await
        .unwrap();
        let (lat, delivered, frames) = (lat.clone(), delivered.clone(), frames.clone());
        let mine = Arc::new(AtomicU64::new(0));
        per_phone.push(mine.clone());
        let (tx, rx) = tokio::sync::oneshot::channel();
        ready.push(rx);
        tasks.push(tokio::spawn(async move {
            let mut tx = Some(tx);
            let mut last_seq = 0;
            let mut seen_likes = 0;
            while let Some(Ok(m)) = ws.next().await {
                let Message::Text(text) = m else { continue };
                let v: Value = serde_json::from_str(&text).unwrap();
                if let Some(seq) = v["seq"].as_u64() {
                    if seq != last_seq + 1 {
                        GAPS.fetch_add(1, Ordering::Relaxed);
                    }
                    last_seq = seq;
                }
                if v["cmd"] == "update" && v["topic"] != "now_playing" {
                    OTHER.fetch_add(1, Ordering::Relaxed);
                }
                // Like a real phone, answer the server's liveness pings (silence is closed
                // after 50 s, and connecting 3,000 phones takes longer than that).
                if v["cmd"] == "ping" {
                    let _ = ws.send(Message::text(r#"{"cmd":"pong"}"#)).await;
                    continue;
                }
                if v["cmd"] == "bye" {
                    eprintln!("phone closed: {v}");
                }
                // Each like also toasts: the `liked` event is a delivery too.
                if v["cmd"] == "event" && v["name"] == "liked" {
                    frames.fetch_add(1, Ordering::Relaxed);
                }
                if v["topic"] == "now_playing" {
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(());
                        continue; // the snapshot
                    }
                    let likes = v["data"]["likes"].as_u64().unwrap_or(0);
                    if likes > seen_likes {
                        seen_likes = likes;
                        if let Some(ts) = v["data"]["server_time_ms"].as_i64() {
                            lat.lock().unwrap().push(now_ms() - ts);
                        }
                        delivered.fetch_add(1, Ordering::Relaxed);
                        frames.fetch_add(1, Ordering::Relaxed);
                        mine.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    let connected_in = Instant::now();
    let mut late = 0;
    for r in ready {
        if tokio::time::timeout(Duration::from_secs(30), r)
            .await
            .is_err()
        {
            late += 1;
        }
    }
    eprintln!(
        "{n} phones ready ({late} late) {:?} after the last connected",
        connected_in.elapsed()
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_idle = common::rss_kb(t.pid()).0;

    // The likers: one guest per like, so the like count rises 1, 2, 3 … and every phone can
    // tell each like's update from any other update.
    let mut likers = Vec::new();
    let mut play = String::new();
    for k in 0..LIKES {
        let token = t.token(&agent, n + 1 + k);
        let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/ws?v=1", t.addr))
            .await
            .unwrap();
        let topics: &[&str] = if k == 0 { &["now_playing"] } else { &[] };
        ws.send(Message::text(
            json!({"cmd":"hello","v":1,"token":token,"topics":topics}).to_string(),
        ))
        .await
        .unwrap();
        while k == 0 && play.is_empty() {
            let Some(Ok(Message::Text(t))) = ws.next().await else {
                panic!("the liker was closed")
            };
            let v: Value = serde_json::from_str(&t).unwrap();
            if let Some(p) = v["data"]["play_id"].as_str() {
                play = p.to_string();
            }
        }
        let (sink, mut stream) = ws.split();
        tokio::spawn(async move {
            while let Some(Ok(m)) = stream.next().await {
                if let Message::Text(t) = m {
                    let v: Value = serde_json::from_str(&t).unwrap_or(Value::Null);
                    if v["cmd"] == "reply" {
                        let k = v["error"]["code"].as_str().unwrap_or("ok").to_string();
                        *LIKER_ANSWERS.lock().unwrap().entry(k).or_default() += 1;
                    }
                }
            }
        });
        likers.push(sink);
    }
    // Connecting thousands of phones can outlast a track: pause the music so the play the
    // likes name cannot end during the measurement (likes on a paused play count the same).
    if t.jukebox {
        let mut r = agent
            .post(format!("http://{}/api/host/login", t.addr))
            .header("Content-Type", "application/json")
            .send(json!({"pin": "12345678"}).to_string())
            .unwrap();
        let v: Value = serde_json::from_str(&r.body_mut().read_to_string().unwrap()).unwrap();
        let host = v["token"].as_str().unwrap().to_string();
        let r = agent
            .post(format!("http://{}/api/host/pause", t.addr))
            .header("Content-Type", "application/json")
            .header("Authorization", format!("Bearer {host}"))
            .send("{}")
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
    }
    // Count only what the likes cause (not the updates of other phones connecting).
    tokio::time::sleep(Duration::from_millis(300)).await;
    delivered.store(0, Ordering::Relaxed);
    frames.store(0, Ordering::Relaxed);
    lat.lock().unwrap().clear();
    let cpu0 = common::cpu_time(t.pid());
    let start = Instant::now();
    for (i, sink) in likers.iter_mut().enumerate() {
        let frame = json!({"cmd":"like","rid": 1,"play_id": play,"on": true});
        sink.send(Message::text(frame.to_string())).await.unwrap();
        let due = start + LIKE_EVERY * (i as u32 + 1);
        tokio::time::sleep_until(due.into()).await;
    }
    let expected = (n * LIKES) as u64;
    let deadline = Instant::now() + Duration::from_secs(30);
    while delivered.load(Ordering::Relaxed) < expected && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let cpu = common::cpu_time(t.pid()) - cpu0;
    eprintln!("deliveries done after {:?}", start.elapsed());
    if delivered.load(Ordering::Relaxed) < expected {
        let mut hist: std::collections::BTreeMap<u64, usize> = Default::default();
        let mut first_short = None;
        for (i, p) in per_phone.iter().enumerate() {
            let c = p.load(Ordering::Relaxed);
            *hist.entry(c).or_default() += 1;
            if c < LIKES as u64 && first_short.is_none() {
                first_short = Some(i);
            }
        }
        eprintln!(
            "deliveries per phone: {hist:?}; first short phone #{first_short:?}; seq gaps {}; other updates {}; the liker's answers {:?}",
            GAPS.load(Ordering::Relaxed),
            OTHER.load(Ordering::Relaxed),
            LIKER_ANSWERS.lock().unwrap()
        );
    }
    let rss = common::rss_kb(t.pid()).0;
    for task in tasks {
        task.abort();
    }
    let mut lat = lat.lock().unwrap().clone();
    lat.sort();
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 - 1.0) * p) as usize)
            .copied()
            .unwrap_or(0)
    };
    let d = delivered.load(Ordering::Relaxed);
    Result_ {
        delivered: d,
        expected,
        p50: pct(0.5),
        p99: pct(0.99),
        max: lat.last().copied().unwrap_or(0),
        rss_kb: rss,
        cpu_s: cpu.as_secs_f64(),
        cpu_us_per_msg: cpu.as_secs_f64() * 1e6 / frames.load(Ordering::Relaxed).max(1) as f64,
        kb_per_idle: (rss_idle.saturating_sub(rss_before)) as f64 / n as f64,
    }
}

/// The floor: the smallest axum server that fans one frame out to every socket.
mod floor {
    use std::sync::Arc;
    use std::time::{SystemTime, UNIX_EPOCH};

    use axum::extract::ws::{Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
    use axum::extract::State;
    use axum::response::Response;
    use axum::routing::get;
    use axum::Router;
    use futures_util::{SinkExt, StreamExt};
    use tokio::sync::broadcast;

    type Tx = Arc<broadcast::Sender<Utf8Bytes>>;

    /// Likes so far, across every socket.
    static LIKES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

    pub fn serve() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let (tx, _) = broadcast::channel(1024);
            let app = Router::new()
                .route("/ws", get(upgrade))
                .with_state(Arc::new(tx));
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            eprintln!("listening on http://{}", listener.local_addr().unwrap());
            axum::serve(listener, app).await.unwrap();
        });
    }

    async fn upgrade(State(tx): State<Tx>, ws: WebSocketUpgrade) -> Response {
        ws.on_upgrade(move |s| socket(s, tx))
    }

    fn frame(likes: u64) -> Utf8Bytes {
        let ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis();
        // The same size and shape as the jukebox's now_playing update.
        Utf8Bytes::from(format!(
            r#"{{"cmd":"update","seq":1,"topic":"now_playing","data":{{"play_id":"p1","track":{{"id":"t1","title":"Song 0","artist":"Artist 0000","album":"Album 0","duration_ms":300000,"track_no":null,"art":null}},"requested_by":null,"position_ms":1000,"server_time_ms":{ms},"paused":false,"likes":{likes},"skip_votes":0,"skip_needed":2,"volume":70,"auto":true}}}}"#
        ))
    }

    async fn socket(ws: WebSocket, tx: Tx) {
        let (mut sink, mut stream) = ws.split();
        let mut rx = tx.subscribe();
        let _ = sink.send(Message::Text(frame(0))).await; // the "snapshot"
        loop {
            tokio::select! {
                m = stream.next() => match m {
                    Some(Ok(Message::Text(t))) if t.contains("\"like\"") => {
                        let likes = LIKES.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
                        let _ = tx.send(frame(likes));
                    }
                    Some(Ok(_)) => {}
                    _ => return,
                },
                f = rx.recv() => match f {
                    Ok(f) => if sink.send(Message::Text(f)).await.is_err() { return },
                    Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(_) => return,
                },
            }
        }
    }
}

/// MPD clients beside the phones: idlers (ncmpcpp's loop: idle, then status and currentsong
/// on each wake), pollers (Home Assistant's: status and currentsong in a command list, four
/// times a second each) and one client sending garbage, reconnecting whenever it is closed.
mod mpd {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    use tokio::net::TcpStream;

    #[derive(Default)]
    pub struct Counts {
        pub answers: u64,
        pub wakes: u64,
        pub garbage: u64,
    }

    pub struct Load {
        stop: Arc<AtomicBool>,
        answers: Arc<AtomicU64>,
        wakes: Arc<AtomicU64>,
        garbage: Arc<AtomicU64>,
        threads: Vec<std::thread::JoinHandle<()>>,
    }

    /// What the garbage is made of: MPD's quoting and filter characters, and command names.
    const CHARS: &[u8] = b"abz \"\\(){}=~'status idle list find 09";

    /// Reads one response (to its OK or ACK); false when the connection ended.
    async fn response(r: &mut BufReader<tokio::net::tcp::OwnedReadHalf>) -> bool {
        let mut line = String::new();
        loop {
            line.clear();
            match r.read_line(&mut line).await {
                Ok(0) | Err(_) => return false,
                Ok(_) if line == "OK\n" || line.starts_with("ACK ") => return true,
                Ok(_) => {}
            }
        }
    }

    impl Load {
        /// Runs on a runtime of its own, off the phones' (as separate client machines are).
        pub fn start(port: u16, clients: usize) -> Load {
            let stop = Arc::new(AtomicBool::new(false));
            let (answers, wakes, garbage) = Default::default();
            let mut load = Load {
                stop,
                answers,
                wakes,
                garbage,
                threads: Vec::new(),
            };
            let (stop, answers, wakes, garbage) = (
                load.stop.clone(),
                load.answers.clone(),
                load.wakes.clone(),
                load.garbage.clone(),
            );
            load.threads.push(std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async move {
                    let mut tasks = Vec::new();
                    for i in 0..clients {
                        let (stop, answers, wakes) = (stop.clone(), answers.clone(), wakes.clone());
                        tasks.push(tokio::spawn(async move {
                            let s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
                            let (r, mut w) = s.into_split();
                            let mut r = BufReader::new(r);
                            let mut greeting = String::new();
                            r.read_line(&mut greeting).await.unwrap();
                            let poll =
                                b"command_list_ok_begin\nstatus\ncurrentsong\ncommand_list_end\n";
                            while !stop.load(Ordering::Relaxed) {
                                if i % 2 == 0 {
                                    if w.write_all(b"idle\n").await.is_err()
                                        || !response(&mut r).await
                                    {
                                        return;
                                    }
                                    wakes.fetch_add(1, Ordering::Relaxed);
                                } else {
                                    tokio::time::sleep(Duration::from_millis(250)).await;
                                }
                                if w.write_all(poll).await.is_err() || !response(&mut r).await {
                                    return;
                                }
                                answers.fetch_add(1, Ordering::Relaxed);
                            }
                        }));
                    }
                    let g = stop.clone();
                    tasks.push(tokio::spawn(async move {
                        let mut seed: u64 = 1305;
                        while !g.load(Ordering::Relaxed) {
                            let Ok(s) = TcpStream::connect(("127.0.0.1", port)).await else {
                                return;
                            };
                            let (_r, mut w) = s.into_split();
                            for _ in 0..1000 {
                                if g.load(Ordering::Relaxed) {
                                    return;
                                }
                                let mut line: Vec<u8> = (0..40)
                                    .map(|_| {
                                        seed =
                                            seed.wrapping_mul(6364136223846793005).wrapping_add(1);
                                        CHARS[(seed >> 33) as usize % CHARS.len()]
                                    })
                                    .collect();
                                line.push(b'\n');
                                if w.write_all(&line).await.is_err() {
                                    break;
                                }
                                garbage.fetch_add(1, Ordering::Relaxed);
                                tokio::time::sleep(Duration::from_millis(10)).await;
                            }
                        }
                    }));
                    while !stop.load(Ordering::Relaxed) {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    for t in tasks {
                        t.abort();
                    }
                });
            }));
            load
        }

        pub fn stop(mut self) -> Counts {
            self.stop.store(true, Ordering::Relaxed);
            for t in self.threads.drain(..) {
                let _ = t.join();
            }
            Counts {
                answers: self.answers.load(Ordering::Relaxed),
                wakes: self.wakes.load(Ordering::Relaxed),
                garbage: self.garbage.load(Ordering::Relaxed),
            }
        }
    }
}
