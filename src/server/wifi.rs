//! The garden party's first QR code: the one that joins the Wi-Fi (the Pi's own hotspot)
//! before the second one opens the jukebox. `GET /api/wifi-qr.svg` draws the text phone
//! cameras read as a network to join, `WIFI:T:WPA;S:<ssid>;P:<password>;;`. The password is
//! in that picture and nowhere else: `/api/join` names the network only.

use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};

use super::join::QrCache;
use super::AppState;
use crate::config::kinds::Secret;
use crate::protocol::ErrorCode;

/// The Wi-Fi the guests join (`wifi_ssid`, `wifi_password`).
pub struct Wifi {
    pub ssid: String,
    /// `None`: an open network.
    pub password: Option<Secret>,
    qr: QrCache,
}

impl Wifi {
    pub fn new(ssid: String, password: Option<Secret>) -> Self {
        Wifi {
            ssid,
            password,
            qr: QrCache::default(),
        }
    }

    /// The QR code's text, in the format phone cameras join networks from (ZXing's
    /// "WIFI:" scheme, which Android and iOS read): WPA with a password, `nopass` without.
    pub fn qr_text(&self) -> String {
        match &self.password {
            Some(p) => format!(
                "WIFI:T:WPA;S:{};P:{};;",
                escape(&self.ssid),
                escape(p.expose())
            ),
            None => format!("WIFI:T:nopass;S:{};;", escape(&self.ssid)),
        }
    }
}

/// The scheme's escaping: a backslash before each of `\ ; , : "`, which would otherwise end
/// or quote a field.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '\\' | ';' | ',' | ':' | '"') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// `GET /api/wifi-qr.svg`: the Wi-Fi QR code, or `404` when no `wifi_ssid` is configured.
/// `no-store`: it carries the password, which no cache should keep.
pub async fn qr(State(state): State<Arc<AppState>>) -> Response {
    let Some(wifi) = state.join.wifi() else {
        return super::http::error(ErrorCode::NotFound, "no Wi-Fi is configured (wifi_ssid)");
    };
    match wifi.qr.svg(&wifi.qr_text()) {
        Ok(svg) => (
            [
                (header::CONTENT_TYPE, "image/svg+xml"),
                (header::CACHE_CONTROL, "no-store"),
            ],
            svg.to_string(),
        )
            .into_response(),
        Err(e) => super::http::error(
            ErrorCode::Internal,
            format!("cannot draw the Wi-Fi QR code: {e}"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::kinds::{Kind, WifiPassword};

    fn secret(p: &str) -> Secret {
        WifiPassword::check("wifi_password", p.into()).unwrap()
    }

    #[test]
    fn qr_texts() {
        let table = [
            ("Party", Some("hunter22"), "WIFI:T:WPA;S:Party;P:hunter22;;"),
            ("Party", None, "WIFI:T:nopass;S:Party;;"),
            (
                r#"a;b,c:d\e"f g"#,
                Some(r#"p;w,d:x\y"z 1"#),
                r#"WIFI:T:WPA;S:a\;b\,c\:d\\e\"f g;P:p\;w\,d\:x\\y\"z 1;;"#,
            ),
            (
                "Café ☕",
                Some("pässwörd"),
                "WIFI:T:WPA;S:Café ☕;P:pässwörd;;",
            ),
        ];
        for (ssid, password, want) in table {
            let w = Wifi::new(ssid.into(), password.map(secret));
            assert_eq!(w.qr_text(), want);
        }
    }

    #[test]
    fn the_password_is_not_in_debug_output() {
        let s = secret("hunter22");
        assert_eq!(format!("{s:?}"), "<hidden>");
        assert_eq!(s.expose(), "hunter22");
    }
}
