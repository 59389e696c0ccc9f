//! Phones coming back: the cost of a `hello` on a warm session against a new one, and a
//! resume storm — every phone's Wi-Fi drops for a while and all of them resume at once.
//!
//!   cargo bench --bench resume
//!   JUKEBOX_RESUME_PHONES=300 JUKEBOX_RESUME_OUTAGE_SECS=10 cargo bench --bench resume
//!
//! N phones (each its own guest, the default four topics) join one at a time; then, one at a
//! time, each closes its socket and comes back with `session` and `last_seq` (a warm hello:
//! the session is there and nothing was missed), and later once more without them (a new
//! session, with four snapshots). The server's CPU over each round, per hello, and each hello's
//! time from the connect to the last frame it needs.
//!
//! The storm, twice: the phones' sockets go quiet (`silent`: the server is not told, as when a
//! phone walks out of the Wi-Fi and its TCP connection just stops) or are closed (`closed`: the
//! server sees them go). Meanwhile the host changes the volume every 500 ms, so every session
//! misses updates. Then every phone reconnects at once and resumes. A phone is live again when
//! it has its welcome with `resumed: true` and the last volume; it checks that its `seq` went
//! on with no gap from where it left off (nothing lost, nothing twice). Reported: the time from
//! the first reconnect to the last phone live, the server's CPU over it, and any phone that
//! was not resumed, saw a gap, or did not get there within 60 s.

#[path = "common.rs"]
mod common;

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// How long one phone may take to be live again before it counts as failed.
const LIVE_WITHIN: Duration = Duration::from_secs(60);
/// A socket attached this long puts its session in use (`SessionLimits::in_use_after`), so
/// that it outlives an outage by the full session ttl.
const IN_USE_AFTER: Duration = Duration::from_secs(11);

/// What one phone knows: its guest token, its session and how far it has read.
#[derive(Default)]
struct Phone {
    token: String,
    session: String,
    last_seq: u64,
    volume: i64,
    gaps: u64,
    resumed: Option<bool>,
    /// Frames numbered since the last welcome.
    numbered: u64,
}

impl Phone {
    fn take(&mut self, v: &Value) {
        if v["cmd"] == "welcome" {
            self.session = v["session"].as_str().unwrap_or_default().to_string();
            let resumed = v["resumed"].as_bool().unwrap_or(false);
            self.resumed = Some(resumed);
            self.numbered = 0;
            if !resumed {
                // A new session numbers from 1.
                self.last_seq = 0;
            }
            return;
        }
        if let Some(seq) = v["seq"].as_u64() {
            if seq != self.last_seq + 1 {
                self.gaps += 1;
            }
            self.last_seq = seq;
            self.numbered += 1;
        }
        if v["topic"] == "now_playing" {
            if let Some(vol) = v["data"]["volume"].as_i64() {
                self.volume = vol;
            }
        }
    }

    fn hello(&self, resume: bool) -> String {
        let mut h = json!({"cmd": "hello", "v": 1, "token": self.token});
        if resume {
            h["session"] = json!(self.session);
            h["last_seq"] = json!(self.last_seq);
        }
        h.to_string()
    }
}

/// Reads `ws` into `p` until `done`, answering pings; false if the socket ended or it took
/// longer than `LIVE_WITHIN`.
async fn until(ws: &mut Ws, p: &mut Phone, done: impl Fn(&Phone) -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + LIVE_WITHIN;
    while !done(p) {
        let m = match tokio::time::timeout_at(deadline, ws.next()).await {
            Ok(Some(Ok(m))) => m,
            _ => return false,
        };
        let Message::Text(text) = m else { continue };
        let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        if v["cmd"] == "ping" {
            let _ = ws.send(Message::text(r#"{"cmd":"pong"}"#)).await;
            continue;
        }
        if v["cmd"] == "bye" {
            eprintln!("phone closed: {v}");
            return false;
        }
        p.take(&v);
    }
    true
}

/// Keeps reading (as an idle phone does) until told to stop; gives the socket and the phone
/// back.
async fn idle(mut ws: Ws, mut p: Phone, stop: tokio::sync::oneshot::Receiver<()>) -> (Ws, Phone) {
    let never = |_: &Phone| false;
    tokio::select! {
        _ = stop => {}
        _ = until(&mut ws, &mut p, never) => {}
    }
    (ws, p)
}

type Idle = (
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<(Ws, Phone)>,
);

fn park(ws: Ws, p: Phone) -> Idle {
    let (tx, rx) = tokio::sync::oneshot::channel();
    (tx, tokio::spawn(idle(ws, p, rx)))
}

async fn unpark(i: Idle) -> (Ws, Phone) {
    let _ = i.0.send(());
    i.1.await.expect("the idle phone")
}

async fn connect(addr: &str) -> Ws {
    tokio_tungstenite::connect_async(format!("ws://{addr}/ws?v=1"))
        .await
        .expect("the websocket opens")
        .0
}

/// One hello: connect, say it, read until `done`. The time it took, and whether it got there.
async fn hello(
    addr: &str,
    p: &mut Phone,
    resume: bool,
    done: impl Fn(&Phone) -> bool,
) -> (Ws, Duration, bool) {
    let t0 = Instant::now();
    let mut ws = connect(addr).await;
    ws.send(Message::text(p.hello(resume))).await.unwrap();
    p.resumed = None;
    let ok = until(&mut ws, p, done).await;
    (ws, t0.elapsed(), ok)
}

/// The default topics' four snapshots.
fn snapshots_in(p: &Phone) -> bool {
    p.resumed == Some(false) && p.numbered >= 4
}

struct Round {
    name: &'static str,
    n: usize,
    cpu: Duration,
    times: Vec<Duration>,
    failed: usize,
}

impl Round {
    fn print(&self) {
        let mut t = self.times.clone();
        t.sort();
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        println!(
            "{:<34} {:>6} {:>12.3} {:>9.2} {:>9.2} {:>9.2} {:>7}",
            self.name,
            self.n,
            ms(self.cpu) / self.n as f64,
            ms(common::percentile(&t, 0.5)),
            ms(common::percentile(&t, 0.99)),
            ms(*t.last().unwrap_or(&Duration::ZERO)),
            self.failed
        );
    }
}

struct Jukebox {
    _proc: common::Proc,
    pid: u32,
    addr: String,
    host: String,
    agent: ureq::Agent,
}

impl Jukebox {
    fn post(&self, path: &str, body: Value, auth: Option<&str>) -> Value {
        let mut req = self
            .agent
            .post(format!("http://{}{path}", self.addr))
            .header("Content-Type", "application/json");
        if let Some(a) = auth {
            req = req.header("Authorization", format!("Bearer {a}"));
        }
        let mut r = req.send(body.to_string()).expect("the jukebox answers");
        serde_json::from_str(&r.body_mut().read_to_string().unwrap()).unwrap_or(Value::Null)
    }

    fn cpu(&self) -> Duration {
        common::cpu_time(self.pid)
    }

    fn set_volume(&self, v: i64) {
        self.post("/api/host/volume", json!({ "volume": v }), Some(&self.host));
    }
}

/// One phone at a time: its socket closed, then a hello again, resuming its session
/// (`resume`) or starting a new one; the server's CPU over the round.
async fn rehello(jb: &Jukebox, idles: &mut Vec<Idle>, name: &'static str, resume: bool) -> Round {
    let mut round = Round {
        name,
        n: idles.len(),
        cpu: jb.cpu(),
        times: Vec::new(),
        failed: 0,
    };
    for i in std::mem::take(idles) {
        let (ws, mut p) = unpark(i).await;
        drop(ws);
        let (ws, t, ok) = if resume {
            hello(&jb.addr, &mut p, true, |p| p.resumed.is_some()).await
        } else {
            hello(&jb.addr, &mut p, false, snapshots_in).await
        };
        round.times.push(t);
        round.failed += usize::from(!ok || p.resumed != Some(resume));
        idles.push(park(ws, p));
    }
    round.cpu = jb.cpu() - round.cpu;
    round
}

fn main() {
    let n: usize = common::env_or("JUKEBOX_RESUME_PHONES", 300);
    let outage = Duration::from_secs(common::env_or("JUKEBOX_RESUME_OUTAGE_SECS", 10));
    let (dir, _keep) = common::workdir("resume");
    let music = dir.join("music");
    if !music.exists() {
        common::wav_library(&music, 3, 300_000);
    }
    let db = dir.join("resume.db");
    for ext in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{ext}", db.display()));
    }
    // Every phone is 127.0.0.1: the per-address limits are raised, as for the fan-out bench.
    let (proc_, addr) = common::start_jukebox(
        &music,
        &db,
        "null",
        &[
            "--guest-rate",
            "100000",
            "--guest-rate-total",
            "1000000",
            "--guests-per-address",
            "100000",
            "--max-connections",
            "16384",
            "--connections-per-address",
            "16384",
            // The address line is the app's, at info.
            "--log",
            "warn,jukebox::app=info",
        ],
        &[],
    );
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .new_agent();
    let mut jb = Jukebox {
        pid: proc_.0.id(),
        _proc: proc_,
        addr,
        host: String::new(),
        agent,
    };
    jb.host = jb.post("/api/host/login", json!({"pin": common::PIN}), None)["token"]
        .as_str()
        .expect("a host token")
        .to_string();
    // The play stays the same through the run; only the volume changes.
    jb.post("/api/host/pause", json!({}), Some(&jb.host));

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    println!("{n} phones, an outage of {outage:?}");
    println!(
        "{:<34} {:>6} {:>12} {:>9} {:>9} {:>9} {:>7}",
        "round", "hellos", "CPU ms each", "p50 ms", "p99 ms", "max ms", "failed"
    );
    rt.block_on(async {
        let mut phones: Vec<Phone> = (0..n)
            .map(|i| Phone {
                token: jb.post("/api/guest", json!({"name": format!("p{i}")}), None)["token"]
                    .as_str()
                    .expect("a guest token")
                    .to_string(),
                ..Phone::default()
            })
            .collect();

        // First hellos: a new session each.
        let mut idles = Vec::with_capacity(n);
        let mut round = Round {
            name: "first hello, new session",
            n,
            cpu: jb.cpu(),
            times: Vec::new(),
            failed: 0,
        };
        for mut p in phones.drain(..) {
            let (ws, t, ok) = hello(&jb.addr, &mut p, false, snapshots_in).await;
            round.times.push(t);
            round.failed += usize::from(!ok);
            idles.push(park(ws, p));
        }
        round.cpu = jb.cpu() - round.cpu;
        round.print();
        tokio::time::sleep(IN_USE_AFTER).await;

        // Warm: close, come back to the same session with nothing missed.
        rehello(&jb, &mut idles, "close + warm hello (resume)", true)
            .await
            .print();

        let mut volume = 30;
        for silent in [true, false] {
            tokio::time::sleep(IN_USE_AFTER).await;
            let mut held = Vec::new();
            for i in std::mem::take(&mut idles) {
                let (ws, p) = unpark(i).await;
                if silent {
                    // Unread and never closed: the server learns nothing until the resume.
                    held.push(ws);
                }
                phones.push(p);
            }
            let misses = outage.as_millis() as i64 / 500;
            for _ in 0..misses {
                volume = if volume >= 90 { 10 } else { volume + 1 };
                jb.set_volume(volume);
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            let target = volume;
            let cpu0 = jb.cpu();
            let start = Instant::now();
            let tasks: Vec<_> = phones
                .drain(..)
                .map(|mut p| {
                    let addr = jb.addr.clone();
                    tokio::spawn(async move {
                        let (ws, _, ok) = hello(&addr, &mut p, true, move |p| {
                            p.resumed == Some(false)
                                || (p.resumed == Some(true) && p.volume == target)
                        })
                        .await;
                        let ok = ok && p.resumed == Some(true) && p.gaps == 0;
                        (ws, p, start.elapsed(), ok)
                    })
                })
                .collect();
            let mut round = Round {
                name: if silent {
                    "storm: quiet sockets, all resume"
                } else {
                    "storm: closed sockets, all resume"
                },
                n,
                cpu: Duration::ZERO,
                times: Vec::new(),
                failed: 0,
            };
            let mut gaps = 0;
            let mut not_resumed = 0;
            for t in tasks {
                let (ws, p, at, ok) = t.await.expect("a phone");
                round.times.push(at);
                round.failed += usize::from(!ok);
                gaps += p.gaps;
                not_resumed += usize::from(p.resumed != Some(true));
                idles.push(park(ws, p));
            }
            round.cpu = jb.cpu() - cpu0;
            let all_live = round.times.iter().max().copied().unwrap_or_default();
            round.print();
            println!(
                "  all {n} live again {:.0} ms after the first reconnect; server CPU {:.0} ms; \
                 {misses} updates missed by each; gaps {gaps}, not resumed {not_resumed}",
                all_live.as_secs_f64() * 1000.0,
                round.cpu.as_secs_f64() * 1000.0
            );
            drop(held);
        }

        // New again, with the same close before each, for the warm round's comparison.
        tokio::time::sleep(Duration::from_millis(500)).await;
        rehello(&jb, &mut idles, "close + new hello (new session)", false)
            .await
            .print();
        for i in idles {
            drop(unpark(i).await);
        }
    });
    let (_, peak) = common::rss_kb(jb.pid);
    println!("server peak RSS {} kB", peak);
}
