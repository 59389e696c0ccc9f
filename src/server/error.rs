//! The one HTTP error: every error body the server sends is an [`ApiError`], the protocol's
//! `error` object (`code`, `message`, and `field`, `retry_after_ms`, `data` when they apply)
//! at the status its code has (`ErrorCode::http_status`), with `Retry-After` when it is a
//! rate limit.

use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;

use crate::hub::HubError;
use crate::protocol::{ErrorCode, FrameError, WireError};

#[derive(Debug, Clone, PartialEq)]
pub struct ApiError(Box<WireError>);

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> ApiError {
        ApiError(Box::new(WireError::new(code, message)))
    }

    /// A `bad_request` naming the field at fault.
    pub fn field(field: &str, message: impl Into<String>) -> ApiError {
        let mut e = WireError::new(ErrorCode::BadRequest, message);
        e.field = Some(field.to_string());
        ApiError(Box::new(e))
    }

    /// A body that is not JSON.
    pub fn bad_json(e: &serde_json::Error) -> ApiError {
        ApiError::new(ErrorCode::BadJson, format!("the body is not JSON: {e}"))
    }

    /// Over a limit: try again in `retry_after_ms`.
    pub fn rate_limited(retry_after_ms: u64, message: &str) -> ApiError {
        ApiError(Box::new(WireError::rate_limited(message, retry_after_ms)))
    }

    /// `500 internal` with a generic message; the details go to the log only.
    pub fn internal(e: &dyn std::fmt::Display) -> ApiError {
        tracing::error!("a request failed: {e}");
        ApiError::new(ErrorCode::Internal, "internal error")
    }

    pub fn code(&self) -> ErrorCode {
        self.0.code
    }
}

impl From<WireError> for ApiError {
    fn from(e: WireError) -> ApiError {
        ApiError(Box::new(e))
    }
}

impl From<&FrameError> for ApiError {
    fn from(e: &FrameError) -> ApiError {
        WireError::from(e).into()
    }
}

impl From<HubError> for ApiError {
    fn from(e: HubError) -> ApiError {
        if matches!(e, HubError::Internal(_)) {
            return ApiError::internal(&e);
        }
        WireError::from(&e).into()
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = (self.0.code.http_status(), Json(self.0.to_json())).into_response();
        if let Some(v) = self
            .0
            .retry_after_ms
            .and_then(|ms| HeaderValue::from_str(&ms.div_ceil(1000).to_string()).ok())
        {
            r.headers_mut().insert(header::RETRY_AFTER, v);
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::StatusCode;

    async fn body(r: Response) -> (StatusCode, serde_json::Value, Option<String>) {
        let status = r.status();
        let retry = r
            .headers()
            .get(header::RETRY_AFTER)
            .map(|v| v.to_str().unwrap().to_string());
        let bytes = axum::body::to_bytes(r.into_body(), 1 << 16).await.unwrap();
        (status, serde_json::from_slice(&bytes).unwrap(), retry)
    }

    #[tokio::test]
    async fn bodies_are_the_wire_error_at_its_status() {
        let (st, v, retry) = body(ApiError::field("cursor", "not a cursor").into_response()).await;
        assert_eq!(st, StatusCode::BAD_REQUEST);
        assert_eq!(
            v,
            serde_json::json!({"code": "bad_request", "field": "cursor", "message": "not a cursor"})
        );
        assert_eq!(retry, None);

        let (st, v, retry) = body(ApiError::rate_limited(1500, "wait").into_response()).await;
        assert_eq!(st, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(v["retry_after_ms"], 1500);
        assert_eq!(v["data"]["retry_after_ms"], 1500);
        assert_eq!(retry.as_deref(), Some("2"));

        let (st, v, _) =
            body(ApiError::from(HubError::Internal("disk on fire".into())).into_response()).await;
        assert_eq!(st, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(
            v,
            serde_json::json!({"code": "internal", "message": "internal error"})
        );

        let (st, v, _) = body(ApiError::from(HubError::StalePlay).into_response()).await;
        assert_eq!(st, StatusCode::CONFLICT);
        assert_eq!(v["code"], "stale_play");
    }
}
