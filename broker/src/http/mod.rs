//! The HTTP API (`proto-docs/http-api.md`): [`router`] maps each path to its handler, one
//! file per endpoint family; [`error`] holds the one `IntoResponse` for errors. The guards
//! in front of every route: [`host`] (DNS rebinding), [`origin`] (cross-site requests),
//! [`forwarded`] (per-client limit behind a trusted proxy), [`body_deadline`] (the body
//! timeout), [`authenticate`] (who the caller is; each handler then checks its right).

use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use crate::broker::Broker;
use crate::error::{Error, ErrorCode};

pub mod authenticate;
pub mod body;
pub mod body_deadline;
pub mod console;
pub mod consumers;
pub mod error;
pub mod forwarded;
pub mod holding_body;
pub mod host;
pub mod manage;
pub mod origin;
pub mod publish;
pub mod query;
pub mod request;
pub mod sse;
pub mod stream;

/// Every API route, as (method, path) in the router's syntax; the OpenAPI test checks this
/// list against `proto-docs/openapi.yaml`. The console's static files (`/ui`, see
/// [`console`]) are not API and are left out of both.
pub const ROUTES: &[(&str, &str)] = &[
    ("POST", "/v1/events/{subject}"),
    ("POST", "/v1/events"),
    ("GET", "/v1/events"),
    ("POST", "/v1/requests/{subject}"),
    ("GET", "/v1/stream"),
    ("GET", "/v1/namespaces"),
    ("GET", "/v1/namespaces/{name}"),
    ("GET", "/v1/subscriptions"),
    ("GET", "/v1/consumers"),
    ("GET", "/v1/consumers/{name}"),
    ("DELETE", "/v1/consumers/{name}"),
    ("PATCH", "/v1/consumers/{name}"),
    ("POST", "/v1/consumers/{name}/seek"),
    ("POST", "/v1/consumers/{name}/acks"),
    ("POST", "/v1/consumers/{name}/events/{id}/{op}"),
    ("POST", "/v1/session"),
    ("DELETE", "/v1/session"),
    ("GET", "/v1/whoami"),
    ("GET", "/healthz"),
    ("GET", "/metrics"),
];

/// New requests are answered `503 shutting_down` once shutdown began (streams already
/// open end by themselves).
async fn refuse_when_stopping(State(broker): State<Broker>, req: Request, next: Next) -> Response {
    if broker.shutdown_token().is_cancelled() {
        return Error::new(ErrorCode::ShuttingDown, "the broker is shutting down").into_response();
    }
    next.run(req).await
}

/// The broker's limits on the request head, answered with the JSON error body (the HTTP
/// library's own limits are set past these in `server.rs`).
async fn limit_head(req: Request, next: Next) -> Response {
    use crate::server::{MAX_HEADER_BYTES, MAX_HEADERS, MAX_URI_BYTES};
    let uri_len = req.uri().path_and_query().map_or(0, |p| p.as_str().len());
    if uri_len > MAX_URI_BYTES {
        return Error::new(
            ErrorCode::UriTooLong,
            format!("the path and query are {uri_len} bytes; at most {MAX_URI_BYTES} are taken"),
        )
        .into_response();
    }
    let count = req.headers().len();
    if count > MAX_HEADERS {
        return Error::new(
            ErrorCode::HeadersTooLarge,
            format!("{count} request headers; at most {MAX_HEADERS} are taken"),
        )
        .into_response();
    }
    let bytes: usize = req
        .headers()
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len() + 4)
        .sum();
    if bytes > MAX_HEADER_BYTES {
        return Error::new(
            ErrorCode::HeadersTooLarge,
            format!("{bytes} bytes of request headers; at most {MAX_HEADER_BYTES} are taken"),
        )
        .into_response();
    }
    next.run(req).await
}

fn cors(origins: &[String], credentials: bool) -> Option<tower_http::cors::CorsLayer> {
    use tower_http::cors::{AllowHeaders, AllowOrigin, CorsLayer, ExposeHeaders};
    if origins.is_empty() {
        return None;
    }
    // With credentials the headers a page may read are named (`*` is not allowed there).
    let exposed = if credentials {
        ExposeHeaders::list(
            [
                "bus-request-id",
                "retry-after",
                "www-authenticate",
                "content-type",
            ]
            .map(axum::http::HeaderName::from_static),
        )
    } else {
        ExposeHeaders::any()
    };
    let allow = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(origins.iter().filter_map(|o| o.parse().ok()))
    };
    Some(
        CorsLayer::new()
            .allow_origin(allow)
            .allow_methods([
                axum::http::Method::GET,
                axum::http::Method::POST,
                axum::http::Method::DELETE,
                axum::http::Method::PATCH,
            ])
            .allow_headers(AllowHeaders::mirror_request())
            .expose_headers(exposed)
            .allow_credentials(credentials),
    )
}

/// The application: every route, JSON 404/405, the Host, Origin, per-client and body-time
/// guards, shutdown refusal, CORS.
pub fn router(broker: Broker) -> Router {
    let config = broker.config();
    // `*` with credentials is refused by `Config::validate`.
    let cors = cors(&config.cors_origins, config.auth.is_some());
    let auth = config.auth.clone();
    let hosts = Arc::new(host::HostPolicy::from_config(config));
    let origins = Arc::new(origin::OriginPolicy::new(&config.cors_origins));
    let forwarded = Arc::new(forwarded::Forwarded {
        trusted: config.trusted_proxies.clone(),
        limits: crate::connection::client_limits::ClientLimits::new(
            config.max_connections_per_client,
            config.limit_loopback_clients,
        ),
    });
    let body_timeout = config.body_timeout;
    let app = Router::new()
        .route("/v1/events/{subject}", post(publish::publish_one))
        .route("/v1/events", post(publish::publish_batch).get(stream::pull))
        .route("/v1/requests/{subject}", post(request::request))
        .route("/v1/stream", get(stream::stream).head(error::get_only))
        .route("/v1/namespaces", get(manage::namespaces))
        .route("/v1/namespaces/{name}", get(manage::namespace))
        .route("/v1/subscriptions", get(manage::subscriptions))
        .route("/v1/consumers", get(consumers::list))
        .route(
            "/v1/consumers/{name}",
            get(consumers::get)
                .delete(consumers::delete)
                .patch(consumers::update),
        )
        .route("/v1/consumers/{name}/seek", post(consumers::seek))
        .route(
            "/v1/consumers/{name}/acks",
            post(consumers::acknowledge_batch),
        )
        .route(
            "/v1/consumers/{name}/events/{id}/{op}",
            post(consumers::acknowledge_one),
        )
        .route(
            "/v1/session",
            post(authenticate::open_session).delete(authenticate::close_session),
        )
        .route("/v1/whoami", get(authenticate::whoami))
        .route("/healthz", get(manage::healthz))
        .route("/metrics", get(manage::metrics))
        .route("/ui", get(console::redirect))
        .route("/ui/", get(console::index))
        .route("/ui/{file}", get(console::asset))
        .fallback(error::not_found)
        .method_not_allowed_fallback(error::method_not_allowed)
        // Bodies are read with their own limits, which answer in JSON.
        .layer(DefaultBodyLimit::disable())
        .layer(axum::middleware::from_fn_with_state(
            auth,
            authenticate::authenticate,
        ))
        .layer(axum::middleware::from_fn_with_state(
            body_timeout,
            body_deadline::limit_body_time,
        ))
        .layer(axum::middleware::from_fn_with_state(
            origins,
            origin::check_origin,
        ))
        .layer(axum::middleware::from_fn_with_state(
            broker.clone(),
            refuse_when_stopping,
        ))
        .layer(axum::middleware::from_fn_with_state(
            forwarded,
            forwarded::limit_forwarded,
        ))
        .layer(axum::middleware::from_fn(limit_head))
        .layer(axum::middleware::from_fn_with_state(
            hosts,
            host::check_host,
        ))
        .with_state(broker);
    match cors {
        Some(c) => app.layer(c),
        None => app,
    }
}
