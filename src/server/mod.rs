//! The live server: one axum router on one port for phones, the TV screen and scripts —
//! `GET /ws?v=1` (the live protocol), the JSON API under `/api`, and `/healthz`. It decodes,
//! validates, calls the hub and encodes; it decides no party rule.

pub mod command;
pub mod error;
pub mod guard;
pub mod http;
pub mod join;
pub mod mailbox;
pub mod session;
pub mod transport;
pub mod web;
pub mod wifi;
pub mod ws;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::{ConnectInfo, DefaultBodyLimit, Extension, Query, State, WebSocketUpgrade};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
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
    /// The host PIN, its limits, and the host logins.
    pub login: Arc<crate::login::Login>,
    pub allowed_origins: Vec<String>,
    pub ws_limits: WsLimits,
    pub started: Instant,
    sockets: Mutex<HashMap<GuestId, usize>>,
    /// Set when the jukebox shuts down: every socket says bye (1001) and closes.
    pub closing: tokio::sync::watch::Sender<bool>,
    pub(crate) guest_limiter: http::IpLimiter,
    /// TVs asking for a pairing code, per address.
    pub(crate) pair_limiter: http::IpLimiter,
    /// The phone app from disk (`--web-dir`) instead of the embedded copy.
    pub web_dir: Option<std::path::PathBuf>,
    pub join: join::Join,
    /// The names and addresses requests may name in `Host`.
    pub hosts: guard::Hosts,
    /// Requests for other names get a redirect to the guest page instead of 421.
    pub captive_portal: bool,
    /// The open connections, capped per address and in total.
    pub conns: Arc<transport::Connections>,
    /// snapserver's rooms, with `snapcast_rpc` set.
    pub rooms: Option<crate::rooms::Rooms>,
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

/// Why a host login failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginFailed {
    Wrong,
    /// Over a limit: even the right PIN waits this long.
    Refused {
        retry_after_ms: u64,
    },
    Internal,
}

/// A host login with `pin` from `ip`, for every front end that takes the PIN (HTTP, MPD's
/// `password`): wrong PINs are limited per address and across all addresses (over a limit,
/// even the right PIN is refused, so guessing cannot go on from however many addresses), and
/// the login is a host session like any other (listed, revoked by "log out everywhere").
pub async fn host_login(
    state: &AppState,
    ip: std::net::IpAddr,
    pin: &str,
) -> Result<crate::hub::GuestCreated, LoginFailed> {
    match state.login.pin.attempt(ip, pin).await {
        crate::login::Attempt::Ok => {}
        crate::login::Attempt::Wrong => return Err(LoginFailed::Wrong),
        crate::login::Attempt::Refused { retry_after_ms } => {
            return Err(LoginFailed::Refused { retry_after_ms })
        }
    }
    let g = state
        .hub
        .create_guest(Some("Host".into()), true)
        .await
        .result
        .map_err(|e| {
            tracing::error!("cannot make a host login: {e}");
            LoginFailed::Internal
        })?;
    if let Err(e) = state.login.sessions.add(g.guest_id, ip).await {
        tracing::error!("cannot store a host login: {e}");
        return Err(LoginFailed::Internal);
    }
    Ok(g)
}

/// What the server needs besides the hub and store.
pub struct ServerConfig {
    pub login: Arc<crate::login::Login>,
    pub guest_rate: u32,
    pub allowed_origins: Vec<String>,
    pub ws_limits: WsLimits,
    pub session_limits: SessionLimits,
    pub web_dir: Option<std::path::PathBuf>,
    /// The `.local` name made from the party name, e.g. `jukebox.local` (mDNS announces it,
    /// or another on a conflict, through `Join::set_host`).
    pub host_name: String,
    /// The address actually bound.
    pub listen: SocketAddr,
    /// Extra names and addresses the jukebox answers to (`allow_host`).
    pub allow_hosts: Vec<String>,
    /// The Wi-Fi the guests join (`wifi_ssid`).
    pub wifi: Option<wifi::Wifi>,
    /// `captive_portal`.
    pub captive_portal: bool,
    pub conn_limits: transport::ConnLimits,
    pub rooms: Option<crate::rooms::Rooms>,
}

pub fn state(hub: Hub, store: Store, cfg: ServerConfig) -> Arc<AppState> {
    let epoch = format!("{:08x}", rand::random::<u32>());
    let sessions = Sessions::start(
        hub.clone(),
        ServerInfo {
            build: env!("CARGO_PKG_VERSION").to_string(),
            epoch,
            heartbeat_ms: cfg.ws_limits.ping_after.as_millis() as u64,
            features: crate::protocol::features(cfg.rooms.is_some()),
        },
        cfg.session_limits,
    );
    let state = Arc::new(AppState {
        hub,
        store,
        sessions,
        login: cfg.login,
        allowed_origins: cfg.allowed_origins,
        ws_limits: cfg.ws_limits,
        started: Instant::now(),
        sockets: Mutex::new(HashMap::new()),
        closing: tokio::sync::watch::Sender::new(false),
        guest_limiter: http::ip_limiter(cfg.guest_rate, cfg.guest_rate),
        pair_limiter: http::ip_limiter(PAIR_PER_MINUTE, PAIR_PER_MINUTE),
        web_dir: cfg.web_dir,
        join: join::Join::new(cfg.host_name, cfg.listen, cfg.wifi),
        hosts: guard::Hosts::new(cfg.allow_hosts, cfg.listen),
        captive_portal: cfg.captive_portal,
        conns: transport::Connections::new(cfg.conn_limits),
        rooms: cfg.rooms,
    });
    tokio::spawn(housekeeping(Arc::downgrade(&state)));
    state
}

/// How often the limiter tables are pruned and host sessions expire.
const HOUSEKEEPING: std::time::Duration = std::time::Duration::from_secs(30);

/// One periodic task: forgets addresses no limit holds any more (the keyed limiters would
/// otherwise keep every address ever seen), ends expired host logins, stores when the others
/// were last seen. Ends with the server.
async fn housekeeping(state: std::sync::Weak<AppState>) {
    let mut tick = tokio::time::interval(HOUSEKEEPING);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        let Some(state) = state.upgrade() else {
            return;
        };
        crate::login::prune_limiter(&state.guest_limiter);
        state.login.pin.prune();
        state.login.sessions.tick().await;
    }
}

/// Every route, behind the guards (outermost first): security headers, JSON errors, the Host
/// check, the JSON content type of POSTs, the body limit.
pub fn router(state: Arc<AppState>) -> Router {
    let app = Router::new()
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
        .route("/api/host/sessions", get(http::host_sessions))
        .route("/api/join", get(join::join))
        .route("/api/qr.svg", get(join::qr))
        .route("/api/wifi-qr.svg", get(wifi::qr))
        .fallback(web::fallback)
        .layer(DefaultBodyLimit::max(guard::BODY_LIMIT))
        .layer(axum::middleware::from_fn(guard::require_json))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            guard::check_host,
        ))
        .layer(axum::middleware::from_fn(guard::json_errors));
    guard::security_headers(app).with_state(state)
}

/// Pairing codes one address may ask for in a minute (a TV asks for one every 10 minutes).
const PAIR_PER_MINUTE: u32 = 6;

/// Serves until `shutdown` resolves, then closes every websocket (bye 1001) and lets the
/// connections end within a bounded time (see `transport`).
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: Arc<AppState>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let conns = state.conns.clone();
    let closing = state.closing.clone();
    transport::serve(listener, router(state), conns, closing, shutdown).await
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
    ticket: Option<Extension<transport::ConnTicket>>,
    upgrade: WebSocketUpgrade,
) -> Response {
    if !origin_allowed(&headers, &state.allowed_origins) {
        return http::error(
            crate::protocol::ErrorCode::Forbidden,
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
        // Not an async block: one would hold a second copy of the socket for the socket's
        // whole life (an async fn's arguments are stored twice), and thousands of phones
        // each pay for every byte of that task. The socket is boxed at once instead.
        .on_upgrade(move |socket| {
            ws::serve(
                Box::new(socket),
                state,
                version_ok,
                peer,
                ticket.map(|Extension(t)| t),
            )
        })
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
