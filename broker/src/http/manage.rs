//! Management endpoints: namespaces, subscriptions, health and metrics.
//!
//! Namespaces and subscriptions are answered in their `bus-proto` wire types
//! ([`bus_proto::NamespaceInfo`], [`bus_proto::SubscriptionInfo`]), which the broker
//! builds directly. Listings show only what the caller may see: namespaces some publish or
//! subscribe allow of theirs reaches, subscriptions on patterns they could subscribe to.

use axum::Extension;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};

use super::query::{NoParams, Query};
use crate::auth::Caller;
use crate::broker::Broker;
use crate::error::{Error, ErrorCode};

/// `GET /v1/namespaces`.
pub async fn namespaces(
    State(broker): State<Broker>,
    Extension(caller): Extension<Caller>,
    _: Query<NoParams>,
) -> Response {
    broker.refresh_stats(|n| caller.sees_namespace(n)).await;
    let all: Vec<_> = broker
        .namespaces()
        .into_iter()
        .filter(|n| caller.sees_namespace(&n.name))
        .collect();
    axum::Json(all).into_response()
}

/// `GET /v1/namespaces/{name}`.
pub async fn namespace(
    State(broker): State<Broker>,
    Extension(caller): Extension<Caller>,
    name: Result<Path<String>, PathRejection>,
    _: Query<NoParams>,
) -> Result<Response, Error> {
    let Path(name) = name.map_err(super::error::bad_path)?;
    if !caller.sees_namespace(&name) {
        return Err(Error::new(
            ErrorCode::Forbidden,
            format!(
                "principal {:?} may not see namespace {name:?}: no publish or subscribe right of theirs reaches it",
                &**caller.name()
            ),
        ));
    }
    broker.check_damaged(&name)?;
    broker.refresh_stats(|n| n == name).await;
    broker
        .namespace(&name)
        .map(|n| axum::Json(n).into_response())
        .ok_or_else(|| {
            Error::new(
                ErrorCode::UnknownNamespace,
                format!("namespace {name:?} does not exist"),
            )
        })
}

/// `GET /v1/subscriptions`.
pub async fn subscriptions(
    State(broker): State<Broker>,
    Extension(caller): Extension<Caller>,
    _: Query<NoParams>,
) -> Response {
    let all: Vec<_> = broker
        .subscriptions()
        .into_iter()
        .filter(|s| caller.sees_pattern(&s.pattern))
        .collect();
    axum::Json(all).into_response()
}

/// `GET /healthz`.
pub async fn healthz(State(broker): State<Broker>) -> Result<Response, Error> {
    if broker.shutdown_token().is_cancelled() {
        return Err(Error::new(
            ErrorCode::ShuttingDown,
            "the broker is shutting down",
        ));
    }
    Ok(axum::Json(broker.health()).into_response())
}

/// `GET /metrics`.
pub async fn metrics(
    State(broker): State<Broker>,
    Extension(caller): Extension<Caller>,
) -> Result<Response, Error> {
    caller.check_metrics()?;
    broker.refresh_stats(|_| true).await;
    Ok((
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        broker.metrics_text(),
    )
        .into_response())
}
