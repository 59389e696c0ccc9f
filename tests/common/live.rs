//! The real binary as a server on 127.0.0.1, and phones talking to it: websocket clients
//! that check the protocol's sequencing rules on everything they receive.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub const PIN: &str = "43218765";

/// How long a test waits for something the server is about to do.
pub const WAIT: Duration = Duration::from_secs(20);

pub struct Server {
    pub child: Child,
    pub addr: String,
    pub log: Arc<Mutex<String>>,
    pub db: PathBuf,
    pub music: PathBuf,
}

/// The per-address limits raised, for a test whose many phones all come from 127.0.0.1 (the
/// limits are for a LAN, where each phone has an address of its own).
pub const ONE_ADDRESS: [&str; 8] = [
    "--guest-rate",
    "100000",
    "--guest-rate-total",
    "1000000",
    "--guests-per-address",
    "100000",
    "--connections-per-address",
    "16384",
];

impl Server {
    /// Starts the binary with a null output and waits (bounded) for "listening on".
    pub fn start(db: &Path, music: &Path, extra: &[&str]) -> Server {
        Self::start_with_pin(db, music, Some(PIN), extra)
    }

    /// The same with this `--host-pin`, or none (the jukebox generates one).
    pub fn start_with_pin(db: &Path, music: &Path, pin: Option<&str>, extra: &[&str]) -> Server {
        Self::start_with(db, music, "null", pin, extra)
    }

    /// The same with this audio `--output` and `--host-pin` (or none).
    pub fn start_with(
        db: &Path,
        music: &Path,
        output: &str,
        pin: Option<&str>,
        extra: &[&str],
    ) -> Server {
        Self::spawn(Self::command(db, music, output, pin, extra), db, music)
    }

    /// The command [`Server::start_with`] runs, for a test that sets its environment too.
    pub fn command(
        db: &Path,
        music: &Path,
        output: &str,
        pin: Option<&str>,
        extra: &[&str],
    ) -> Command {
        Self::command_on("127.0.0.1:0", db, music, output, pin, extra)
    }

    /// [`Server::command`] listening on `listen` (a test that restarts the jukebox where its
    /// clients know it).
    pub fn command_on(
        listen: &str,
        db: &Path,
        music: &Path,
        output: &str,
        pin: Option<&str>,
        extra: &[&str],
    ) -> Command {
        let mut cmd = Command::new(super::bin());
        cmd.arg("--music")
            .arg(music)
            .arg("--db")
            .arg(db)
            .args(["--listen", listen, "--output", output, "--no-mdns"])
            .args(pin.map(|p| ["--host-pin", p]).into_iter().flatten())
            .args(extra);
        // MPD clients on 0.0.0.0:6600 by default: a test that wants them says where.
        if !extra.contains(&"--mpd-listen") {
            cmd.arg("--no-mpd");
        }
        cmd
    }

    /// Starts `cmd` (from [`Server::command`]) and waits (bounded) for "listening on".
    pub fn spawn(mut cmd: Command, db: &Path, music: &Path) -> Server {
        let mut child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the jukebox starts");
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let log2 = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(rest) = line.split("listening on http://").nth(1) {
                    let _ = tx.send(rest.trim().to_string());
                }
                log2.lock().unwrap().push_str(&line);
                log2.lock().unwrap().push('\n');
            }
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("no 'listening on' line: {}", log.lock().unwrap()));
        Server {
            child,
            addr,
            log,
            db: db.to_owned(),
            music: music.to_owned(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Stops it with SIGTERM and waits.
    pub fn stop(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let status = self.child.wait().unwrap();
        std::mem::forget(self);
        status
    }

    fn agent() -> ureq::Agent {
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(10)))
            .build()
            .new_agent()
    }

    /// POSTs JSON; returns (status, body).
    pub fn post(&self, path: &str, body: &Value, bearer: Option<&str>) -> (u16, Value) {
        let mut req = Self::agent()
            .post(self.url(path))
            .header("Content-Type", "application/json");
        if let Some(t) = bearer {
            req = req.header("Authorization", format!("Bearer {t}"));
        }
        let mut resp = req.send(body.to_string()).unwrap();
        let status = resp.status().as_u16();
        let text = resp.body_mut().read_to_string().unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    pub fn get(&self, path: &str) -> (u16, Value) {
        let mut resp = Self::agent().get(self.url(path)).call().unwrap();
        let status = resp.status().as_u16();
        let text = resp.body_mut().read_to_string().unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// Waits (bounded) until something plays, and returns `now_playing`.
    pub fn playing(&self) -> Value {
        self.wait_state("something to play", |s| {
            let np = &s["now_playing"];
            (!np.is_null()).then(|| np.clone())
        })
    }

    /// Waits (bounded) until `GET /api/state` satisfies `check`, and returns what it gave.
    pub fn wait_state<T>(&self, what: &str, check: impl Fn(&Value) -> Option<T>) -> T {
        self.wait_get("/api/state", what, check)
    }

    /// Waits (bounded) until `GET /healthz` answers to `pred`, and returns that answer.
    pub fn wait_health(&self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        self.wait_get("/healthz", what, |h| pred(h).then(|| h.clone()))
    }

    /// Waits (bounded) until the guests with a socket open number `n` (`/healthz`
    /// `phones_connected`). A socket that closed has, before its guest stops counting, had
    /// its session told of the detach (ahead of any later resume) and its per-guest slot
    /// given back: so this is how a test knows the server has seen a phone go.
    pub fn wait_connected(&self, n: u64) -> Value {
        self.wait_health(&format!("{n} guests connected"), |h| {
            h["phones_connected"] == n
        })
    }

    /// Waits (bounded) until `GET path` answers to `check`, and returns what it returned.
    pub fn wait_get<T>(&self, path: &str, what: &str, check: impl Fn(&Value) -> Option<T>) -> T {
        super::wait::wait_for_blocking(WAIT, what, || check(&self.get(path).1))
    }

    /// POSTs `body` as it is (bad JSON, or nothing); returns (status, the answer as JSON).
    pub fn post_text(&self, path: &str, body: &str) -> (u16, Value) {
        let mut resp = Self::agent()
            .post(self.url(path))
            .header("Content-Type", "application/json")
            .send(body)
            .unwrap();
        let status = resp.status().as_u16();
        let text = resp.body_mut().read_to_string().unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// The host's message to every phone (`POST /api/host/message`).
    pub fn announce(&self, host_token: &str, text: &str) {
        let (st, v) = self.post(
            "/api/host/message",
            &json!({"text": text}),
            Some(host_token),
        );
        assert_eq!(st, 200, "{v}");
    }

    /// The id of a track other than the one in `now_playing`, to request.
    pub fn other_track(&self, now_playing: &Value) -> Value {
        let (_, res) = self.get("/api/search?q=song&limit=10");
        res["results"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["id"] != now_playing["track"]["id"])
            .unwrap_or_else(|| panic!("no track besides the playing one: {res}"))["id"]
            .clone()
    }

    pub fn guest(&self, name: &str) -> String {
        let (s, v) = self.post("/api/guest", &json!({"name": name}), None);
        assert_eq!(s, 201, "{v}");
        v["token"].as_str().unwrap().to_string()
    }

    pub fn host(&self) -> String {
        let (s, v) = self.post("/api/host/login", &json!({"pin": PIN}), None);
        assert_eq!(s, 200, "{v}");
        v["token"].as_str().unwrap().to_string()
    }

    /// A screen (the TV), paired the way the TV page does it: a code from
    /// `POST /api/screen/pair`, typed by the host (`host_token`), then claimed.
    pub fn screen(&self, host_token: &str) -> String {
        let (st, pair) = self.post("/api/screen/pair", &json!({}), None);
        assert_eq!(st, 201, "{pair}");
        let (st, v) = self.post(
            "/api/host/pair_screen",
            &json!({"code": pair["code"]}),
            Some(host_token),
        );
        assert_eq!(st, 200, "{v}");
        let (st, v) = self.post("/api/screen/claim", &json!({"claim": pair["claim"]}), None);
        assert_eq!(st, 200, "{v}");
        assert_eq!(v["role"], "screen");
        v["token"].as_str().unwrap().to_string()
    }

    /// POSTs JSON from the source address `from` (127.0.0.X stands in for a phone of its own
    /// on the LAN); returns (status, body).
    pub async fn post_from(&self, from: &str, path: &str, body: &Value) -> (u16, Value) {
        let mut tcp = connect_from(&self.addr, from).await;
        let body = body.to_string();
        let req = format!(
            "POST {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            self.addr,
            body.len()
        );
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        tcp.write_all(req.as_bytes()).await.unwrap();
        let mut resp = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut resp))
            .await
            .expect("an answer within 10 s")
            .unwrap();
        let text = String::from_utf8_lossy(&resp);
        let status = text
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let body = text.split("\r\n\r\n").nth(1).unwrap_or("");
        // A chunked body: the JSON object is between the first '{' and the last '}'.
        let json = match (body.find('{'), body.rfind('}')) {
            (Some(a), Some(b)) if b > a => &body[a..=b],
            _ => "null",
        };
        (status, serde_json::from_str(json).unwrap_or(Value::Null))
    }

    /// A guest token made from the source address `from`.
    pub async fn guest_from(&self, from: &str, name: &str) -> String {
        let (s, v) = self
            .post_from(from, "/api/guest", &json!({"name": name}))
            .await;
        assert_eq!(s, 201, "{v}");
        v["token"].as_str().unwrap().to_string()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // A failing test shows what the jukebox said.
        if std::thread::panicking() {
            eprintln!("--- the jukebox's log ---\n{}", self.log.lock().unwrap());
        }
    }
}

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A websocket client that checks every sequenced message it gets: `seq` 1, 2, 3 … with no
/// gaps (unless it reconnects).
pub struct Phone {
    pub ws: Ws,
    pub session: String,
    pub last_seq: u64,
    pub rid: u64,
    pub welcome: Value,
}

/// A websocket whose first frame, `hello`, has been sent; nothing is read yet.
pub async fn send_hello(addr: &str, hello: Value) -> Ws {
    let mut ws = raw(addr, "/ws?v=1", None).await.expect("upgrade");
    ws.send(Message::text(hello.to_string())).await.unwrap();
    ws
}

/// A TCP connection to `addr` from the local address `from` (e.g. 127.0.0.7).
pub async fn connect_from(addr: &str, from: &str) -> TcpStream {
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.bind(format!("{from}:0").parse().unwrap()).unwrap();
    tokio::time::timeout(Duration::from_secs(10), sock.connect(addr.parse().unwrap()))
        .await
        .expect("connects within 10 s")
        .unwrap()
}

/// A websocket upgraded over a connection from `from`.
pub async fn raw_from(addr: &str, from: &str) -> Result<Ws, tokio_tungstenite::tungstenite::Error> {
    let tcp = connect_from(addr, from).await;
    let req = format!("ws://{addr}/ws?v=1").into_client_request().unwrap();
    let (ws, _) = tokio_tungstenite::client_async(req, MaybeTlsStream::Plain(tcp)).await?;
    Ok(ws)
}

pub async fn raw(
    addr: &str,
    path: &str,
    origin: Option<&str>,
) -> Result<Ws, tokio_tungstenite::tungstenite::Error> {
    let mut req = format!("ws://{addr}{path}").into_client_request().unwrap();
    if let Some(o) = origin {
        req.headers_mut().insert("Origin", o.parse().unwrap());
    }
    let (ws, _) = tokio_tungstenite::connect_async(req).await?;
    Ok(ws)
}

impl Phone {
    pub async fn connect(addr: &str, token: &str, topics: &[&str]) -> Phone {
        Self::hello(
            addr,
            json!({"cmd": "hello", "v": 1, "token": token, "topics": topics}),
        )
        .await
    }

    pub async fn resume(addr: &str, token: &str, session: &str, last_seq: u64) -> Phone {
        Self::hello(
            addr,
            json!({"cmd": "hello", "v": 1, "token": token, "session": session, "last_seq": last_seq}),
        )
        .await
    }

    /// A phone whose connection comes from the address `from` (127.0.0.X).
    pub async fn connect_from(addr: &str, from: &str, token: &str, topics: &[&str]) -> Phone {
        let ws = raw_from(addr, from).await.expect("upgrade");
        Self::hello_on(
            ws,
            json!({"cmd": "hello", "v": 1, "token": token, "topics": topics}),
        )
        .await
    }

    /// Says hello from `from` and returns the first frame the server answers with (a
    /// `welcome`, or a `bye`).
    pub async fn try_from(addr: &str, from: &str, token: &str) -> (Ws, Value) {
        let mut ws = raw_from(addr, from).await.expect("upgrade");
        ws.send(Message::text(
            json!({"cmd": "hello", "v": 1, "token": token}).to_string(),
        ))
        .await
        .unwrap();
        let first = tokio::time::timeout(Duration::from_secs(10), next_json(&mut ws))
            .await
            .expect("an answer to hello within 10 s")
            .expect("a frame");
        (ws, first)
    }

    async fn hello(addr: &str, hello: Value) -> Phone {
        let ws = raw(addr, "/ws?v=1", None).await.expect("upgrade");
        Self::hello_on(ws, hello).await
    }

    async fn hello_on(mut ws: Ws, hello: Value) -> Phone {
        ws.send(Message::text(hello.to_string())).await.unwrap();
        let welcome = next_json(&mut ws).await.expect("welcome");
        assert_eq!(welcome["cmd"], "welcome", "{welcome}");
        let resumed = welcome["resumed"].as_bool().unwrap();
        let last_seq = if resumed {
            hello["last_seq"].as_u64().unwrap_or(0)
        } else {
            0
        };
        Phone {
            session: welcome["session"].as_str().unwrap().to_string(),
            last_seq,
            rid: welcome["last_rid"].as_u64().unwrap_or(0),
            ws,
            welcome,
        }
    }

    /// A socket that has not been welcomed (and may never be): to read how it is closed.
    pub fn unwelcomed(ws: Ws) -> Phone {
        Phone {
            ws,
            session: String::new(),
            last_seq: 0,
            rid: 0,
            welcome: Value::Null,
        }
    }

    pub async fn send(&mut self, v: Value) {
        self.ws.send(Message::text(v.to_string())).await.unwrap();
    }

    /// Sends a request with the next rid; returns the rid.
    pub async fn request(&mut self, mut v: Value) -> u64 {
        self.rid += 1;
        v["rid"] = json!(self.rid);
        self.send(v).await;
        self.rid
    }

    /// The next message (10 s at most), checking sequencing.
    pub async fn recv(&mut self) -> Value {
        self.recv_within(Duration::from_secs(10)).await
    }

    /// The next message within `limit`, checking sequencing: for what waits on background
    /// work that a loaded machine may starve for a while (the loudness pass runs SCHED_IDLE).
    pub async fn recv_within(&mut self, limit: Duration) -> Value {
        let v = tokio::time::timeout(limit, next_json(&mut self.ws))
            .await
            .unwrap_or_else(|_| panic!("a message within {limit:?}"))
            .expect("the socket is open");
        if let Some(seq) = v["seq"].as_u64() {
            assert_eq!(seq, self.last_seq + 1, "seq must have no gaps: {v}");
            self.last_seq = seq;
        }
        v
    }

    /// Messages until one matches; returns all of them, the match last.
    pub async fn until(&mut self, pred: impl Fn(&Value) -> bool) -> Vec<Value> {
        let mut seen = Vec::new();
        for _ in 0..500 {
            let v = self.recv().await;
            let hit = pred(&v);
            seen.push(v);
            if hit {
                return seen;
            }
        }
        panic!("no matching message in 500: {seen:?}");
    }

    /// The reply to `rid`, with everything before it.
    pub async fn reply(&mut self, rid: u64) -> (Value, Vec<Value>) {
        let mut seen = self.until(|v| v["cmd"] == "reply" && v["rid"] == rid).await;
        let r = seen.pop().unwrap();
        (r, seen)
    }

    /// Sends a request, and asserts that its reply is ok; returns the reply, with everything
    /// before it.
    pub async fn ok(&mut self, v: Value) -> (Value, Vec<Value>) {
        let what = v.to_string();
        let rid = self.request(v).await;
        let (reply, before) = self.reply(rid).await;
        assert_eq!(reply["ok"], true, "{what}: {reply}");
        (reply, before)
    }

    /// Sends a request; returns its reply's error code.
    pub async fn refused(&mut self, v: Value) -> Value {
        let rid = self.request(v).await;
        self.reply(rid).await.0["error"]["code"].clone()
    }

    /// Waits for the close: returns the `bye` code and the close frame's code.
    pub async fn closed(&mut self) -> (Option<u64>, Option<u16>) {
        let mut bye = None;
        loop {
            match tokio::time::timeout(Duration::from_secs(70), self.ws.next()).await {
                Ok(Some(Ok(Message::Text(t)))) => {
                    let v: Value = serde_json::from_str(&t).unwrap();
                    if v["cmd"] == "bye" {
                        bye = v["code"].as_u64();
                    }
                }
                Ok(Some(Ok(Message::Close(f)))) => return (bye, f.map(|f| u16::from(f.code))),
                Ok(Some(Ok(_))) => {}
                Ok(Some(Err(_))) | Ok(None) => return (bye, None),
                Err(_) => panic!("the socket did not close"),
            }
        }
    }
}

pub async fn next_json(ws: &mut Ws) -> Option<Value> {
    loop {
        match ws.next().await? {
            Ok(Message::Text(t)) => {
                return Some(serde_json::from_str(&t).expect("JSON from the server"))
            }
            Ok(Message::Close(_)) | Err(_) => return None,
            Ok(_) => {}
        }
    }
}
