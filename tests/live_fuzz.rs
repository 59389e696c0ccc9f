//! 10,000 seeded malformed frames against the real binary change nothing, crash nothing and
//! disturb no other socket.

mod common;

use std::time::{Duration, Instant};

use common::live::{raw, Phone, Server};
use futures_util::{SinkExt, StreamExt};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data as OpData, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::Message;

const LIMITS: &[&str] = &["--guest-rate", "100000"];

/// One malformed frame of many kinds, from a seeded generator.
fn junk(rng: &mut StdRng) -> Message {
    let big = || "9".repeat(400);
    match rng.random_range(0..15) {
        0 => Message::text("{"),
        1 => Message::text("[1,2,3]"),
        2 => Message::text("\"just a string\""),
        3 => Message::text(json!({"cmd": format!("cmd{}", rng.random::<u32>()), "rid": rng.random::<u32>()}).to_string()),
        4 => Message::text(json!({"cmd": "like", "rid": "seven", "play_id": "p1"}).to_string()),
        5 => Message::text(json!({"cmd": "like", "rid": rng.random::<u32>(), "play_id": 77}).to_string()),
        6 => Message::text(format!(r#"{{"cmd":"vote","rid":{},"entry_id":"r{}"}}"#, big(), big())),
        7 => Message::text(format!(r#"{{"cmd":"request","rid":1e308,"track_id":"t-{}"}}"#, rng.random::<u16>())),
        8 => Message::text(format!("{}{}", "[".repeat(2000), "]".repeat(2000))),
        9 => Message::text(json!({"cmd": "sub", "rid": rng.random::<u32>(), "topics": "all"}).to_string()),
        10 => Message::binary(vec![0xff, 0xfe, 0x00, rng.random()]),
        // A text frame whose payload is not UTF-8.
        14 => Message::Frame(Frame::message(
            vec![b'{', 0xc3, 0x28, b'}'],
            OpCode::Data(OpData::Text),
            true,
        )),
        11 => Message::text(json!({"cmd": "seek", "rid": rng.random::<u32>(), "position_ms": -5}).to_string()),
        12 => Message::text(json!({"cmd": "search", "rid": rng.random::<u32>(), "q": "x".repeat(300)}).to_string()),
        _ => Message::text(json!({"cmd": "vote_skip", "rid": rng.random::<u32>(), "play_id": {"nested": [1, {"x": null}]}}).to_string()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_malformed_frames_change_nothing_and_disturb_nobody() {
    let dir = common::tempdir();
    let music = common::music(dir.path(), 3, 120.0);
    let s = Server::start(&dir.path().join("j.db"), &music, LIMITS);
    let mut observer = Phone::connect(&s.addr, &s.guest("observer"), &["queue", "me"]).await;
    observer.until(|v| v["topic"] == "me").await;
    let strip = |mut v: Value| {
        v["now_playing"]["position_ms"] = json!(0);
        v["now_playing"]["server_time_ms"] = json!(0);
        v
    };
    // Wait (bounded) until the music plays, so the state is settled before the storm.
    s.playing();
    let before = strip(s.get("/api/state").1);
    // Everything the observer was due so far (the start of the music) is read now.
    observer.send(json!({"cmd": "ping"})).await;
    observer.until(|v| v["cmd"] == "pong").await;
    let token = s.guest("fuzzer");
    let mut rng = StdRng::seed_from_u64(0x5eed);
    let mut sent = 0;
    let mut sockets = 0;
    let started = Instant::now();
    while sent < 10_000 {
        assert!(
            started.elapsed() < Duration::from_secs(240),
            "fuzzing took too long"
        );
        let mut ws = raw(&s.addr, "/ws?v=1", None).await.unwrap();
        sockets += 1;
        ws.send(Message::text(
            json!({"cmd":"hello","v":1,"token":token,"topics":[]}).to_string(),
        ))
        .await
        .unwrap();
        // Up to 20 bad frames a minute are tolerated; the 21st closes with 4400.
        for _ in 0..20 {
            if ws.send(junk(&mut rng)).await.is_err() {
                break;
            }
            sent += 1;
        }
        let _ = ws.close(None).await;
        // As a phone does, wait (bounded) for the server's end of the close: a slow machine
        // otherwise piles closing sockets past the 32 one address may hold.
        let _ = tokio::time::timeout(Duration::from_secs(5), async {
            while let Some(Ok(_)) = ws.next().await {}
        })
        .await;
    }
    // Alive, unchanged, and the observer heard nothing but its own pong.
    let (status, health) = s.get("/healthz");
    assert_eq!(status, 200, "{health}");
    assert_eq!(strip(s.get("/api/state").1), before);
    observer.send(json!({"cmd": "ping"})).await;
    let seen = observer.until(|v| v["cmd"] == "pong").await;
    let noise: Vec<&Value> = seen
        .iter()
        .filter(|v| v["topic"] != "room" && v["cmd"] != "pong")
        .collect();
    assert!(noise.is_empty(), "the observer was disturbed: {noise:?}");
    eprintln!(
        "{sent} malformed frames over {sockets} sockets in {:?}",
        started.elapsed()
    );
    s.stop();
}
