//! Identities against the real binary, attacked the way a guest on the party's Wi-Fi would:
//! throwaway tokens, fake screens, hit-and-run votes, many guests from one laptop, names that
//! impersonate the host, like toggling. Each test performs the attack and asserts the defence.
//! Source addresses in 127.0.0.0/8 stand in for the phones of a LAN.

mod common;

use std::time::{Duration, Instant};

use common::live::{Phone, Server};
use common::wait::wait_until;
use serde_json::{json, Value};

/// The admin snapshot of a fresh host socket.
async fn admin_items(s: &Server, host: &str) -> Vec<Value> {
    let mut h = Phone::connect(&s.addr, host, &["admin"]).await;
    let snap = h
        .until(|v| v["topic"] == "admin" && v["items"].is_array())
        .await
        .pop()
        .unwrap();
    snap["items"].as_array().unwrap().clone()
}

fn id_of(items: &[Value], name: &str) -> String {
    items
        .iter()
        .find(|g| g["name"] == name)
        .unwrap_or_else(|| panic!("no {name} in {items:?}"))["id"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Sends a command and returns its reply.
async fn ask(p: &mut Phone, cmd: Value) -> Value {
    let rid = p.request(cmd).await;
    p.reply(rid).await.0
}

/// A track that may be requested now (not the one playing).
fn other_track(s: &Server) -> Value {
    let np = s.playing();
    let (_, res) = s.get("/api/search?q=song&limit=10");
    res["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] != np["track"]["id"])
        .unwrap()["id"]
        .clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ban_sticks_to_the_addresses_for_the_night_and_survives_a_restart() {
    let dir = common::tempdir();
    let music = common::music(dir.path(), 5, 60.0);
    let db = dir.path().join("j.db");
    let s = Server::start(&db, &music, &[]);
    let host = s.host();
    let np = s.playing();
    // The troll's phone: a token and a socket from 127.0.0.10, and a spare token made before
    // the ban, for later.
    let troll = s.guest_from("127.0.0.10", "Troll").await;
    let spare = s.guest_from("127.0.0.10", "Spare").await;
    let _t = Phone::connect_from(&s.addr, "127.0.0.10", &troll, &[]).await;
    let mut spare_phone = Phone::connect_from(&s.addr, "127.0.0.10", &spare, &["me"]).await;
    let troll_id = id_of(&admin_items(&s, &host).await, "Troll");
    let (st, v) = s.post("/api/host/ban", &json!({"guest_id": troll_id}), Some(&host));
    assert_eq!(st, 200, "{v}");

    // The attack: one POST for a new token. Refused from that address, with a clear message.
    let (st, v) = s
        .post_from("127.0.0.10", "/api/guest", &json!({"name": "Totally new"}))
        .await;
    assert_eq!((st, v["code"].as_str()), (403, Some("forbidden")), "{v}");
    assert!(v["message"].as_str().unwrap().contains("removed"), "{v}");
    // Another phone is not affected.
    let (st, _) = s
        .post_from("127.0.0.11", "/api/guest", &json!({"name": "Neighbour"}))
        .await;
    assert_eq!(st, 201);
    // A token the troll made before the ban acts from the banned address: no action.
    let r = ask(
        &mut spare_phone,
        json!({"cmd": "like", "play_id": np["play_id"]}),
    )
    .await;
    assert_eq!(r["error"]["code"], "forbidden", "{r}");
    let r = ask(
        &mut spare_phone,
        json!({"cmd": "request", "track_id": other_track(&s)}),
    )
    .await;
    assert_eq!(r["error"]["code"], "forbidden", "{r}");
    // The troll moves to another address with its banned token: the ban follows it there.
    let _moved = Phone::connect_from(&s.addr, "127.0.0.12", &troll, &["me"]).await;
    let (st, v) = s.post_from("127.0.0.12", "/api/guest", &json!({})).await;
    assert_eq!(st, 403, "the new address of a banned guest: {v}");
    // The host is exempt: a host logging in from the banned address still acts.
    let host_there = s
        .post_from(
            "127.0.0.10",
            "/api/host/login",
            &json!({"pin": common::live::PIN}),
        )
        .await;
    assert_eq!(host_there.0, 200, "{host_there:?}");

    // For the night: a restart does not lift it.
    s.stop();
    let s = Server::start(&db, &music, &[]);
    let (st, v) = s.post_from("127.0.0.10", "/api/guest", &json!({})).await;
    assert_eq!(st, 403, "after a restart: {v}");
    // The host unbans: the address may take part again.
    let host = s.host();
    let (st, _) = s.post(
        "/api/host/ban",
        &json!({"guest_id": troll_id, "on": false}),
        Some(&host),
    );
    assert_eq!(st, 200);
    let (st, v) = s.post_from("127.0.0.10", "/api/guest", &json!({})).await;
    assert_eq!(st, 201, "{v}");
    s.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn screen_true_from_a_guest_token_counts_as_a_guest_so_fake_screens_cannot_skip() {
    let dir = common::tempdir();
    let music = common::music(dir.path(), 5, 60.0);
    let s = Server::start(
        &dir.path().join("j.db"),
        &music,
        &["--skip-min-votes", "2", "--skip-percent", "50"],
    );
    let np = s.playing();
    // Four guests in the room.
    let mut real = Vec::new();
    for n in ["A", "B", "C", "D"] {
        real.push(Phone::connect(&s.addr, &s.guest(n), &["now_playing", "room"]).await);
    }
    real[0]
        .until(|v| v["topic"] == "room" && v["data"]["guests_connected"] == 4)
        .await;
    // The attack: three throwaway tokens say "screen": true and vote to skip. Before, they
    // did not raise the threshold (2 of 4 guests) and their three votes skipped the song.
    let mut fakes = Vec::new();
    for i in 0..3 {
        let from = format!("127.0.0.{}", 21 + i);
        let token = s.guest_from(&from, "").await;
        let mut ws = common::live::raw_from(&s.addr, &from).await.unwrap();
        use futures_util::SinkExt;
        ws.send(tokio_tungstenite::tungstenite::Message::text(
            json!({"cmd":"hello","v":1,"token":token,"topics":["now_playing"],"screen":true})
                .to_string(),
        ))
        .await
        .unwrap();
        let welcome = common::live::next_json(&mut ws).await.unwrap();
        assert_eq!(welcome["role"], "guest", "{welcome}");
        fakes.push(Phone {
            ws,
            session: String::new(),
            last_seq: 0,
            rid: 0,
            welcome,
        });
    }
    // They count as guests: 7 in the room, 4 votes needed.
    let room = real[0]
        .until(|v| v["topic"] == "room" && v["data"]["guests_connected"] == 7)
        .await
        .pop()
        .unwrap();
    assert_eq!(room["data"]["guests_connected"], 7);
    for f in &mut fakes {
        let rid = f
            .request(json!({"cmd": "vote_skip", "play_id": np["play_id"]}))
            .await;
        let mut reply = None;
        while reply.is_none() {
            let v = common::live::next_json(&mut f.ws).await.unwrap();
            if v["cmd"] == "reply" && v["rid"] == rid {
                reply = Some(v);
            }
        }
        assert_eq!(reply.unwrap()["ok"], true);
    }
    let last = real[0]
        .until(|v| v["topic"] == "now_playing" && v["data"]["skip_votes"] == 3)
        .await
        .pop()
        .unwrap();
    assert_eq!(last["data"]["play_id"], np["play_id"], "not skipped");
    assert_eq!(last["data"]["skip_needed"], 4);
    assert_eq!(
        s.get("/api/state").1["now_playing"]["play_id"],
        np["play_id"]
    );
    s.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_host_makes_a_screen_and_a_screen_never_votes() {
    let dir = common::tempdir();
    let music = common::music(dir.path(), 5, 60.0);
    let db = dir.path().join("j.db");
    let s = Server::start(&db, &music, &[]);
    let host = s.host();
    let np = s.playing();
    let mut mia = Phone::connect(&s.addr, &s.guest("Mia"), &["room"]).await;
    mia.until(|v| v["topic"] == "room" && v["data"]["guests_connected"] == 1)
        .await;

    // The TV asks for a code; a guest cannot pair it (host only), nor can it guess the claim.
    let (st, pair) = s.post("/api/screen/pair", &json!({}), None);
    assert_eq!(st, 201, "{pair}");
    assert_eq!(pair["code"].as_str().unwrap().len(), 6);
    let r = ask(
        &mut mia,
        json!({"cmd": "pair_screen", "code": pair["code"]}),
    )
    .await;
    assert_eq!(r["error"]["code"], "forbidden", "{r}");
    let (st, v) = s.post("/api/screen/claim", &json!({"claim": pair["claim"]}), None);
    assert_eq!((st, v["paired"].as_bool()), (202, Some(false)), "{v}");
    let (st, _) = s.post("/api/screen/claim", &json!({"claim": "0".repeat(32)}), None);
    assert_eq!(st, 404);
    // The host types the code (over the websocket here); the TV's next poll gets its token.
    let mut h = Phone::connect(&s.addr, &host, &["admin"]).await;
    let r = ask(&mut h, json!({"cmd": "pair_screen", "code": pair["code"]})).await;
    assert_eq!(r["ok"], true, "{r}");
    let screen_id = r["data"]["guest_id"].as_str().unwrap().to_string();
    let (st, v) = s.post("/api/screen/claim", &json!({"claim": pair["claim"]}), None);
    assert_eq!(st, 200, "{v}");
    let screen = v["token"].as_str().unwrap().to_string();
    // Single use: neither the code nor the claim works twice.
    let r = ask(&mut h, json!({"cmd": "pair_screen", "code": pair["code"]})).await;
    assert_eq!(r["error"]["code"], "not_found", "{r}");
    let (st, _) = s.post("/api/screen/claim", &json!({"claim": pair["claim"]}), None);
    assert_eq!(st, 404);

    // A screen: role "screen", not in the room, and it never votes, likes, requests or skips.
    let mut tv = Phone::connect(&s.addr, &screen, &["now_playing", "room"]).await;
    assert_eq!(tv.welcome["role"], "screen");
    for cmd in [
        json!({"cmd": "like", "play_id": np["play_id"]}),
        json!({"cmd": "vote_skip", "play_id": np["play_id"]}),
        json!({"cmd": "request", "track_id": other_track(&s)}),
        json!({"cmd": "set_name", "name": "Host"}),
        json!({"cmd": "skip"}),
    ] {
        let r = ask(&mut tv, cmd.clone()).await;
        assert_eq!(r["error"]["code"], "forbidden", "{cmd}: {r}");
    }
    assert_eq!(
        s.get("/api/state").1["room"]["guests_connected"],
        2,
        "Mia and the host: a screen is not a guest in the room"
    );
    // The host sees it, as a screen.
    let items = admin_items(&s, &host).await;
    let item = items
        .iter()
        .find(|g| g["id"] == screen_id.as_str())
        .unwrap();
    assert_eq!(item["role"], "screen", "{item}");

    // Stored: the screen survives a restart.
    drop(tv);
    s.stop();
    let s = Server::start(&db, &music, &[]);
    let tv = Phone::connect(&s.addr, &screen, &["room"]).await;
    assert_eq!(tv.welcome["role"], "screen");
    drop(tv);
    // The host removes it: its token stops working.
    let host = s.host();
    let (st, v) = s.post(
        "/api/host/remove_screen",
        &json!({"guest_id": screen_id}),
        Some(&host),
    );
    assert_eq!(st, 200, "{v}");
    let (_, first) = Phone::try_from(&s.addr, "127.0.0.1", &screen).await;
    assert_eq!(
        (first["cmd"].as_str(), first["code"].as_u64()),
        (Some("bye"), Some(4401))
    );

    // Pairing codes are rate limited per address.
    let mut limited = false;
    for _ in 0..10 {
        let (st, _) = s
            .post_from("127.0.0.40", "/api/screen/pair", &json!({}))
            .await;
        if st == 429 {
            limited = true;
            break;
        }
        assert_eq!(st, 201);
    }
    assert!(limited, "pairing requests are limited per address");
    s.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_holds_a_few_guests_at_once() {
    let dir = common::tempdir();
    let music = common::music(dir.path(), 3, 60.0);
    let s = Server::start(&dir.path().join("j.db"), &music, &[]);
    let from = "127.0.0.30";
    let mut tokens = Vec::new();
    for i in 0..6 {
        tokens.push(s.guest_from(from, &format!("g{i}")).await);
    }
    // The attack: one laptop opens sockets for many guests. Four are let in.
    let mut phones = Vec::new();
    for t in tokens.iter().take(4) {
        phones.push(Phone::connect_from(&s.addr, from, t, &[]).await);
    }
    let (_, first) = Phone::try_from(&s.addr, from, &tokens[4]).await;
    assert_eq!(first["cmd"], "bye", "{first}");
    assert_eq!(first["code"], 4429, "{first}");
    assert!(
        first["reason"].as_str().unwrap().contains("address"),
        "{first}"
    );
    // A second tab of a guest already in is fine, and so is another address, and the host.
    phones.push(Phone::connect_from(&s.addr, from, &tokens[0], &[]).await);
    phones.push(Phone::connect_from(&s.addr, "127.0.0.31", &tokens[5], &[]).await);
    let host = s.host();
    phones.push(Phone::connect_from(&s.addr, from, &host, &[]).await);
    // One leaves: a place is free again.
    phones.remove(1);
    let addr = &s.addr;
    wait_until(Duration::from_secs(10), "the place to be freed", || async {
        let (_, first) = Phone::try_from(addr, from, &tokens[4]).await;
        first["cmd"] == "welcome"
    })
    .await;
    s.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hit_and_run_skip_votes_stop_counting_when_their_guest_leaves() {
    let dir = common::tempdir();
    let music = common::music(dir.path(), 5, 60.0);
    let s = Server::start(
        &dir.path().join("j.db"),
        &music,
        &["--skip-min-votes", "2", "--skip-percent", "50"],
    );
    let np = s.playing();
    let mut a = Phone::connect(&s.addr, &s.guest("A"), &["now_playing", "room"]).await;
    let _b = Phone::connect(&s.addr, &s.guest("B"), &[]).await;
    a.until(|v| v["topic"] == "room" && v["data"]["guests_connected"] == 2)
        .await;
    // The attack: fresh tokens from fresh addresses connect, vote to skip, and leave. Before,
    // each vote kept counting while the threshold went back down, so the second one skipped.
    for i in 0..5 {
        let from = format!("127.0.0.{}", 50 + i);
        let token = s.guest_from(&from, "").await;
        let mut p = Phone::connect_from(&s.addr, &from, &token, &[]).await;
        let r = ask(
            &mut p,
            json!({"cmd": "vote_skip", "play_id": np["play_id"]}),
        )
        .await;
        assert_eq!(r["ok"], true, "{r}");
        drop(p);
        // Gone: its vote no longer counts (the update after its own vote says 0 again).
        a.until(|v| {
            v["topic"] == "now_playing"
                && v["data"]["play_id"] == np["play_id"]
                && v["data"]["skip_votes"] == 0
        })
        .await;
    }
    let now = s.get("/api/state").1["now_playing"].clone();
    assert_eq!(
        now["play_id"], np["play_id"],
        "hit-and-run votes skipped the song"
    );
    // Real guests still skip it together.
    let mut b = Phone::connect(&s.addr, &s.guest("B2"), &[]).await;
    for p in [&mut a, &mut b] {
        let r = ask(p, json!({"cmd": "vote_skip", "play_id": np["play_id"]})).await;
        assert_eq!(r["ok"], true, "{r}");
    }
    a.until(|v| {
        v["topic"] == "now_playing" && !v["data"].is_null() && v["data"]["play_id"] != np["play_id"]
    })
    .await;
    s.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn minting_guests_is_limited_unused_ones_are_pruned_and_the_admin_list_stays_small() {
    let dir = common::tempdir();
    let music = common::music(dir.path(), 3, 60.0);
    let db = dir.path().join("j.db");
    // The global limit: 80 new guests a minute across all addresses.
    let s = Server::start(
        &db,
        &music,
        &["--guest-rate-total", "80", "--unused-guest-ttl", "6"],
    );
    let host = s.host();
    let mut admin = Phone::connect(&s.addr, &host, &["admin"]).await;
    // The limit refills one guest every 60 s / 80 = 750 ms, so a slow machine that takes longer
    // than that from the first mint to the refusal has earned one more per 750 ms.
    let minting = std::time::Instant::now();
    let keeper = s.guest("Keeper");
    let _k = Phone::connect(&s.addr, &keeper, &[]).await;
    // The attack: mint tokens from rotating addresses (each address stays under its own limit).
    let mut made = 1;
    let mut refused = None;
    for i in 0..120 {
        let from = format!("127.0.1.{}", 1 + i);
        let (st, v) = s.post_from(&from, "/api/guest", &json!({})).await;
        if st == 429 {
            refused = Some(v);
            break;
        }
        assert_eq!(st, 201, "{v}");
        made += 1;
    }
    let refused = refused.expect("the global limit refuses new guests");
    assert_eq!(refused["code"], "rate_limited");
    assert!(refused["retry_after_ms"].as_u64().unwrap() > 0);
    let refilled = (minting.elapsed().as_millis() / 750) as usize;
    assert!(
        (60..=80 + refilled).contains(&made),
        "{made} guests made in {:?}",
        minting.elapsed()
    );

    // Bounded admin topic: a fresh host snapshot is small, whatever was minted.
    let items = admin_items(&s, &host).await;
    assert!(
        items.len() <= 50 + 3,
        "{} guests in the admin snapshot",
        items.len()
    );

    // Pruning: the tokens that never connected go (the host sees them leave); the guest that
    // connected stays.
    let mut gone = 0;
    while gone < made - 1 {
        let v = admin.recv().await;
        if v["topic"] == "admin" && v["id"].is_string() && v["data"].is_null() {
            gone += 1;
        }
    }
    let items = admin_items(&s, &host).await;
    assert!(items.iter().any(|g| g["name"] == "Keeper"), "{items:?}");
    assert_eq!(
        items.iter().filter(|g| g["role"] == "guest").count(),
        1,
        "{items:?}"
    );
    let _again = Phone::connect(&s.addr, &keeper, &[]).await;
    s.stop();
    let left = jukebox::store::Db::open_readonly(&db)
        .unwrap()
        .guests()
        .unwrap();
    assert!(
        left.len() <= 3,
        "{} guests left in the database",
        left.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_cannot_impersonate_the_host_or_hide_characters_and_host_actions_are_marked() {
    let dir = common::tempdir();
    let music = common::music(dir.path(), 5, 60.0);
    let s = Server::start(&dir.path().join("j.db"), &music, &["--artist-spacing", "0"]);
    let host = s.host();
    for bad in [
        "Host",
        " hOsT ",
        "Ｈｏｓｔ",
        "Guest 1",
        "guest  17",
        "\u{202e}tsoH",
        "Mi\u{200b}a",
        "\u{feff}Sam",
        "A\u{2066}B",
    ] {
        let (st, v) = s.post("/api/guest", &json!({"name": bad}), None);
        assert_eq!(
            (st, v["field"].as_str()),
            (400, Some("name")),
            "{bad:?}: {v}"
        );
    }
    for good in ["Hosting", "Guesty", "Zoë", "Mia 2"] {
        let (st, v) = s.post("/api/guest", &json!({"name": good}), None);
        assert_eq!(st, 201, "{good:?}: {v}");
    }
    // set_name too.
    let mut mia = Phone::connect(&s.addr, &s.guest("Mia"), &["queue", "now_playing"]).await;
    let r = ask(&mut mia, json!({"cmd": "set_name", "name": "HOST"})).await;
    assert_eq!(r["error"]["field"], "name", "{r}");

    // Host actions carry the host flag in the data; a guest's do not.
    let np = s.playing();
    let (_, res) = s.get("/api/search?q=song&limit=10");
    let tracks: Vec<Value> = res["results"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["id"] != np["track"]["id"])
        .map(|t| t["id"].clone())
        .collect();
    let mut h = Phone::connect(&s.addr, &host, &["queue"]).await;
    let r = ask(&mut h, json!({"cmd": "request", "track_id": tracks[0]})).await;
    assert_eq!(r["ok"], true, "{r}");
    let rid = mia
        .request(json!({"cmd": "request", "track_id": tracks[1]}))
        .await;
    // A reply follows the updates and events it caused (and the host's event came earlier).
    let (r, events) = mia.reply(rid).await;
    assert_eq!(r["ok"], true, "{r}");
    let events: Vec<Value> = events
        .into_iter()
        .filter(|v| v["name"] == "requested")
        .collect();
    let host_ev = events
        .iter()
        .find(|v| v["name"] == "requested" && v["data"]["track_id"] == tracks[0])
        .expect("the host's request event");
    assert_eq!(host_ev["data"]["by_host"], true, "{host_ev}");
    assert_eq!(events.last().unwrap()["data"]["by_host"], false);
    let q = s.get("/api/state").1["queue"]["items"].clone();
    for e in q.as_array().unwrap() {
        let by_host = e["track"]["id"] == tracks[0];
        assert_eq!(e["by_host"], by_host, "{e}");
    }
    s.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn like_toggling_from_many_sockets_is_limited_per_guest_and_coalesced() {
    let dir = common::tempdir();
    let music = common::music(dir.path(), 3, 120.0);
    let s = Server::start(&dir.path().join("j.db"), &music, &[]);
    let np = s.playing();
    let token = s.guest("Toggler");
    let mut observer = Phone::connect(&s.addr, &s.guest("Watcher"), &["now_playing"]).await;
    observer
        .until(|v| v["topic"] == "now_playing" && !v["data"].is_null())
        .await;
    // The attack: one guest, five sockets (each under its own rate limit), toggling a like as
    // fast as it can.
    let mut socks = Vec::new();
    for _ in 0..5 {
        socks.push(Phone::connect(&s.addr, &token, &[]).await);
    }
    let started = Instant::now();
    let (mut ok, mut limited) = (0, 0);
    let mut on = true;
    for i in 0..100 {
        let p = &mut socks[i % 5];
        // Always the opposite of the state: every request is a real change.
        let r = ask(
            p,
            json!({"cmd": "like", "play_id": np["play_id"], "on": on}),
        )
        .await;
        if r["ok"] == true {
            ok += 1;
            on = !on;
        } else {
            assert_eq!(r["error"]["code"], "rate_limited", "{r}");
            assert!(r["error"]["retry_after_ms"].as_u64().unwrap() > 0);
            limited += 1;
        }
    }
    let took = started.elapsed();
    // The budget: a burst of 10, then 2 a second, for the guest whatever its sockets.
    assert!(
        ok <= 10 + 2 * (took.as_secs() as usize + 1),
        "{ok} toggles allowed, {limited} refused in {took:?}"
    );
    // What every phone received: at most one now_playing per 250 ms tick (plus one).
    let mut frames = 0;
    let mut liked = 0;
    let deadline = Instant::now() + Duration::from_millis(600);
    while Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_millis(100), observer.recv()).await {
            Ok(v) => {
                if v["topic"] == "now_playing" {
                    frames += 1;
                }
                if v["name"] == "liked" {
                    liked += 1;
                }
            }
            Err(_) => continue,
        }
    }
    let ticks = (took + Duration::from_millis(600)).as_millis() / 250 + 2;
    assert!(
        frames as u128 <= ticks,
        "{frames} now_playing frames for {ok} toggles in {took:?}"
    );
    // `liked` goes out once per real like, not once per toggle.
    assert_eq!(liked, 1, "liked events");
    s.stop();
}
