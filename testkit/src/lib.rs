//! Test support shared by every suite and bench of bus: one harness instead of one per crate.
//!
//! A tour, in the order a test uses it:
//!
//! - [`server`]: [`TestServer`], a real broker and its HTTP server on `127.0.0.1:0` over a
//!   temporary directory, on the [`Engine`] the test asks for (disk or memory), with a
//!   config tweak, a shutdown trigger, stop and restart on the same directory; and
//!   [`ClientBroker`], the same with a connected `bus_client::Client`.
//! - [`engines!`]: one test body, `async fn name(engine: Engine)`, run as three tests,
//!   `name::disk`, `name::memory` and `name::jetstream`; `engines!(local: ...)` for bodies
//!   whose semantics only the local engines have.
//! - [`nats`]: [`NatsServer`], a real `nats-server -js` on loopback for the JetStream
//!   engine.
//! - [`wait`]: [`within`] bounds one await, [`eventually`] polls a condition the server
//!   reaches on its own, both with the hard deadline [`WAIT`].
//! - [`http`]: a small HTTP client ([`send`], [`Resp`]), raw-socket exchanges
//!   ([`raw_http`]) and percent-encoding ([`enc`]).
//! - [`sse`]: [`SseReader`], an incremental, bounded reader of `text/event-stream` bodies
//!   on top of the one SSE parser of the project.
//! - [`events`]: assertions and small shapes of the HTTP API (receipts, deliveries,
//!   metrics).
//! - [`proxy`]: [`Proxy`], a TCP proxy whose connections can be cut, for failure tests.
//! - [`tls`]: [`TestCerts`], a CA and a server certificate made for the test.
//! - [`rng`]: [`Rng`], a seeded generator for damage and kill tests that print their seed.
//! - [`segment_bytes`]: where records start in a segment's raw bytes, for damage tests.
//! - [`webdriver`]: [`webdriver::Browser`], headless Chromium driven through chromedriver
//!   (not re-exported: a browser test says `webdriver::`).
//!
//! Nothing here sleeps in the hope that something has happened: every await on the
//! network or the broker is bounded, and polling is kept to [`eventually`] and
//! [`webdriver::Browser::wait_for`].
//!
//! Everything is re-exported at the root, so a suite says `use bus_testkit::*;`.

pub mod events;
pub mod http;
pub mod nats;
pub mod proxy;
pub mod rng;
pub mod segment_bytes;
pub mod server;
pub mod sse;
pub mod tls;
pub mod wait;
pub mod webdriver;

pub use events::*;
pub use http::*;
pub use nats::*;
pub use proxy::*;
pub use rng::*;
pub use segment_bytes::*;
pub use server::*;
pub use sse::*;
pub use tls::*;
pub use wait::*;

/// Runs each named test body once per engine: for `async fn name(engine: Engine)`,
/// `engines!(name);` defines the tests `name::disk` and `name::memory`, each on a
/// two-worker multi-thread runtime, calling `name(Engine::Disk)` and
/// `name(Engine::Memory)`.
///
/// Write it where the `#[tokio::test]` attribute would go:
///
/// ```text
/// engines!(publishes_one_event);
/// async fn publishes_one_event(engine: Engine) {
///     let s = TestServer::start_default_on(engine).await;
///     // ...
/// }
/// ```
///
/// The calling crate needs `tokio` (with `macros` and `rt-multi-thread`) as a dependency.
///
/// `engines!(local: name, ...)` defines only the disk and memory cases, for bodies that
/// test what JetStream does differently (segments, fsync, retention by segment, restarts
/// of the memory engine): say why next to it. A `jetstream` case skips, with the reason
/// printed, where no `nats-server` is found, and fails under CI.
#[macro_export]
macro_rules! engines {
    (local: $($body:ident),+ $(,)?) => {
        $(
            mod $body {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn disk() {
                    super::$body($crate::Engine::Disk).await
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn memory() {
                    super::$body($crate::Engine::Memory).await
                }
            }
        )+
    };
    ($($body:ident),+ $(,)?) => {
        $(
            mod $body {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn disk() {
                    super::$body($crate::Engine::Disk).await
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn memory() {
                    super::$body($crate::Engine::Memory).await
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn jetstream() {
                    if $crate::NatsServer::available() {
                        super::$body($crate::Engine::JetStream).await
                    }
                }
            }
        )+
    };
}
