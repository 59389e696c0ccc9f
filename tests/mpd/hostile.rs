//! Bad input of every kind gets MPD's answers, and the party goes on.

use super::*;

#[test]
fn hostile_clients_get_mpds_answers_and_the_party_goes_on() {
    use rand::{Rng, SeedableRng};
    use std::io::Write;
    let dir = common::tempdir();
    let (s, port) = jukebox(dir.path());
    let greet = |c: &mut std::net::TcpStream| {
        let (g, closed) = read_until(c, "OK MPD 0.23.5");
        assert!(!closed && g.starts_with("OK MPD 0.23.5"), "{g}");
    };

    // An unterminated quote and a bad argument: an ACK, and the connection goes on.
    let mut c = raw(port, "127.0.0.1");
    greet(&mut c);
    c.write_all(b"lsinfo \"open\n").unwrap();
    let (a, _) = read_until(&mut c, "OK");
    assert_eq!(a, "ACK [5@0] {} Missing closing '\"'\n");
    c.write_all(b"plchanges abc\n").unwrap();
    let (a, _) = read_until(&mut c, "OK");
    assert!(
        a.starts_with("ACK [2@0] {plchanges} Integer expected: abc"),
        "{a}"
    );
    c.write_all(b"ping\n").unwrap();
    let (a, closed) = read_until(&mut c, "OK");
    assert!(a == "OK\n" && !closed, "{a}");
    // A line over 8 KiB closes the connection, as MPD's full input buffer does.
    c.write_all(&vec![b'a'; 9000]).unwrap();
    let _ = c.write_all(b"\n");
    assert!(read_until(&mut c, "OK").1, "closed");
    // A binary blob: its first byte is no command.
    let mut c = raw(port, "127.0.0.1");
    greet(&mut c);
    c.write_all(&[0xff, 0x00, 0x13, b'\n']).unwrap();
    assert!(read_until(&mut c, "OK").1, "closed");

    // Seeded random lines, a fresh connection whenever one is closed: never a crash.
    let mut rng = rand::rngs::StdRng::seed_from_u64(1305);
    let mut c = raw(port, "127.0.0.1");
    greet(&mut c);
    let words = [
        "status",
        "idle",
        "noidle",
        "play",
        "list",
        "find",
        "command_list_begin",
        "command_list_end",
        "plchanges",
        "albumart",
        "tagtypes",
        "\"",
        "\\",
        "(",
        ")",
    ];
    for _ in 0..10_000 {
        let mut line = String::new();
        for _ in 0..rng.random_range(1..6) {
            if rng.random_bool(0.5) {
                line.push_str(words[rng.random_range(0..words.len())]);
            } else {
                let n = rng.random_range(0..12);
                line.extend((0..n).map(|_| rng.random_range(0x20u8..0x7f) as char));
            }
            line.push(' ');
        }
        line.push('\n');
        let closed = c.write_all(line.as_bytes()).is_err() || {
            // Idle and unfinished lists wait for more: a ping tells them apart from a close.
            let _ = c.write_all(b"noidle\ncommand_list_end\nping\n");
            read_until(&mut c, "OK").1
        };
        if closed {
            c = raw(port, "127.0.0.1");
            greet(&mut c);
        }
    }
    assert!(
        !s.log.lock().unwrap().contains("panicked"),
        "{}",
        s.log.lock().unwrap()
    );

    // An idle flood: 5,000 idle/noidle pairs in one write, each answered; then a command
    // during idle closes the connection, as MPD's does.
    let mut c = raw(port, "127.0.0.1");
    greet(&mut c);
    c.write_all("idle\nnoidle\n".repeat(5_000).as_bytes())
        .unwrap();
    c.write_all(b"ping\n").unwrap();
    let mut got = String::new();
    while got.matches("OK\n").count() < 5_001 {
        let (more, closed) = read_until(&mut c, "OK");
        assert!(!closed, "after {} answers", got.matches("OK\n").count());
        got.push_str(&more);
    }
    assert!(got.lines().all(|l| l == "OK"), "only OKs");
    c.write_all(b"idle\nstatus\n").unwrap();
    assert!(read_until(&mut c, "never").1, "closed");

    // Many idle clients from several addresses: MPD's 100 are served and woken, the rest
    // closed; the phones do not notice.
    let mut idle = Vec::new();
    let mut refused = 0;
    for i in 0..200 {
        let mut c = raw(port, &format!("127.0.0.{}", 2 + i / 25));
        let (g, closed) = read_until(&mut c, "OK MPD 0.23.5");
        if closed || g.is_empty() {
            refused += 1;
            continue;
        }
        c.write_all(b"idle player\n").unwrap();
        idle.push(c);
    }
    assert!(
        idle.len() >= 95 && refused >= 95,
        "{} served, {refused} refused",
        idle.len()
    );
    let t = Instant::now();
    let (st, _) = s.get("/api/state");
    assert_eq!(st, 200);
    assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
    let host = s.host();
    let (st, v) = s.post("/api/host/pause", &json!({}), Some(&host));
    assert_eq!(st, 200, "{v}");
    for c in &mut idle {
        let (a, closed) = read_until(c, "OK");
        assert!(!closed && a == "changed: player\nOK\n", "{a}");
    }
    assert!(!s.log.lock().unwrap().contains("panicked"));
}

#[test]
fn wrong_passwords_are_limited_per_address_with_the_http_logins() {
    use std::io::Write;
    let dir = common::tempdir();
    let (s, port) = jukebox_with(dir.path(), &["--login-rate", "3"]);
    // The answer to `password`, then to `next`.
    let password = |from: &str, pin: &str| {
        let mut c = raw(port, from);
        read_until(&mut c, "OK MPD 0.23.5");
        c.write_all(format!("password \"{pin}\"\n").as_bytes())
            .unwrap();
        let (a, _) = read_until(&mut c, "OK");
        c.write_all(b"next\n").unwrap();
        let (b, _) = read_until(&mut c, "OK");
        a + &b
    };
    let np = state(&s)["now_playing"]["play_id"].clone();
    for i in 0..3 {
        assert_eq!(
            password("127.0.0.9", &format!("0000000{i}")),
            "ACK [3@0] {password} incorrect password\n\
             ACK [4@0] {next} you don't have permission for \"next\"\n",
            "{i}"
        );
    }
    // Over the limit, wrong and then even the right PIN wait, and no host command runs.
    for pin in ["00000009", PIN] {
        let a = password("127.0.0.9", pin);
        assert!(
            a.starts_with("ACK [3@0] {password} too many wrong passwords; try again in "),
            "{a}"
        );
    }
    // The same address is refused on HTTP: one budget per address for both front ends.
    let mut http = raw(
        s.addr.rsplit(':').next().unwrap().parse().unwrap(),
        "127.0.0.9",
    );
    let body = format!("{{\"pin\":\"{PIN}\"}}");
    write!(
        http,
        "POST /api/host/login HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        s.addr,
        body.len()
    )
    .unwrap();
    let (reply, _) = read_until(&mut http, "never");
    assert!(reply.starts_with("HTTP/1.1 429"), "{reply}");
    assert_eq!(state(&s)["now_playing"]["play_id"], np, "nothing skipped");
    // Another address still logs in, and its host command runs.
    assert_eq!(password("127.0.0.10", PIN), "OK\nOK\n");
    until("the skip reaches the party", || {
        state(&s)["now_playing"]["play_id"] != np
    });
}
