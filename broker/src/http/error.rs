//! The one `IntoResponse` for errors: `{"error": {"code": "...", "message": "..."}}` with the
//! code's status.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::error::{Error, ErrorCode};

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let status =
            StatusCode::from_u16(self.code.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let code = self.code;
        let body = bus_proto::error::ErrorBody::new(self.code, self.message);
        let mut r = (status, axum::Json(body)).into_response();
        // For the middleware that counts refusals by their code.
        r.extensions_mut().insert(code);
        r
    }
}

/// `404 not_found` for unknown paths.
pub async fn not_found(uri: axum::http::Uri) -> Error {
    Error::new(ErrorCode::NotFound, format!("no such path {}", uri.path()))
}

/// `405 method_not_allowed` with `Allow: GET`, for `HEAD` on the SSE stream (which would
/// otherwise open a subscription and answer its headers only).
pub async fn get_only(uri: axum::http::Uri) -> axum::response::Response {
    let mut r = Error::new(
        ErrorCode::MethodNotAllowed,
        format!("{} does not accept HEAD", uri.path()),
    )
    .into_response();
    r.headers_mut().insert(
        axum::http::header::ALLOW,
        axum::http::HeaderValue::from_static("GET"),
    );
    r
}

/// `405 method_not_allowed` for a known path with another method.
pub async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> Error {
    Error::new(
        ErrorCode::MethodNotAllowed,
        format!("{} does not accept {method}", uri.path()),
    )
}

/// A path segment that does not decode.
pub fn bad_path(e: axum::extract::rejection::PathRejection) -> Error {
    Error::new(ErrorCode::InvalidSubject, e.body_text())
}
