//! The garden party against the real binary and tools we did not write: the Wi-Fi QR code
//! read back by zbarimg (after rsvg-convert draws the SVG), with the format's escaping, and its
//! password in no JSON, no log line and no `--help`; the captive portal's redirect for foreign
//! Host names (and the 421 without it), never for the jukebox's own; the package's dnsmasq
//! snippet answering every name with the hotspot address in a real dnsmasq; and the join
//! address without mDNS (an address, never `jukebox.local`) and with it. The namespace tests
//! need root, as CI has; `scripts/deps.sh test` installs the tools.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use common::answer::Answer;
use common::live::{Phone, Server};
use serde_json::{json, Value};

/// `method path` with this `Host`, on a connection of its own, read to its end.
fn request(addr: &str, method: &str, path: &str, host: &str) -> Answer {
    let mut tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let body = if method == "POST" { "{}" } else { "" };
    write!(
        tcp,
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut raw = Vec::new();
    tcp.read_to_end(&mut raw).unwrap();
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no header end: {:?}", String::from_utf8_lossy(&raw)));
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut a = Answer::from_head(&head, raw[split + 4..].to_vec())
        .unwrap_or_else(|| panic!("no status line: {head:?}"));
    if a.header("transfer-encoding")
        .is_some_and(|v| v.contains("chunked"))
    {
        a.body = dechunk(&a.body);
    }
    a
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let end = b.windows(2).position(|w| w == b"\r\n").unwrap();
        let size =
            usize::from_str_radix(std::str::from_utf8(&b[..end]).unwrap().trim(), 16).unwrap();
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&b[end + 2..end + 2 + size]);
        b = &b[end + 2 + size + 2..];
    }
}

fn get(s: &Server, path: &str) -> Answer {
    request(&s.addr, "GET", path, &s.addr)
}

fn tool(name: &str) {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {name}")])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(found, "{name} is missing: run scripts/deps.sh test");
}

/// What a QR code in an SVG says, read by tools we did not write: rsvg-convert draws it,
/// zbarimg decodes it.
fn decode_qr(svg: &[u8], dir: &Path) -> String {
    tool("rsvg-convert");
    tool("zbarimg");
    let (svg_path, png) = (dir.join("qr.svg"), dir.join("qr.png"));
    std::fs::write(&svg_path, svg).unwrap();
    let out = Command::new("rsvg-convert")
        .args(["--width", "600", "--background-color", "white", "-o"])
        .arg(&png)
        .arg(&svg_path)
        .output()
        .unwrap();
    assert!(out.status.success(), "rsvg-convert: {out:?}");
    let out = Command::new("zbarimg")
        .args(["--raw", "-q"])
        .arg(&png)
        .output()
        .unwrap();
    assert!(out.status.success(), "zbarimg found no code: {out:?}");
    let text = String::from_utf8(out.stdout).expect("UTF-8 from zbarimg");
    text.strip_suffix('\n').unwrap_or(&text).to_string()
}

/// Everything a guest's live connection receives in its first moments: welcome, snapshots.
async fn live_messages(s: &Server) -> String {
    let token = s.guest("Mia");
    let mut phone = Phone::connect(&s.addr, &token, &["now_playing", "queue", "room", "me"]).await;
    let mut seen = phone.welcome.to_string();
    let until = Instant::now() + Duration::from_secs(2);
    while let Ok(v) = tokio::time::timeout(
        until.saturating_duration_since(Instant::now()),
        phone.recv(),
    )
    .await
    {
        seen += &v.to_string();
    }
    seen
}

#[tokio::test(flavor = "multi_thread")]
async fn wifi_qr_codes_read_back_escaped_and_the_password_is_nowhere_else() {
    let dir = common::tempdir();
    let music = common::music(dir.path(), 2, 5.0);
    // Every character the format escapes, a space and non-ASCII, in both fields.
    let ssid = r#"Café;Gar,den:\"1 ☕"#;
    let password = r#"Zebra;42,pw:\"ü x"#;
    let s = Server::start(
        &dir.path().join("a.db"),
        &music,
        &[
            "--wifi-ssid",
            ssid,
            "--wifi-password",
            password,
            "--log",
            "debug",
        ],
    );
    let qr = get(&s, "/api/wifi-qr.svg");
    assert_eq!(qr.status, 200, "{qr:?}");
    assert_eq!(qr.header("content-type"), Some("image/svg+xml"));
    assert_eq!(qr.header("cache-control"), Some("no-store"));
    assert_eq!(
        decode_qr(&qr.body, dir.path()),
        r#"WIFI:T:WPA;S:Café\;Gar\,den\:\\\"1 ☕;P:Zebra\;42\,pw\:\\\"ü x;;"#
    );

    let join = get(&s, "/api/join");
    assert_eq!(join.status, 200);
    assert_eq!(
        join.json()["wifi"],
        json!({"ssid": ssid, "qr": "/api/wifi-qr.svg"})
    );
    // The password, as it is and as JSON would spell it, in no JSON answer, no live message
    // and no log line.
    let spelled = [
        password.to_string(),
        serde_json::to_string(password)
            .unwrap()
            .trim_matches('"')
            .to_string(),
        "Zebra".to_string(),
    ];
    let mut seen = vec![
        ("/api/join", join.text()),
        ("/healthz", get(&s, "/healthz").text()),
        ("/api/state", get(&s, "/api/state").text()),
        ("the live connection", live_messages(&s).await),
    ];
    seen.push(("the log", s.log.lock().unwrap().clone()));
    for (what, text) in &seen {
        assert!(text.len() > 10, "{what}: {text}");
        for p in &spelled {
            assert!(
                !text.contains(p.as_str()),
                "{what} shows the password: {text}"
            );
        }
    }
    // --help shows no secret a JUKEBOX_* variable holds.
    let help = Command::new(common::bin())
        .arg("--help")
        .env("JUKEBOX_WIFI_SSID", ssid)
        .env("JUKEBOX_WIFI_PASSWORD", password)
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(
        help.contains("--wifi-password") && help.contains(ssid),
        "{help}"
    );
    assert!(!help.contains("Zebra"), "{help}");
    s.stop();

    // An open network: T:nopass and no P.
    let s = Server::start(
        &dir.path().join("b.db"),
        &music,
        &["--wifi-ssid", "Open garden"],
    );
    let qr = get(&s, "/api/wifi-qr.svg");
    assert_eq!(qr.status, 200, "{qr:?}");
    assert_eq!(
        decode_qr(&qr.body, dir.path()),
        "WIFI:T:nopass;S:Open garden;;"
    );
    s.stop();

    // No Wi-Fi: no QR code, and `wifi` is null.
    let s = Server::start(&dir.path().join("c.db"), &music, &[]);
    let qr = get(&s, "/api/wifi-qr.svg");
    assert_eq!(
        (qr.status, qr.json()["code"].clone()),
        (404, json!("not_found"))
    );
    assert_eq!(get(&s, "/api/join").json()["wifi"], Value::Null);
    s.stop();
}

/// The connectivity checks of Android, Apple, Windows and Firefox, and any other foreign host
/// and path.
const PROBES: &[(&str, &str)] = &[
    ("connectivitycheck.gstatic.com", "/generate_204"),
    ("clients3.google.com", "/generate_204"),
    ("www.google.com", "/gen_204"),
    ("captive.apple.com", "/hotspot-detect.html"),
    ("www.apple.com", "/library/test/success.html"),
    ("www.msftconnecttest.com", "/connecttest.txt"),
    ("www.msftconnecttest.com", "/redirect"),
    ("www.msftncsi.com", "/ncsi.txt"),
    ("detectportal.firefox.com", "/canonical.html"),
    ("detectportal.firefox.com", "/success.txt"),
    ("anything.example:8080", "/some/where?x=1"),
];

#[test]
fn the_captive_portal_redirects_foreign_hosts_and_never_the_jukeboxs_own() {
    let dir = common::tempdir();
    let music = common::music(dir.path(), 2, 5.0);
    let on = Server::start(&dir.path().join("on.db"), &music, &["--captive-portal"]);
    let off = Server::start(&dir.path().join("off.db"), &music, &[]);
    // The address this connection reached, which is also the QR code's.
    let guest_page = format!("http://{}/", on.addr);
    assert_eq!(get(&on, "/api/join").json()["qr_url"], json!(guest_page));

    let long_host = format!("{}.example", "a".repeat(4000));
    let mut foreign: Vec<(&str, &str, &str)> =
        PROBES.iter().map(|(h, p)| ("GET", *h, *p)).collect();
    foreign.push(("POST", "anything.example", "/api/guest"));
    foreign.push(("GET", &long_host, "/"));
    for &(method, host, path) in &foreign {
        let r = request(&on.addr, method, path, host);
        assert!(matches!(r.status, 302 | 307), "{host}{path}: {r:?}");
        assert_eq!(r.header("location"), Some(guest_page.as_str()), "{r:?}");
        assert_eq!(r.header("cache-control"), Some("no-store"), "{r:?}");
        assert_eq!(r.header("set-cookie"), None, "{r:?}");
        assert!(r.body.is_empty(), "no content: {r:?}");
        assert!(!format!("{r:?}").contains("token"), "{r:?}");

        // Without the captive portal, what the Host check always answered: 421.
        let r = request(&off.addr, method, path, host);
        assert_eq!(r.status, 421, "{host}{path}: {r:?}");
        assert_eq!(r.json()["code"], "misdirected");
        assert_eq!(r.header("location"), None);
    }

    // The redirect's target is the guest page.
    let page = request(&on.addr, "GET", "/", &on.addr);
    assert_eq!(page.status, 200);
    assert!(page.text().to_lowercase().contains("<!doctype html>"));

    // The jukebox's own names are never redirected: the real page, health, or a 404.
    let port = on.addr.rsplit(':').next().unwrap();
    for host in [
        "localhost".to_string(),
        format!("localhost:{port}"),
        on.addr.clone(),
        "jukebox.local".to_string(),
        format!("JUKEBOX.local:{port}"),
    ] {
        for s in [&on, &off] {
            let probe = request(&s.addr, "GET", "/generate_204", &host);
            assert_eq!(probe.status, 404, "{host}: {probe:?}");
            assert_eq!(probe.json()["code"], "not_found");
            let page = request(&s.addr, "GET", "/hotspot-detect.html", &host);
            assert_eq!(page.status, 404, "{host}: {page:?}");
            let page = request(&s.addr, "GET", "/", &host);
            assert_eq!(page.status, 200, "{host}: {page:?}");
            assert!(page.text().to_lowercase().contains("<!doctype html>"));
            let health = request(&s.addr, "GET", "/healthz", &host);
            assert_eq!(
                (health.status, health.json()["status"].clone()),
                (200, json!("ok"))
            );
        }
    }
    on.stop();
    off.stop();
}

static NS: AtomicU32 = AtomicU32::new(0);

fn sh(args: &[&str]) {
    let out = Command::new(args[0]).args(&args[1..]).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A network namespace of its own (unique per run and test), with loopback up; removed on
/// drop with whatever runs in it.
struct Netns {
    name: String,
    children: Vec<Child>,
}

impl Netns {
    /// Gives the interface `dev` of the namespace the address `cidr`.
    fn add_address(&self, cidr: &str, dev: &str) {
        sh(&["ip", "-n", &self.name, "addr", "add", cidr, "dev", dev]);
    }

    fn new() -> Netns {
        let uid = Command::new("id").arg("-u").output().unwrap();
        assert_eq!(
            String::from_utf8_lossy(&uid.stdout).trim(),
            "0",
            "this test makes a network namespace and needs root"
        );
        let name = format!(
            "jbgarden{}x{}",
            std::process::id(),
            NS.fetch_add(1, Ordering::Relaxed)
        );
        sh(&["ip", "netns", "add", &name]);
        let ns = Netns {
            name,
            children: Vec::new(),
        };
        sh(&["ip", "-n", &ns.name, "link", "set", "lo", "up"]);
        ns
    }

    fn cmd(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name, program]);
        c
    }

    fn spawn(&mut self, mut c: Command) {
        self.children.push(c.spawn().unwrap());
    }

    /// Waits (bounded) until `f` says yes.
    fn eventually<T>(&self, what: &str, f: impl Fn() -> Option<T>) -> T {
        let t = Instant::now();
        loop {
            if let Some(v) = f() {
                return v;
            }
            assert!(t.elapsed() < Duration::from_secs(20), "{what} within 20 s");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

#[test]
fn the_hotspot_dns_snippet_answers_every_name_with_the_pi() {
    tool("dnsmasq");
    tool("dig");
    let snippet = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/packaging/dnsmasq-hotspot.conf"
    );
    let check = Command::new("dnsmasq")
        .arg("--test")
        .arg(format!("--conf-file={snippet}"))
        .output()
        .unwrap();
    assert!(check.status.success(), "{check:?}");
    let mut ns = Netns::new();
    // The hotspot's address, where NetworkManager's dnsmasq listens; on loopback, so nothing
    // leaves the namespace.
    ns.add_address("10.42.0.1/24", "lo");
    let mut dnsmasq = ns.cmd("dnsmasq");
    dnsmasq
        .arg("--no-daemon")
        // The snippet alone: none of NetworkManager's options are here.
        .arg(format!("--conf-file={snippet}"))
        .args(["--listen-address=10.42.0.1", "--bind-interfaces"])
        // Nothing of this machine's own: no /etc/hosts, no pid file.
        .args(["--no-hosts", "--pid-file"])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    ns.spawn(dnsmasq);
    let ask = |name: &str| -> Option<String> {
        let out = ns
            .cmd("dig")
            .args(["+short", "+time=1", "+tries=1", "@10.42.0.1", name, "A"])
            .output()
            .ok()?;
        let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
        (out.status.success() && !text.is_empty() && !text.starts_with(";;")).then_some(text)
    };
    ns.eventually("dnsmasq answers", || ask("connectivitycheck.gstatic.com"));
    for name in [
        "connectivitycheck.gstatic.com",
        "captive.apple.com",
        "www.msftconnecttest.com",
        "detectportal.firefox.com",
        "anything.example",
        "a.b.c.deep.example.org",
        "jukebox",
    ] {
        assert_eq!(ask(name).as_deref(), Some("10.42.0.1"), "{name}");
    }
}

/// The jukebox in a namespace with one LAN address (10.77.0.1 on a veth pair), on
/// 0.0.0.0:8080, and `/api/join` and the QR code as a phone there would get them.
fn join_in_netns(mdns: bool) -> (Value, String) {
    let mut ns = Netns::new();
    let tag = ns.name.trim_start_matches("jbgarden").to_string();
    let (a, b) = (format!("jbga{tag}"), format!("jbgb{tag}"));
    sh(&[
        "ip", "-n", &ns.name, "link", "add", &a, "type", "veth", "peer", "name", &b,
    ]);
    ns.add_address("10.77.0.1/24", &a);
    sh(&["ip", "-n", &ns.name, "link", "set", &a, "up"]);
    sh(&["ip", "-n", &ns.name, "link", "set", &b, "up"]);
    let dir = common::tempdir();
    let music = dir.path().join("music");
    std::fs::create_dir_all(&music).unwrap();
    let mut jukebox = ns.cmd(common::bin());
    jukebox
        .arg("--music")
        .arg(&music)
        .arg("--db")
        .arg(dir.path().join("j.db"))
        .args(["--listen", "0.0.0.0:8080", "--output", "null", "--no-mpd"])
        .args(if mdns { &[][..] } else { &["--no-mdns"][..] })
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    ns.spawn(jukebox);
    let fetch = |path: &str| -> Option<Vec<u8>> {
        let out = ns
            .cmd("python3")
            .args([
                "-c",
                "import sys, urllib.request; \
                 sys.stdout.buffer.write(urllib.request.urlopen(sys.argv[1], timeout=5).read())",
                &format!("http://10.77.0.1:8080{path}"),
            ])
            .output()
            .ok()?;
        out.status.success().then_some(out.stdout)
    };
    let join: Value = ns.eventually("/api/join answers", || {
        let j: Value = serde_json::from_slice(&fetch("/api/join")?).ok()?;
        // mDNS names itself once its daemon is up.
        (!mdns || !j["host"].is_null()).then_some(j)
    });
    let svg = fetch("/api/qr.svg").expect("the QR code");
    (join, decode_qr(&svg, dir.path()))
}

#[test]
fn the_join_address_is_the_lan_address_without_mdns_and_the_name_only_with_it() {
    let (join, qr) = join_in_netns(false);
    assert_eq!(join["host"], Value::Null, "{join}");
    assert_eq!(join["url"], "http://10.77.0.1:8080/", "{join}");
    assert_eq!(join["qr_url"], "http://10.77.0.1:8080/", "{join}");
    assert_eq!(
        join["addresses"],
        json!(["http://10.77.0.1:8080/"]),
        "{join}"
    );
    assert!(!join.to_string().contains(".local"), "{join}");
    assert_eq!(qr, "http://10.77.0.1:8080/");

    // With mDNS the name is shown; the QR code keeps the address every phone can open.
    let (join, qr) = join_in_netns(true);
    assert_eq!(join["host"], "jukebox.local", "{join}");
    assert_eq!(join["url"], "http://jukebox.local:8080/", "{join}");
    assert_eq!(qr, "http://10.77.0.1:8080/");
}
