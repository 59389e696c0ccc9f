//! What every request passes before a handler sees it, and what every answer carries:
//! the `Host` check (the jukebox answers only to its own names and addresses, so a page on a
//! rebinding domain cannot drive it: 421, or with `captive_portal` a bare redirect to the
//! guest page), `Content-Type: application/json` on every POST (a
//! cross-site form or `text/plain` fetch cannot reach the API: 415), request bodies read with
//! a size cap and a timeout (413, 408), errors always in the protocol's JSON shape (axum's own
//! rejections included), and `nosniff` plus a strict CSP on every answer.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use http_body_util::BodyExt;

use super::AppState;

/// The largest request body: the largest real one is a 280-character announcement (about
/// 1.2 KiB of JSON in the worst UTF-8); a settings patch with lists of rules still fits.
pub const BODY_LIMIT: usize = 8 * 1024;
/// A body must arrive within this long once its headers have.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(10);
/// The CSP of every answer that is not a page of the app: nothing in it may run or load.
pub const API_CSP: &str =
    "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";
/// How often the machine's addresses are read again when a request names one not known.
const ADDRESSES_FRESH: Duration = Duration::from_secs(2);

/// The names and addresses the jukebox answers to, besides its mDNS name (which `Join` holds,
/// read at request time since a name conflict renames it).
pub struct Hosts {
    /// Configured extras (`allow_host`), lower case, IPv6 in brackets.
    extra: Vec<String>,
    listen: SocketAddr,
    /// The machine's own addresses and host name, with when they were read.
    own: Mutex<Own>,
}

struct Own {
    read: Option<Instant>,
    ips: Vec<IpAddr>,
    hostname: Option<String>,
}

impl Hosts {
    pub fn new(extra: Vec<String>, listen: SocketAddr) -> Self {
        Hosts {
            extra,
            listen,
            own: Mutex::new(Own {
                read: None,
                ips: Vec::new(),
                hostname: None,
            }),
        }
    }

    /// Whether `host` (a Host header's value) names this jukebox; any port is fine.
    pub fn allows(&self, host: &str, mdns_name: &str) -> bool {
        let Some(name) = host_part(host) else {
            return false;
        };
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        if name == "localhost"
            || name.ends_with(".localhost")
            || name.eq_ignore_ascii_case(mdns_name.trim_end_matches('.'))
        {
            return true;
        }
        let bare = name.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = bare.parse::<IpAddr>() {
            let ip = match ip {
                IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
                v4 => v4,
            };
            if ip.is_loopback() || ip == self.listen.ip() || self.extra.contains(&name) {
                return true;
            }
            return self.own(|o| o.ips.contains(&ip));
        }
        if self.extra.contains(&name) {
            return true;
        }
        self.own(|o| {
            o.hostname
                .as_deref()
                .is_some_and(|h| name == h || name.strip_suffix(".local") == Some(h))
        })
    }

    /// Asks `f` about the machine's addresses; on a miss, reads them again (at most every
    /// `ADDRESSES_FRESH`: addresses change when the Wi-Fi does) and asks once more.
    fn own(&self, f: impl Fn(&Own) -> bool) -> bool {
        let mut own = self.own.lock().unwrap_or_else(|e| e.into_inner());
        if own.read.is_some() && f(&own) {
            return true;
        }
        if own.read.is_some_and(|t| t.elapsed() < ADDRESSES_FRESH) {
            return false;
        }
        own.ips = if_addrs::get_if_addrs()
            .unwrap_or_default()
            .into_iter()
            .map(|i| i.ip())
            .collect();
        own.hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .map(|h| h.trim().to_ascii_lowercase())
            .filter(|h| !h.is_empty());
        own.read = Some(Instant::now());
        f(&own)
    }
}

/// The host of a Host header, without its port (IPv6 keeps its brackets).
fn host_part(host: &str) -> Option<&str> {
    if host.starts_with('[') {
        let end = host.find(']')?;
        let rest = &host[end + 1..];
        let port_ok = rest.is_empty()
            || rest
                .strip_prefix(':')
                .is_some_and(|p| p.bytes().all(|b| b.is_ascii_digit()));
        return port_ok.then(|| &host[..=end]);
    }
    match host.rsplit_once(':') {
        Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) && !h.contains(':') => Some(h),
        Some(_) => None,
        None => Some(host),
    }
}

/// The exception for the captive portal (`captive_portal`): a request for a foreign name is
/// most likely a phone on the jukebox's hotspot probing for a login page (Android's
/// `/generate_204`, Apple's `/hotspot-detect.html`, Windows' `/connecttest.txt`, Firefox's
/// `/canonical.html`…), since the hotspot's DNS answers every name with the jukebox. It gets a
/// redirect to the guest page at an address that works for it, so the phone opens the
/// jukebox by itself. The answer serves no content and sets nothing (no token, no cookie), so a
/// page on a rebinding domain learns nothing from it.
fn captive_portal(state: &AppState, req: &Request) -> Option<Response> {
    if !state.captive_portal {
        return None;
    }
    let reached = req
        .extensions()
        .get::<super::transport::LocalAddr>()
        .map(|l| l.0.ip());
    let target = state.join.guest_page_for(reached)?;
    let location = HeaderValue::from_str(&target).ok()?;
    tracing::debug!("captive portal: sent {} to {target}", req.uri().path());
    let mut r = Response::new(Body::empty());
    *r.status_mut() = StatusCode::FOUND;
    let h = r.headers_mut();
    h.insert(header::LOCATION, location);
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Some(r)
}

/// Refuses requests that name another host: `421` with the protocol's JSON (or, with the
/// captive portal on, the redirect above). A request with no Host (HTTP/1.0 scripts) is let
/// through: browsers always send one.
pub async fn check_host(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let host = req
        .headers()
        .get(header::HOST)
        .map(|h| h.to_str().unwrap_or("\u{0}").to_string());
    match host {
        None => next.run(req).await,
        Some(h) if state.hosts.allows(&h, &state.join.own_name()) => next.run(req).await,
        Some(h) => {
            if let Some(r) = captive_portal(&state, &req) {
                return r;
            }
            tracing::debug!("refused a request for host {:?}", truncated(&h));
            super::http::error(
                crate::protocol::ErrorCode::Misdirected,
                "this jukebox does not answer to that host name",
            )
        }
    }
}

/// At most 100 bytes of a header for a log line: a Host can be kilobytes long.
fn truncated(s: &str) -> &str {
    let mut end = s.len().min(100);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Refuses a POST whose body is not declared JSON: `415` with the protocol's JSON. Browsers
/// send a cross-site request without asking first only with a form type or `text/plain`.
pub async fn require_json(req: Request, next: Next) -> Response {
    if req.method() == Method::POST && !is_json(req.headers()) {
        return super::http::error(
            crate::protocol::ErrorCode::UnsupportedMediaType,
            "send the body as JSON with Content-Type: application/json",
        );
    }
    next.run(req).await
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"))
}

/// The protocol's error code for an HTTP status.
fn code_for(status: StatusCode) -> &'static str {
    match status.as_u16() {
        401 => "unauthorized",
        403 => "forbidden",
        404 => "not_found",
        405 => "method_not_allowed",
        408 => "timeout",
        413 => "too_large",
        415 => "unsupported_media_type",
        421 => "misdirected",
        429 => "rate_limited",
        503 => "busy",
        500..=599 => "internal",
        _ => "bad_request",
    }
}

/// Error answers that are not JSON yet (axum's rejections: a bad query string, a wrong
/// method, a too-large body) become `{"code","message"}` with the same status and headers.
pub async fn json_errors(req: Request, next: Next) -> Response {
    let res = next.run(req).await;
    let status = res.status();
    let is_json = res
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if status.as_u16() < 400 || is_json {
        return res;
    }
    let (mut parts, body) = res.into_parts();
    let text = match http_body_util::Limited::new(body, 1024).collect().await {
        Ok(b) => String::from_utf8_lossy(&b.to_bytes()).trim().to_string(),
        Err(_) => String::new(),
    };
    let message = if text.is_empty() || status.is_server_error() {
        status.canonical_reason().unwrap_or("error").to_lowercase()
    } else {
        text
    };
    let body = serde_json::json!({"code": code_for(status), "message": message}).to_string();
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Response::from_parts(parts, Body::from(body))
}

/// Reads a request body: at most `BODY_LIMIT` bytes, within `BODY_TIMEOUT`; otherwise the
/// protocol's JSON error (413 or 408), on a connection that then closes.
pub async fn read_body(headers: &HeaderMap, body: Body) -> Result<Bytes, Response> {
    let too_large = || {
        closing(super::http::error(
            crate::protocol::ErrorCode::TooLarge,
            format!("the body may be at most {BODY_LIMIT} bytes"),
        ))
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > BODY_LIMIT as u64) {
        return Err(too_large());
    }
    let limited = http_body_util::Limited::new(body, BODY_LIMIT);
    match tokio::time::timeout(BODY_TIMEOUT, limited.collect()).await {
        Ok(Ok(b)) => Ok(b.to_bytes()),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => Err(too_large()),
        Ok(Err(e)) => {
            tracing::debug!("cannot read a request body: {e}");
            Err(closing(super::http::error(
                crate::protocol::ErrorCode::BadRequest,
                "the body could not be read",
            )))
        }
        Err(_) => Err(closing(super::http::error(
            crate::protocol::ErrorCode::Timeout,
            format!(
                "the body did not arrive within {} s",
                BODY_TIMEOUT.as_secs()
            ),
        ))),
    }
}

/// Ends the connection after this answer: what is left of the body is not worth reading.
fn closing(mut r: Response) -> Response {
    r.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    r
}

/// `nosniff` and a CSP on every answer; the app's pages set their own CSP first.
pub fn security_headers<S: Clone + Send + Sync + 'static>(
    router: axum::Router<S>,
) -> axum::Router<S> {
    use tower_http::set_header::SetResponseHeaderLayer;
    router
        .layer(SetResponseHeaderLayer::overriding(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(API_CSP),
        ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_headers() {
        let h = Hosts::new(
            vec!["party.example".into(), "[fd00::5]".into()],
            "0.0.0.0:8080".parse().unwrap(),
        );
        let yes = [
            "jukebox.local",
            "JUKEBOX.local.",
            "jukebox.local:8080",
            "localhost:8080",
            "127.0.0.1",
            "127.9.9.9:80",
            "[::1]:8080",
            "[::ffff:127.0.0.1]",
            "party.example:1234",
            "[fd00::5]:80",
        ];
        for host in yes {
            assert!(h.allows(host, "jukebox.local"), "{host}");
        }
        let no = [
            "evil.example",
            "evil.example:8080",
            "jukebox.local.evil.example",
            "203.0.113.9",
            "[2001:db8::1]",
            "jukebox.local:80x",
            "",
            "a:b:c",
        ];
        for host in no {
            assert!(!h.allows(host, "jukebox.local"), "{host}");
        }
        // The mDNS name is whatever it is now (a conflict renames it).
        assert!(h.allows("jukebox-2.local", "jukebox-2.local"));
        assert!(!h.allows("jukebox.local", "jukebox-2.local"));
    }

    #[test]
    fn json_content_types() {
        let h = |v: &str| {
            let mut m = HeaderMap::new();
            m.insert(header::CONTENT_TYPE, v.parse().unwrap());
            m
        };
        assert!(is_json(&h("application/json")));
        assert!(is_json(&h("Application/JSON; charset=utf-8")));
        assert!(!is_json(&h("text/plain")));
        assert!(!is_json(&h("application/x-www-form-urlencoded")));
        assert!(!is_json(&h("application/jsonp")));
        assert!(!is_json(&HeaderMap::new()));
    }
}
