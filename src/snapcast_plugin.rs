//! `jukebox snapcast-plugin`: snapserver's stream control script (`controlscript=`).
//!
//! snapserver starts it and speaks `Plugin.Stream.*` JSON-RPC with it, a message per line, on
//! its stdin and stdout. It is a bridge to the jukebox's own public API and nothing more: the
//! live websocket for what plays (`now_playing`) and whether the host lets Snapcast's apps
//! control it (`room.snapcast_control`), and the host commands `play`, `pause` and `skip` on the
//! same socket, as a host logged in with the PIN. snapserver never restarts a plugin that
//! exits, so it lives as long as its stdin: when the jukebox goes away it says the stream is
//! stopped, and connects again by itself.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message;

use crate::config::SnapcastPluginArgs;

/// The longest wait between two tries to reach the jukebox.
const RETRY_MAX: Duration = Duration::from_secs(5);
/// How long a control command waits for the jukebox's reply.
const REPLY_WAIT: Duration = Duration::from_secs(5);
/// JSON-RPC's own error codes.
const PARSE_ERROR: i64 = -32700;
const METHOD_NOT_FOUND: i64 = -32601;
const INVALID_PARAMS: i64 = -32602;
/// The plugin's: the host does not allow it, or the jukebox cannot be reached or refused.
const NOT_ALLOWED: i64 = -32000;
const JUKEBOX_ERROR: i64 = -32001;

/// What the plugin knows of the jukebox, for the properties it tells snapserver.
#[derive(Default)]
struct Known {
    connected: bool,
    /// A host login: without a PIN (or with a wrong one) the plugin shows what plays only.
    host: bool,
    now_playing: Value,
    control: bool,
    /// Where phones reach the jukebox (`/api/join`'s `url`), for the cover art's address.
    public_url: Option<String>,
}

impl Known {
    fn may_control(&self) -> bool {
        self.connected && self.host && self.control
    }

    /// `Plugin.Stream.Player.Properties` as snapserver's stream plugin API has them.
    fn properties(&self) -> Value {
        let np = &self.now_playing;
        let status = if !self.connected || np.is_null() {
            "stopped"
        } else if np["paused"] == true {
            "paused"
        } else {
            "playing"
        };
        let can = self.may_control();
        let mut props = json!({
            "playbackStatus": status,
            "loopStatus": "none",
            "shuffle": false,
            "volume": np["volume"].as_u64().unwrap_or(100),
            "mute": false,
            "rate": 1.0,
            "position": position_s(np),
            "canGoNext": can,
            "canGoPrevious": false,
            "canPlay": can,
            "canPause": can,
            "canSeek": false,
            "canControl": can,
        });
        let t = &np["track"];
        let metadata = if t.is_object() {
            let mut m = json!({
                "trackId": t["id"],
                "title": t["title"],
                "duration": t["duration_ms"].as_f64().unwrap_or(0.0) / 1000.0,
            });
            // Untagged files have no artist or album: left out rather than shown empty.
            if let Some(a) = t["artist"].as_str().filter(|a| !a.is_empty()) {
                m["artist"] = json!([a]);
            }
            if let Some(a) = t["album"].as_str().filter(|a| !a.is_empty()) {
                m["album"] = json!(a);
            }
            if let (Some(art), Some(base)) = (t["art"].as_str(), &self.public_url) {
                m["artUrl"] = json!(format!("{}{}", base.trim_end_matches('/'), art));
            }
            m
        } else {
            json!({})
        };
        props["metadata"] = metadata;
        props
    }
}

/// Where the play is now, in seconds: `position_ms` was true at `server_time_ms`.
fn position_s(np: &Value) -> f64 {
    if np.is_null() {
        return 0.0;
    }
    let pos = np["position_ms"].as_f64().unwrap_or(0.0);
    if np["paused"] == true {
        return pos / 1000.0;
    }
    let at = np["server_time_ms"].as_f64().unwrap_or(0.0);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64() * 1000.0)
        .unwrap_or(at);
    let duration = np["track"]["duration_ms"].as_f64().unwrap_or(f64::MAX);
    (pos + (now - at).max(0.0)).min(duration) / 1000.0
}

/// A host command for the jukebox, and where its outcome goes.
type Order = (&'static str, oneshot::Sender<Result<(), String>>);

pub fn run(args: SnapcastPluginArgs) -> std::process::ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("jukebox snapcast-plugin: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(bridge(args)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("jukebox snapcast-plugin: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn bridge(args: SnapcastPluginArgs) -> Result<(), String> {
    let base = args.jukebox.trim_end_matches('/').to_string();
    let ws_url = match base.strip_prefix("http://") {
        Some(rest) => format!("ws://{rest}/ws?v=1"),
        None => return Err(format!("--jukebox {base}: an http:// address is needed")),
    };
    let (out, mut out_rx) = mpsc::unbounded_channel::<Value>();
    tokio::spawn(async move {
        let mut stdout = tokio::io::stdout();
        while let Some(v) = out_rx.recv().await {
            let line = format!("{v}\n");
            if stdout.write_all(line.as_bytes()).await.is_err() || stdout.flush().await.is_err() {
                break;
            }
        }
    });
    let known = Arc::new(Mutex::new(Known::default()));
    let (orders, orders_rx) = mpsc::channel::<Order>(8);
    tokio::spawn(jukebox_link(
        base,
        ws_url,
        args.pin,
        known.clone(),
        out.clone(),
        orders_rx,
    ));
    let _ = out.send(json!({"jsonrpc": "2.0", "method": "Plugin.Stream.Ready"}));
    // snapserver's requests, until it closes our stdin (then it is gone, and so are we).
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        if line.trim().is_empty() {
            continue;
        }
        let reply = answer(&line, &known, &orders).await;
        if let Some(r) = reply {
            let _ = out.send(r);
        }
    }
    Ok(())
}

/// The reply to one request from snapserver (`None` for a notification).
async fn answer(line: &str, known: &Mutex<Known>, orders: &mpsc::Sender<Order>) -> Option<Value> {
    let Ok(req) = serde_json::from_str::<Value>(line) else {
        return Some(error(Value::Null, PARSE_ERROR, "not JSON"));
    };
    let id = req.get("id").cloned()?;
    let method = req["method"].as_str().unwrap_or_default();
    let result = match method {
        "Plugin.Stream.Player.GetProperties" => Ok(lock(known).properties()),
        "Plugin.Stream.Player.Control" => control(&req["params"], known, orders).await,
        "Plugin.Stream.Player.SetProperty" => Err((
            NOT_ALLOWED,
            "the jukebox's loop, shuffle and volume are the host's, on the host page".into(),
        )),
        _ => Err((METHOD_NOT_FOUND, format!("Method not found: {method}"))),
    };
    Some(match result {
        Ok(r) => json!({"jsonrpc": "2.0", "id": id, "result": r}),
        Err((code, message)) => error(id, code, &message),
    })
}

async fn control(
    params: &Value,
    known: &Mutex<Known>,
    orders: &mpsc::Sender<Order>,
) -> Result<Value, (i64, String)> {
    let (allowed, paused, connected) = {
        let k = lock(known);
        (
            k.may_control(),
            k.now_playing["paused"] == true,
            k.connected,
        )
    };
    let cmd = match params["command"].as_str() {
        Some("play") => "play",
        Some("pause") => "pause",
        Some("playPause") if paused => "play",
        Some("playPause") => "pause",
        Some("next") => "skip",
        Some(other) => {
            return Err((
                INVALID_PARAMS,
                format!("{other}: the jukebox takes play, pause, playPause and next"),
            ))
        }
        None => return Err((INVALID_PARAMS, "no command".into())),
    };
    if !connected {
        return Err((JUKEBOX_ERROR, "the jukebox cannot be reached".into()));
    }
    if !allowed {
        return Err((
            NOT_ALLOWED,
            "the host does not let Snapcast control the jukebox (snapcast_control)".into(),
        ));
    }
    let (tx, rx) = oneshot::channel();
    if orders.send((cmd, tx)).await.is_err() {
        return Err((JUKEBOX_ERROR, "the jukebox cannot be reached".into()));
    }
    match tokio::time::timeout(REPLY_WAIT, rx).await {
        Ok(Ok(Ok(()))) => Ok(json!("ok")),
        Ok(Ok(Err(message))) => Err((JUKEBOX_ERROR, message)),
        _ => Err((JUKEBOX_ERROR, "the jukebox did not answer".into())),
    }
}

fn error(id: Value, code: i64, message: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}})
}

fn lock(known: &Mutex<Known>) -> std::sync::MutexGuard<'_, Known> {
    known.lock().unwrap_or_else(|e| e.into_inner())
}

/// Tells snapserver the properties as they are now.
fn tell(known: &Mutex<Known>, out: &mpsc::UnboundedSender<Value>) {
    let props = lock(known).properties();
    let _ = out.send(json!({
        "jsonrpc": "2.0",
        "method": "Plugin.Stream.Player.Properties",
        "params": props,
    }));
}

/// Stays connected to the jukebox, for as long as the plugin runs.
async fn jukebox_link(
    base: String,
    ws_url: String,
    pin: Option<String>,
    known: Arc<Mutex<Known>>,
    out: mpsc::UnboundedSender<Value>,
    mut orders: mpsc::Receiver<Order>,
) {
    let mut wait = Duration::from_secs(1);
    let mut said: Option<String> = None;
    loop {
        let outcome = session(&base, &ws_url, pin.as_deref(), &known, &out, &mut orders).await;
        let was_connected = std::mem::take(&mut lock(&known).connected);
        if was_connected {
            wait = Duration::from_secs(1);
            tell(&known, &out);
        }
        let why = match outcome {
            Ok(()) => "the jukebox closed the connection".to_string(),
            Err(e) => e,
        };
        // Said once while it lasts, not at every try.
        if said.as_ref() != Some(&why) {
            eprintln!("jukebox snapcast-plugin: {why}; trying again");
            said = Some(why);
        }
        // Orders that come meanwhile are answered at once.
        let sleep = tokio::time::sleep(wait);
        tokio::pin!(sleep);
        loop {
            tokio::select! {
                _ = &mut sleep => break,
                Some((_, tx)) = orders.recv() => {
                    let _ = tx.send(Err("the jukebox cannot be reached".into()));
                }
            }
        }
        wait = (wait * 2).min(RETRY_MAX);
    }
}

/// One connection to the jukebox: a token, the socket, and the updates until it ends.
async fn session(
    base: &str,
    ws_url: &str,
    pin: Option<&str>,
    known: &Mutex<Known>,
    out: &mpsc::UnboundedSender<Value>,
    orders: &mut mpsc::Receiver<Order>,
) -> Result<(), String> {
    let (token, host) = token(base, pin).await?;
    let public_url = http(base, "GET", "/api/join", None)
        .await
        .ok()
        .and_then(|(_, v)| v["url"].as_str().map(str::to_string));
    let (mut ws, _) = tokio_tungstenite::connect_async(ws_url)
        .await
        .map_err(|e| format!("cannot connect to {ws_url}: {e}"))?;
    let hello = json!({"cmd": "hello", "v": 1, "token": token, "topics": ["now_playing", "room"]});
    ws.send(Message::text(hello.to_string()))
        .await
        .map_err(|e| e.to_string())?;
    let mut pending: Vec<(u64, oneshot::Sender<Result<(), String>>)> = Vec::new();
    let mut rid = 0u64;
    loop {
        tokio::select! {
            msg = ws.next() => {
                let text = match msg {
                    None => return Ok(()),
                    Some(Err(e)) => return Err(format!("the connection to the jukebox broke: {e}")),
                    Some(Ok(Message::Text(t))) => t,
                    Some(Ok(Message::Close(_))) => return Ok(()),
                    Some(Ok(_)) => continue,
                };
                let Ok(v) = serde_json::from_str::<Value>(&text) else { continue };
                match v["cmd"].as_str() {
                    Some("welcome") => {
                        let mut k = lock(known);
                        k.connected = true;
                        k.host = host;
                        k.public_url = public_url.clone();
                        drop(k);
                        eprintln!(
                            "jukebox snapcast-plugin: connected to the jukebox at {base}{}",
                            if host { " as the host" } else { " (no host PIN: showing what plays only)" }
                        );
                        tell(known, out);
                    }
                    Some("update") => {
                        let changed = {
                            let mut k = lock(known);
                            match v["topic"].as_str() {
                                Some("now_playing") => {
                                    k.now_playing = v["data"].clone();
                                    true
                                }
                                Some("room") => {
                                    let c = v["data"]["snapcast_control"] == true;
                                    std::mem::replace(&mut k.control, c) != c
                                }
                                _ => false,
                            }
                        };
                        if changed {
                            tell(known, out);
                        }
                    }
                    Some("ping") => {
                        ws.send(Message::text(json!({"cmd": "pong"}).to_string()))
                            .await
                            .map_err(|e| e.to_string())?;
                    }
                    Some("reply") => {
                        let r = v["rid"].as_u64();
                        if let Some(i) = pending.iter().position(|(id, _)| Some(*id) == r) {
                            let (_, tx) = pending.swap_remove(i);
                            let outcome = if v["ok"] == true {
                                Ok(())
                            } else {
                                Err(v["error"]["message"].as_str().unwrap_or("refused").to_string())
                            };
                            let _ = tx.send(outcome);
                        }
                    }
                    Some("bye") => {
                        return Err(format!(
                            "the jukebox said goodbye: {}",
                            v["reason"].as_str().unwrap_or_default()
                        ))
                    }
                    _ => {}
                }
            }
            Some((cmd, tx)) = orders.recv() => {
                rid += 1;
                let msg = json!({"cmd": cmd, "rid": rid});
                if ws.send(Message::text(msg.to_string())).await.is_err() {
                    let _ = tx.send(Err("the jukebox cannot be reached".into()));
                    continue;
                }
                pending.push((rid, tx));
            }
        }
    }
}

/// A token to connect with: the host's with the PIN, else a guest's (what plays, no control).
async fn token(base: &str, pin: Option<&str>) -> Result<(String, bool), String> {
    if let Some(pin) = pin {
        let (status, v) = http(base, "POST", "/api/host/login", Some(json!({"pin": pin}))).await?;
        if let Some(t) = v["token"].as_str().filter(|_| status == 200) {
            return Ok((t.to_string(), true));
        }
        let why = v["error"]["message"].as_str().unwrap_or_default();
        if status == 401 || status == 403 {
            eprintln!("jukebox snapcast-plugin: the host PIN was refused ({why}); showing what plays only");
        } else {
            return Err(format!("the host login answered {status}: {why}"));
        }
    }
    let (status, v) = http(
        base,
        "POST",
        "/api/guest",
        Some(json!({"name": "Snapcast"})),
    )
    .await?;
    match v["token"].as_str() {
        Some(t) if status == 201 => Ok((t.to_string(), false)),
        _ => Err(format!(
            "a guest token was refused ({status}): {}",
            v["error"]["message"].as_str().unwrap_or_default()
        )),
    }
}

/// One HTTP request to the jukebox's API: (status, JSON body).
async fn http(
    base: &str,
    method: &'static str,
    path: &str,
    body: Option<Value>,
) -> Result<(u16, Value), String> {
    let url = format!("{base}{path}");
    tokio::task::spawn_blocking(move || {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(10)))
            .build()
            .new_agent();
        let resp = match (method, body) {
            ("POST", Some(b)) => agent
                .post(&url)
                .header("Content-Type", "application/json")
                .send(b.to_string()),
            _ => agent.get(&url).call(),
        };
        let mut resp = resp.map_err(|e| format!("cannot reach the jukebox at {url}: {e}"))?;
        let status = resp.status().as_u16();
        let text = resp
            .body_mut()
            .with_config()
            .limit(1 << 20)
            .read_to_string()
            .unwrap_or_default();
        Ok((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
    })
    .await
    .map_err(|e| e.to_string())?
}
