//! How a phone reaches the jukebox: the mDNS name (`http://jukebox.local/`) while mDNS holds
//! it, the machine's LAN addresses (for phones that cannot resolve `.local`, and for every
//! phone when mDNS is off), a QR code of the address to scan from the TV, and the Wi-Fi to
//! join first at a garden party. `GET /api/join` and `GET /api/qr.svg`.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use super::wifi::Wifi;
use super::AppState;

/// What the server knows of its own names and addresses.
pub struct Join {
    /// The `.local` name made from the party name (`jukebox.local`): the name the jukebox
    /// answers to in `Host` while mDNS announces none (a router or a hosts file may still
    /// give it), never shown to phones unless announced.
    configured: String,
    /// The mDNS name announced now (`jukebox-2.local` when another machine holds the first);
    /// `None` while mDNS is off or did not start, when nothing answers a `.local` name.
    announced: Mutex<Option<String>>,
    listen: SocketAddr,
    /// The last QR code drawn, by the URL it encodes: the TV asks for it every few minutes.
    qr: QrCache,
    wifi: Option<Wifi>,
}

impl Join {
    pub fn new(configured: String, listen: SocketAddr, wifi: Option<Wifi>) -> Self {
        Join {
            configured,
            announced: Mutex::new(None),
            listen,
            qr: QrCache::default(),
            wifi,
        }
    }

    /// mDNS announces this name now.
    pub fn set_host(&self, host: String) {
        *self.announced.lock().unwrap_or_else(|e| e.into_inner()) = Some(host);
    }

    /// The `.local` name phones can open now, if mDNS holds one.
    pub fn host(&self) -> Option<String> {
        self.announced
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The name the `Host` check accepts besides addresses: the announced one, or while
    /// there is none, the configured one.
    pub fn own_name(&self) -> String {
        self.host().unwrap_or_else(|| self.configured.clone())
    }

    pub fn wifi(&self) -> Option<&Wifi> {
        self.wifi.as_ref()
    }

    fn url(&self, host: &str) -> String {
        match self.listen.port() {
            80 => format!("http://{host}/"),
            port => format!("http://{host}:{port}/"),
        }
    }

    fn ip_url(&self, ip: IpAddr) -> String {
        match ip {
            IpAddr::V4(v4) => self.url(&v4.to_string()),
            IpAddr::V6(v6) => self.url(&format!("[{v6}]")),
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
        ips.into_iter().map(|ip| self.ip_url(ip)).collect()
    }

    /// The QR code's URL: an IPv4 address when there is one, because every phone can open an
    /// address while not every phone resolves `.local`; else the announced name; else an
    /// IPv6 address. `None` while the machine has no address at all (no network yet).
    fn qr_url(&self, addresses: &[String]) -> Option<String> {
        addresses
            .iter()
            .find(|a| !a.contains('['))
            .cloned()
            .or_else(|| self.host().map(|h| self.url(&h)))
            .or_else(|| addresses.first().cloned())
    }

    /// The URL to show as the way in: the `.local` name while mDNS holds it, else the QR
    /// code's address.
    fn main_url(&self, addresses: &[String]) -> Option<String> {
        self.host()
            .map(|h| self.url(&h))
            .or_else(|| self.qr_url(addresses))
    }

    /// The guest page at an address that works for the phone asking: the one its connection
    /// reached (on the hotspot, the Pi's hotspot address), else the QR code's.
    pub fn guest_page_for(&self, reached: Option<IpAddr>) -> Option<String> {
        let reached = reached.map(|ip| match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        });
        match reached {
            Some(ip) if !ip.is_unspecified() && reachable(&ip) => Some(self.ip_url(ip)),
            _ => self.qr_url(&self.addresses()),
        }
    }
}

/// One QR code drawn, by the text it encodes: the TV asks again every few minutes, and the
/// text rarely changes.
#[derive(Default)]
pub struct QrCache(Mutex<Option<(String, Arc<str>)>>);

impl QrCache {
    /// The SVG of `text`: black on white with its quiet zone, at least 256 px.
    pub fn svg(&self, text: &str) -> Result<Arc<str>, qrcode::types::QrError> {
        let mut cache = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((t, svg)) = cache.as_ref() {
            if t == text {
                return Ok(svg.clone());
            }
        }
        let code = qrcode::QrCode::new(text.as_bytes())?;
        let svg: Arc<str> = code
            .render::<qrcode::render::svg::Color>()
            .min_dimensions(256, 256)
            .dark_color(qrcode::render::svg::Color("#000000"))
            .light_color(qrcode::render::svg::Color("#ffffff"))
            .build()
            .into();
        *cache = Some((text.to_string(), svg.clone()));
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

/// `GET /api/join`. `host` is `null` while no `.local` name is announced; `wifi` is `null`
/// without `wifi_ssid`, and never holds the password.
pub async fn join(State(state): State<Arc<AppState>>) -> Response {
    let j = &state.join;
    let addresses = j.addresses();
    let wifi = j
        .wifi()
        .map(|w| json!({"ssid": w.ssid, "qr": "/api/wifi-qr.svg"}));
    let body = json!({
        "url": j.main_url(&addresses),
        "host": j.host(),
        "qr_url": j.qr_url(&addresses),
        "addresses": addresses,
        "wifi": wifi,
    });
    ([(header::CACHE_CONTROL, "no-cache")], Json(body)).into_response()
}

/// `GET /api/qr.svg`: the QR code of `qr_url`.
pub async fn qr(State(state): State<Arc<AppState>>) -> Response {
    let j = &state.join;
    let Some(url) = j.qr_url(&j.addresses()) else {
        return super::http::error(
            crate::protocol::ErrorCode::Busy,
            "this machine has no network address yet",
        );
    };
    match j.qr.svg(&url) {
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
        let j = Join::new("jukebox.local".into(), "0.0.0.0:80".parse().unwrap(), None);
        assert_eq!(j.url("jukebox.local"), "http://jukebox.local/");
        let j = Join::new("party.local".into(), "10.0.0.5:8080".parse().unwrap(), None);
        assert_eq!(j.addresses(), vec!["http://10.0.0.5:8080/".to_string()]);
        assert_eq!(
            j.qr_url(&j.addresses()).as_deref(),
            Some("http://10.0.0.5:8080/")
        );
        let svg = j.qr.svg("http://10.0.0.5:8080/").unwrap();
        assert!(
            svg.starts_with("<?xml") && svg.contains("<svg"),
            "{svg:.80}"
        );
    }

    /// The `.local` name is shown only once mDNS announces it; until then the address is the
    /// way in, and the configured name is still one the Host check accepts.
    #[test]
    fn the_name_only_while_mdns_holds_it() {
        let j = Join::new("party.local".into(), "10.0.0.5:8080".parse().unwrap(), None);
        let addrs = j.addresses();
        assert_eq!(j.host(), None);
        assert_eq!(j.main_url(&addrs).as_deref(), Some("http://10.0.0.5:8080/"));
        assert_eq!(j.qr_url(&[]), None);
        assert_eq!(j.own_name(), "party.local");
        j.set_host("party-2.local".into());
        assert_eq!(j.host().as_deref(), Some("party-2.local"));
        assert_eq!(
            j.main_url(&addrs).as_deref(),
            Some("http://party-2.local:8080/")
        );
        assert_eq!(
            j.qr_url(&addrs).as_deref(),
            Some("http://10.0.0.5:8080/"),
            "the QR code keeps the address"
        );
        assert_eq!(j.qr_url(&[]).as_deref(), Some("http://party-2.local:8080/"));
        assert_eq!(j.own_name(), "party-2.local");
    }

    #[test]
    fn the_guest_page_at_the_address_reached() {
        let j = Join::new("jukebox.local".into(), "10.0.0.5:80".parse().unwrap(), None);
        let at = |ip: &str| j.guest_page_for(Some(ip.parse().unwrap()));
        assert_eq!(at("10.42.0.1").as_deref(), Some("http://10.42.0.1/"));
        assert_eq!(at("::ffff:10.42.0.1").as_deref(), Some("http://10.42.0.1/"));
        assert_eq!(at("fd00::1").as_deref(), Some("http://[fd00::1]/"));
        // No zone id in a URL: the QR code's address instead.
        assert_eq!(at("fe80::1").as_deref(), Some("http://10.0.0.5/"));
        assert_eq!(j.guest_page_for(None).as_deref(), Some("http://10.0.0.5/"));
    }
}
