//! How a phone reaches the jukebox: the mDNS name (`http://jukebox.local/`), the machine's LAN
//! addresses for phones that cannot resolve `.local`, and a QR code of the address to scan
//! from the TV. `GET /api/join` and `GET /api/qr.svg`.

use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use super::AppState;

/// What the server knows of its own addresses.
pub struct Join {
    /// The mDNS host name actually announced, e.g. `jukebox.local` (or `jukebox-2.local`
    /// when another machine holds the name).
    host: Mutex<String>,
    listen: std::net::SocketAddr,
    /// The last QR code drawn, by the URL it encodes: the TV asks for it every few minutes.
    qr: Mutex<Option<(String, Arc<str>)>>,
}

impl Join {
    pub fn new(host: String, listen: std::net::SocketAddr) -> Self {
        Join {
            host: Mutex::new(host),
            listen,
            qr: Mutex::new(None),
        }
    }

    pub fn set_host(&self, host: String) {
        *self.host.lock().unwrap_or_else(|e| e.into_inner()) = host;
    }

    pub fn host(&self) -> String {
        self.host.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn url(&self, host: &str) -> String {
        match self.listen.port() {
            80 => format!("http://{host}/"),
            port => format!("http://{host}:{port}/"),
        }
    }

    /// The addresses phones can use, IPv4 first: those of every interface that is up and not
    /// loopback, or only the listening address when the server is bound to one.
    pub fn addresses(&self) -> Vec<String> {
        let ips: Vec<IpAddr> = if self.listen.ip().is_unspecified() {
            let mut ips: Vec<IpAddr> = if_addrs::get_if_addrs()
                .unwrap_or_default()
                .into_iter()
                .map(|i| i.ip())
                .filter(|ip| !ip.is_loopback() && reachable(ip))
                .filter(|ip| self.listen.is_ipv6() || ip.is_ipv4())
                .collect();
            ips.sort_by_key(|ip| (ip.is_ipv6(), *ip));
            ips.dedup();
            ips
        } else {
            vec![self.listen.ip()]
        };
        ips.into_iter()
            .map(|ip| match ip {
                IpAddr::V4(v4) => self.url(&v4.to_string()),
                IpAddr::V6(v6) => self.url(&format!("[{v6}]")),
            })
            .collect()
    }

    /// The QR code's URL: a LAN address when there is one, because every phone can open an
    /// address while not every phone resolves `.local`; otherwise the name.
    fn qr_url(&self, addresses: &[String]) -> String {
        addresses
            .iter()
            .find(|a| !a.contains('['))
            .cloned()
            .unwrap_or_else(|| self.url(&self.host()))
    }

    fn qr_svg(&self, url: &str) -> Result<Arc<str>, qrcode::types::QrError> {
        let mut cache = self.qr.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((u, svg)) = cache.as_ref() {
            if u == url {
                return Ok(svg.clone());
            }
        }
        let code = qrcode::QrCode::new(url.as_bytes())?;
        let svg: Arc<str> = code
            .render::<qrcode::render::svg::Color>()
            .min_dimensions(256, 256)
            .dark_color(qrcode::render::svg::Color("#000000"))
            .light_color(qrcode::render::svg::Color("#ffffff"))
            .build()
            .into();
        *cache = Some((url.to_string(), svg.clone()));
        Ok(svg)
    }
}

/// Link-local IPv6 needs a zone id that a URL cannot carry to a phone.
fn reachable(ip: &IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => !v4.is_link_local(),
        IpAddr::V6(v6) => (v6.segments()[0] & 0xffc0) != 0xfe80,
    }
}

/// `GET /api/join`.
pub async fn join(State(state): State<Arc<AppState>>) -> Response {
    let j = &state.join;
    let host = j.host();
    let addresses = j.addresses();
    let body = json!({
        "url": j.url(&host),
        "host": host,
        "addresses": addresses,
        "qr_url": j.qr_url(&addresses),
    });
    ([(header::CACHE_CONTROL, "no-cache")], Json(body)).into_response()
}

/// `GET /api/qr.svg`: the QR code of `qr_url`.
pub async fn qr(State(state): State<Arc<AppState>>) -> Response {
    let j = &state.join;
    let url = j.qr_url(&j.addresses());
    match j.qr_svg(&url) {
        Ok(svg) => (
            [
                (header::CONTENT_TYPE, "image/svg+xml"),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            svg.to_string(),
        )
            .into_response(),
        Err(e) => super::http::error(
            crate::protocol::ErrorCode::Internal,
            format!("cannot draw the QR code: {e}"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let j = Join::new("jukebox.local".into(), "0.0.0.0:80".parse().unwrap());
        assert_eq!(j.url("jukebox.local"), "http://jukebox.local/");
        let j = Join::new("party.local".into(), "10.0.0.5:8080".parse().unwrap());
        assert_eq!(j.addresses(), vec!["http://10.0.0.5:8080/".to_string()]);
        assert_eq!(j.qr_url(&j.addresses()), "http://10.0.0.5:8080/");
        assert_eq!(j.qr_url(&[]), "http://party.local:8080/");
        let svg = j.qr_svg("http://10.0.0.5:8080/").unwrap();
        assert!(
            svg.starts_with("<?xml") && svg.contains("<svg"),
            "{svg:.80}"
        );
    }
}
