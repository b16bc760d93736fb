//! The baseline: the broker's own HTTP stack (the same listener, connection handling and
//! axum router, through `bus_broker::server::serve_app`, without the broker's guard)
//! answering a publish with a receipt-sized JSON body and doing no other work. `bus bench
//! pub --baseline` runs the same load against it in the same run, so that the broker's
//! figures can be read as a ratio of what its HTTP stack alone allows on this machine.
//!
//! Routes: `POST /v1/events/{subject}` reads the body and answers `201` with a fixed
//! receipt; `POST /v1/events` (a batch) reads the body and answers one fixed receipt per
//! line of it. `bus bench baseline` (hidden) serves it on an address until SIGINT or
//! SIGTERM, for other load generators.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::post;
use bus_broker::config::Config;

use super::args::BaselineArgs;
use super::server_thread::ServerThread;
use crate::error::CliError;
use crate::output::notice;

/// A receipt as long as the broker's for a bench subject.
const RECEIPT: &str = r#"{"id":"bench-1000000-9f3c2a1b","namespace":"bench","sequence":1000000,"subject":"bench.pub","time":"2026-12-02T13:22:11.123456789Z"}"#;

/// The largest batch answered in full (the broker's batch limit).
const MAX_BATCH_ITEMS: usize = 10_000;

/// The baseline's answers, built once.
struct Answers {
    /// One receipt.
    single: Bytes,
    /// `{"receipts":[...]}` for 1..=MAX_BATCH_ITEMS items, built on first use per size.
    batches: std::sync::Mutex<std::collections::HashMap<usize, Bytes>>,
}

/// The baseline's router.
fn router() -> Router {
    let answers = Arc::new(Answers {
        single: Bytes::from_static(RECEIPT.as_bytes()),
        batches: std::sync::Mutex::new(std::collections::HashMap::new()),
    });
    let one = answers.clone();
    Router::new()
        .route(
            "/v1/events/{subject}",
            post(move |_body: Bytes| {
                let body = one.single.clone();
                async move {
                    (
                        StatusCode::CREATED,
                        [(header::CONTENT_TYPE, "application/json")],
                        body,
                    )
                }
            }),
        )
        .route(
            "/v1/events",
            post(move |body: Bytes| {
                let answers = answers.clone();
                async move { batch_answer(&answers, &body) }
            }),
        )
}

/// One receipt per line of `body`, from the cache (the lock is held for a map look-up only).
fn batch_answer(answers: &Answers, body: &[u8]) -> impl IntoResponse + use<> {
    let lines = body
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .count();
    let items = lines.clamp(1, MAX_BATCH_ITEMS);
    let mut cache = answers.batches.lock().unwrap_or_else(|e| e.into_inner());
    let answer = cache
        .entry(items)
        .or_insert_with(|| {
            let receipts = vec![RECEIPT; items].join(",");
            Bytes::from(format!("{{\"receipts\":[{receipts}]}}"))
        })
        .clone();
    drop(cache);
    (
        StatusCode::CREATED,
        [(header::CONTENT_TYPE, "application/json")],
        answer,
    )
}

/// The baseline served on `listener` until `shutdown`, with the broker's default settings.
async fn serve(
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let config = Config::default();
    bus_broker::server::serve_app(
        listener,
        bus_broker::http::App::bare(router()),
        &config,
        None,
        shutdown,
    )
    .await
}

/// Starts the baseline on a loopback port, on threads of its own like the embedded broker.
pub fn start() -> Result<ServerThread, CliError> {
    ServerThread::spawn("baseline", |stop, ready| async move {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .map_err(|e| format!("cannot listen: {e}"))?;
        ready.listening(listener.local_addr().map_err(|e| e.to_string())?);
        serve(listener, async move {
            let _ = stop.await;
        })
        .await
        .map_err(|e| e.to_string())
    })
}

/// `bus bench baseline`: serves on `--addr` until SIGINT or SIGTERM.
pub async fn serve_until_signal(args: BaselineArgs) -> Result<(), CliError> {
    let listener = tokio::net::TcpListener::bind(args.addr)
        .await
        .map_err(|e| CliError::with_cause(format!("cannot listen on {}", args.addr), e))?;
    let addr = listener.local_addr().unwrap_or(args.addr);
    notice(&format!("baseline listening on http://{addr}"));
    serve(listener, async {
        crate::commands::server::wait_for_signal().await;
    })
    .await
    .map_err(|e| CliError::with_cause("the baseline failed", e))
}
