//! The live server: one axum router on one port for phones, the TV screen and scripts —
//! `GET /ws?v=1` (the live protocol), the JSON API under `/api`, and `/healthz`. It decodes,
//! validates, calls the hub and encodes; it decides no party rule.

pub mod http;
pub mod join;
pub mod mailbox;
pub mod session;
pub mod web;
pub mod ws;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::{ConnectInfo, Query, State, WebSocketUpgrade};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::serve::ListenerExt;
use axum::Router;

use crate::hub::Hub;
use crate::party::GuestId;
use crate::store::Store;
use session::{ServerInfo, SessionLimits, Sessions};
pub use ws::WsLimits;

/// Everything a request handler may reach.
pub struct AppState {
    pub hub: Hub,
    pub store: Store,
    pub sessions: Arc<Sessions>,
    pub host_pin: String,
    pub allowed_origins: Vec<String>,
    pub ws_limits: WsLimits,
    pub started: Instant,
    sockets: Mutex<HashMap<GuestId, usize>>,
    /// Set when the jukebox shuts down: every socket says bye (1001) and closes.
    pub closing: tokio::sync::watch::Sender<bool>,
    pub(crate) login_limiter: http::IpLimiter,
    /// Addresses refused host logins until then (too many wrong PINs).
    pub(crate) login_blocked: Mutex<HashMap<std::net::IpAddr, Instant>>,
    pub(crate) guest_limiter: http::IpLimiter,
    /// TVs asking for a pairing code, per address.
    pub(crate) pair_limiter: http::IpLimiter,
    /// The phone app from disk (`--web-dir`) instead of the embedded copy.
    pub web_dir: Option<std::path::PathBuf>,
    pub join: join::Join,
    /// Hours without music that separate two parties, for the export.
    pub export_gap_hours: u32,
}

/// A counted socket of one guest; uncounted on drop.
pub struct SocketSlot {
    state: Arc<AppState>,
    guest: GuestId,
}

impl Drop for SocketSlot {
    fn drop(&mut self) {
        let mut m = self.state.sockets.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = m.get_mut(&self.guest) {
            *n -= 1;
            if *n == 0 {
                m.remove(&self.guest);
            }
        }
    }
}

impl AppState {
    /// Takes one of the guest's socket slots, if any is left.
    pub fn socket_slot(self: &Arc<Self>, guest: GuestId, max: usize) -> Option<SocketSlot> {
        let mut m = self.sockets.lock().unwrap_or_else(|e| e.into_inner());
        let n = m.entry(guest).or_insert(0);
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(SocketSlot {
            state: self.clone(),
            guest,
        })
    }
}

/// What the server needs besides the hub and store.
pub struct ServerConfig {
    pub host_pin: String,
    pub guest_rate: u32,
    pub login_rate: u32,
    pub allowed_origins: Vec<String>,
    pub ws_limits: WsLimits,
    pub session_limits: SessionLimits,
    pub web_dir: Option<std::path::PathBuf>,
    /// The mDNS host name, e.g. `jukebox.local`.
    pub host_name: String,
    /// The address actually bound.
    pub listen: SocketAddr,
}

pub fn state(hub: Hub, store: Store, cfg: ServerConfig) -> Arc<AppState> {
    let epoch = format!("{:08x}", rand::random::<u32>());
    let sessions = Sessions::start(
        hub.clone(),
        ServerInfo {
            build: env!("CARGO_PKG_VERSION").to_string(),
            epoch,
            heartbeat_ms: cfg.ws_limits.ping_after.as_millis() as u64,
        },
        cfg.session_limits,
    );
    Arc::new(AppState {
        hub,
        store,
        sessions,
        host_pin: cfg.host_pin,
        allowed_origins: cfg.allowed_origins,
        ws_limits: cfg.ws_limits,
        started: Instant::now(),
        sockets: Mutex::new(HashMap::new()),
        closing: tokio::sync::watch::Sender::new(false),
        login_limiter: http::ip_limiter(cfg.login_rate, cfg.login_rate),
        login_blocked: Mutex::new(HashMap::new()),
        guest_limiter: http::ip_limiter(cfg.guest_rate, cfg.guest_rate),
        pair_limiter: http::ip_limiter(PAIR_PER_MINUTE, PAIR_PER_MINUTE),
        web_dir: cfg.web_dir,
        join: join::Join::new(cfg.host_name, cfg.listen),
        export_gap_hours: 6,
    })
}

pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/ws", get(ws_upgrade))
        .route("/healthz", get(http::healthz))
        .route("/api/guest", post(http::create_guest))
        .route("/api/host/login", post(http::host_login))
        .route("/api/screen/pair", post(http::screen_pair))
        .route("/api/screen/claim", post(http::screen_claim))
        .route("/api/host/{action}", post(http::host_action))
        .route("/api/state", get(http::api_state))
        .route("/api/search", get(http::api_search))
        .route("/api/art/{track_id}", get(http::art))
        .route("/api/host/export", get(http::export))
        .route("/api/join", get(join::join))
        .route("/api/qr.svg", get(join::qr))
        .fallback(web::fallback)
        .with_state(state)
}

/// The hub command a protocol command stands for; `None` for those the server answers itself
/// (`sub`, `unsub`, `search`). One mapping for the websocket and the HTTP host actions.
pub fn hub_command(
    cmd: crate::protocol::Cmd,
    actor: crate::hub::Actor,
) -> Option<crate::hub::Command> {
    use crate::hub::Command;
    use crate::protocol::Cmd;
    Some(match cmd {
        Cmd::Sub { .. } | Cmd::Unsub { .. } | Cmd::Search { .. } => return None,
        Cmd::Like { play_id, on } => Command::Like { actor, play_id, on },
        Cmd::VoteSkip { play_id } => Command::VoteSkip { actor, play_id },
        Cmd::Request { track_id } => Command::Request { actor, track_id },
        Cmd::Vote { entry_id, on } => Command::Vote {
            actor,
            entry_id,
            on,
        },
        Cmd::SetName { name } => Command::SetName { actor, name },
        Cmd::Play => Command::Play { actor },
        Cmd::Pause => Command::Pause { actor },
        Cmd::Skip { play_id } => Command::Skip { actor, play_id },
        Cmd::Seek { position_ms } => Command::Seek { actor, position_ms },
        Cmd::SetVolume { volume } => Command::SetVolume { actor, volume },
        Cmd::Remove { entry_id } => Command::Remove { actor, entry_id },
        Cmd::Move { entry_id, to } => Command::Move {
            actor,
            entry_id,
            to,
        },
        Cmd::Ban { guest_id, on } => Command::Ban {
            actor,
            guest: guest_id,
            on,
        },
        Cmd::Settings(patch) => Command::Settings { actor, patch },
        Cmd::Announce { text } => Command::Announce { actor, text },
        Cmd::Rescan => Command::Rescan { actor },
        Cmd::PairScreen { code } => Command::PairScreen { actor, code },
        Cmd::RemoveScreen { guest_id } => Command::RemoveScreen {
            actor,
            guest: guest_id,
        },
    })
}

/// Pairing codes one address may ask for in a minute (a TV asks for one every 10 minutes).
const PAIR_PER_MINUTE: u32 = 6;

/// The kernel send buffer of each connection.
const SEND_BUFFER: usize = 64 * 1024;

/// Serves until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: Arc<AppState>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let state_for_close = state.clone();
    let app = router(state).into_make_service_with_connect_info::<SocketAddr>();
    // Small frames are the whole workload: no delayed-ACK stalls.
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!("TCP_NODELAY: {e}");
        }
        // Bound what the kernel holds for one phone: thousands of phones on a Pi must not
        // pin megabytes each, and a phone that stops reading shows up as slow in seconds.
        if let Err(e) = socket2::SockRef::from(&*tcp).set_send_buffer_size(SEND_BUFFER) {
            tracing::debug!("SO_SNDBUF: {e}");
        }
    });
    let closing = state_for_close;
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            shutdown.await;
            // Websockets would keep a graceful shutdown waiting forever: close them.
            closing.closing.send_replace(true);
        })
        .await
}

#[derive(serde::Deserialize)]
struct WsQuery {
    v: Option<String>,
}

async fn ws_upgrade(
    State(state): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Query(q): Query<WsQuery>,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Response {
    if !origin_allowed(&headers, &state.allowed_origins) {
        return http::error(
            StatusCode::FORBIDDEN,
            "forbidden",
            "this origin may not open the live connection",
        );
    }
    let version_ok = q.v.as_deref() == Some("1");
    upgrade
        // Big enough to see a too-large frame and answer it with a clear close, small
        // enough that nobody can make us buffer megabytes.
        .max_message_size(1 << 20)
        .max_frame_size(1 << 20)
        // Thousands of idle phones: keep per-socket buffers small.
        .read_buffer_size(512)
        .write_buffer_size(0)
        .on_upgrade(move |socket| ws::serve(socket, state, version_ok, peer))
        .into_response()
}

/// No Origin (scripts, native apps): allowed. Otherwise the jukebox's own origin (whatever
/// name or address it was reached by, on its own port) or one configured.
pub fn origin_allowed(headers: &HeaderMap, allowed: &[String]) -> bool {
    let Some(origin) = headers.get("origin").and_then(|o| o.to_str().ok()) else {
        return true;
    };
    if allowed.iter().any(|a| a == origin) {
        return true;
    }
    let Some(host) = headers.get("host").and_then(|h| h.to_str().ok()) else {
        return false;
    };
    let authority = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"));
    authority.is_some_and(|a| a.eq_ignore_ascii_case(host))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origin_rule() {
        let h = |origin: Option<&str>, host: &str| {
            let mut m = HeaderMap::new();
            m.insert("host", host.parse().unwrap());
            if let Some(o) = origin {
                m.insert("origin", o.parse().unwrap());
            }
            m
        };
        let allowed = vec!["http://tv.example:3000".to_string()];
        let table = [
            (None, "jukebox.local", true),
            (Some("http://jukebox.local"), "jukebox.local", true),
            (Some("http://JUKEBOX.local"), "jukebox.local", true),
            (Some("http://192.168.1.5:8080"), "192.168.1.5:8080", true),
            (Some("http://192.168.1.5:9999"), "192.168.1.5:8080", false),
            (Some("http://evil.example"), "jukebox.local", false),
            (Some("http://tv.example:3000"), "jukebox.local", true),
            (Some("null"), "jukebox.local", false),
        ];
        for (origin, host, want) in table {
            assert_eq!(
                origin_allowed(&h(origin, host), &allowed),
                want,
                "{origin:?} {host}"
            );
        }
    }
}
