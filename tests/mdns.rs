//! mDNS against an independent client (python-zeroconf), in two network namespaces joined by a
//! veth pair so nothing is multicast on a real network: the jukebox runs in one, the client in
//! the other. It finds `_jukebox._tcp` and `_http._tcp`, resolves `jukebox.local` to the right
//! addresses (following an address change), fetches `/healthz` through it, and sees the
//! goodbye on shutdown. Further cases: another machine already answering the name, the
//! system's own host name, and a running avahi-daemon beside the jukebox. Needs root (to make
//! namespaces), as CI has.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::wait::wait_until_blocking as eventually;
use serde_json::{json, Value};

static NET: AtomicU32 = AtomicU32::new(0);

fn sh(args: &[&str]) {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("{args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Two namespaces `a` and `b` joined by a veth pair: a = 10.X.0.1 and fd00:X::1,
/// b = 10.X.0.2 and fd00:X::2. Removed on drop.
struct Net {
    a: String,
    b: String,
    veth_a: String,
    x: u32,
}

impl Net {
    fn new() -> Net {
        let uid = std::process::Command::new("id").arg("-u").output().unwrap();
        assert_eq!(
            String::from_utf8_lossy(&uid.stdout).trim(),
            "0",
            "this test creates network namespaces and needs root"
        );
        // Unique per process and test, so parallel runs do not collide.
        let n = NET.fetch_add(1, Ordering::Relaxed);
        let x = 100 + (std::process::id() % 100) + n * 100 % 150;
        let tag = format!("{}{}", std::process::id() % 100_000, n);
        let net = Net {
            a: format!("jbA{tag}"),
            b: format!("jbB{tag}"),
            veth_a: format!("jbva{tag}"),
            x: x % 250,
        };
        let veth_b = format!("jbvb{tag}");
        sh(&["ip", "netns", "add", &net.a]);
        sh(&["ip", "netns", "add", &net.b]);
        sh(&[
            "ip",
            "link",
            "add",
            &net.veth_a,
            "type",
            "veth",
            "peer",
            "name",
            &veth_b,
        ]);
        sh(&["ip", "link", "set", &net.veth_a, "netns", &net.a]);
        sh(&["ip", "link", "set", &veth_b, "netns", &net.b]);
        for (ns, dev, host) in [(&net.a, &net.veth_a, 1), (&net.b, &veth_b, 2)] {
            sh(&["ip", "-n", ns, "link", "set", "lo", "up"]);
            let v4 = format!("10.{}.0.{host}/24", net.x);
            sh(&["ip", "-n", ns, "addr", "add", &v4, "dev", dev]);
            let v6 = format!("fd00:{}::{host}/64", net.x);
            sh(&["ip", "-n", ns, "addr", "add", &v6, "dev", dev, "nodad"]);
            sh(&["ip", "-n", ns, "link", "set", dev, "up"]);
        }
        // Packets sent before the link carries are lost (a probe among them): wait for it.
        let up = |ns: &str, dev: &str| {
            let out = Command::new("ip")
                .args(["-n", ns, "-o", "link", "show", "dev", dev])
                .output()
                .unwrap();
            String::from_utf8_lossy(&out.stdout).contains("state UP")
        };
        eventually(Duration::from_secs(10), "the veth link to come up", || {
            up(&net.a, &net.veth_a) && up(&net.b, &veth_b)
        });
        net
    }

    fn ip_a(&self) -> String {
        format!("10.{}.0.1", self.x)
    }

    fn ip_b(&self) -> String {
        format!("10.{}.0.2", self.x)
    }

    fn v6_a(&self) -> String {
        format!("fd00:{}::1", self.x)
    }

    /// The python client in namespace `b`.
    fn client(&self, args: &[&str]) -> Command {
        let mut c = Command::new("timeout");
        c.args(["60", "ip", "netns", "exec", &self.b, "python3"])
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/mdns/client.py"))
            .args(args);
        c
    }

    fn resolve(&self, host: &str) -> Vec<String> {
        let out = self.client(&["resolve", host, "4"]).output().unwrap();
        let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|_| {
            panic!(
                "resolve {host}: {} {}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        });
        v["addresses"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap().to_string())
            .collect()
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.a]).status();
        let _ = Command::new("ip").args(["netns", "del", &self.b]).status();
    }
}

/// The jukebox in a namespace, with its log collected.
struct Jukebox {
    child: Child,
    log: Arc<Mutex<String>>,
    _dir: tempfile::TempDir,
}

impl Jukebox {
    fn start(ns: &str, name: &str) -> Jukebox {
        let dir = common::tempdir();
        let music = dir.path().join("music");
        std::fs::create_dir_all(&music).unwrap();
        let mut child = Command::new("ip")
            .args(["netns", "exec", ns, common::bin()])
            .arg("--music")
            .arg(&music)
            .arg("--db")
            .arg(dir.path().join("j.db"))
            .args([
                "--listen",
                "0.0.0.0:8080",
                "--output",
                "null",
                "--name",
                name,
            ])
            // The mDNS library's own account, for the message of a test that fails.
            .env("JUKEBOX_LOG", "info,mdns_sd=debug")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let (l, stderr) = (log.clone(), child.stderr.take().unwrap());
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut l = l.lock().unwrap_or_else(|e| e.into_inner());
                l.push_str(&line);
                l.push('\n');
            }
        });
        let j = Jukebox {
            child,
            log,
            _dir: dir,
        };
        j.wait_log("listening on", Duration::from_secs(30));
        j
    }

    fn wait_log(&self, what: &str, limit: Duration) {
        let t = Instant::now();
        while !self.log.lock().unwrap().contains(what) {
            assert!(
                t.elapsed() < limit,
                "no {what:?} in the log within {limit:?}:\n{}",
                self.log.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn stop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(10) {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Jukebox {
    fn drop(&mut self) {
        self.stop();
    }
}

fn first_json(line: &str) -> Value {
    serde_json::from_str(line).unwrap_or_else(|e| panic!("client said {line:?}: {e}"))
}

#[test]
fn found_resolved_followed_and_goodbye() {
    let net = Net::new();
    // A party name with an apostrophe and a space: the instance keeps it, the host label is
    // derived from it.
    let mut jukebox = Jukebox::start(&net.a, "Mia's Party");
    jukebox.wait_log("mDNS: advertising", Duration::from_secs(10));

    // Both services, with the TXT record, through an independent client; /healthz by address.
    for ty in ["_http._tcp.local.", "_jukebox._tcp.local."] {
        let out = net
            .client(&["find", ty, "Mia's Party", "15"])
            .output()
            .unwrap();
        let line = String::from_utf8_lossy(&out.stdout);
        let v = first_json(line.lines().next().unwrap_or(""));
        assert_eq!(v["host"], "mias-party.local.", "{v}");
        assert_eq!(v["port"], 8080);
        assert_eq!(v["txt"]["path"], "/");
        assert_eq!(v["txt"]["proto"], "1");
        assert_eq!(v["txt"]["version"], env!("CARGO_PKG_VERSION"));
        let addrs: Vec<&str> = v["addresses"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap())
            .collect();
        assert!(addrs.contains(&net.ip_a().as_str()), "{v}");
        assert!(
            !addrs.iter().any(|a| a.starts_with("127.")),
            "no loopback: {v}"
        );
        assert_eq!(v["healthz"]["status"], "ok", "{v}");
    }
    // MPD clients (M.A.L.P., MPDroid) find the MPD port the same way.
    let out = net
        .client(&["find", "_mpd._tcp.local.", "Mia's Party", "15"])
        .output()
        .unwrap();
    let v = first_json(
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .next()
            .unwrap_or(""),
    );
    assert_eq!(
        (&v["host"], &v["port"]),
        (&json!("mias-party.local."), &json!(6600)),
        "{v}"
    );

    // IPv4 and IPv6, and a new address is answered without a restart.
    let new_ip = format!("10.{}.0.3", net.x);
    sh(&[
        "ip",
        "-n",
        &net.a,
        "addr",
        "add",
        &format!("{new_ip}/24"),
        "dev",
        &net.veth_a,
    ]);
    let mut last = Vec::new();
    let answered = Instant::now();
    while !(last.contains(&new_ip) && last.contains(&net.ip_a()) && last.contains(&net.v6_a())) {
        assert!(
            answered.elapsed() < Duration::from_secs(30),
            "the new address {new_ip} is not answered after 30 s: the last answer was {last:?}; \
             the jukebox said:\n{}",
            jukebox.log.lock().unwrap()
        );
        last = net.resolve("mias-party.local.");
    }

    // Goodbye: a watching client sees the service go as soon as the jukebox stops.
    let mut watch = net
        .client(&["find", "_jukebox._tcp.local.", "Mia's Party", "15", "watch"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(watch.stdout.take().unwrap()).lines();
    let found = first_json(&lines.next().unwrap().unwrap());
    assert_eq!(found["host"], "mias-party.local.", "{found}");
    let stopped = Instant::now();
    jukebox.stop();
    let removed = first_json(&lines.next().expect("a line").unwrap());
    assert_eq!(removed["removed"], "Mia's Party._jukebox._tcp.local.");
    assert!(
        stopped.elapsed() < Duration::from_secs(5),
        "goodbye took {:?}",
        stopped.elapsed()
    );
    let _ = watch.wait();
}

#[test]
fn steps_aside_for_another_machine_and_for_the_system_name() {
    let net = Net::new();
    let _first = Jukebox::start(&net.a, "jukebox");
    _first.wait_log("mDNS: advertising", Duration::from_secs(10));
    // The first one has the name (its probe is over) before the second one asks.
    eventually(Duration::from_secs(15), "jukebox.local resolves", || {
        net.resolve("jukebox.local.").contains(&net.ip_a())
    });
    // A second jukebox with the same name on the same network becomes jukebox-2.local.
    let second = Jukebox::start(&net.b, "jukebox");
    second.wait_log(
        "this jukebox is now jukebox-2.local",
        Duration::from_secs(15),
    );
    eventually(Duration::from_secs(15), "jukebox-2.local resolves", || {
        net.resolve("jukebox-2.local.").contains(&net.ip_b())
    });
    let addrs = net.resolve("jukebox.local.");
    assert!(
        addrs.contains(&net.ip_a()) && !addrs.contains(&net.ip_b()),
        "jukebox.local stays the first one's: {addrs:?}"
    );
    drop(second);

    // The machine's own host name is the system's (avahi answers it): never claimed.
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap()
        .trim()
        .to_string();
    let own = Jukebox::start(&net.b, &host);
    own.wait_log(
        &format!("the jukebox answers as {host}-2.local"),
        Duration::from_secs(10),
    );
    eventually(Duration::from_secs(15), "<host>-2.local resolves", || {
        net.resolve(&format!("{host}-2.local."))
            .contains(&net.ip_b())
    });
}

#[test]
fn lives_beside_avahi() {
    let net = Net::new();
    let dir = common::tempdir();
    let avahi_name = format!("avahibox{}", net.x);
    let conf = dir.path().join("avahi.conf");
    std::fs::write(
        &conf,
        format!(
            "[server]\nhost-name={avahi_name}\nuse-ipv4=yes\nuse-ipv6=yes\nallow-interfaces={}\n\
             enable-dbus=no\n[wide-area]\nenable-wide-area=no\n[publish]\npublish-hinfo=no\n\
             publish-workstation=no\n",
            net.veth_a
        ),
    )
    .unwrap();
    let avahi_log = dir.path().join("avahi.log");
    let mut avahi = Command::new("ip")
        .args(["netns", "exec", &net.a, "avahi-daemon", "-f"])
        .arg(&conf)
        .args(["--no-drop-root", "--no-chroot", "--no-rlimits"])
        .stdout(std::fs::File::create(&avahi_log).unwrap())
        .stderr(std::fs::File::create(dir.path().join("avahi.err")).unwrap())
        .spawn()
        .expect("avahi-daemon (scripts/deps.sh test installs it)");
    struct Kill<'a>(&'a mut Child);
    impl Drop for Kill<'_> {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _avahi = Kill(&mut avahi);
    let read_log = || {
        std::fs::read_to_string(&avahi_log).unwrap_or_default()
            + &std::fs::read_to_string(dir.path().join("avahi.err")).unwrap_or_default()
    };
    eventually(Duration::from_secs(15), "avahi started", || {
        read_log().contains("Server startup complete")
    });

    let jukebox = Jukebox::start(&net.a, "jukebox");
    jukebox.wait_log("mDNS: advertising", Duration::from_secs(10));
    eventually(Duration::from_secs(15), "both names resolve", || {
        net.resolve("jukebox.local.").contains(&net.ip_a())
            && net
                .resolve(&format!("{avahi_name}.local."))
                .contains(&net.ip_a())
    });
    let out = net
        .client(&["find", "_jukebox._tcp.local.", "jukebox", "15"])
        .output()
        .unwrap();
    let v = first_json(
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .next()
            .unwrap_or(""),
    );
    assert_eq!(v["healthz"]["status"], "ok", "{v}");

    // avahi kept its name: no conflict, no rename.
    let log = read_log();
    assert!(
        log.contains(&format!("Host name is {avahi_name}.local")),
        "{log}"
    );
    assert!(
        !log.contains("conflict") && !log.contains(&format!("{avahi_name}-2")),
        "avahi was disturbed:\n{log}"
    );
    assert!(!jukebox.log.lock().unwrap().contains("now jukebox-2"));
}
