//! Management endpoints: namespaces, subscriptions, health and metrics.
//!
//! Namespaces and subscriptions are answered in their `bus-proto` wire types
//! ([`bus_proto::NamespaceInfo`], [`bus_proto::SubscriptionInfo`]), converted from the
//! broker's figures field by field.

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};

use super::query::{NoParams, Query};
use crate::broker::Broker;
use crate::error::{Error, ErrorCode};

/// The wire form of a namespace's figures.
fn namespace_json(n: crate::broker::NamespaceInfo) -> bus_proto::NamespaceInfo {
    bus_proto::NamespaceInfo {
        name: n.name,
        events: n.events,
        bytes: n.bytes,
        first_sequence: n.first_sequence,
        last_sequence: n.last_sequence,
        segments: n.segments,
        subscribers: n.subscribers,
        fsync: n.fsync,
        read_only: n.read_only,
    }
}

/// The wire form of a live subscription.
fn subscription_json(s: crate::broker::SubscriptionInfo) -> bus_proto::SubscriptionInfo {
    bus_proto::SubscriptionInfo {
        id: s.id,
        pattern: s.pattern,
        started: s.started,
        delivered: s.delivered,
        kind: s.kind.to_owned(),
    }
}

/// `GET /v1/namespaces`.
pub async fn namespaces(State(broker): State<Broker>, _: Query<NoParams>) -> Response {
    let all: Vec<_> = broker
        .namespaces()
        .into_iter()
        .map(namespace_json)
        .collect();
    axum::Json(all).into_response()
}

/// `GET /v1/namespaces/{name}`.
pub async fn namespace(
    State(broker): State<Broker>,
    name: Result<Path<String>, PathRejection>,
    _: Query<NoParams>,
) -> Result<Response, Error> {
    let Path(name) = name.map_err(super::error::bad_path)?;
    broker
        .namespace(&name)
        .map(|n| axum::Json(namespace_json(n)).into_response())
        .ok_or_else(|| {
            Error::new(
                ErrorCode::UnknownNamespace,
                format!("namespace {name:?} does not exist"),
            )
        })
}

/// `GET /v1/subscriptions`.
pub async fn subscriptions(State(broker): State<Broker>, _: Query<NoParams>) -> Response {
    let all: Vec<_> = broker
        .subscriptions()
        .into_iter()
        .map(subscription_json)
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
pub async fn metrics(State(broker): State<Broker>) -> Response {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        broker.metrics_text(),
    )
        .into_response()
}
