//! Errors on the wire (docs/PROTOCOL.md §8): the stable codes with their HTTP statuses, and
//! the `error` object a reply, an `error` frame or an HTTP error body carries. A refusal's
//! numbers travel in `data`, so clients never read them back out of the English `message`.

use axum::http::StatusCode;
use serde::Serialize;
use serde_json::{json, Value};

use super::incoming::FrameError;
use crate::hub::HubError;
use crate::party::Refusal;

/// Every error code the jukebox sends. The HTTP status of each is fixed here, and only here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    BadJson,
    BadRequest,
    UnknownCmd,
    Unauthorized,
    Forbidden,
    NotFound,
    StalePlay,
    Duplicate,
    LimitReached,
    RequestsPaused,
    RecentlyPlayed,
    ArtistSpacing,
    /// A content rule of the host refuses the track (`data.rule` says which).
    NotAllowed,
    RateLimited,
    UnsupportedVersion,
    MethodNotAllowed,
    Timeout,
    TooLarge,
    UnsupportedMediaType,
    Misdirected,
    Busy,
    Internal,
}

impl ErrorCode {
    pub const ALL: [ErrorCode; 22] = [
        ErrorCode::BadJson,
        ErrorCode::BadRequest,
        ErrorCode::UnknownCmd,
        ErrorCode::Unauthorized,
        ErrorCode::Forbidden,
        ErrorCode::NotFound,
        ErrorCode::StalePlay,
        ErrorCode::Duplicate,
        ErrorCode::LimitReached,
        ErrorCode::RequestsPaused,
        ErrorCode::RecentlyPlayed,
        ErrorCode::ArtistSpacing,
        ErrorCode::NotAllowed,
        ErrorCode::RateLimited,
        ErrorCode::UnsupportedVersion,
        ErrorCode::MethodNotAllowed,
        ErrorCode::Timeout,
        ErrorCode::TooLarge,
        ErrorCode::UnsupportedMediaType,
        ErrorCode::Misdirected,
        ErrorCode::Busy,
        ErrorCode::Internal,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadJson => "bad_json",
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::UnknownCmd => "unknown_cmd",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::NotFound => "not_found",
            ErrorCode::StalePlay => "stale_play",
            ErrorCode::Duplicate => "duplicate",
            ErrorCode::LimitReached => "limit_reached",
            ErrorCode::RequestsPaused => "requests_paused",
            ErrorCode::RecentlyPlayed => "recently_played",
            ErrorCode::ArtistSpacing => "artist_spacing",
            ErrorCode::NotAllowed => "not_allowed",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::UnsupportedVersion => "unsupported_version",
            ErrorCode::MethodNotAllowed => "method_not_allowed",
            ErrorCode::Timeout => "timeout",
            ErrorCode::TooLarge => "too_large",
            ErrorCode::UnsupportedMediaType => "unsupported_media_type",
            ErrorCode::Misdirected => "misdirected",
            ErrorCode::Busy => "busy",
            ErrorCode::Internal => "internal",
        }
    }

    /// The status of an HTTP answer with this code (the table of PROTOCOL.md §8).
    pub fn http_status(self) -> StatusCode {
        match self {
            ErrorCode::BadJson | ErrorCode::BadRequest | ErrorCode::UnknownCmd => {
                StatusCode::BAD_REQUEST
            }
            ErrorCode::Unauthorized => StatusCode::UNAUTHORIZED,
            ErrorCode::Forbidden => StatusCode::FORBIDDEN,
            ErrorCode::NotFound => StatusCode::NOT_FOUND,
            ErrorCode::StalePlay
            | ErrorCode::Duplicate
            | ErrorCode::LimitReached
            | ErrorCode::RequestsPaused
            | ErrorCode::RecentlyPlayed
            | ErrorCode::ArtistSpacing
            | ErrorCode::NotAllowed
            | ErrorCode::UnsupportedVersion => StatusCode::CONFLICT,
            ErrorCode::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ErrorCode::Timeout => StatusCode::REQUEST_TIMEOUT,
            ErrorCode::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ErrorCode::Misdirected => StatusCode::MISDIRECTED_REQUEST,
            ErrorCode::Busy => StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// Codes compare with their names, so a test can say `assert_eq!(e.code(), "not_found")`.
impl PartialEq<&str> for ErrorCode {
    fn eq(&self, name: &&str) -> bool {
        self.as_str() == *name
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The wire form of an error.
#[derive(Debug, Clone, PartialEq)]
pub struct WireError {
    pub code: ErrorCode,
    pub message: String,
    pub field: Option<String>,
    /// Set for `rate_limited`: sent as `retry_after_ms` (v1) and in `data`.
    pub retry_after_ms: Option<u64>,
    /// The numbers (and names) the message states, for clients to word it themselves.
    pub data: Option<Value>,
}

impl WireError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> WireError {
        WireError {
            code,
            message: message.into(),
            field: None,
            retry_after_ms: None,
            data: None,
        }
    }

    pub fn rate_limited(message: impl Into<String>, retry_after_ms: u64) -> WireError {
        WireError {
            retry_after_ms: Some(retry_after_ms),
            ..WireError::new(ErrorCode::RateLimited, message)
        }
    }

    pub fn to_json(&self) -> Value {
        let mut v = json!({"code": self.code, "message": self.message});
        if let Some(f) = &self.field {
            v["field"] = json!(f);
        }
        let mut data = self.data.clone();
        if let Some(ms) = self.retry_after_ms {
            v["retry_after_ms"] = json!(ms);
            let d = data.get_or_insert_with(|| json!({}));
            d["retry_after_ms"] = json!(ms);
        }
        if let Some(d) = data {
            v["data"] = d;
        }
        v
    }
}

/// What a refused request's `data` holds: the numbers behind its message.
pub fn refusal_data(r: &Refusal) -> Option<Value> {
    match r {
        Refusal::Banned | Refusal::NotFound | Refusal::RequestsPaused => None,
        Refusal::PlayingNow => Some(json!({"playing_now": true})),
        Refusal::RecentlyPlayed {
            minutes_ago,
            wait_minutes,
        } => Some(json!({"minutes_ago": minutes_ago, "wait_minutes": wait_minutes})),
        Refusal::ArtistSpacing {
            artist,
            plays_ago,
            spacing,
        } => Some(json!({"artist": artist, "plays_ago": plays_ago, "spacing": spacing})),
        Refusal::LimitReached { limit } => Some(json!({ "limit": limit })),
        Refusal::NotAllowed {
            rule: crate::party::Rule::TooLong,
            max_minutes,
        } => Some(json!({"rule": "too_long", "max_minutes": max_minutes})),
        Refusal::NotAllowed { rule, .. } => Some(json!({ "rule": rule.as_str() })),
    }
}

impl From<&HubError> for WireError {
    fn from(e: &HubError) -> WireError {
        let mut w = WireError::new(e.code(), e.to_string());
        match e {
            // What failed inside is for the log, not for clients.
            HubError::Internal(_) => w.message = "internal error".into(),
            HubError::RateLimited { retry_after_ms, .. } => {
                w.retry_after_ms = Some(*retry_after_ms);
            }
            HubError::BadRequest { field, message } => {
                w.field = Some((*field).to_string());
                w.message = message.clone();
            }
            HubError::Refused(r) => w.data = refusal_data(r),
            _ => {}
        }
        w
    }
}

impl From<&FrameError> for WireError {
    fn from(e: &FrameError) -> WireError {
        WireError {
            field: e.field.clone(),
            ..WireError::new(e.code, e.message.clone())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_serialise_as_their_names() {
        for c in ErrorCode::ALL {
            assert_eq!(json!(c), json!(c.as_str()));
        }
    }

    #[test]
    fn refusals_carry_their_numbers() {
        let e = HubError::Refused(Refusal::RecentlyPlayed {
            minutes_ago: 20,
            wait_minutes: 40,
        });
        let v = WireError::from(&e).to_json();
        assert_eq!(v["code"], "recently_played");
        assert_eq!(v["data"], json!({"minutes_ago": 20, "wait_minutes": 40}));
        let e = HubError::RateLimited {
            message: "slow down",
            retry_after_ms: 7,
        };
        let v = WireError::from(&e).to_json();
        assert_eq!(v["retry_after_ms"], 7);
        assert_eq!(v["data"], json!({"retry_after_ms": 7}));
        let v = WireError::from(&HubError::StalePlay).to_json();
        assert!(v.get("data").is_none(), "{v}");
    }
}
