//! The HTTP doors, attacked against the real binary on loopback (source addresses 127.0.0.X
//! stand in for the machines of a party's Wi-Fi): slow and idle connections are closed, one
//! address cannot hold the server's sockets, bodies are capped, timed and read only after the
//! token, cover art is never served as a page, foreign Host names and non-JSON posts are
//! refused, errors are JSON without paths or internals, `--web-dir` serves no link and no
//! dotfile, and a shutdown ends within a bounded time.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::answer::Answer;
use common::live::{Phone, Server};
use common::wait::wait_until;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// One HTTP answer, its header names in lower case.
/// A connection from 127.0.0.`from`.
async fn connect_from(addr: &str, from: u8) -> TcpStream {
    let sock = TcpSocket::new_v4().unwrap();
    sock.bind(SocketAddr::from(([127, 0, 0, from], 0))).unwrap();
    sock.connect(addr.parse().unwrap()).await.unwrap()
}

/// Reads one answer (headers, then `content-length` bytes of body), within `limit`.
async fn read_answer(stream: &mut TcpStream, limit: Duration) -> Option<Answer> {
    let read = async {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..end]).to_string();
                let mut answer = Answer::from_head(&head, Vec::new())?;
                let len: usize = answer
                    .header("content-length")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                while buf.len() < end + 4 + len {
                    let n = stream.read(&mut chunk).await.ok()?;
                    if n == 0 {
                        break;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                }
                answer.body = buf[end + 4..].to_vec();
                return Some(answer);
            }
            let n = stream.read(&mut chunk).await.ok()?;
            if n == 0 {
                return None;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
    };
    tokio::time::timeout(limit, read).await.ok().flatten()
}

/// Sends `req` on a new connection from 127.0.0.`from` and reads the answer.
async fn ask(addr: &str, from: u8, req: &str) -> Answer {
    let mut s = connect_from(addr, from).await;
    s.write_all(req.as_bytes()).await.unwrap();
    read_answer(&mut s, Duration::from_secs(15))
        .await
        .unwrap_or_else(|| panic!("no answer to {req:?}"))
}

fn get(path: &str, host: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n")
}

fn post(path: &str, host: &str, content_type: &str, extra: &str, body: &str) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: {content_type}\r\n{extra}\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

/// Waits until the server closes `stream` (EOF or reset); returns when, or `None` if it is
/// still open after `limit`.
async fn closed_within(stream: &mut TcpStream, limit: Duration) -> Option<Instant> {
    let mut buf = [0u8; 1024];
    let wait = async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return Instant::now(),
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(limit, wait).await.ok()
}

fn start(extra: &[&str]) -> (tempfile::TempDir, Server) {
    let dir = common::tempdir();
    let music = common::music(dir.path(), 2, 30.0);
    let s = Server::start(&dir.path().join("j.db"), &music, extra);
    (dir, s)
}

#[tokio::test]
async fn slow_and_idle_connections_are_closed_but_websockets_stay() {
    let (_dir, s) = start(&[]);
    let addr = s.addr.clone();
    let token = s.guest("stays");
    let mut phone = Phone::connect(&addr, &token, &["now_playing"]).await;

    let opened = Instant::now();
    // Slowloris: headers trickled a line a second, never finished.
    let slow = connect_from(&addr, 2).await;
    let (mut slow_r, mut slow_w) = slow.into_split();
    let trickle = tokio::spawn(async move {
        let _ = slow_w.write_all(b"GET /healthz HTTP/1.1\r\n").await;
        for i in 0..30 {
            // The pace is the attack: a header line a second.
            tokio::time::sleep(Duration::from_secs(1)).await;
            if slow_w
                .write_all(format!("X-Slow-{i}: a\r\n").as_bytes())
                .await
                .is_err()
            {
                break;
            }
        }
    });
    // A connection that never says anything.
    let mut silent = connect_from(&addr, 3).await;
    // A keep-alive connection after one answer.
    let mut idle = connect_from(&addr, 4).await;
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let a = read_answer(&mut idle, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(a.status, 200, "{a:?}");
    let idle_since = Instant::now();

    let limit = Duration::from_secs(20);
    let slow_closed = async {
        let mut buf = [0u8; 1024];
        let wait = async {
            loop {
                match slow_r.read(&mut buf).await {
                    Ok(0) | Err(_) => return Instant::now(),
                    Ok(_) => {}
                }
            }
        };
        tokio::time::timeout(limit, wait).await.ok()
    };
    let (slow_at, silent_at, idle_at) = tokio::join!(
        slow_closed,
        closed_within(&mut silent, limit),
        closed_within(&mut idle, limit)
    );
    trickle.abort();
    let secs = |at: Option<Instant>, from: Instant, what: &str| -> f64 {
        let at = at.unwrap_or_else(|| panic!("the {what} connection is still open after 20 s"));
        at.duration_since(from).as_secs_f64()
    };
    let (slow_s, silent_s, idle_s) = (
        secs(slow_at, opened, "slowloris"),
        secs(silent_at, opened, "silent"),
        secs(idle_at, idle_since, "idle keep-alive"),
    );
    eprintln!("closed after: slowloris {slow_s:.1} s, silent {silent_s:.1} s, idle {idle_s:.1} s");
    for (what, s) in [
        ("slowloris", slow_s),
        ("silent", silent_s),
        ("idle", idle_s),
    ] {
        assert!((9.0..16.0).contains(&s), "{what} closed after {s:.1} s");
    }

    // The websocket, idle just as long, is untouched: it has its own liveness.
    let rid = phone
        .request(json!({"cmd": "search", "q": "Song", "limit": 1}))
        .await;
    let (reply, _) = phone.reply(rid).await;
    assert_eq!(reply["ok"], true, "{reply}");
    s.stop();
}

/// Opens `n` connections from 127.0.0.`from`; returns those the server kept, and how many it
/// refused (each refusal is a `503 busy` in the protocol's JSON, then the close).
async fn fill(addr: &str, from: u8, n: usize) -> (Vec<TcpStream>, usize) {
    let mut streams = Vec::new();
    for _ in 0..n {
        streams.push(connect_from(addr, from).await);
    }
    let probes = streams.into_iter().map(|mut s| async move {
        match read_answer(&mut s, Duration::from_millis(1500)).await {
            Some(a) => {
                assert_eq!(a.status, 503, "{a:?}");
                assert_eq!(a.json()["code"], "busy", "{a:?}");
                assert!(closed_within(&mut s, Duration::from_secs(5))
                    .await
                    .is_some());
                None
            }
            None => Some(s),
        }
    });
    let results = futures_util::future::join_all(probes).await;
    let refused = results.iter().filter(|r| r.is_none()).count();
    (results.into_iter().flatten().collect(), refused)
}

/// Every kept connection answers a request (which also restarts its idle timer).
async fn all_alive(held: &mut [TcpStream]) {
    for s in held.iter_mut() {
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .await
            .unwrap();
        let a = read_answer(s, Duration::from_secs(10)).await.unwrap();
        assert_eq!(a.status, 200, "{a:?}");
    }
}

#[tokio::test]
async fn one_address_cannot_hold_the_servers_connections() {
    // 64 in all, 16 per address; the last 8 are the reserve.
    let (_dir, s) = start(&["--max-connections", "64", "--connections-per-address", "16"]);
    let addr = s.addr.clone();
    let mut held = Vec::new();

    // One laptop opens 40: it gets its 16, the others are refused at once.
    let (kept, refused) = fill(&addr, 2, 40).await;
    assert_eq!((kept.len(), refused), (16, 24));
    held.extend(kept);
    // Another phone still gets in (and stays connected).
    let (mut other, refused) = fill(&addr, 3, 1).await;
    assert_eq!((other.len(), refused), (1, 0));
    all_alive(&mut other).await;
    held.extend(other);
    all_alive(&mut held).await;

    // Three more addresses take their share: 17 + 16 + 16 = 49; the fourth stops at the
    // reserve (56 open), where an address that holds two or more is refused...
    // (Each step ends with a request on every kept connection, which restarts its idle timer.)
    for from in [4, 5] {
        let (kept, refused) = fill(&addr, from, 16).await;
        assert_eq!((kept.len(), refused), (16, 0), "127.0.0.{from}");
        held.extend(kept);
        all_alive(&mut held).await;
    }
    let (kept, refused) = fill(&addr, 6, 16).await;
    assert_eq!((kept.len(), refused), (7, 9));
    held.extend(kept);
    all_alive(&mut held).await;
    // ...while new addresses still get a phone's two connections, up to the total.
    for from in 7..=10 {
        let (kept, refused) = fill(&addr, from, 3).await;
        assert_eq!((kept.len(), refused), (2, 1), "127.0.0.{from}");
        held.extend(kept);
        all_alive(&mut held).await;
    }
    let (kept, refused) = fill(&addr, 11, 1).await;
    assert_eq!((kept.len(), refused), (0, 1), "full");
    all_alive(&mut held).await;

    // The refusals were logged, but not once each.
    let lines = s
        .log
        .lock()
        .unwrap()
        .lines()
        .filter(|l| l.contains("refused") && l.contains("connection"))
        .count();
    assert!((1..=3).contains(&lines), "{lines} log lines about refusals");

    // Once they go, everyone gets in again.
    drop(held);
    let addr = &addr;
    wait_until(
        Duration::from_secs(10),
        "the address to be let in again",
        || async {
            let mut c = connect_from(addr, 11).await;
            c.write_all(get("/healthz", "localhost").as_bytes())
                .await
                .unwrap();
            let answer = read_answer(&mut c, Duration::from_secs(5)).await;
            answer.is_some_and(|a| a.status == 200)
        },
    )
    .await;
    s.stop();
}

#[tokio::test]
async fn bodies_wait_for_the_token_are_capped_and_timed() {
    let (_dir, s) = start(&[]);
    let addr = s.addr.clone();
    let guest = s.guest("g");
    let host = s.host();
    let stalled = |path: &str, bearer: &str| {
        format!(
            "POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
             Authorization: Bearer {bearer}\r\nContent-Length: 4000\r\n\r\n{{\"text\":"
        )
    };
    // No valid host token: refused at once, without waiting for the body.
    for (bearer, status) in [("nope", 401), (guest.as_str(), 403)] {
        let t = Instant::now();
        let mut c = connect_from(&addr, 2).await;
        c.write_all(stalled("/api/host/message", bearer).as_bytes())
            .await
            .unwrap();
        let a = read_answer(&mut c, Duration::from_secs(3))
            .await
            .expect("an answer before the body");
        assert_eq!(a.status, status, "{a:?}");
        assert!(t.elapsed() < Duration::from_secs(3));
    }
    // Too large, declared: 413 at once.
    let mut c = connect_from(&addr, 2).await;
    c.write_all(
        b"POST /api/guest HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
          Content-Length: 2000000\r\n\r\n{",
    )
    .await
    .unwrap();
    let a = read_answer(&mut c, Duration::from_secs(3)).await.unwrap();
    assert_eq!(
        (a.status, a.json()["code"].clone()),
        (413, json!("too_large"))
    );
    // Too large, chunked: 413 once 8 KiB have come.
    let big = format!("{{\"name\":\"{}\"}}", "x".repeat(9000));
    let mut c = connect_from(&addr, 2).await;
    c.write_all(
        format!(
            "POST /api/guest HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
             Transfer-Encoding: chunked\r\n\r\n{:x}\r\n{big}\r\n0\r\n\r\n",
            big.len()
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let a = read_answer(&mut c, Duration::from_secs(5)).await.unwrap();
    assert_eq!(
        (a.status, a.json()["code"].clone()),
        (413, json!("too_large"))
    );

    // Stalled bodies, token or not: 408 after 10 s, and the connection closes.
    let t = Instant::now();
    let stall = |req: String| {
        let addr = addr.clone();
        async move {
            let mut c = connect_from(&addr, 3).await;
            c.write_all(req.as_bytes()).await.unwrap();
            let a = read_answer(&mut c, Duration::from_secs(20)).await;
            (a, Instant::now())
        }
    };
    let guest_req =
        "POST /api/guest HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
                     Content-Length: 100\r\n\r\n{\"name\":"
            .to_string();
    let ((a1, t1), (a2, t2)) =
        tokio::join!(stall(guest_req), stall(stalled("/api/host/message", &host)));
    for (a, at) in [(a1, t1), (a2, t2)] {
        let a = a.expect("an answer to a stalled body");
        assert_eq!(
            (a.status, a.json()["code"].clone()),
            (408, json!("timeout"))
        );
        let secs = at.duration_since(t).as_secs_f64();
        assert!((9.0..16.0).contains(&secs), "408 after {secs:.1} s");
    }
    // The largest real body still fits.
    let (st, v) = s.post(
        "/api/host/message",
        &json!({"text": "é".repeat(280)}),
        Some(&host),
    );
    assert_eq!(st, 200, "{v}");
    s.stop();
}

/// An MP3 whose cover art is `data`, with the MIME type `mime` written in its tag.
fn with_art(music: &std::path::Path, name: &str, title: &str, data: &[u8], mime: &str) {
    use lofty::config::WriteOptions;
    use lofty::file::TaggedFileExt;
    use lofty::picture::{MimeType, Picture, PictureType};
    use lofty::tag::{Tag, TagExt, TagType};
    let path = common::tone(
        music,
        name,
        500,
        20.0,
        &[("title", title), ("artist", "Painter")],
    );
    let tagged = lofty::read_from_path(&path).unwrap();
    let mut tag = tagged
        .tag(TagType::Id3v2)
        .cloned()
        .unwrap_or_else(|| Tag::new(TagType::Id3v2));
    tag.push_picture(
        Picture::unchecked(data.to_vec())
            .pic_type(PictureType::CoverFront)
            .mime_type(MimeType::from_str(mime))
            .build(),
    );
    tag.save_to_path(&path, WriteOptions::default()).unwrap();
}

#[tokio::test]
async fn cover_art_is_never_served_as_a_page() {
    let dir = common::tempdir();
    let music = common::music(dir.path(), 1, 30.0);
    let html = b"<html><script>alert(localStorage.getItem('jukebox.token'))</script></html>";
    with_art(&music, "evil.mp3", "Evil", html, "text/html");
    // A real PNG whose tag says text/html: the bytes decide.
    let png = {
        let p = dir.path().join("c.png");
        let ok = std::process::Command::new("ffmpeg")
            .args(["-nostdin", "-loglevel", "error", "-y", "-f", "lavfi", "-i"])
            .args(["color=c=red:s=4x4", "-frames:v", "1"])
            .arg(&p)
            .status()
            .unwrap()
            .success();
        assert!(ok);
        std::fs::read(p).unwrap()
    };
    with_art(&music, "fine.mp3", "Fine", &png, "text/html");
    let s = Server::start(&dir.path().join("j.db"), &music, &[]);
    // The jukebox listens before its first scan has ended: the song is searched for until the
    // scan has found it.
    let art = |q: &str| -> String {
        s.wait_get(
            &format!("/api/search?q={q}"),
            &format!("the art of {q} in the search"),
            |v| v["results"][0]["art"].as_str().map(String::from),
        )
    };
    let a = ask(&s.addr, 2, &get(&art("Evil"), "localhost")).await;
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(a.header("content-type"), Some("application/octet-stream"));
    assert_eq!(a.header("x-content-type-options"), Some("nosniff"));
    let csp = a.header("content-security-policy").unwrap_or_default();
    assert!(csp.contains("default-src 'none'"), "{csp}");
    assert!(
        a.text().contains("<script>"),
        "the bytes themselves are kept"
    );
    let a = ask(&s.addr, 2, &get(&art("Fine"), "localhost")).await;
    assert_eq!(a.header("content-type"), Some("image/png"), "{a:?}");
    s.stop();
}

#[tokio::test]
async fn foreign_host_names_and_non_json_posts_are_refused() {
    let (_dir, s) = start(&["--allow-host", "party.example"]);
    let addr = s.addr.clone();
    let port = addr.rsplit(':').next().unwrap().to_string();
    // DNS rebinding: a page on evil.example, now resolving to the jukebox.
    for host in [
        "evil.example",
        &format!("evil.example:{port}"),
        "jukebox.local.evil.example",
    ] {
        let a = ask(&addr, 2, &get("/api/state", host)).await;
        assert_eq!(a.status, 421, "{host}: {a:?}");
        assert_eq!(a.json()["code"], "misdirected");
        let a = ask(
            &addr,
            2,
            &post("/api/guest", host, "application/json", "", "{}"),
        )
        .await;
        assert_eq!(a.status, 421, "{host}: {a:?}");
    }
    // The live connection too, although the Origin matches the Host.
    let upgrade = format!(
        "GET /ws?v=1 HTTP/1.1\r\nHost: evil.example:{port}\r\nOrigin: http://evil.example:{port}\r\n\
         Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    );
    let a = ask(&addr, 2, &upgrade).await;
    assert_eq!(a.status, 421, "{a:?}");
    // Its own names and addresses, on any port.
    let mut own = vec![
        "localhost".to_string(),
        format!("localhost:{port}"),
        addr.clone(),
        "127.0.0.1".into(),
        format!("[::1]:{port}"),
        "jukebox.local".into(),
        format!("JUKEBOX.local:{port}"),
        "party.example".into(),
    ];
    let lan = if_addrs::get_if_addrs()
        .unwrap()
        .into_iter()
        .find(|i| !i.is_loopback() && i.ip().is_ipv4());
    if let Some(i) = lan {
        own.push(format!("{}:{port}", i.ip()));
    }
    for host in &own {
        let a = ask(&addr, 2, &get("/api/state", host)).await;
        assert_eq!(a.status, 200, "{host}: {a:?}");
    }

    // A cross-site form or text/plain fetch reaches no POST.
    for ct in [
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
    ] {
        for path in ["/api/guest", "/api/host/login", "/api/host/play"] {
            let a = ask(
                &addr,
                2,
                &post(path, "localhost", ct, "", "{\"pin\":\"4321\"}"),
            )
            .await;
            assert_eq!(a.status, 415, "{path} {ct}: {a:?}");
            assert_eq!(a.json()["code"], "unsupported_media_type");
        }
    }
    let a = ask(
        &addr,
        2,
        &post(
            "/api/guest",
            "localhost",
            "application/json; charset=utf-8",
            "",
            "{}",
        ),
    )
    .await;
    assert_eq!(a.status, 201, "{a:?}");
    s.stop();
}

#[tokio::test]
async fn errors_are_json_without_paths_or_internals() {
    let dir = common::tempdir();
    let music = common::music(dir.path(), 2, 30.0);
    let wav = dir.path().join("secret-folder").join("out.wav");
    std::fs::create_dir_all(wav.parent().unwrap()).unwrap();
    let out = format!("wav:{}", wav.display());
    let s = Server::start_with(
        &dir.path().join("j.db"),
        &music,
        &out,
        Some(common::live::PIN),
        &[],
    );
    let addr = s.addr.clone();

    // /healthz keeps its fields, without the file it writes to.
    let a = ask(&addr, 2, &get("/healthz", "localhost")).await;
    let v = a.json();
    assert_eq!(v["audio"]["output"], "wav", "{v}");
    assert!(!a.text().contains("secret-folder"), "{}", a.text());

    // axum's own rejections, in the protocol's shape.
    let cases = [
        (
            get("/api/search?limit=abc", "localhost"),
            400,
            "bad_request",
        ),
        (get("/api/guest", "localhost"), 405, "method_not_allowed"),
        (get("/ws?v=1", "localhost"), 400, "bad_request"),
        (
            post("/api/state", "localhost", "application/json", "", "{}"),
            405,
            "method_not_allowed",
        ),
        (get("/nothing", "localhost"), 404, "not_found"),
    ];
    for (req, status, code) in &cases {
        let a = ask(&addr, 2, req).await;
        assert_eq!(a.status, *status, "{req}: {a:?}");
        let v = a.json();
        assert_eq!(v["code"], *code, "{req}: {v}");
        assert!(v["message"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
        assert_eq!(a.header("x-content-type-options"), Some("nosniff"));
        assert!(a.header("content-security-policy").is_some(), "{a:?}");
    }
    // Every answer carries nosniff and a CSP; the app's pages one they work under.
    for path in [
        "/api/state",
        "/api/join",
        "/api/qr.svg",
        "/",
        "/js/client.js",
    ] {
        let a = ask(&addr, 2, &get(path, "localhost")).await;
        assert_eq!(a.status, 200, "{path}");
        assert_eq!(
            a.header("x-content-type-options"),
            Some("nosniff"),
            "{path}"
        );
        let csp = a.header("content-security-policy").unwrap_or_default();
        assert!(csp.contains("frame-ancestors 'none'"), "{path}: {csp}");
    }

    // A store error: its text goes to the log, clients get "internal error".
    let db = rusqlite::Connection::open(&s.db).unwrap();
    db.busy_timeout(Duration::from_secs(10)).unwrap();
    db.execute_batch("DROP TABLE tracks_fts").unwrap();
    drop(db);
    let a = ask(&addr, 2, &get("/api/search?q=Song", "localhost")).await;
    assert_eq!(a.status, 500, "{a:?}");
    assert_eq!(
        a.json(),
        json!({"code": "internal", "message": "internal error"})
    );
    let token = s.guest("asks");
    let mut phone = Phone::connect(&addr, &token, &[]).await;
    let rid = phone.request(json!({"cmd": "search", "q": "Song"})).await;
    let (reply, _) = phone.reply(rid).await;
    assert_eq!(reply["error"]["message"], "internal error", "{reply}");
    assert!(s.log.lock().unwrap().contains("tracks_fts"));
    s.stop();
}

#[tokio::test]
async fn the_web_dir_serves_no_link_and_no_dotfile() {
    use std::os::unix::fs::symlink;
    let dir = common::tempdir();
    let music = common::music(dir.path(), 1, 30.0);
    let web = dir.path().join("web");
    let outside = dir.path().join("outside");
    std::fs::create_dir_all(web.join(".git")).unwrap();
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(web.join("index.html"), "<!doctype html><p>app</p>").unwrap();
    std::fs::write(web.join("app.css"), "p{}").unwrap();
    std::fs::write(web.join(".env"), "SECRET=1").unwrap();
    std::fs::write(web.join(".git").join("config"), "[core]").unwrap();
    std::fs::write(outside.join("secret.txt"), "the host's secret").unwrap();
    symlink(outside.join("secret.txt"), web.join("linked.txt")).unwrap();
    symlink(&outside, web.join("linked-dir")).unwrap();
    let s = Server::start(
        &dir.path().join("j.db"),
        &music,
        &["--web-dir", web.to_str().unwrap()],
    );
    for path in ["/", "/index.html", "/app.css"] {
        assert_eq!(ask(&s.addr, 2, &get(path, "localhost")).await.status, 200);
    }
    for path in [
        "/.env",
        "/.git/config",
        "/linked.txt",
        "/linked-dir/secret.txt",
    ] {
        let a = ask(&s.addr, 2, &get(path, "localhost")).await;
        assert_eq!(a.status, 404, "{path}: {a:?}");
        assert!(!a.text().contains("secret"), "{path}");
    }
    s.stop();
}

#[tokio::test]
async fn a_shutdown_ends_within_a_bounded_time() {
    let (_dir, s) = start(&[]);
    let addr = s.addr.clone();
    let host = s.host();
    let token = s.guest("stays");
    let mut phone = Phone::connect(&addr, &token, &["now_playing"]).await;
    // A stalled upload with the host token, and an idle keep-alive connection.
    let mut upload = connect_from(&addr, 2).await;
    upload
        .write_all(
            format!(
                "POST /api/host/message HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
                 Authorization: Bearer {host}\r\nContent-Length: 100\r\n\r\n{{"
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    let mut idle = connect_from(&addr, 3).await;
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(
        read_answer(&mut idle, Duration::from_secs(5))
            .await
            .unwrap()
            .status,
        200
    );
    let t = Instant::now();
    let stopped = tokio::task::spawn_blocking(move || s.stop());
    let (bye, close) = phone.closed().await;
    assert_eq!((bye, close), (Some(1001), Some(1001)));
    assert!(closed_within(&mut idle, Duration::from_secs(8))
        .await
        .is_some());
    let status = tokio::time::timeout(Duration::from_secs(15), stopped)
        .await
        .expect("the jukebox stops")
        .unwrap();
    assert!(status.success(), "{status:?}");
    assert!(
        t.elapsed() < Duration::from_secs(9),
        "stopped after {:?}",
        t.elapsed()
    );
}
