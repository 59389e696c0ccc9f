//! The phone app: the files of `web/`, embedded at build time (gzipped once, with a content
//! hash for an ETag), or read from a folder with `--web-dir` while working on the app.
//! `/` is the guest view, `/host` the host's and `/tv` the TV screen's.

use std::path::{Component, PathBuf};
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};

use super::AppState;

/// One embedded file.
pub struct Asset {
    pub path: &'static str,
    pub raw: &'static [u8],
    pub gz: &'static [u8],
    pub etag: &'static str,
}

include!(concat!(env!("OUT_DIR"), "/web_assets.rs"));

/// Pages are revalidated on every load (a cheap 304), so a new version of the app reaches
/// every phone at once, never half old and half new.
const CACHE: &str = "no-cache";
/// Everything the app needs comes from the jukebox itself; nothing from tags can run.
const CSP: &str = "default-src 'self'; img-src 'self' data: blob:; style-src 'self' 'unsafe-inline'; \
                   connect-src 'self' ws: wss:; object-src 'none'; base-uri 'none'; form-action 'self'; \
                   frame-ancestors 'none'";

/// The file a request path stands for.
fn file_for(path: &str) -> &str {
    match path {
        "/" => "/index.html",
        "/host" | "/host/" => "/host.html",
        "/tv" | "/tv/" => "/tv.html",
        p => p,
    }
}

pub fn mime(path: &str) -> &'static str {
    let ext = path.rsplit_once('.').map(|(_, e)| e).unwrap_or("");
    match ext {
        "html" => "text/html; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "json" => "application/json",
        "webmanifest" => "application/manifest+json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "woff2" => "font/woff2",
        "txt" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|enc| {
            let mut parts = enc.split(';').map(str::trim);
            parts
                .next()
                .is_some_and(|name| name.eq_ignore_ascii_case("gzip"))
                && !parts.any(|p| p.replace(' ', "") == "q=0")
        })
}

/// Every path no route claims: a file of the app, or the protocol's JSON 404.
pub async fn fallback(
    State(state): State<Arc<AppState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let path = file_for(uri.path());
    if path.starts_with("/api/") || path == "/ws" {
        return super::http::not_found().await;
    }
    let found = match &state.web_dir {
        Some(dir) => from_disk(dir, path).await,
        None => ASSETS.iter().any(|a| a.path == path),
    };
    if !found {
        return super::http::not_found().await;
    }
    if method != Method::GET && method != Method::HEAD {
        return StatusCode::METHOD_NOT_ALLOWED.into_response();
    }
    match &state.web_dir {
        Some(dir) => serve_disk(dir, path).await,
        None => serve_embedded(path, &headers),
    }
}

fn serve_embedded(path: &str, headers: &HeaderMap) -> Response {
    let Some(asset) = ASSETS.iter().find(|a| a.path == path) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    // The CSP in a 304 too: a browser updates the cached answer's headers from it.
    let common = [
        (header::ETAG, asset.etag),
        (header::CACHE_CONTROL, CACHE),
        (header::VARY, "Accept-Encoding"),
        (header::CONTENT_SECURITY_POLICY, CSP),
    ];
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == asset.etag));
    if fresh {
        return (StatusCode::NOT_MODIFIED, common).into_response();
    }
    let typed = [
        (header::CONTENT_TYPE, mime(path)),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    ];
    if accepts_gzip(headers) {
        (
            common,
            typed,
            [(header::CONTENT_ENCODING, "gzip")],
            asset.gz,
        )
            .into_response()
    } else {
        (common, typed, asset.raw).into_response()
    }
}

/// The file under `dir`, refusing any path that could leave it, and dotfiles (`.git`,
/// `.env`…: a working folder holds more than the app).
fn disk_path(dir: &std::path::Path, path: &str) -> Option<PathBuf> {
    let rel = std::path::Path::new(path.trim_start_matches('/'));
    let plain = |c: Component| match c {
        Component::Normal(n) => !n.to_string_lossy().starts_with('.'),
        _ => false,
    };
    if !rel.components().all(plain) {
        return None;
    }
    Some(dir.join(rel))
}

/// Whether `path` is a plain file under `dir`, reached through no symbolic link (a link
/// could point anywhere on the machine).
async fn from_disk(dir: &std::path::Path, path: &str) -> bool {
    let Some(file) = disk_path(dir, path) else {
        return false;
    };
    let mut at = dir.to_path_buf();
    let Ok(rel) = file.strip_prefix(dir) else {
        return false;
    };
    for c in rel.components() {
        at.push(c);
        match tokio::fs::symlink_metadata(&at).await {
            Ok(m) if m.file_type().is_symlink() => return false,
            Ok(_) => {}
            Err(_) => return false,
        }
    }
    tokio::fs::symlink_metadata(&file)
        .await
        .is_ok_and(|m| m.is_file())
}

async fn serve_disk(dir: &std::path::Path, path: &str) -> Response {
    let Some(file) = disk_path(dir, path) else {
        return super::http::not_found().await;
    };
    if !from_disk(dir, path).await {
        return super::http::not_found().await;
    }
    match tokio::fs::read(&file).await {
        Ok(bytes) => (
            [
                (header::CONTENT_TYPE, mime(path)),
                (header::CACHE_CONTROL, "no-store"),
                (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
                (header::CONTENT_SECURITY_POLICY, CSP),
            ],
            bytes,
        )
            .into_response(),
        Err(_) => super::http::not_found().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gzip_negotiation() {
        let h = |v: &str| {
            let mut m = HeaderMap::new();
            m.insert(header::ACCEPT_ENCODING, v.parse().unwrap());
            m
        };
        assert!(accepts_gzip(&h("gzip, deflate, br")));
        assert!(accepts_gzip(&h("br;q=1.0, GZIP;q=0.5")));
        assert!(!accepts_gzip(&h("gzip;q=0")));
        assert!(!accepts_gzip(&h("identity")));
        assert!(!accepts_gzip(&HeaderMap::new()));
    }

    #[test]
    fn paths_stay_inside_the_folder() {
        let d = std::path::Path::new("/srv/web");
        assert_eq!(
            disk_path(d, "/js/app.js"),
            Some(PathBuf::from("/srv/web/js/app.js"))
        );
        assert_eq!(disk_path(d, "/../etc/passwd"), None);
        assert_eq!(disk_path(d, "/js/../../x"), None);
        assert_eq!(disk_path(d, "/.git/config"), None);
        assert_eq!(disk_path(d, "/js/.env"), None);
    }

    #[test]
    fn pages() {
        assert_eq!(file_for("/"), "/index.html");
        assert_eq!(file_for("/host"), "/host.html");
        assert_eq!(file_for("/tv"), "/tv.html");
        assert_eq!(file_for("/app.css"), "/app.css");
    }
}
