//! Isolation under load, against the real binary: a phone that never reads is closed with
//! 4008 while 100 others keep receiving at the same latency. Alone in its test binary, so no
//! other test competes for the CPU while latencies are measured.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::live::{Phone, Server};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Hundreds of phones from 127.0.0.1: the per-address and new-guest limits are raised.
const LIMITS: &[&str] = &[
    "--guest-rate",
    "100000",
    "--guest-rate-total",
    "100000",
    "--guests-per-address",
    "100000",
    "--ws-rate",
    "10000",
    "--ws-burst",
    "100000",
    // Every phone comes from 127.0.0.1.
    "--connections-per-address",
    "1000",
];

/// 100 phones that record the delay of every now_playing update (server time → received).
async fn audience(
    s: &Server,
    n: usize,
) -> (Arc<Mutex<Vec<i64>>>, Vec<tokio::task::JoinHandle<()>>) {
    let lat = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for i in 0..n {
        let token = s.guest(&format!("p{i}"));
        let mut p = Phone::connect(&s.addr, &token, &["now_playing"]).await;
        let lat = lat.clone();
        tasks.push(tokio::spawn(async move {
            while let Some(v) = common::live::next_json(&mut p.ws).await {
                if v["topic"] == "now_playing" {
                    if let Some(t) = v["data"]["server_time_ms"].as_i64() {
                        lat.lock().unwrap().push(now_ms() - t);
                    }
                }
            }
        }));
    }
    (lat, tasks)
}

/// The load: the host nudges the volume `n` times (each change is a `now_playing` for every
/// phone). A guest's like toggles would not do: they are limited per guest and their counts
/// coalesced per tick.
async fn toggles(host: &mut Phone, n: usize, every: Duration) {
    for i in 0..n {
        let rid = host
            .request(json!({"cmd": "set_volume", "volume": 50 + (i % 2)}))
            .await;
        let (r, _) = host.reply(rid).await;
        assert_eq!(r["ok"], true, "{r}");
        tokio::time::sleep(every).await;
    }
}

fn p99(v: &mut [i64]) -> i64 {
    v.sort();
    v[((v.len() as f64 - 1.0) * 0.99) as usize]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_reader_is_cut_off_and_nobody_else_notices() {
    let dir = common::tempdir();
    let music = common::music(dir.path(), 3, 120.0);
    let s = Server::start(&dir.path().join("j.db"), &music, LIMITS);
    let (lat, tasks) = audience(&s, 100).await;
    let mut liker = Phone::connect(&s.addr, &s.host(), &["now_playing"]).await;
    liker
        .until(|v| v["topic"] == "now_playing" && !v["data"].is_null())
        .await;

    // Baseline.
    toggles(&mut liker, 150, Duration::from_millis(5)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut base: Vec<i64> = std::mem::take(&mut *lat.lock().unwrap());
    assert!(base.len() >= 100 * 140, "deliveries: {}", base.len());

    // A phone with a tiny receive window that never reads.
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    let stream = sock.connect(s.addr.parse().unwrap()).await.unwrap();
    let (mut slow, _) = tokio_tungstenite::client_async(format!("ws://{}/ws?v=1", s.addr), stream)
        .await
        .unwrap();
    let slow_token = s.guest("slow");
    slow.send(Message::text(
        json!({"cmd":"hello","v":1,"token":slow_token,"topics":["now_playing","queue","me","room"]}).to_string(),
    ))
    .await
    .unwrap();
    let started = Instant::now();
    toggles(&mut liker, 1500, Duration::from_millis(3)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut loaded: Vec<i64> = std::mem::take(&mut *lat.lock().unwrap());
    assert!(
        loaded.len() >= 100 * 1400,
        "deliveries under load: {}",
        loaded.len()
    );

    // The slow phone was told to go: bye 4008 is among what it finally reads.
    let mut code = None;
    let mut got = 0;
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_secs(5), slow.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => {
                got += 1;
                let v: Value = serde_json::from_str(&t).unwrap();
                if v["cmd"] == "bye" {
                    code = v["code"].as_u64();
                }
            }
            Ok(Some(Ok(Message::Close(f)))) => {
                assert_eq!(f.map(|f| u16::from(f.code)), Some(4008));
                break;
            }
            Ok(Some(Ok(_))) => {}
            _ => break,
        }
    }
    assert_eq!(
        code,
        Some(4008),
        "the slow reader was not closed with 4008 ({got} frames read)"
    );
    let (b, l) = (p99(&mut base), p99(&mut loaded));
    eprintln!(
        "p99 delivery: {b} ms without, {l} ms with a stuck reader ({:?} of load)",
        started.elapsed()
    );
    // Timestamps are whole milliseconds: allow one tick of rounding on top of 2x.
    assert!(
        l <= 2 * b.max(1) + 1,
        "p99 {l} ms vs {b} ms without the slow reader"
    );
    for t in tasks {
        t.abort();
    }
    s.stop();
}
