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
    for _ in 0..2_000 {
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

    // Many idle clients from several addresses: MPD's 100 are served and woken, the rest
    // closed; the phones do not notice.
    let mut idle = Vec::new();
    let mut refused = 0;
    for i in 0..150 {
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
        idle.len() >= 95 && refused >= 45,
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
