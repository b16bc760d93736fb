//! [`Client`]: a cheap, cloneable handle over a pool of HTTP/1.1 connections to one broker,
//! and [`ConnectOptions`], its settings.
//!
//! A request that fails on a refused or dropped connection is sent again only where that is
//! safe, as the [`ReconnectPolicy`] allows: a publish with a dedup id (every publish has one
//! unless [`PublishBuilder::no_msg_id`]) and the background ack batches. Anything else fails
//! and the caller decides. Every one-shot request is bounded by the request timeout, every new
//! connection by the connect timeout.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper::header::{ACCEPT, CONTENT_TYPE, HeaderValue, USER_AGENT};
use hyper::{Method, Request, Response, StatusCode, Uri};
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rustls_pki_types::CertificateDer;
use serde_json::value::RawValue;

use crate::ack::{AckItem, AckOp, AckResult, AckStatus};
use crate::consumer::{ConsumerInfo, ConsumerUpdate, SubscribeOptions};
use crate::error::{ApiError, Error, ErrorKind};
use crate::message::{Gap, Message, NamespaceInfo, Page, Start};
use crate::publish::{BatchItem, PublishBuilder};
use crate::reconnect::ReconnectPolicy;
use crate::request::{ReplyBuilder, RequestBuilder};
use crate::sse::DEFAULT_MAX_EVENT_BYTES;
use crate::subscription::Subscription;
use crate::{PublishError, Receipt};

/// Default time to open a connection.
///
/// ```no_run
/// use bus_client::{ConnectOptions, DEFAULT_CONNECT_TIMEOUT};
/// // Twice the default, for a broker behind a slow link.
/// let options = ConnectOptions::new().connect_timeout(DEFAULT_CONNECT_TIMEOUT * 2);
/// ```
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Default time for a one-shot request's whole answer (for `pull`, on top of its `wait`; for
/// `subscribe`, until the stream's headers).
///
/// ```no_run
/// use bus_client::{ConnectOptions, DEFAULT_REQUEST_TIMEOUT};
/// let options = ConnectOptions::new().request_timeout(DEFAULT_REQUEST_TIMEOUT / 3);
/// ```
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How long an idle pooled connection is kept: below the broker's default idle timeout
/// (60 s), so that the client drops a connection before the broker closes it under a
/// request.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(50);
/// Largest non-stream answer body read; a larger one is a protocol error. Pull pages hold
/// at most 1,000 events.
const MAX_BODY_BYTES: usize = 512 * 1024 * 1024;

const CLIENT_AGENT: &str = concat!("bus-client/", env!("CARGO_PKG_VERSION"));

/// The request body type.
pub(crate) type Body = Full<Bytes>;

/// Settings of a [`Client`]. `Default` equals [`ConnectOptions::new`], the documented
/// defaults.
///
/// ```no_run
/// # async fn demo() -> Result<(), bus_client::Error> {
/// use std::time::Duration;
/// use bus_client::ConnectOptions;
///
/// let client = ConnectOptions::new()
///     .connect_timeout(Duration::from_secs(1))
///     .request_timeout(Duration::from_secs(10))
///     .connect("http://127.0.0.1:2021")
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    connect_timeout: Duration,
    request_timeout: Duration,
    max_event_bytes: usize,
    authorization: Option<HeaderValue>,
    reconnect: ReconnectPolicy,
    /// The certificate authorities trusted for `https://`; `None`: the system's.
    ca_certs: Option<Vec<CertificateDer<'static>>>,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        ConnectOptions::new()
    }
}

impl ConnectOptions {
    /// The defaults.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), bus_client::Error> {
    /// let client = bus_client::ConnectOptions::new()
    ///     .connect("http://127.0.0.1:2021")
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn new() -> ConnectOptions {
        ConnectOptions {
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            max_event_bytes: DEFAULT_MAX_EVENT_BYTES,
            authorization: None,
            reconnect: ReconnectPolicy::new(),
            ca_certs: None,
        }
    }

    /// Sends `Authorization: Bearer <token>` with every request: a token from `bus auth
    /// token`, or a JWT, for a broker started with `--auth`. Default: none. Fails with
    /// [`ErrorKind::InvalidInput`] when the token cannot be a header value.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), bus_client::Error> {
    /// let client = bus_client::ConnectOptions::new()
    ///     .token("bus_…")?
    ///     .connect("http://127.0.0.1:2021")
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn token(self, token: &str) -> Result<ConnectOptions, Error> {
        self.authorization(&format!("Bearer {}", token.trim()))
    }

    /// Sends `Authorization: <value>` with every request (another scheme, or a broker
    /// behind an authenticating proxy). Default: none.
    /// Fails with [`ErrorKind::InvalidInput`] when `value` is not a valid header value.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), bus_client::Error> {
    /// let client = bus_client::ConnectOptions::new()
    ///     .authorization("Bearer s3cr3t")?
    ///     .connect("http://127.0.0.1:2021")
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn authorization(mut self, value: &str) -> Result<ConnectOptions, Error> {
        let mut v = HeaderValue::from_str(value).map_err(|e| {
            Error::with_source(ErrorKind::InvalidInput, "invalid authorization header", e)
        })?;
        v.set_sensitive(true);
        self.authorization = Some(v);
        Ok(self)
    }

    /// Trusts the certificate authorities of the PEM file at `path` for an `https://`
    /// broker, instead of the system's (for a broker with a certificate of its own CA, like
    /// `curl --cacert`). Default: the system's. Fails with [`ErrorKind::InvalidInput`] when
    /// the file cannot be read or holds no certificate.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), bus_client::Error> {
    /// let client = bus_client::ConnectOptions::new()
    ///     .cacert("/etc/bus/ca.pem")?
    ///     .connect("https://bus.internal:2021")
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn cacert(mut self, path: impl AsRef<std::path::Path>) -> Result<ConnectOptions, Error> {
        use rustls_pki_types::pem::PemObject as _;
        let path = path.as_ref();
        let certs = CertificateDer::pem_file_iter(path)
            .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
            .map_err(|e| {
                Error::with_source(
                    ErrorKind::InvalidInput,
                    format!("cannot read certificates from {}", path.display()),
                    e.to_string(),
                )
            })?;
        if certs.is_empty() {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!("no certificate in {}", path.display()),
            ));
        }
        self.ca_certs = Some(certs);
        Ok(self)
    }

    /// How subscriptions reconnect and publishes retry after a dropped connection. Default:
    /// [`ReconnectPolicy::new`].
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), bus_client::Error> {
    /// use bus_client::{ConnectOptions, ReconnectPolicy};
    /// // Fail at once rather than wait out a broker restart.
    /// let client = ConnectOptions::new()
    ///     .reconnect(ReconnectPolicy::never())
    ///     .connect("http://127.0.0.1:2021")
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn reconnect(mut self, policy: ReconnectPolicy) -> ConnectOptions {
        self.reconnect = policy;
        self
    }

    /// The reconnect policy in force.
    pub(crate) fn reconnect_policy(&self) -> ReconnectPolicy {
        self.reconnect
    }

    /// Time to open one TCP connection; past it the operation fails with
    /// [`ErrorKind::Connect`]. Default: 2 s.
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// let options = bus_client::ConnectOptions::new().connect_timeout(Duration::from_millis(500));
    /// ```
    pub fn connect_timeout(mut self, timeout: Duration) -> ConnectOptions {
        self.connect_timeout = timeout;
        self
    }

    /// Time for a one-shot request's whole answer; past it the operation fails with
    /// [`ErrorKind::Timeout`]. `pull` adds its `wait`; `subscribe` applies it until the
    /// stream starts. Default: 30 s.
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// let options = bus_client::ConnectOptions::new().request_timeout(Duration::from_secs(5));
    /// ```
    pub fn request_timeout(mut self, timeout: Duration) -> ConnectOptions {
        self.request_timeout = timeout;
        self
    }

    /// Largest event a [`Subscription`] accepts, in bytes of its SSE form; a larger one ends
    /// the subscription with [`ErrorKind::Protocol`]. Default: 64 MiB.
    ///
    /// ```no_run
    /// // Refuse events larger than 1 MiB.
    /// let options = bus_client::ConnectOptions::new().max_event_bytes(1024 * 1024);
    /// ```
    pub fn max_event_bytes(mut self, bytes: usize) -> ConnectOptions {
        self.max_event_bytes = bytes;
        self
    }

    /// The request timeout in force.
    pub(crate) fn request_timeout_value(&self) -> Duration {
        self.request_timeout
    }

    /// Builds the client and checks that the broker answers (`GET /healthz`).
    ///
    /// `url` is `http://host:port` or `https://host:port`, optionally with a path prefix
    /// under which the API is served. Fails with [`ErrorKind::InvalidUrl`], [`ErrorKind::Connect`] (within the
    /// connect timeout on a refused or unreachable address), [`ErrorKind::Timeout`], or
    /// [`ErrorKind::Api`] (for example `503 shutting_down`).
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), bus_client::Error> {
    /// use bus_client::{ConnectOptions, ErrorKind};
    /// match ConnectOptions::new().connect("http://127.0.0.1:2021").await {
    ///     Ok(client) => println!("connected to {}", client.url()),
    ///     Err(e) if e.kind() == &ErrorKind::Connect => eprintln!("no broker there: {e}"),
    ///     Err(e) => return Err(e),
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn connect(self, url: &str) -> Result<Client, Error> {
        let client = self.build(url)?;
        client.health().await?;
        Ok(client)
    }

    /// Builds the client without touching the network.
    fn build(self, url: &str) -> Result<Client, Error> {
        let base = parse_base(url)?;
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(self.connect_timeout));
        connector.set_nodelay(true);
        connector.enforce_http(false);
        let tls = self.tls_config(base.starts_with("https://"))?;
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(connector);
        let http = HttpClient::builder(TokioExecutor::new())
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .build(connector);
        Ok(Client {
            inner: Arc::new(Inner {
                http,
                base,
                options: self,
                counters: Counters::default(),
            }),
        })
    }
}

impl ConnectOptions {
    /// The TLS settings: the CA file's certificates, or the system's when `https` (an
    /// `http://` client never uses them, so it reads none).
    fn tls_config(&self, https: bool) -> Result<rustls::ClientConfig, Error> {
        let mut roots = rustls::RootCertStore::empty();
        match (&self.ca_certs, https) {
            (Some(certs), _) => {
                for c in certs {
                    roots.add(c.clone()).map_err(|e| {
                        Error::with_source(ErrorKind::InvalidInput, "unusable CA certificate", e)
                    })?;
                }
            }
            (None, true) => {
                let found = rustls_native_certs::load_native_certs();
                roots.add_parsable_certificates(found.certs);
            }
            (None, false) => {}
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::with_source(ErrorKind::InvalidInput, "TLS configuration", e))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(config)
    }
}

/// Checks `url` and returns it without a trailing slash.
fn parse_base(url: &str) -> Result<String, Error> {
    let bad = |why: &str| Error::new(ErrorKind::InvalidUrl, format!("invalid URL {url:?}: {why}"));
    let uri: Uri = url.trim().parse().map_err(|_| bad("not a URL"))?;
    match uri.scheme_str() {
        Some("http") | Some("https") => {}
        Some(other) => {
            return Err(bad(&format!(
                "unsupported scheme {other:?} (use http or https)"
            )));
        }
        None => return Err(bad("expected http://host:port")),
    }
    let scheme = uri.scheme_str().unwrap_or("http");
    let authority = uri.authority().ok_or_else(|| bad("no host"))?;
    if uri.query().is_some() {
        return Err(bad("a query is not allowed"));
    }
    let path = uri.path().trim_end_matches('/');
    Ok(format!("{scheme}://{authority}{path}"))
}

/// A handle to one broker. Cheap to clone; clones share the connection pool.
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// let client = bus_client::Client::connect("http://127.0.0.1:2021").await?;
/// let receipt = client.publish("user.created", r#"{"name":"ada"}"#).await?;
/// println!("stored as {} (sequence {})", receipt.id, receipt.sequence);
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct Client {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// The pooled HTTP client.
    http: HttpClient<hyper_rustls::HttpsConnector<HttpConnector>, Body>,
    /// `http://authority[/prefix]`, no trailing slash.
    base: String,
    /// The settings.
    options: ConnectOptions,
    /// What [`Client::statistics`] reports.
    counters: Counters,
}

/// The client's running counts, shared by its clones and its background tasks.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    /// Acks queued with [`Message::ack`](crate::Message::ack) whose background
    /// acknowledger was stopped (its runtime shut down) before it sent them.
    pub(crate) acks_lost: AtomicU64,
    /// Background acks the broker did not record (refused, or the request failed).
    pub(crate) acks_failed: AtomicU64,
}

/// A snapshot of [`Client::statistics`], like async-nats's `Statistics`.
///
/// ```no_run
/// # fn demo(client: &bus_client::Client) {
/// let stats = client.statistics();
/// if stats.acks_lost > 0 {
///     eprintln!("{} acks were never sent; their events will be redelivered", stats.acks_lost);
/// }
/// # }
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Statistics {
    /// Acks queued with [`Message::ack`](crate::Message::ack) that were never sent because
    /// the Tokio runtime stopped before the background acknowledger could send them (each is
    /// also logged with `tracing::warn!`). Their events come back as redeliveries. Await
    /// [`Subscription::close`](crate::Subscription::close) (or
    /// [`flush_acks`](crate::Subscription::flush_acks)) before stopping the runtime to keep
    /// this at 0.
    pub acks_lost: u64,
    /// Background acks sent but not recorded by the broker (refused, or the request failed
    /// after its retries); their events come back as redeliveries too.
    pub acks_failed: u64,
}

impl Client {
    /// Connects with the default [`ConnectOptions`]; see [`ConnectOptions::connect`].
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), bus_client::Error> {
    /// let client = bus_client::Client::connect("http://127.0.0.1:2021").await?;
    /// # Ok(()) }
    /// ```
    pub async fn connect(url: &str) -> Result<Client, Error> {
        ConnectOptions::new().connect(url).await
    }

    /// Counts kept across this client and its clones: acks lost or failed in the background.
    ///
    /// ```no_run
    /// # fn demo(client: &bus_client::Client) {
    /// println!("acks lost: {}", client.statistics().acks_lost);
    /// # }
    /// ```
    pub fn statistics(&self) -> Statistics {
        let c = &self.inner.counters;
        Statistics {
            acks_lost: c.acks_lost.load(Ordering::Relaxed),
            acks_failed: c.acks_failed.load(Ordering::Relaxed),
        }
    }

    /// The counters behind [`statistics`](Self::statistics).
    pub(crate) fn counters(&self) -> &Counters {
        &self.inner.counters
    }

    /// The broker's base URL.
    ///
    /// ```no_run
    /// # fn demo(client: bus_client::Client) {
    /// println!("using the broker at {}", client.url());
    /// # }
    /// ```
    pub fn url(&self) -> &str {
        &self.inner.base
    }

    /// The settings in force.
    ///
    /// ```no_run
    /// # async fn demo(client: bus_client::Client) -> Result<(), bus_client::Error> {
    /// // A second broker, with the same settings.
    /// let other = client.options().clone().connect("http://10.0.0.2:2021").await?;
    /// # Ok(()) }
    /// ```
    pub fn options(&self) -> &ConnectOptions {
        &self.inner.options
    }

    /// Checks that the broker answers `GET /healthz` with 200.
    ///
    /// ```no_run
    /// # async fn demo(client: bus_client::Client) -> Result<(), bus_client::Error> {
    /// client.health().await?;
    /// # Ok(()) }
    /// ```
    pub async fn health(&self) -> Result<(), Error> {
        let req = self.http_request(Method::GET, "/healthz", Body::default())?;
        self.call(req, self.inner.options.request_timeout).await?;
        Ok(())
    }

    /// Publishes `payload` on `subject`; await the returned builder, after setting headers, a
    /// dedup id, a content type or a reply subject on it if needed.
    ///
    /// Resolves once the event is durable under the namespace's fsync policy, to its
    /// [`Receipt`] (with `duplicate: true` when the dedup id was seen within the window).
    ///
    /// ```no_run
    /// # async fn demo(client: bus_client::Client) -> Result<(), bus_client::PublishError> {
    /// let receipt = client.publish("user.created", r#"{"name":"ada"}"#).await?;
    /// if receipt.duplicate {
    ///     println!("stored already, as {}", receipt.id);
    /// }
    /// # Ok(()) }
    /// ```
    pub fn publish(&self, subject: impl Into<String>, payload: impl Into<Bytes>) -> PublishBuilder {
        PublishBuilder::new(self.clone(), subject.into(), payload.into())
    }

    /// Sends a request on `subject` and waits for the first reply (request/reply); await the
    /// returned builder, after setting headers, a content type or a timeout on it if needed.
    ///
    /// Fails at once with [`ErrorKind::NoResponders`] when nothing subscribes to `subject`
    /// (nothing is stored), with [`ErrorKind::Timeout`] when no reply came in time (default
    /// 5 s), and with [`ErrorKind::ReplyError`] when the responder answered with an error
    /// reply.
    ///
    /// ```no_run
    /// # async fn demo(client: bus_client::Client) -> Result<(), bus_client::RequestError> {
    /// use std::time::Duration;
    /// let reply = client
    ///     .request("rpc.user.get", r#"{"id":7}"#)
    ///     .content_type("application/json")
    ///     .timeout(Duration::from_secs(2))
    ///     .await?;
    /// println!("{}", String::from_utf8_lossy(&reply.payload));
    /// # Ok(()) }
    /// ```
    pub fn request(&self, subject: impl Into<String>, payload: impl Into<Bytes>) -> RequestBuilder {
        RequestBuilder::new(self.clone(), subject.into(), payload.into())
    }

    /// Answers a request: publishes `payload` to its reply subject (`_inbox.…`, the request
    /// event's [`Message::reply_to`]). Replies are never stored; a reply to an inbox no request
    /// waits on (late, answered already) fails with `404 unknown_inbox`.
    ///
    /// ```no_run
    /// # async fn demo(client: bus_client::Client, m: bus_client::Message) -> Result<(), bus_client::PublishError> {
    /// if let Some(inbox) = &m.reply_to {
    ///     client.reply(inbox, "pong").await?;
    /// }
    /// # Ok(()) }
    /// ```
    pub fn reply(&self, inbox: impl Into<String>, payload: impl Into<Bytes>) -> ReplyBuilder {
        ReplyBuilder::new(self.clone(), inbox.into(), payload.into())
    }

    /// Publishes `value` as JSON (content type `application/json`); await the returned
    /// builder as for [`Client::publish`]. Fails at once with [`ErrorKind::InvalidInput`] when
    /// `value` does not serialise.
    ///
    /// ```no_run
    /// # async fn demo(client: bus_client::Client) -> Result<(), bus_client::PublishError> {
    /// #[derive(serde::Serialize)]
    /// struct Signup<'a> { name: &'a str }
    /// client.publish_json("user.created", &Signup { name: "ada" })?.await?;
    /// # Ok(()) }
    /// ```
    pub fn publish_json<T: serde::Serialize + ?Sized>(
        &self,
        subject: impl Into<String>,
        value: &T,
    ) -> Result<PublishBuilder, PublishError> {
        PublishBuilder::json(self.clone(), subject.into(), value)
    }

    /// Publishes several events of one namespace atomically: all are stored, or none.
    /// Returns one receipt per item, in order. At most 10,000 items.
    ///
    /// ```no_run
    /// # async fn demo(client: bus_client::Client) -> Result<(), bus_client::PublishError> {
    /// use bus_client::BatchItem;
    /// let receipts = client
    ///     .publish_batch(vec![
    ///         BatchItem::new("order.placed", r#"{"id":17}"#).content_type("application/json"),
    ///         BatchItem::new("order.paid", r#"{"id":17}"#).content_type("application/json"),
    ///     ])
    ///     .await?;
    /// assert_eq!(receipts.len(), 2);
    /// # Ok(()) }
    /// ```
    pub async fn publish_batch(&self, items: Vec<BatchItem>) -> Result<Vec<Receipt>, PublishError> {
        crate::publish::publish_batch(self, items).await
    }

    /// Who the broker takes this client for (`GET /v1/whoami`), and its grants.
    ///
    /// ```no_run
    /// # async fn demo(client: bus_client::Client) -> Result<(), bus_client::Error> {
    /// let me = client.whoami().await?;
    /// println!("{} ({})", me.principal, me.credential);
    /// # Ok(()) }
    /// ```
    pub async fn whoami(&self) -> Result<bus_proto::Whoami, Error> {
        let req = self.http_request(Method::GET, "/v1/whoami", Body::default())?;
        let body = self.call(req, self.inner.options.request_timeout).await?;
        decode_json(&body)
    }

    /// The namespaces and their figures (under `--auth`, those the caller may see).
    ///
    /// ```no_run
    /// # async fn demo(client: bus_client::Client) -> Result<(), bus_client::Error> {
    /// for ns in client.namespaces().await? {
    ///     println!("{}: {} events, {} bytes", ns.name, ns.events, ns.bytes);
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn namespaces(&self) -> Result<Vec<NamespaceInfo>, Error> {
        let req = self.http_request(Method::GET, "/v1/namespaces", Body::default())?;
        let body = self.call(req, self.inner.options.request_timeout).await?;
        decode_json(&body)
    }

    /// One page of at most `limit` (1 to 1,000) events matching `pattern`, starting at
    /// `from`. When none is available, waits up to `wait` (at most 60 s) for the first.
    /// Continue with `Start::Cursor(page.cursor)`.
    ///
    /// ```no_run
    /// # async fn demo(client: bus_client::Client) -> Result<(), bus_client::Error> {
    /// use std::time::Duration;
    /// use bus_client::Start;
    /// let mut from = Start::Oldest;
    /// loop {
    ///     let page = client.pull("order.>", from, 500, Duration::from_secs(10)).await?;
    ///     for m in &page.events {
    ///         println!("{} {}", m.sequence, m.subject);
    ///     }
    ///     from = Start::Cursor(page.cursor);
    /// }
    /// # }
    /// ```
    pub async fn pull(
        &self,
        pattern: &str,
        from: impl Into<Start>,
        limit: usize,
        wait: Duration,
    ) -> Result<Page, Error> {
        let from = from.into();
        let path = format!(
            "/v1/events?pattern={}&from={}&limit={limit}&wait={}ms",
            encode(pattern),
            encode(&from.as_param()),
            wait.as_millis()
        );
        let req = self.http_request(Method::GET, &path, Body::default())?;
        let body = self
            .call(req, self.inner.options.request_timeout + wait)
            .await?;
        #[derive(serde::Deserialize)]
        struct WirePage {
            events: Vec<Box<RawValue>>,
            cursor: String,
            #[serde(default)]
            gaps: Vec<Gap>,
        }
        let page: WirePage = decode_json(&body)?;
        let events = page
            .events
            .into_iter()
            .map(|raw| {
                Message::from_raw(raw).map_err(|e| {
                    Error::with_source(ErrorKind::Protocol, "the broker sent a bad event", e)
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Page {
            events,
            cursor: page.cursor,
            gaps: page.gaps,
        })
    }

    /// Subscribes to `pattern` from `from` over Server-Sent Events. The returned
    /// [`Subscription`] is a `Stream` of events, gap notices and the subscription's
    /// confirmation; dropping it unsubscribes (closes the connection).
    ///
    /// Fails before any stream starts on a bad pattern or start (`400`), an unknown start
    /// event (`404 unknown_event`), or when the broker cannot be reached.
    ///
    /// ```no_run
    /// # async fn demo(client: bus_client::Client) -> Result<(), bus_client::Error> {
    /// use futures::StreamExt as _;
    /// use bus_client::{Start, StreamItem};
    /// let mut sub = client.subscribe("user.>", Start::Newest).await?;
    /// while let Some(item) = sub.next().await {
    ///     if let StreamItem::Event(m) = item? {
    ///         println!("{}: {}", m.subject, String::from_utf8_lossy(&m.payload));
    ///     }
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn subscribe(
        &self,
        pattern: &str,
        from: impl Into<Start>,
    ) -> Result<Subscription, Error> {
        self.subscribe_with(pattern, SubscribeOptions::new().from(from))
            .await
    }

    /// Subscribes to `pattern` with `options`: a plain subscription, or a member of a
    /// consumer (manual acks, a durable consumer, a queue group). Returns once the broker
    /// confirmed the subscription, so [`Subscription::consumer`] names the consumer; the
    /// confirmation is still the stream's first item.
    ///
    /// Fails like [`subscribe`](Self::subscribe), and also on bad settings or a bad name
    /// (`400 invalid_parameter`) and when the durable name is bound to another pattern or is
    /// not a durable (`409 consumer_conflict`).
    ///
    /// ```no_run
    /// use futures::StreamExt as _;
    /// use bus_client::{AckMode, Client, StreamItem, SubscribeOptions};
    ///
    /// # async fn demo(client: Client) -> Result<(), bus_client::Error> {
    /// // Two processes running this share the work: each event goes to one of them.
    /// let options = SubscribeOptions::new().group("resizers").ack(AckMode::Manual);
    /// let mut sub = client.subscribe_with("image.uploaded", options).await?;
    /// while let Some(item) = sub.next().await {
    ///     if let StreamItem::Event(m) = item? {
    ///         // ... handle it, then:
    ///         m.ack().await?;
    ///     }
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn subscribe_with(
        &self,
        pattern: &str,
        options: SubscribeOptions,
    ) -> Result<Subscription, Error> {
        let body = self.open_stream(pattern, &options).await?;
        let timeout = self.inner.options.request_timeout;
        let mut sub = Subscription::new(
            body,
            self.inner.options.max_event_bytes,
            self.clone(),
            pattern,
            options,
        );
        tokio::time::timeout(timeout, sub.await_first_item())
            .await
            .unwrap_or_else(|_| Err(self.timed_out(timeout)))?;
        Ok(sub)
    }

    /// Opens `GET /v1/stream` for `pattern` with `options`: the body of a
    /// `200 text/event-stream` answer.
    pub(crate) async fn open_stream(
        &self,
        pattern: &str,
        options: &SubscribeOptions,
    ) -> Result<Incoming, Error> {
        let path = format!("/v1/stream?{}", options.query(pattern));
        let mut req = self.http_request(Method::GET, &path, Body::default())?;
        req.headers_mut()
            .insert(ACCEPT, HeaderValue::from_static("text/event-stream"));
        let timeout = self.inner.options.request_timeout;
        let resp = self.send(req, timeout).await?;
        if resp.status() != StatusCode::OK {
            return Err(self.error_answer(resp, timeout).await);
        }
        let is_sse = resp
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim_start().starts_with("text/event-stream"));
        if !is_sse {
            return Err(Error::new(
                ErrorKind::Protocol,
                "the broker answered the stream request without text/event-stream",
            ));
        }
        Ok(resp.into_body())
    }

    /// Does `op` to event `id` delivered by `consumer`; the same as the methods of a
    /// delivered [`Message`] ([`Message::ack`], ...), for a program that kept only the ids.
    /// Acknowledging an event already acked, terminated or dead-lettered succeeds with
    /// [`AckStatus::AlreadyAcked`].
    ///
    /// Fails with [`ErrorKind::Api`]: `404 unknown_consumer`, `404 unknown_event`,
    /// `404 not_delivered` (not delivered to this consumer), `409 not_held`
    /// ([`AckOp::InProgress`] after the ack wait ran out), `400 invalid_parameter`.
    ///
    /// ```no_run
    /// # async fn demo(client: bus_client::Client) -> Result<(), bus_client::Error> {
    /// use std::time::Duration;
    /// use bus_client::AckOp;
    /// let delay = Some(Duration::from_secs(30));
    /// let status = client
    ///     .acknowledge("orders", "order-7-9f3c2a1b", AckOp::Nack(delay))
    ///     .await?;
    /// println!("{}", status.as_str());
    /// # Ok(()) }
    /// ```
    pub async fn acknowledge(
        &self,
        consumer: &str,
        id: &str,
        op: AckOp,
    ) -> Result<AckStatus, Error> {
        crate::ack::acknowledge(self, consumer, id, op).await
    }

    /// Acknowledges many deliveries of `consumer` in one request (at most 10,000 entries),
    /// answered entry by entry in order: one entry's failure does not affect the others.
    /// An empty batch sends nothing and answers nothing.
    ///
    /// The request as a whole fails only when the consumer does not exist
    /// (`404 unknown_consumer`), the batch is refused (`400 invalid_batch`,
    /// `413 payload_too_large`) or the broker cannot be reached.
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use bus_client::AckItem;
    ///
    /// # async fn demo(client: bus_client::Client) -> Result<(), bus_client::Error> {
    /// let results = client
    ///     .ack_batch(
    ///         "orders",
    ///         [
    ///             AckItem::ack("order-7-9f3c2a1b"),
    ///             AckItem::nack_with_delay("order-8-9f3c2a1b", Duration::from_secs(60)),
    ///         ],
    ///     )
    ///     .await?;
    /// for r in &results {
    ///     if let Err(e) = &r.result {
    ///         eprintln!("{}: {e}", r.id);
    ///     }
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn ack_batch(
        &self,
        consumer: &str,
        items: impl IntoIterator<Item = impl Into<AckItem>>,
    ) -> Result<Vec<AckResult>, Error> {
        let items: Vec<AckItem> = items.into_iter().map(Into::into).collect();
        crate::ack::ack_batch(self, consumer, items).await
    }

    /// The consumers: durable, queue groups and manual-ack subscriptions.
    ///
    /// ```no_run
    /// # async fn demo(client: bus_client::Client) -> Result<(), bus_client::Error> {
    /// for c in client.consumers().await? {
    ///     println!("{} ({}): {} pending, lag {}", c.name, c.kind.as_str(), c.pending, c.lag);
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn consumers(&self) -> Result<Vec<ConsumerInfo>, Error> {
        let req = self.http_request(Method::GET, "/v1/consumers", Body::default())?;
        let body = self
            .call(req, self.inner.options.request_timeout)
            .await
            .map_err(|e| e.context("cannot list the consumers"))?;
        decode_json(&body)
    }

    /// One consumer; `404 unknown_consumer` when there is none by that name.
    ///
    /// ```no_run
    /// # async fn demo(client: bus_client::Client) -> Result<(), bus_client::Error> {
    /// match client.consumer("orders").await {
    ///     Ok(c) => println!("{} pending, {} members", c.pending, c.members),
    ///     Err(e) if e.api_error().is_some_and(|a| a.code == "unknown_consumer") => {
    ///         println!("no consumer named orders");
    ///     }
    ///     Err(e) => return Err(e),
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn consumer(&self, name: &str) -> Result<ConsumerInfo, Error> {
        let path = format!("/v1/consumers/{}", encode(name));
        let req = self.http_request(Method::GET, &path, Body::default())?;
        let body = self
            .call(req, self.inner.options.request_timeout)
            .await
            .map_err(|e| e.context(format!("cannot read consumer {name}")))?;
        decode_json(&body)
    }

    /// Moves consumer `name` to `to` (any start position): its pending deliveries are
    /// dropped and reading restarts there. Returns the consumer as it is now.
    ///
    /// ```no_run
    /// # async fn demo(client: bus_client::Client) -> Result<(), bus_client::Error> {
    /// use bus_client::Start;
    /// // Handle everything retained once more.
    /// let c = client.seek_consumer("orders", Start::Oldest).await?;
    /// println!("next sequences: {:?}", c.positions);
    /// # Ok(()) }
    /// ```
    pub async fn seek_consumer(
        &self,
        name: &str,
        to: impl Into<Start>,
    ) -> Result<ConsumerInfo, Error> {
        let to = to.into();
        let path = format!(
            "/v1/consumers/{}/seek?to={}",
            encode(name),
            encode(&to.as_param())
        );
        let req = self.http_request(Method::POST, &path, Body::default())?;
        let body = self
            .call(req, self.inner.options.request_timeout)
            .await
            .map_err(|e| e.context(format!("cannot move consumer {name} to {to}")))?;
        decode_json(&body)
    }

    /// Changes the settings of consumer `name` (ack wait, max deliveries, backoff, max in
    /// flight; the ack mode and filter cannot change) and returns the consumer as it is now.
    /// The broker answers once a durable consumer's new settings are durable.
    ///
    /// ```no_run
    /// # async fn demo(client: bus_client::Client) -> Result<(), bus_client::Error> {
    /// use std::time::Duration;
    /// use bus_client::ConsumerUpdate;
    /// let update = ConsumerUpdate {
    ///     ack_wait: Some(Duration::from_secs(60)),
    ///     max_deliver: Some(None), // unlimited
    ///     ..ConsumerUpdate::default()
    /// };
    /// let c = client.update_consumer("orders", &update).await?;
    /// assert_eq!(c.ack_wait, Duration::from_secs(60));
    /// # Ok(()) }
    /// ```
    pub async fn update_consumer(
        &self,
        name: &str,
        update: &ConsumerUpdate,
    ) -> Result<ConsumerInfo, Error> {
        let path = format!("/v1/consumers/{}", encode(name));
        let body = serde_json::to_vec(update).map_err(|e| {
            Error::with_source(ErrorKind::InvalidInput, "cannot encode the settings", e)
        })?;
        let mut req = self.http_request(Method::PATCH, &path, Full::new(Bytes::from(body)))?;
        req.headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        let body = self
            .call(req, self.inner.options.request_timeout)
            .await
            .map_err(|e| e.context(format!("cannot change consumer {name}")))?;
        decode_json(&body)
    }

    /// Deletes consumer `name`: its members' streams end with a `unknown_consumer` stream
    /// error, and a durable's state is removed. `404 unknown_consumer` when there is none.
    ///
    /// ```no_run
    /// # async fn demo(client: bus_client::Client) -> Result<(), bus_client::Error> {
    /// client.delete_consumer("orders").await?;
    /// # Ok(()) }
    /// ```
    pub async fn delete_consumer(&self, name: &str) -> Result<(), Error> {
        let path = format!("/v1/consumers/{}", encode(name));
        let req = self.http_request(Method::DELETE, &path, Body::default())?;
        self.call(req, self.inner.options.request_timeout)
            .await
            .map_err(|e| e.context(format!("cannot delete consumer {name}")))?;
        Ok(())
    }

    /// A request to `path` (which starts with `/`) under the base URL.
    pub(crate) fn http_request(
        &self,
        method: Method,
        path: &str,
        body: Body,
    ) -> Result<Request<Body>, Error> {
        let mut req = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.inner.base))
            .header(USER_AGENT, CLIENT_AGENT);
        if let Some(auth) = &self.inner.options.authorization {
            req = req.header(hyper::header::AUTHORIZATION, auth.clone());
        }
        req.body(body)
            .map_err(|e| Error::with_source(ErrorKind::InvalidInput, "cannot build the request", e))
    }

    /// Sends a request; resolves at the answer's headers.
    pub(crate) async fn send(
        &self,
        req: Request<Body>,
        timeout: Duration,
    ) -> Result<Response<Incoming>, Error> {
        match tokio::time::timeout(timeout, self.inner.http.request(req)).await {
            Err(_) => Err(self.timed_out(timeout)),
            Ok(Err(e)) => Err(self.transport_error(&e)),
            Ok(Ok(resp)) => Ok(resp),
        }
    }

    /// Sends a request and reads the whole answer within `timeout`; an error status becomes
    /// [`ErrorKind::Api`].
    pub(crate) async fn call(&self, req: Request<Body>, timeout: Duration) -> Result<Bytes, Error> {
        let (status, _, body) = self.exchange(req, timeout).await?;
        if status.is_success() {
            Ok(body)
        } else {
            Err(Error::api(ApiError::from_response(status.as_u16(), &body)))
        }
    }

    /// Sends a request and reads the whole answer, whatever its status, within `timeout`.
    pub(crate) async fn exchange(
        &self,
        req: Request<Body>,
        timeout: Duration,
    ) -> Result<(hyper::StatusCode, hyper::HeaderMap, Bytes), Error> {
        let exchange = async {
            let resp = self.send(req, timeout).await?;
            let (parts, body) = resp.into_parts();
            let body = read_body(body).await?;
            Ok((parts.status, parts.headers, body))
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .unwrap_or_else(|_| Err(self.timed_out(timeout)))
    }

    /// Reads an error answer's body into an error.
    async fn error_answer(&self, resp: Response<Incoming>, timeout: Duration) -> Error {
        let status = resp.status().as_u16();
        match tokio::time::timeout(timeout, read_body(resp.into_body())).await {
            Ok(Ok(body)) => Error::api(ApiError::from_response(status, &body)),
            Ok(Err(e)) => e,
            Err(_) => self.timed_out(timeout),
        }
    }

    fn timed_out(&self, timeout: Duration) -> Error {
        Error::new(
            ErrorKind::Timeout,
            format!(
                "the broker at {} did not answer within {}",
                self.inner.base,
                format_duration(timeout)
            ),
        )
    }

    fn transport_error(&self, e: &hyper_util::client::legacy::Error) -> Error {
        // Report the innermost I/O error ("Connection refused") rather than hyper's layers.
        let cause = innermost_io_error(e);
        if e.is_connect() {
            let msg = format!("cannot reach the broker at {}", self.inner.base);
            match cause {
                Some(io) => Error::with_source(ErrorKind::Connect, msg, io),
                None => Error::with_source(ErrorKind::Connect, msg, e.to_string()),
            }
        } else {
            let msg = format!("the connection to the broker at {} failed", self.inner.base);
            match cause {
                Some(io) => Error::with_source(ErrorKind::Io, msg, io),
                None => Error::with_source(ErrorKind::Io, msg, e.to_string()),
            }
        }
    }
}

/// The innermost `std::io::Error` of a chain, as a new error with its kind and text.
fn innermost_io_error(e: &(dyn std::error::Error + 'static)) -> Option<std::io::Error> {
    let mut found = None;
    let mut cur = Some(e);
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            found = Some(std::io::Error::new(io.kind(), io.to_string()));
        }
        cur = err.source();
    }
    found
}

/// Reads a whole body, bounded by [`MAX_BODY_BYTES`].
pub(crate) async fn read_body(body: Incoming) -> Result<Bytes, Error> {
    let limited = http_body_util::Limited::new(body, MAX_BODY_BYTES);
    match limited.collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) => {
            if e.is::<http_body_util::LengthLimitError>() {
                Err(Error::new(
                    ErrorKind::Protocol,
                    format!("the broker's answer exceeds {MAX_BODY_BYTES} bytes"),
                ))
            } else {
                let io = innermost_io_error(e.as_ref());
                let msg = "the connection to the broker failed while reading an answer";
                Err(match io {
                    Some(io) => Error::with_source(ErrorKind::Io, msg, io),
                    None => Error::with_source(ErrorKind::Io, msg, e.to_string()),
                })
            }
        }
    }
}

/// Decodes a JSON answer.
pub(crate) fn decode_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, Error> {
    serde_json::from_slice(body).map_err(|e| {
        Error::with_source(
            ErrorKind::Protocol,
            "the broker's answer is not the expected JSON",
            e,
        )
    })
}

/// Percent-encodes everything but RFC 3986 unreserved characters, for a path segment or a
/// query value.
pub(crate) fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `2s`, `1500ms`.
pub(crate) fn format_duration(d: Duration) -> String {
    if d.subsec_millis() == 0 && d.as_secs() > 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_base_urls() {
        assert_eq!(
            parse_base("http://127.0.0.1:2021").unwrap(),
            "http://127.0.0.1:2021"
        );
        assert_eq!(parse_base("http://h:1/bus/").unwrap(), "http://h:1/bus");
        assert_eq!(parse_base(" http://h ").unwrap(), "http://h");
        assert_eq!(parse_base("https://h:1/").unwrap(), "https://h:1");
        for bad in ["", "127.0.0.1:2021", "ftp://h", "http://h/?x=1", "/v1"] {
            let e = parse_base(bad).unwrap_err();
            assert_eq!(e.kind(), &ErrorKind::InvalidUrl, "{bad}");
        }
    }

    #[test]
    fn encodes_query_values() {
        assert_eq!(encode("user.>"), "user.%3E");
        assert_eq!(encode("a.*"), "a.%2A");
        assert_eq!(
            encode("2026-11-23T13:22:11.1+01:00"),
            "2026-11-23T13%3A22%3A11.1%2B01%3A00"
        );
        assert_eq!(encode("a-1-0,b-2-f"), "a-1-0%2Cb-2-f");
    }

    #[test]
    fn formats_durations() {
        assert_eq!(format_duration(Duration::from_secs(2)), "2s");
        assert_eq!(format_duration(Duration::from_millis(1500)), "1500ms");
        assert_eq!(format_duration(Duration::ZERO), "0ms");
    }

    #[tokio::test]
    async fn fails_fast_on_a_refused_connection() {
        // Bind then close a port so nothing listens on it.
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let start = std::time::Instant::now();
        let e = Client::connect(&format!("http://127.0.0.1:{port}"))
            .await
            .unwrap_err();
        assert_eq!(e.kind(), &ErrorKind::Connect);
        assert!(start.elapsed() < Duration::from_secs(3));
        assert!(
            e.to_string()
                .starts_with("cannot reach the broker at http://127.0.0.1:")
        );
        assert!(std::error::Error::source(&e).is_some());
    }
}
