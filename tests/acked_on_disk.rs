//! Acknowledged means on disk: `kill -9` (tests/durability.rs) leaves the page cache, so it
//! cannot tell a commit that reached the disk from one that only reached the kernel. Here the
//! real binary runs under `strace` while phones vote in a burst, and the trace is checked: for
//! every reply to a vote, the database's WAL was written after the vote was read from that
//! phone's socket, and an fsync or fdatasync of the WAL that began after that write had
//! finished before the reply's write to the socket began. The same for an MPD client's `OK`
//! to each `setvol`.
//!
//! strace sees every traced call of every thread one at a time (a thread stops at each call's
//! entry and exit until strace has logged it), so a write that depends on a sync's return is
//! logged after it. `strace` comes from the Debian package `strace`, which
//! `scripts/deps.sh test` installs.

mod common;

use std::collections::HashMap;
use std::process::Command;

use common::live::{Phone, Server};
use serde_json::json;

/// Ten phones each change their vote ten times: a guest's budget of changes at once.
const PHONES: usize = 10;
const VOTES_EACH: usize = 10;

/// One traced system call, from `strace -f -ttt -T -yy`: when it began and ended (seconds),
/// its name, the file or socket of its first argument, what it returned, and its text.
#[derive(Debug, Clone)]
struct Call {
    start: f64,
    end: f64,
    name: String,
    fd: String,
    ret: i64,
    line: String,
}

/// The calls of an strace log, an unfinished call joined with its resumption.
fn parse(log: &str) -> Vec<Call> {
    let mut open: HashMap<(String, String), Call> = HashMap::new();
    let mut calls = Vec::new();
    for line in log.lines() {
        // strace pads the pid to five columns: "5508  1796…" but "12345 1796…".
        let Some((pid, rest)) = line.split_once(' ') else {
            continue;
        };
        let Some((ts, rest)) = rest.trim_start().split_once(' ') else {
            continue;
        };
        let Ok(ts) = ts.parse::<f64>() else { continue };
        if let Some(resumed) = rest.strip_prefix("<... ") {
            let name: String = resumed
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if let Some(mut call) = open.remove(&(pid.to_string(), name)) {
                let (ret, took) = outcome(rest);
                call.end = took.map_or(ts, |t| call.start + t).max(ts);
                call.ret = ret;
                call.line.push_str(rest);
                calls.push(call);
            }
            continue;
        }
        let name: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if name.is_empty() || !rest[name.len()..].starts_with('(') {
            continue;
        }
        let fd = rest[name.len() + 1..]
            .split_once('<')
            .map(|(_, r)| fd_path(r))
            .unwrap_or_default();
        let mut call = Call {
            start: ts,
            end: ts,
            name: name.clone(),
            fd,
            ret: -1,
            line: rest.to_string(),
        };
        if rest.ends_with("<unfinished ...>") {
            open.insert((pid.to_string(), name), call);
            continue;
        }
        let (ret, took) = outcome(rest);
        call.ret = ret;
        call.end = ts + took.unwrap_or(0.0);
        calls.push(call);
    }
    calls.sort_by(|a, b| a.start.total_cmp(&b.start));
    calls
}

/// The path `-yy` gives a descriptor, up to its closing `>`: a socket's has `->` in it
/// ("TCP:[127.0.0.1:80->127.0.0.1:5555]").
fn fd_path(after_open: &str) -> String {
    let bytes = after_open.as_bytes();
    let end = (0..bytes.len())
        .find(|&i| bytes[i] == b'>' && (i == 0 || bytes[i - 1] != b'-'))
        .unwrap_or(bytes.len());
    after_open[..end].to_string()
}

/// What a call returned, and how long it took (`-T`): "... = 44 <0.000020>".
fn outcome(line: &str) -> (i64, Option<f64>) {
    let Some((_, tail)) = line.rsplit_once(") = ") else {
        return (-1, None);
    };
    let ret = tail
        .split_whitespace()
        .next()
        .and_then(|r| r.parse().ok())
        .unwrap_or(-1);
    let took = tail
        .rsplit_once('<')
        .and_then(|(_, t)| t.strip_suffix('>'))
        .and_then(|t| t.parse().ok());
    (ret, took)
}

const READS: [&str; 3] = ["read", "recvfrom", "recvmsg"];
const WRITES: [&str; 4] = ["write", "writev", "sendto", "sendmsg"];
const SYNCS: [&str; 2] = ["fsync", "fdatasync"];
const WAL_WRITES: [&str; 4] = ["write", "writev", "pwrite64", "pwritev"];

/// The rid of a reply a call wrote, if it wrote one (strace shows `"` as `\"`).
fn reply_rid(call: &Call) -> Option<u64> {
    if !call.line.contains(r#"\"cmd\":\"reply\""#) {
        return None;
    }
    let (_, after) = call.line.split_once(r#"\"rid\":"#)?;
    after
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect::<String>()
        .parse()
        .ok()
}

/// Checks every write to the sockets accepted on `server` (its address as strace shows it,
/// `127.0.0.1:PORT`) that `is_reply` picks: the read of its request, then a write of the WAL,
/// then a sync of the WAL, all before the reply's write. Returns how many replies were
/// checked, or what was wrong.
fn check(
    calls: &[Call],
    server: &str,
    wal: &str,
    mut is_reply: impl FnMut(&Call) -> bool,
) -> Result<usize, String> {
    let accepted = format!("TCP:[{server}->");
    let on_wal = |c: &Call| c.fd == wal;
    let mut checked = 0;
    let mut last_reply_end: HashMap<&str, f64> = HashMap::new();
    for (i, w) in calls.iter().enumerate() {
        if !WRITES.contains(&w.name.as_str()) || !w.fd.starts_with(&accepted) || !is_reply(w) {
            continue;
        }
        let what: String = w.line.chars().take(160).collect();
        // The request: the first read from this socket since its previous reply (each phone
        // sends its next vote only once it has read the reply to the last).
        let since = last_reply_end.get(w.fd.as_str()).copied().unwrap_or(0.0);
        let read = calls[..i]
            .iter()
            .find(|c| {
                READS.contains(&c.name.as_str()) && c.fd == w.fd && c.ret > 0 && c.start >= since
            })
            .ok_or_else(|| format!("{what}: no read of its request before its reply"))?;
        let wal_write = calls[..i]
            .iter()
            .find(|c| WAL_WRITES.contains(&c.name.as_str()) && on_wal(c) && c.start >= read.end)
            .ok_or_else(|| format!("{what}: replied with no WAL write since its request"))?;
        let synced = calls[..i].iter().any(|c| {
            SYNCS.contains(&c.name.as_str())
                && on_wal(c)
                && c.ret == 0
                && c.start >= wal_write.end
                && c.end <= w.start
        });
        if !synced {
            return Err(format!(
                "{what}: the reply was written at {:.6} before a sync of the WAL written at \
                 {:.6} had finished",
                w.start, wal_write.start
            ));
        }
        last_reply_end.insert(w.fd.as_str(), w.end);
        checked += 1;
    }
    Ok(checked)
}

#[test]
fn a_reply_is_written_only_after_its_change_was_synced() {
    assert!(
        Command::new("strace").arg("-V").output().is_ok(),
        "strace is needed by this test and does not run: install it with \
         `./scripts/deps.sh test` (it installs the Debian package strace), then run the tests \
         again"
    );
    let dir = common::tempdir();
    let music = common::music(dir.path(), 3, 30.0);
    let db = dir.path().join("j.db");
    let trace = dir.path().join("trace");
    let jukebox = Server::command(
        &db,
        &music,
        "null",
        Some(common::live::PIN),
        &["--mpd-listen", "127.0.0.1:0"],
    );
    let mut cmd = Command::new("strace");
    cmd.args([
        "-f",
        "--seccomp-bpf",
        "-ttt",
        "-T",
        "-yy",
        "-s",
        "400",
        "-o",
    ])
    .arg(&trace)
    .arg(format!(
        "-etrace={}",
        [&READS[..], &WRITES[..], &SYNCS[..], &WAL_WRITES[2..]]
            .concat()
            .join(",")
    ))
    .arg("--")
    .arg(jukebox.get_program())
    .args(jukebox.get_args());
    let server = Server::spawn(cmd, &db, &music);
    let addr = server.addr.clone();
    let mpd_port = mpd_port(&server);

    let rt = tokio::runtime::Runtime::new().unwrap();
    let rids = rt.block_on(async {
        let topics = ["now_playing", "queue"];
        let mut asker = Phone::connect(&addr, &server.guest("Ada"), &topics).await;
        let np = server.playing();
        let (reply, _) = asker
            .ok(json!({"cmd": "request", "track_id": server.other_track(&np)}))
            .await;
        let entry = reply["data"]["entry_id"].as_str().unwrap().to_string();
        let mut voters = Vec::new();
        for i in 0..PHONES {
            let mut p = Phone::connect(&addr, &server.guest(&format!("V{i}")), &topics).await;
            // Rids no other phone uses: the trace names replies by rid.
            p.rid = 1000 * (i as u64 + 1);
            voters.push(p);
        }
        // The burst: every phone votes and takes its vote back, as fast as it is answered,
        // all at once.
        let tasks = voters.into_iter().map(|mut p| {
            let entry = entry.clone();
            tokio::spawn(async move {
                let mut rids = Vec::new();
                for k in 0..VOTES_EACH {
                    let (reply, _) = p
                        .ok(json!({"cmd": "vote", "entry_id": entry, "on": k % 2 == 0}))
                        .await;
                    rids.push(reply["rid"].as_u64().unwrap());
                }
                rids
            })
        });
        let mut rids = Vec::new();
        for t in tasks.collect::<Vec<_>>() {
            rids.extend(t.await.unwrap());
        }
        rids
    });
    // An MPD client (the host's side): the PIN, then the volume changed back and forth, each
    // command sent once the last is answered.
    let mut mpd = Mpd::connect(mpd_port);
    mpd.command(&format!("password {}", common::live::PIN));
    for k in 0..VOTES_EACH {
        mpd.command(&format!("setvol {}", 40 + 20 * (k % 2)));
    }
    // strace, stopped, would leave the jukebox running untraced: the jukebox is stopped,
    // and strace ends with it.
    let tracer = server.child.id();
    let jukebox_pids = std::fs::read_to_string(format!("/proc/{tracer}/task/{tracer}/children"))
        .unwrap_or_default();
    for pid in jukebox_pids.split_whitespace() {
        let _ = Command::new("kill").args(["-TERM", pid]).status();
    }
    server.stop();

    let log = std::fs::read_to_string(&trace).unwrap();
    let calls = parse(&log);
    assert!(
        !calls.is_empty(),
        "strace logged no call that could be read ({} bytes): {:?}",
        log.len(),
        log.chars().take(3000).collect::<String>()
    );
    let wal = format!("{}-wal", db.canonicalize().unwrap().display());
    let syncs = calls
        .iter()
        .filter(|c| SYNCS.contains(&c.name.as_str()) && c.fd == wal)
        .count();
    eprintln!(
        "{} calls traced, {} syncs of the WAL, {} votes",
        calls.len(),
        syncs,
        rids.len()
    );
    let checked = check(&calls, &addr, &wal, |c| {
        reply_rid(c).is_some_and(|r| rids.contains(&r))
    })
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        checked,
        rids.len(),
        "every reply to a vote is found in the trace"
    );
    // The MPD client's OKs: the first answers the password, which changes nothing.
    let mut oks = 0;
    let checked = check(&calls, &format!("127.0.0.1:{mpd_port}"), &wal, |c| {
        if !c.line.contains(r#", "OK\n","#) {
            return false;
        }
        oks += 1;
        oks > 1
    })
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        checked, VOTES_EACH,
        "every setvol's OK is found in the trace"
    );
}

/// The MPD port the jukebox printed.
fn mpd_port(server: &Server) -> u16 {
    let t = std::time::Instant::now();
    loop {
        let log = server.log.lock().unwrap().clone();
        let port = log
            .split("MPD clients on 127.0.0.1:")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .and_then(|p| p.parse().ok());
        if let Some(p) = port {
            return p;
        }
        assert!(t.elapsed() < common::live::WAIT, "no MPD line: {log}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// A bare MPD client: one command at a time, each answered `OK`.
struct Mpd {
    reader: std::io::BufReader<std::net::TcpStream>,
}

impl Mpd {
    fn connect(port: u16) -> Mpd {
        let s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(common::live::WAIT)).unwrap();
        let mut mpd = Mpd {
            reader: std::io::BufReader::new(s),
        };
        let greeting = mpd.line();
        assert!(greeting.starts_with("OK MPD "), "{greeting}");
        mpd
    }

    fn line(&mut self) -> String {
        use std::io::BufRead;
        let mut line = String::new();
        self.reader.read_line(&mut line).unwrap();
        line
    }

    fn command(&mut self, cmd: &str) {
        use std::io::Write;
        writeln!(self.reader.get_mut(), "{cmd}").unwrap();
        let answer = self.line();
        assert_eq!(answer, "OK\n", "{cmd}");
    }
}

/// The checker finds what it looks for: a reply written while the sync was still running, or
/// with no sync at all, is caught; the same trace in the right order passes. strace pads
/// the pid to five columns; a pid of five digits has one space after it.
#[test]
fn the_check_catches_a_reply_before_the_sync() {
    let server = "127.0.0.1:8080";
    let sock = "12<TCP:[127.0.0.1:8080->127.0.0.1:5555]>";
    let wal = "/d/j.db-wal";
    let trace = |reply_at: &str| {
        format!(
            "7     1.000000 recvfrom({sock}, \"\\x81\\x80\", 4096, 0, NULL, NULL) = 40 <0.000010>\n\
             9     1.100000 pwrite64(5<{wal}>, \"x\", 4096, 0) = 4096 <0.000010>\n\
             9     1.200000 fdatasync(5<{wal}> <unfinished ...>\n\
             7 {reply_at} sendto({sock}, \"\\x81\\x20{{\\\"cmd\\\":\\\"reply\\\",\\\"seq\\\":3,\\\"rid\\\":7,\\\"ok\\\":true}}\", 34, MSG_NOSIGNAL, NULL, 0) = 34 <0.000010>\n\
             9     1.300000 <... fdatasync resumed>) = 0 <0.100000>\n"
        )
    };
    let ok = parse(&trace("1.400000"));
    let is_7 = |c: &Call| reply_rid(c) == Some(7);
    assert_eq!(check(&ok, server, wal, is_7), Ok(1));
    let early = parse(&trace("1.250000"));
    assert!(check(&early, server, wal, is_7).is_err(), "{early:?}");
    let unsynced = parse(&trace("1.400000").replace("fdatasync", "fstat"));
    assert!(check(&unsynced, server, wal, is_7).is_err());
}
