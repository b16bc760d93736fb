//! The HTTP API (`proto-docs/http-api.md`): [`router`] maps each path to its handler, one
//! file per endpoint family, and puts them behind the checks and CORS as an [`App`];
//! [`error`] holds the one `IntoResponse` for errors. The checks in front of every route run
//! in one service, [`guard`]: [`host`] (DNS rebinding), the
//! head's limits, [`forwarded`] (per-client limit behind a trusted proxy), shutdown,
//! [`origin`] (cross-site requests), [`body_deadline`] (the body timeout), [`authenticate`]
//! (who the caller is; each handler then checks its right).

use std::sync::Arc;

use axum::Router;
use axum::routing::{get, post};

use crate::broker::Broker;

pub use app::App;

mod app;
pub mod authenticate;
pub mod body;
pub mod body_deadline;
pub mod console;
pub mod consumers;
pub mod error;
pub mod forwarded;
pub mod guard;
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
/// guards, shutdown refusal, CORS. Bodies are read by each handler with its own limit,
/// which answers in JSON (no route uses axum's body extractors and their default limit).
pub fn router(broker: Broker) -> App {
    let config = broker.config();
    // `*` with credentials is refused by `Config::validate`.
    let cors = cors(&config.cors_origins, config.auth.is_some());
    let guards = Arc::new(guard::Guards {
        hosts: host::HostPolicy::from_config(config),
        origins: origin::OriginPolicy::new(&config.cors_origins),
        forwarded: forwarded::Forwarded {
            trusted: config.trusted_proxies.clone(),
            limits: crate::connection::client_limits::ClientLimits::new(
                config.max_connections_per_client,
                config.limit_loopback_clients,
            ),
        },
        body_timeout: config.body_timeout,
        auth: config.auth.clone(),
        shutdown: broker.shutdown_token(),
    });
    let routes = Router::new()
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
        .with_state(broker);
    App::guarded(guard::Guarded::new(guards, routes), cors)
}
