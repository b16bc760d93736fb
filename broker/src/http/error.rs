//! The one `IntoResponse` for errors: `{"error": {"code": "...", "message": "..."}}` with the
//! code's status.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::error::{Error, ErrorCode};

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let status =
            StatusCode::from_u16(self.code.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body =
            serde_json::json!({"error": {"code": self.code.as_str(), "message": self.message}});
        (status, axum::Json(body)).into_response()
    }
}

/// `404 not_found` for unknown paths.
pub async fn not_found(uri: axum::http::Uri) -> Error {
    Error::new(ErrorCode::NotFound, format!("no such path {}", uri.path()))
}

/// `405 method_not_allowed` for a known path with another method.
pub async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> Error {
    Error::new(
        ErrorCode::MethodNotAllowed,
        format!("{} does not accept {method}", uri.path()),
    )
}

/// A query string that does not parse.
pub fn bad_query(e: axum::extract::rejection::QueryRejection) -> Error {
    Error::new(ErrorCode::InvalidParameter, e.body_text())
}

/// A path segment that does not decode.
pub fn bad_path(e: axum::extract::rejection::PathRejection) -> Error {
    Error::new(ErrorCode::InvalidSubject, e.body_text())
}
