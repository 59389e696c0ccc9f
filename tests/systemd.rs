//! The systemd unit `systemd/jukebox.service`: `systemd-analyze verify` has nothing to say about
//! it, its sandbox keeps the exposure score at 2.5 or below, and every system call the real
//! binary makes while it serves is one the unit's `SystemCallFilter=` allows.
//!
//! systemd is not PID 1 on a test machine, so the unit cannot be started here; these checks are
//! what can be proven without booting it. `scripts/test-systemd.sh` (run by
//! `scripts/test-appliance.sh`) starts the packaged unit under a real systemd in a container. `systemd-analyze` and `strace` come from the Debian
//! packages `systemd` and `strace`, which `scripts/deps.sh test` installs; without them the
//! tests fail saying so.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::wait::wait_until_blocking;

const UNIT: &str = include_str!("../systemd/jukebox.service");
const MAX_EXPOSURE: f64 = 2.5;

/// A copy of the unit whose `ExecStart=` names the binary under test (verify fails on a
/// missing executable), written as `jukebox.service` in `dir`.
fn unit_copy(dir: &Path) -> std::path::PathBuf {
    let text = UNIT.replace(
        "ExecStart=/usr/bin/jukebox ",
        &format!("ExecStart={} ", common::bin()),
    );
    assert!(
        text.contains(common::bin()),
        "the unit's ExecStart= should start with /usr/bin/jukebox"
    );
    let path = dir.join("jukebox.service");
    std::fs::write(&path, text).unwrap();
    path
}

fn works(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// Fails, saying what to do, unless `tool` runs. The test installs nothing itself:
/// `scripts/deps.sh test` does (the Debian `package`), once, before the tests run.
fn require(tool: &str, package: &str) {
    assert!(
        works(tool),
        "{tool} is needed by this test and does not run: install it with \
         `./scripts/deps.sh test` (it installs the Debian package {package}), then run the \
         tests again"
    );
}

#[test]
fn systemd_analyze_verify_finds_nothing_to_say() {
    require("systemd-analyze", "systemd");
    let dir = common::tempdir();
    let unit = unit_copy(dir.path());
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&unit)
        .env("SYSTEMD_LOG_COLOR", "0")
        .output()
        .expect("run systemd-analyze verify");
    let stderr = String::from_utf8_lossy(&out.stderr);
    // verify exits 0 for unknown keys and bad values and only complains on stderr.
    assert!(
        out.status.success() && stderr.trim().is_empty(),
        "systemd-analyze verify {}: exit {}, stderr:\n{stderr}",
        unit.display(),
        out.status
    );
}

/// Reads "→ Overall exposure level for jukebox.service: 1.7 OK 🙂".
fn exposure(report: &str) -> Option<f64> {
    let line = report
        .lines()
        .find(|l| l.contains("Overall exposure level for"))?;
    let after = line.rsplit_once(".service:")?.1;
    after.split_whitespace().next()?.parse().ok()
}

#[test]
fn sandbox_exposure_is_at_most_2_5() {
    require("systemd-analyze", "systemd");
    let dir = common::tempdir();
    let unit = unit_copy(dir.path());
    let score = sandbox_exposure(&unit);
    eprintln!("systemd-analyze security: overall exposure {score}");
}

/// The drop-in docs/MULTIROOM.md gives for feeding snapserver's pipe.
fn snapcast_drop_in() -> String {
    let doc = include_str!("../docs/MULTIROOM.md");
    let from = doc
        .find("sudo systemctl edit jukebox")
        .expect("MULTIROOM.md gives the jukebox's drop-in");
    let block = &doc[from..];
    let start = block.find("```ini\n").expect("an ini block") + "```ini\n".len();
    let end = start + block[start..].find("```").expect("the block's end");
    block[start..end].to_string()
}

#[test]
fn the_snapcast_drop_in_keeps_the_sandbox() {
    require("systemd-analyze", "systemd");
    let dir = common::tempdir();
    let unit = unit_copy(dir.path());
    let drop_in = snapcast_drop_in();
    assert!(drop_in.contains("ReadWritePaths="), "{drop_in}");
    let d = dir.path().join("jukebox.service.d");
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join("snapcast.conf"), &drop_in).unwrap();
    let score = sandbox_exposure(&unit);
    eprintln!("systemd-analyze security with the snapcast drop-in: overall exposure {score}");
    let out = Command::new("systemd-analyze")
        .args(["verify", "--no-pager"])
        .arg(&unit)
        .env("SYSTEMD_LOG_COLOR", "0")
        .output()
        .expect("run systemd-analyze verify");
    let said = String::from_utf8_lossy(&out.stderr);
    let about_us: Vec<&str> = said
        .lines()
        .filter(|l| l.contains("jukebox.service") || l.contains("snapcast.conf"))
        .collect();
    assert!(about_us.is_empty(), "verify with the drop-in: {said}");
}

/// `systemd-analyze security` of `unit` (and its drop-ins beside it): at most 2.5.
fn sandbox_exposure(unit: &Path) -> f64 {
    let out = Command::new("systemd-analyze")
        .args(["security", "--offline=yes", "--no-pager"])
        .arg(unit)
        .env("SYSTEMD_LOG_COLOR", "0")
        .env("SYSTEMD_COLORS", "0")
        .output()
        .expect("run systemd-analyze security");
    let report = String::from_utf8_lossy(&out.stdout);
    let score = exposure(&report).unwrap_or_else(|| {
        panic!(
            "no \"Overall exposure level\" in systemd-analyze security's output (exit {}):\n{report}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert!(
        score <= MAX_EXPOSURE,
        "exposure {score} > {MAX_EXPOSURE}; what is open:\n{}",
        report
            .lines()
            .filter(|l| l.starts_with('✗'))
            .collect::<Vec<_>>()
            .join("\n")
    );
    score
}

#[test]
fn unit_keeps_the_appliance_promises() {
    let keys: Vec<(&str, &str)> = UNIT
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .collect();
    let has = |k: &str, v: &str| keys.iter().any(|&(kk, vv)| kk == k && vv == v);
    for (k, v) in [
        ("Type", "notify"),
        ("WatchdogSec", "30s"),
        ("Restart", "on-failure"),
        ("SupplementaryGroups", "audio"),
        ("StateDirectory", "jukebox"),
        ("ConfigurationDirectory", "jukebox"),
        ("CapabilityBoundingSet", "CAP_NET_BIND_SERVICE"),
        ("AmbientCapabilities", "CAP_NET_BIND_SERVICE"),
        ("ProtectSystem", "strict"),
        ("NoNewPrivileges", "yes"),
        (
            "ExecStart",
            "/usr/bin/jukebox --config /etc/jukebox/jukebox.toml",
        ),
    ] {
        assert!(has(k, v), "the unit should have {k}={v}");
    }
    assert!(
        keys.iter().any(|&(k, _)| k == "DynamicUser" || k == "User"),
        "the unit should not run as root"
    );
    // The box must start with no network at all.
    assert!(
        !UNIT
            .lines()
            .filter(|l| !l.trim_start().starts_with('#'))
            .any(|l| l.contains("network-online")),
        "the unit must not wait for network-online.target"
    );
    let families = keys
        .iter()
        .find(|&&(k, _)| k == "RestrictAddressFamilies")
        .map(|&(_, v)| v.split_whitespace().collect::<BTreeSet<_>>())
        .expect("RestrictAddressFamilies=");
    // AF_NETLINK: mDNS follows interface address changes.
    for f in ["AF_UNIX", "AF_INET", "AF_INET6", "AF_NETLINK"] {
        assert!(families.contains(f), "RestrictAddressFamilies= lacks {f}");
    }
}

/// `systemd-analyze syscall-filter` as group → members (system calls and nested @groups).
fn syscall_groups() -> BTreeMap<String, Vec<String>> {
    let out = Command::new("systemd-analyze")
        .arg("syscall-filter")
        .arg("--no-pager")
        .output()
        .expect("run systemd-analyze syscall-filter");
    assert!(
        out.status.success(),
        "systemd-analyze syscall-filter failed"
    );
    let mut groups = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        if let Some(name) = line.strip_prefix('@') {
            current = Some(format!("@{}", name.trim()));
            groups.insert(format!("@{}", name.trim()), Vec::new());
        } else if line.starts_with(char::is_whitespace) {
            let item = line.trim();
            if let Some(g) = &current {
                if !item.is_empty() && !item.starts_with('#') {
                    groups.get_mut(g).unwrap().push(item.to_string());
                }
            }
        } else {
            // A blank line, or the trailing list of calls in no group.
            current = None;
        }
    }
    groups
}

fn expand(item: &str, groups: &BTreeMap<String, Vec<String>>, out: &mut BTreeSet<String>) {
    if item.starts_with('@') {
        let members = groups
            .get(item)
            .unwrap_or_else(|| panic!("unknown system call group {item}"));
        for m in members {
            expand(m, groups, out);
        }
    } else {
        out.insert(item.to_string());
    }
}

/// The system calls the unit's `SystemCallFilter=` lines let through: the allow list minus
/// the `~` deny lists, as systemd combines them.
fn allowed_syscalls() -> BTreeSet<String> {
    // As systemd reads the lines: the first decides that this is an allow list; after it, each
    // line adds (or, with `~`, removes) calls in the order written.
    let groups = syscall_groups();
    let mut allow = BTreeSet::new();
    let mut first = true;
    for line in UNIT.lines() {
        let Some(value) = line.trim().strip_prefix("SystemCallFilter=") else {
            continue;
        };
        match value.strip_prefix('~') {
            Some(denied) => {
                assert!(
                    !first,
                    "the unit's SystemCallFilter= starts with a deny list"
                );
                let mut deny = BTreeSet::new();
                denied
                    .split_whitespace()
                    .for_each(|i| expand(i, &groups, &mut deny));
                allow.retain(|c| !deny.contains(c));
            }
            None => value
                .split_whitespace()
                .for_each(|i| expand(i, &groups, &mut allow)),
        }
        first = false;
    }
    assert!(
        !allow.is_empty(),
        "the unit has no SystemCallFilter= allow list"
    );
    allow
}

/// Names of the system calls in an `strace -f -o` log ("PID name(args) = ..." and
/// "PID <... name resumed> ...").
fn traced_syscalls(log: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in log.lines() {
        let rest = line
            .trim_start_matches(|c: char| c.is_ascii_digit())
            .trim_start();
        let rest = rest.strip_prefix("<... ").unwrap_or(rest);
        let name: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        let after = &rest[name.len()..];
        if !name.is_empty() && (after.starts_with('(') || after.starts_with(" resumed>")) {
            names.insert(name);
        }
    }
    names
}

fn get(addr: &str, path: &str) -> String {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut body = String::new();
    let _ = s.read_to_string(&mut body);
    body
}

fn wait_bounded(child: &mut Child, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if child.try_wait().unwrap().is_some() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

#[test]
fn system_calls_made_while_serving_pass_the_units_filter() {
    require("systemd-analyze", "systemd");
    require("strace", "strace");
    let allowed = allowed_syscalls();
    let dir = common::tempdir();
    let d = dir.path();
    let trace = d.join("trace");
    // As under systemd: a notify socket and a watchdog interval, so that code path runs too.
    let notify = std::os::unix::net::UnixDatagram::bind(d.join("notify")).unwrap();
    notify
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let mut child = Command::new("strace")
        .args(["-f", "-qq", "-o"])
        .arg(&trace)
        .arg(common::bin())
        .args([
            "--demo",
            "--no-mdns",
            // MPD clients too: their system calls must pass the filter as well.
            "--mpd-listen",
            "127.0.0.1:0",
            "--listen",
            "127.0.0.1:0",
            "--output",
        ])
        .arg(format!("wav:{}", d.join("out.wav").display()))
        .arg("--db")
        .arg(d.join("j.db"))
        .env("NOTIFY_SOCKET", d.join("notify"))
        .env("WATCHDOG_USEC", "2000000")
        .env_remove("WATCHDOG_PID")
        .env("JUKEBOX_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the jukebox under strace");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            for key in ["MPD clients on ", "listening on http://"] {
                if let Some(rest) = line.split(key).nth(1) {
                    let _ = tx.send(rest.split_whitespace().next().unwrap_or("").to_string());
                }
            }
        }
    });
    // The MPD line comes first.
    let mpd = rx.recv_timeout(Duration::from_secs(60)).unwrap_or_default();
    let addr = match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(a) => a,
        Err(_) => {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the jukebox under strace never said \"listening on http://…\"");
        }
    };
    let health = get(&addr, "/healthz");
    assert!(health.contains("\"status\":\"ok\""), "healthz: {health}");
    get(&addr, "/api/search?q=jukebox");
    get(&addr, "/");
    // An MPD client: greeting, status, a search, cover art.
    {
        use std::io::{Read, Write};
        let mut c = std::net::TcpStream::connect(&mpd).expect("the MPD port answers");
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        c.write_all(
            b"status
lsinfo
search any a
close
",
        )
        .unwrap();
        let mut out = String::new();
        let _ = c.read_to_string(&mut out);
        assert!(
            out.starts_with("OK MPD ") && out.contains("state: "),
            "{out}"
        );
    }
    // The watchdog's keep-alive (every second with a 2 s WATCHDOG_USEC): its code path has
    // run, and been traced, once one arrives.
    let mut buf = [0u8; 512];
    wait_until_blocking(
        Duration::from_secs(20),
        "a WATCHDOG=1 keep-alive on the notify socket",
        || {
            notify
                .recv(&mut buf)
                .is_ok_and(|n| String::from_utf8_lossy(&buf[..n]).contains("WATCHDOG=1"))
        },
    );
    while notify.recv(&mut buf).is_ok() {}

    // SIGTERM to the jukebox itself (the first pid in the log), not to strace.
    let log = std::fs::read_to_string(&trace).unwrap_or_default();
    let pid = log
        .split_whitespace()
        .next()
        .expect("a traced line")
        .to_string();
    let _ = Command::new("kill").args(["-TERM", &pid]).status();
    if !wait_bounded(&mut child, Duration::from_secs(20)) {
        let _ = child.kill();
        let _ = child.wait();
        panic!("the jukebox did not stop within 20 s of SIGTERM");
    }

    let log = std::fs::read_to_string(&trace).unwrap();
    let mut used = traced_syscalls(&log);
    assert!(
        used.contains("execve") && used.len() > 20,
        "strace log:\n{log}"
    );
    if is_root() {
        // SQLite hands its journal files to the database's owner when it runs as root; the
        // service never runs as root.
        used.remove("fchown");
        used.remove("fchown32");
    }
    let refused: Vec<_> = used.difference(&allowed).cloned().collect();
    eprintln!("{} distinct system calls, all allowed", used.len());
    assert!(
        refused.is_empty(),
        "the unit's SystemCallFilter= would refuse (EPERM) these calls the jukebox made: {refused:?}"
    );
}
