//! The JSON API: guest tokens, host login, a read-only view of the state and search for
//! scripts, cover art, host actions with the host token, and `/healthz`. Errors are
//! `{"code","message"}` with the protocol's codes.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

use serde_json::{json, Value};

use super::AppState;
use crate::hub::{Actor, Command, HubError, Reply, Role};
use crate::protocol::{self, ErrorCode, Incoming, Topic, WireError};

pub(crate) use crate::addr::{limiter as ip_limiter, Limiter as IpLimiter};

/// An HTTP error: `{"code","message"}` (and `field` when one field is at fault).
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    body: Box<Value>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(*self.body)).into_response()
    }
}

pub fn error(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    api_error(status, code, message).into_response()
}

fn api_error(status: StatusCode, code: &str, message: impl Into<String>) -> ApiError {
    ApiError {
        status,
        body: Box::new(json!({"code": code, "message": message.into()})),
    }
}

/// A `bad_request` naming the field at fault.
fn bad_field(field: &str, message: impl Into<String>) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(json!({"code": "bad_request", "field": field, "message": message.into()})),
    )
        .into_response()
}

fn hub_error(e: &HubError) -> Response {
    if matches!(e, HubError::Internal(_)) {
        return internal(e);
    }
    wire_error(&WireError::from(e))
}

/// `500 internal` with a generic message; the details go to the log only.
pub(crate) fn internal(e: &dyn std::fmt::Display) -> Response {
    tracing::error!("a request failed: {e}");
    error(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        "internal error",
    )
}

/// How long `ip` must wait, when it is over its limit (counting this attempt). Keyed by device:
/// these limits are per phone, and the global ones in the hub bound address rotation.
fn limit_wait(limiter: &IpLimiter, ip: IpAddr) -> Option<u64> {
    let not_until = limiter.check_key(&crate::addr::device(ip)).err()?;
    let wait = not_until.wait_time_from(governor::clock::Clock::now(
        &governor::clock::DefaultClock::default(),
    ));
    Some(wait.as_millis().max(1) as u64)
}

fn too_many(ms: u64, message: &str) -> Response {
    wire_error(&WireError::rate_limited(message, ms))
}

fn rate_limited(limiter: &IpLimiter, ip: IpAddr) -> Option<Response> {
    limit_wait(limiter, ip).map(|ms| too_many(ms, "too many attempts; wait a little"))
}

/// Parses a JSON body; an empty body is `{}`.
/// Reads a request's body (capped and timed, see `guard::read_body`) as a JSON object.
async fn read_json(headers: &HeaderMap, body: Body) -> Result<Value, Response> {
    let bytes = super::guard::read_body(headers, body).await?;
    body_json(&bytes).map_err(IntoResponse::into_response)
}

fn body_json(body: &Bytes) -> Result<Value, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(json!({}));
    }
    let v: Value = serde_json::from_slice(body).map_err(|e| {
        api_error(
            StatusCode::BAD_REQUEST,
            "bad_json",
            format!("the body is not JSON: {e}"),
        )
    })?;
    if !v.is_object() {
        let mut e = api_error(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "the body must be a JSON object",
        );
        e.body["field"] = json!("body");
        return Err(e);
    }
    Ok(v)
}

/// The hub answered with a reply of another kind: a bug, never the client's fault.
fn unexpected() -> Response {
    error(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        "unexpected answer",
    )
}

pub async fn not_found() -> Response {
    error(StatusCode::NOT_FOUND, "not_found", "no such page")
}

/// The kind of audio output (`alsa`, `wav`, `null`…) without the device or file it names,
/// for `/healthz`, which anyone may read.
fn output_kind(description: &str) -> String {
    description
        .split(|c: char| c.is_whitespace() || c == ':')
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase()
}

pub async fn healthz(State(state): State<Arc<AppState>>) -> Response {
    match state.hub.call(Command::Status).await.result {
        Ok(Reply::Status(s)) => Json(json!({
            "status": "ok",
            "version": env!("CARGO_PKG_VERSION"),
            "uptime_s": state.started.elapsed().as_secs(),
            "audio": {"output": output_kind(&s.output.description), "ok": s.output.ok, "playing": s.playing},
            "library_size": s.library_size,
            "phones_connected": s.guests_connected,
            "sessions": state.sessions.len(),
            "queue_len": s.queue_len,
        }))
        .into_response(),
        Ok(_) => unexpected(),
        Err(e) => hub_error(&e),
    }
}

pub async fn create_guest(
    State(state): State<Arc<AppState>>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    if let Some(r) = rate_limited(&state.guest_limiter, addr.ip()) {
        return r;
    }
    let v = match read_json(&headers, body).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let name = match v.get("name") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return bad_field("name", "a string of at most 32 characters"),
    };
    // The hub refuses a banned address and enforces the rate of new guests over all
    // addresses; it remembers the address, so that a ban of this guest covers it.
    match state
        .hub
        .call(Command::NewGuest {
            name,
            addr: addr.ip(),
        })
        .await
        .result
    {
        Ok(Reply::Guest(g)) => (
            StatusCode::CREATED,
            Json(json!({"token": g.token, "guest_id": g.guest_id, "name": g.name})),
        )
            .into_response(),
        Ok(_) => unexpected(),
        Err(e) => hub_error(&e),
    }
}

/// `POST /api/screen/pair`: a TV asks for a pairing code to show; the host types it on the
/// host page (`pair_screen`). Answers the code and the secret `claim` the TV polls with.
pub async fn screen_pair(
    State(state): State<Arc<AppState>>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
) -> Response {
    if let Some(ms) = limit_wait(&state.pair_limiter, addr.ip()) {
        return too_many(ms, "too many pairing codes; wait a little");
    }
    match state.hub.call(Command::StartPairing).await.result {
        Ok(Reply::Pairing {
            code,
            claim,
            expires_in_ms,
        }) => (
            StatusCode::CREATED,
            Json(json!({"code": code, "claim": claim, "expires_in_ms": expires_in_ms})),
        )
            .into_response(),
        Ok(_) => unexpected(),
        Err(e) => hub_error(&e),
    }
}

/// `POST /api/screen/claim {"claim"}`: 202 `{"paired":false}` until the host typed the code,
/// then (once) the screen token; 404 when the code expired (ask for a new one).
pub async fn screen_claim(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let v = match read_json(&headers, body).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let Some(claim) = v
        .get("claim")
        .and_then(Value::as_str)
        .filter(|c| c.len() <= 64)
    else {
        return bad_field("claim", "the claim from POST /api/screen/pair");
    };
    match state
        .hub
        .call(Command::ClaimScreen {
            claim: claim.to_string(),
        })
        .await
        .result
    {
        Ok(Reply::Guest(g)) => Json(json!({
            "paired": true, "token": g.token, "guest_id": g.guest_id,
            "name": g.name, "role": "screen"
        }))
        .into_response(),
        Ok(Reply::PairingPending) => {
            (StatusCode::ACCEPTED, Json(json!({"paired": false}))).into_response()
        }
        Ok(_) => unexpected(),
        Err(e) => hub_error(&e),
    }
}

pub async fn host_login(
    State(state): State<Arc<AppState>>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let v = match read_json(&headers, body).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let Some(pin) = v.get("pin").and_then(Value::as_str) else {
        return bad_field("pin", "a string of digits");
    };
    if pin.len() > crate::login::MAX_ATTEMPT_LEN {
        return bad_field("pin", "a string of digits");
    }
    // Wrong PINs are limited per address and across all addresses; over a limit, even the
    // right PIN is refused, so guessing cannot go on from however many addresses.
    match state.login.pin.attempt(addr.ip(), pin).await {
        crate::login::Attempt::Ok => {}
        crate::login::Attempt::Wrong => {
            return error(StatusCode::UNAUTHORIZED, "unauthorized", "wrong PIN")
        }
        crate::login::Attempt::Refused { retry_after_ms } => {
            return too_many(retry_after_ms, "too many wrong PINs; wait a little")
        }
    }
    let g = match state
        .hub
        .call(Command::CreateGuest {
            name: Some("Host".into()),
            host: true,
        })
        .await
        .result
    {
        Ok(Reply::Guest(g)) => g,
        Ok(_) => {
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "unexpected answer",
            )
        }
        Err(e) => return hub_error(&e),
    };
    if let Err(e) = state.login.sessions.add(g.guest_id, addr.ip()).await {
        tracing::error!("cannot store a host login: {e}");
        return error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the login could not be stored",
        );
    }
    Json(json!({
        "token": g.token, "guest_id": g.guest_id, "name": g.name, "role": "host"
    }))
    .into_response()
}

/// The host token from `Authorization: Bearer …`.
async fn host_actor(state: &AppState, headers: &HeaderMap) -> Result<Actor, ApiError> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.strip_prefix("Bearer "))
        .ok_or_else(|| {
            api_error(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "send the host token as Authorization: Bearer <token>",
            )
        })?;
    match state
        .hub
        .call(Command::Authenticate {
            token: token.trim().to_string(),
        })
        .await
        .result
    {
        // A host token is good only while its host login lasts (expiry, log out, new PIN).
        Ok(Reply::Identity(Some(id))) if id.role == Role::Host => {
            if !state.login.sessions.check(id.guest_id) {
                return Err(api_error(
                    StatusCode::UNAUTHORIZED,
                    "unauthorized",
                    "this host login was logged out or has expired; log in again",
                ));
            }
            Ok(Actor {
                guest: id.guest_id,
                host: true,
            })
        }
        Ok(Reply::Identity(Some(_))) => Err(api_error(
            StatusCode::FORBIDDEN,
            "forbidden",
            "only the host can do that",
        )),
        _ => Err(api_error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "bad or revoked token",
        )),
    }
}

/// `POST /api/host/{action}`: the protocol's host commands over HTTP. The body carries the
/// same fields as the websocket command (`message` is `announce`, `volume` is `set_volume`).
pub async fn host_action(
    State(state): State<Arc<AppState>>,
    Path(action): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    // The token first: nobody without it gets a byte of the body read.
    let actor = match host_actor(&state, &headers).await {
        Ok(a) => a,
        Err(r) => return r.into_response(),
    };
    let mut v = match read_json(&headers, body).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let cmd_name = match action.as_str() {
        "message" => "announce",
        "volume" => "set_volume",
        other => other,
    };
    v["cmd"] = json!(cmd_name);
    v["rid"] = json!(1);
    let cmd = match protocol::parse(&v.to_string()) {
        Ok(Incoming::Request { cmd, .. }) if cmd.host_only() => cmd,
        Ok(_) => {
            return error(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("no host action {action:?}"),
            )
        }
        Err(e) if e.code == ErrorCode::UnknownCmd => {
            return error(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("no host action {action:?}"),
            )
        }
        Err(e) => return wire_error(&WireError::from(&e)),
    };
    if let Some(answer) = super::login_command(&state, &cmd, actor).await {
        return match answer {
            Ok(data) if data.get("logged_out").is_some() => {
                Json(json!({"ok": true, "logged_out": data["logged_out"]})).into_response()
            }
            Ok(data) => Json(data).into_response(),
            Err(e) => wire_error(&e),
        };
    }
    let Some(hub_cmd) = super::hub_command(cmd, actor) else {
        return error(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no host action {action:?}"),
        );
    };
    match state.hub.call(hub_cmd).await.result {
        Ok(Reply::Paired { guest_id }) => {
            Json(json!({"ok": true, "guest_id": guest_id})).into_response()
        }
        Ok(_) => Json(json!({"ok": true})).into_response(),
        Err(e) => hub_error(&e),
    }
}

/// An error body as the websocket's `error` object (with its `data`), at the code's status;
/// `rate_limited` also says `Retry-After` in seconds.
fn wire_error(e: &WireError) -> Response {
    let mut r = (e.code.http_status(), Json(e.to_json())).into_response();
    if let Some(v) = e
        .retry_after_ms
        .and_then(|ms| ms.div_ceil(1000).to_string().parse().ok())
    {
        r.headers_mut().insert(header::RETRY_AFTER, v);
    }
    r
}

/// `GET /api/host/sessions`: the host logins and the failed logins lately (as the websocket's
/// `host_sessions`).
pub async fn host_sessions(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let actor = match host_actor(&state, &headers).await {
        Ok(a) => a,
        Err(r) => return r.into_response(),
    };
    match super::login_command(&state, &protocol::Cmd::HostSessions, actor).await {
        Some(Ok(data)) => {
            let mut r = Json(data).into_response();
            r.headers_mut().insert(
                header::CACHE_CONTROL,
                axum::http::HeaderValue::from_static("no-store"),
            );
            r
        }
        Some(Err(e)) => wire_error(&e),
        None => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "unexpected answer",
        ),
    }
}

pub async fn api_state(State(state): State<Arc<AppState>>) -> Response {
    match state
        .hub
        .call(Command::Snapshot {
            guest: None,
            admin: false,
        })
        .await
        .result
    {
        Ok(Reply::Snapshot(s)) => {
            let part = |t: Topic| -> Value {
                let tail = protocol::encode_snapshot(t, &s);
                let mut v: Value =
                    serde_json::from_str(&tail.render(0)).unwrap_or_else(|_| json!({}));
                let obj = v.as_object_mut().expect("an object");
                obj.remove("cmd");
                obj.remove("seq");
                obj.remove("topic");
                v
            };
            Json(json!({
                "now_playing": part(Topic::NowPlaying)["data"].clone(),
                "queue": part(Topic::Queue),
                "room": part(Topic::Room)["data"].clone(),
            }))
            .into_response()
        }
        Ok(_) => unexpected(),
        Err(e) => hub_error(&e),
    }
}

#[derive(serde::Deserialize)]
pub struct SearchQuery {
    q: Option<String>,
    cursor: Option<String>,
    limit: Option<u32>,
}

pub async fn api_search(
    State(state): State<Arc<AppState>>,
    Query(p): Query<SearchQuery>,
) -> Response {
    let q = p.q.unwrap_or_default();
    if q.chars().count() > 200 {
        return error(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "q: at most 200 characters",
        );
    }
    let offset = match p.cursor.as_deref() {
        None | Some("") => 0,
        Some(c) => match c.strip_prefix('c').and_then(|n| n.parse::<u32>().ok()) {
            Some(o) => o,
            None => return bad_field("cursor", "not a cursor from a previous answer"),
        },
    };
    let limit = p.limit.unwrap_or(20).clamp(1, 100);
    match state
        .store
        .read(move |db| db.search(&q, limit + 1, offset))
        .await
    {
        Ok(mut tracks) => {
            let more = tracks.len() > limit as usize;
            tracks.truncate(limit as usize);
            Json(protocol::search_results(
                &tracks,
                more.then_some(offset + limit),
            ))
            .into_response()
        }
        Err(e) => internal(&e),
    }
}

pub async fn art(
    State(state): State<Arc<AppState>>,
    Path(track): Path<String>,
    headers: HeaderMap,
) -> Response {
    let Some(id) = protocol::TrackId::parse(&track) else {
        return error(StatusCode::NOT_FOUND, "not_found", "no such track");
    };
    let row = match state.store.read(move |db| db.track(id)).await {
        Ok(Some(t)) if t.has_art => t,
        Ok(_) => {
            return error(
                StatusCode::NOT_FOUND,
                "not_found",
                "no cover art for this track",
            )
        }
        Err(e) => return internal(&e),
    };
    let path = row.path.clone();
    let Ok(Some((bytes, _tagged))) =
        tokio::task::spawn_blocking(move || crate::library::cover_art(&path)).await
    else {
        return error(
            StatusCode::NOT_FOUND,
            "not_found",
            "no cover art for this track",
        );
    };
    let etag = format!("\"{}-{:x}\"", track, {
        use std::hash::{Hash, Hasher};
        #[allow(deprecated)]
        let mut h = std::hash::SipHasher::new();
        bytes.hash(&mut h);
        h.finish()
    });
    let cache = "public, max-age=86400";
    if headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == etag)
    {
        return (
            StatusCode::NOT_MODIFIED,
            [
                (header::ETAG, etag),
                (header::CACHE_CONTROL, cache.to_string()),
            ],
        )
            .into_response();
    }
    // The type the tag claims is ignored: only an image the bytes show is served as one.
    (
        [
            (header::CONTENT_TYPE, image_type(&bytes).to_string()),
            (header::ETAG, etag),
            (header::CACHE_CONTROL, cache.to_string()),
        ],
        bytes,
    )
        .into_response()
}

/// The image type the bytes are, among those every browser shows; anything else (whatever a
/// tag says it is: `text/html`, SVG with script…) is a download.
pub fn image_type(bytes: &[u8]) -> &'static str {
    match infer::get(bytes).map(|t| t.mime_type()) {
        Some(m @ ("image/png" | "image/jpeg" | "image/gif" | "image/webp" | "image/bmp")) => m,
        _ => "application/octet-stream",
    }
}

#[derive(serde::Deserialize)]
pub struct ExportQuery {
    format: Option<String>,
}

/// `GET /api/host/export?format=m3u|csv`: tonight's plays as a download, for the host page.
pub async fn export(
    State(state): State<Arc<AppState>>,
    Query(q): Query<ExportQuery>,
    headers: HeaderMap,
) -> Response {
    if let Err(e) = host_actor(&state, &headers).await {
        return e.into_response();
    }
    let format = match q.format.as_deref().unwrap_or("m3u") {
        "m3u" => crate::config::ExportFormat::M3u,
        "csv" => crate::config::ExportFormat::Csv,
        other => {
            return bad_field(
                "format",
                format!("{other:?} is not a format; allowed: m3u, csv"),
            )
        }
    };
    let gap = crate::hub::PARTY_GAP_HOURS;
    let plays = match state
        .store
        .read(move |db| crate::export::tonight(db, gap))
        .await
    {
        Ok(p) => p,
        Err(e) => return internal(&e),
    };
    let mut out = Vec::new();
    let (written, mime, ext) = match format {
        crate::config::ExportFormat::M3u => (
            crate::export::write_m3u(&plays, &mut out).map_err(|e| e.to_string()),
            "audio/x-mpegurl; charset=utf-8",
            "m3u",
        ),
        crate::config::ExportFormat::Csv => (
            crate::export::write_csv(&plays, &mut out).map_err(|e| e.to_string()),
            "text/csv; charset=utf-8",
            "csv",
        ),
    };
    if let Err(e) = written {
        return internal(&e);
    }
    (
        [
            (header::CONTENT_TYPE, mime.to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"jukebox-tonight.{ext}\""),
            ),
            (header::CACHE_CONTROL, "no-store".to_string()),
        ],
        out,
    )
        .into_response()
}
