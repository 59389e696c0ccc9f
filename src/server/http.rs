//! The JSON API: guest tokens, host login, a read-only view of the state and search for
//! scripts, cover art, host actions with the host token, and `/healthz`. Every error is an
//! [`ApiError`]; every body is built in `protocol::outgoing`; commands take the same path as
//! the websocket's (`super::command`).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

use serde_json::Value;

use super::command;
use super::AppState;
use crate::hub::{Host, HubError, Role, ScreenClaim};
use crate::protocol::outgoing::http as body;
use crate::protocol::{self, ErrorCode, HostCmd, SearchQuery};

pub use super::error::ApiError;
pub(crate) use crate::addr::{limiter as ip_limiter, Limiter as IpLimiter};

type Answer = Result<Response, ApiError>;

/// An error answer with this code and message: for the guards and pages outside this file.
pub fn error(code: ErrorCode, message: impl Into<String>) -> Response {
    ApiError::new(code, message).into_response()
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

/// Reads a request's body (capped and timed, see `guard::read_body`) as a JSON object.
async fn read_json(headers: &HeaderMap, body: Body) -> Result<Value, Response> {
    let bytes = super::guard::read_body(headers, body).await?;
    body_json(&bytes).map_err(IntoResponse::into_response)
}

/// Parses a JSON body; an empty body is `{}`.
pub(crate) fn body_json(body: &Bytes) -> Result<Value, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Object(Default::default()));
    }
    let v: Value = serde_json::from_slice(body).map_err(|e| ApiError::bad_json(&e))?;
    if !v.is_object() {
        return Err(ApiError::field("body", "the body must be a JSON object"));
    }
    Ok(v)
}

pub async fn not_found() -> Response {
    error(ErrorCode::NotFound, "no such page")
}

pub async fn healthz(State(state): State<Arc<AppState>>) -> Result<Json<Value>, ApiError> {
    let status = state.hub.status().await.result?;
    Ok(Json(body::health(&body::Health {
        status: &status,
        uptime_s: state.started.elapsed().as_secs(),
        sessions: state.sessions.len(),
    })))
}

pub async fn create_guest(
    State(state): State<Arc<AppState>>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Body,
) -> Answer {
    if let Some(ms) = limit_wait(&state.guest_limiter, addr.ip()) {
        return Err(ApiError::rate_limited(
            ms,
            "too many attempts; wait a little",
        ));
    }
    let v = match read_json(&headers, body).await {
        Ok(v) => v,
        Err(r) => return Ok(r),
    };
    let name = match v.get("name") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return Err(ApiError::field("name", "a string of at most 32 characters")),
    };
    // The hub refuses a banned address and enforces the rate of new guests over all
    // addresses; it remembers the address, so that a ban of this guest covers it.
    let g = state.hub.new_guest(name, addr.ip()).await.result?;
    Ok((StatusCode::CREATED, Json(body::guest_token(&g))).into_response())
}

/// `POST /api/screen/pair`: a TV asks for a pairing code to show; the host types it on the
/// host page (`pair_screen`). Answers the code and the secret `claim` the TV polls with.
pub async fn screen_pair(
    State(state): State<Arc<AppState>>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
) -> Answer {
    if let Some(ms) = limit_wait(&state.pair_limiter, addr.ip()) {
        return Err(ApiError::rate_limited(
            ms,
            "too many pairing codes; wait a little",
        ));
    }
    let p = state.hub.start_pairing().await.result?;
    Ok((StatusCode::CREATED, Json(body::pairing(&p))).into_response())
}

/// `POST /api/screen/claim {"claim"}`: 202 `{"paired":false}` until the host typed the code,
/// then (once) the screen token; 404 when the code expired (ask for a new one).
pub async fn screen_claim(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> Answer {
    let v = match read_json(&headers, body).await {
        Ok(v) => v,
        Err(r) => return Ok(r),
    };
    let Some(claim) = v
        .get("claim")
        .and_then(Value::as_str)
        .filter(|c| c.len() <= 64)
    else {
        return Err(ApiError::field(
            "claim",
            "the claim from POST /api/screen/pair",
        ));
    };
    Ok(
        match state.hub.claim_screen(claim.to_string()).await.result? {
            ScreenClaim::Paired(g) => Json(body::screen_paired(&g)).into_response(),
            ScreenClaim::Pending => {
                (StatusCode::ACCEPTED, Json(body::screen_pending())).into_response()
            }
        },
    )
}

pub async fn host_login(
    State(state): State<Arc<AppState>>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Body,
) -> Answer {
    let v = match read_json(&headers, body).await {
        Ok(v) => v,
        Err(r) => return Ok(r),
    };
    let Some(pin) = v
        .get("pin")
        .and_then(Value::as_str)
        .filter(|p| p.len() <= crate::login::MAX_ATTEMPT_LEN)
    else {
        return Err(ApiError::field("pin", "a string of digits"));
    };
    match super::host_login(&state, addr.ip(), pin).await {
        Ok(g) => Ok(Json(body::host_token(&g)).into_response()),
        Err(super::LoginFailed::Wrong) => Err(ApiError::new(ErrorCode::Unauthorized, "wrong PIN")),
        Err(super::LoginFailed::Refused { retry_after_ms }) => Err(ApiError::rate_limited(
            retry_after_ms,
            "too many wrong PINs; wait a little",
        )),
        Err(super::LoginFailed::Internal) => Err(ApiError::new(
            ErrorCode::Internal,
            "the login could not be stored",
        )),
    }
}

/// The host token from `Authorization: Bearer …`, as the proof of a host.
async fn host_auth(state: &AppState, headers: &HeaderMap) -> Result<Host, ApiError> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.strip_prefix("Bearer "))
        .ok_or_else(|| {
            ApiError::new(
                ErrorCode::Unauthorized,
                "send the host token as Authorization: Bearer <token>",
            )
        })?;
    let bad = || ApiError::new(ErrorCode::Unauthorized, "bad or revoked token");
    let id = state
        .hub
        .authenticate(token.trim().to_string())
        .await
        .result
        .map_err(|_| bad())?
        .ok_or_else(bad)?;
    if id.role != Role::Host {
        return Err(HubError::Forbidden.into());
    }
    // A host token is good only while its host login lasts (expiry, log out, new PIN).
    if !state.login.sessions.check(id.guest_id) {
        return Err(ApiError::new(
            ErrorCode::Unauthorized,
            "this host login was logged out or has expired; log in again",
        ));
    }
    let actor = crate::hub::Actor {
        guest: id.guest_id,
        host: true,
    };
    actor.as_host().ok_or_else(bad)
}

/// `POST /api/host/{action}`: the protocol's host commands over HTTP. The body carries the
/// same fields as the websocket command (`message` is `announce`, `volume` is `set_volume`).
pub async fn host_action(
    State(state): State<Arc<AppState>>,
    Path(action): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Answer {
    // The token first: nobody without it gets a byte of the body read.
    let host = host_auth(&state, &headers).await?;
    let v = match read_json(&headers, body).await {
        Ok(v) => v,
        Err(r) => return Ok(r),
    };
    let name = match action.as_str() {
        "message" => "announce",
        "volume" => "set_volume",
        other => other,
    };
    let cmd = protocol::host_command(name, &v).map_err(|e| {
        if e.code == ErrorCode::UnknownCmd {
            ApiError::new(ErrorCode::NotFound, format!("no host action {action:?}"))
        } else {
            ApiError::from(&e)
        }
    })?;
    // The host logins' list is its own body; every other action says `ok` beside its data.
    let raw = matches!(cmd, HostCmd::HostSessions);
    let data = command::host(&state, host, cmd).await.result?;
    Ok(Json(if raw { data } else { body::host_action(data) }).into_response())
}

/// `GET /api/host/sessions`: the host logins and the failed logins lately (as the websocket's
/// `host_sessions`).
pub async fn host_sessions(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Answer {
    let host = host_auth(&state, &headers).await?;
    let mut r = Json(command::host_sessions(&state, host)).into_response();
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        axum::http::HeaderValue::from_static("no-store"),
    );
    Ok(r)
}

pub async fn api_state(State(state): State<Arc<AppState>>) -> Result<Json<Value>, ApiError> {
    let s = state.hub.snapshot(None, false, false).await.result?;
    Ok(Json(body::state(&s)))
}

#[derive(serde::Deserialize)]
pub struct SearchParams {
    q: Option<String>,
    cursor: Option<String>,
    limit: Option<u32>,
}

pub async fn api_search(
    State(state): State<Arc<AppState>>,
    Query(p): Query<SearchParams>,
) -> Result<Json<Value>, ApiError> {
    let q = SearchQuery::new(p.q.unwrap_or_default(), p.limit, p.cursor.as_deref())
        .map_err(|(field, message)| ApiError::field(field, message))?;
    Ok(Json(command::search(&state, q).await?))
}

pub async fn art(
    State(state): State<Arc<AppState>>,
    Path(track): Path<String>,
    headers: HeaderMap,
) -> Answer {
    let no_art = || ApiError::new(ErrorCode::NotFound, "no cover art for this track");
    let Some(id) = protocol::TrackId::parse(&track) else {
        return Err(ApiError::new(ErrorCode::NotFound, "no such track"));
    };
    let row = match state.store.read(move |db| db.track(id)).await {
        Ok(Some(t)) if t.has_art => t,
        Ok(_) => return Err(no_art()),
        Err(e) => return Err(ApiError::internal(&e)),
    };
    let path = row.path.clone();
    let Ok(Some((bytes, _tagged))) =
        tokio::task::spawn_blocking(move || crate::library::cover_art(&path)).await
    else {
        return Err(no_art());
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
        return Ok((
            StatusCode::NOT_MODIFIED,
            [
                (header::ETAG, etag),
                (header::CACHE_CONTROL, cache.to_string()),
            ],
        )
            .into_response());
    }
    // The type the tag claims is ignored: only an image the bytes show is served as one.
    Ok((
        [
            (header::CONTENT_TYPE, image_type(&bytes).to_string()),
            (header::ETAG, etag),
            (header::CACHE_CONTROL, cache.to_string()),
        ],
        bytes,
    )
        .into_response())
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
) -> Answer {
    host_auth(&state, &headers).await?;
    let format = match q.format.as_deref().unwrap_or("m3u") {
        "m3u" => crate::config::ExportFormat::M3u,
        "csv" => crate::config::ExportFormat::Csv,
        other => {
            return Err(ApiError::field(
                "format",
                format!("{other:?} is not a format; allowed: m3u, csv"),
            ))
        }
    };
    let gap = crate::hub::PARTY_GAP_HOURS;
    let plays = match state
        .store
        .read(move |db| crate::export::tonight(db, gap))
        .await
    {
        Ok(p) => p,
        Err(e) => return Err(ApiError::internal(&e)),
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
        return Err(ApiError::internal(&e));
    }
    Ok((
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
        .into_response())
}
