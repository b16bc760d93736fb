//! Following a stream until asked to stop, shared by `bus get` and `bus tail`.
//!
//! A [`Follower`] wraps a [`Subscription`] and keeps it going:
//! - **After a crash** (the connection drops without the broker's `event: shutdown`), the
//!   subscription reconnects by itself; the follower connects with a reconnect policy that
//!   never gives up ([`connect`]), so a broker away for an hour is waited for, not abandoned.
//! - **After a graceful shutdown** (`event: shutdown`, which ends a subscription), the
//!   follower says so on stderr and subscribes again, retrying every 100 ms doubling up to
//!   2 s until the broker answers. It resumes as the client resumes after a crash: a plain
//!   stream (or an unnamed manual-ack consumer, which ended with its connection) from the
//!   cursor after the last event it yielded (or where it started, if none came), so nothing
//!   is missed or repeated; a durable or a group member by attaching to the consumer again,
//!   whose state says where it is. A member with `--count N` asks for the events still owed.
//! - **Stopping**: SIGINT and SIGTERM are caught from [`Signals::install`] on; each wait of
//!   the follower (for an event, for the broker to come back) ends on the first signal, and
//!   [`Follower::next`] answers [`Step::Stop`]. The command then finishes what it holds (acks
//!   to flush) and exits 0.
//!
//! A stream error the broker sends (`event: error`: the consumer was deleted, say) or a
//! protocol error still ends the follower with that error.

use std::time::Duration;

use futures::StreamExt as _;

use bus_client::{Client, ErrorKind, ReconnectPolicy, StreamItem, SubscribeOptions, Subscription};
use bus_proto::{ConsumerKind, Start};
use tokio::signal::unix::{Signal, SignalKind, signal};

use crate::error::CliError;
use crate::output::notice;

/// First wait before subscribing again after a graceful shutdown.
const RESUBSCRIBE_FIRST_DELAY: Duration = Duration::from_millis(100);
/// Longest wait between attempts to subscribe again.
const RESUBSCRIBE_MAX_DELAY: Duration = Duration::from_secs(2);

/// SIGINT and SIGTERM, caught.
pub struct Signals {
    /// SIGINT (Ctrl-C).
    int: Signal,
    /// SIGTERM (kill, systemd, docker stop).
    term: Signal,
}

impl Signals {
    /// Catches SIGINT and SIGTERM from now on: they no longer kill the process.
    pub fn install() -> Result<Signals, CliError> {
        match (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        ) {
            (Ok(int), Ok(term)) => Ok(Signals { int, term }),
            _ => Err(CliError::msg(
                "cannot install the SIGINT and SIGTERM handlers",
            )),
        }
    }

    /// Resolves on the next SIGINT or SIGTERM, naming it.
    pub async fn recv(&mut self) -> &'static str {
        tokio::select! {
            _ = self.int.recv() => "SIGINT",
            _ = self.term.recv() => "SIGTERM",
        }
    }
}

/// Connects to the broker at `url` with a reconnect policy that never gives up: a follower
/// waits for its broker however long it is away. Fails within about the connect timeout
/// (2 s) when nothing listens there at the start.
pub async fn connect(url: &str) -> Result<Client, CliError> {
    super::options()?
        .reconnect(ReconnectPolicy::new().max_attempts(u32::MAX))
        .connect(url)
        .await
        .map_err(CliError::client)
}

/// What [`Follower::next`] came to. (Not boxed: it is moved once per event, straight to
/// the caller.)
#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
pub enum Step {
    /// An item of the stream (never the `subscribed` confirmation).
    Item(StreamItem),
    /// A signal asked the command to stop.
    Stop,
}

/// A stream followed through broker restarts until a signal.
pub struct Follower {
    /// To subscribe again with.
    client: Client,
    /// The pattern followed.
    pattern: String,
    /// The options of the first subscription; a new one is derived from them.
    options: SubscribeOptions,
    /// The options that attach to a durable consumer again without its settings, if set.
    reattach: Option<SubscribeOptions>,
    /// The live subscription.
    sub: Subscription,
    /// `--count`: events wanted in all, 0 for no end.
    count: u64,
    /// Events yielded so far, over all subscriptions.
    seen: u64,
    /// Whether the subscription's acks are flushed before it is replaced.
    flush_acks: bool,
    /// Caught signals.
    signals: Signals,
}

impl Follower {
    /// Subscribes to `pattern`; `None` when a signal came first.
    pub async fn open(
        client: Client,
        pattern: &str,
        options: SubscribeOptions,
        count: u64,
        mut signals: Signals,
    ) -> Result<Option<Follower>, bus_client::Error> {
        let sub = tokio::select! {
            _ = signals.recv() => return Ok(None),
            sub = client.subscribe_with(pattern, options.clone()) => sub?,
        };
        Ok(Some(Follower {
            client,
            pattern: pattern.to_owned(),
            options,
            reattach: None,
            sub,
            count,
            seen: 0,
            flush_acks: false,
            signals,
        }))
    }

    /// Attach to the durable consumer with `options` after a graceful restart: by name, with
    /// no settings, so that settings changed meanwhile (`bus consumers set`) are neither
    /// undone nor refused as a conflict. (A group ends with the broker, so it is created
    /// again with the first options.)
    pub fn reattach_with(&mut self, options: SubscribeOptions) {
        self.reattach = Some(options);
    }

    /// Flush the acks queued on a subscription before it is replaced (for `--ack auto`).
    pub fn flush_acks_on_restart(&mut self) {
        self.flush_acks = true;
    }

    /// The live subscription.
    pub fn sub(&self) -> &Subscription {
        &self.sub
    }

    /// Events yielded so far.
    pub fn seen(&self) -> u64 {
        self.seen
    }

    /// The next item, across restarts of the broker, or [`Step::Stop`] on a signal.
    pub async fn next(&mut self) -> Result<Step, bus_client::Error> {
        loop {
            let item = tokio::select! {
                // A signal wins over events already buffered: stopping is prompt.
                biased;
                _ = self.signals.recv() => return Ok(Step::Stop),
                item = self.sub.next() => item,
            };
            match item {
                Some(Ok(StreamItem::Subscribed(_))) => continue,
                Some(Ok(item)) => {
                    if matches!(item, StreamItem::Event(_)) {
                        self.seen += 1;
                    }
                    return Ok(Step::Item(item));
                }
                Some(Err(e)) => return Err(e),
                None => {
                    if self.resubscribe().await?.is_some() {
                        return Ok(Step::Stop);
                    }
                }
            }
        }
    }

    /// After the broker's `event: shutdown`: subscribes again once it is back. `Some` when a
    /// signal came first.
    async fn resubscribe(&mut self) -> Result<Option<&'static str>, bus_client::Error> {
        if self.flush_acks
            && let Err(e) = self.sub.flush_acks().await
        {
            notice(&format!(
                "acks not confirmed before the broker shut down ({e}); those events may come again"
            ));
        }
        notice(&format!(
            "the broker shut down; following {} again once it is back",
            self.pattern
        ));
        let options = self.resume_options();
        let mut delay = RESUBSCRIBE_FIRST_DELAY;
        loop {
            tokio::select! {
                which = self.signals.recv() => return Ok(Some(which)),
                () = tokio::time::sleep(delay) => {}
            }
            let attempt = self.client.subscribe_with(&self.pattern, options.clone());
            let result = tokio::select! {
                which = self.signals.recv() => return Ok(Some(which)),
                r = attempt => r,
            };
            match result {
                Ok(sub) => {
                    self.sub = sub;
                    notice(&format!("the broker is back; following {}", self.pattern));
                    return Ok(None);
                }
                Err(e) if retryable(&e) => {}
                Err(e) => return Err(e),
            }
            delay = (delay * 2).min(RESUBSCRIBE_MAX_DELAY);
        }
    }

    /// The options of the next subscription: resume where the last one left off.
    fn resume_options(&self) -> SubscribeOptions {
        let subscribed = self.sub.subscribed();
        let durable = matches!(subscribed.and_then(|s| s.kind), Some(ConsumerKind::Durable));
        let mut options = match &self.reattach {
            Some(o) if durable => o.clone(),
            _ => self.options.clone(),
        };
        let named = matches!(
            subscribed.and_then(|s| s.kind),
            Some(ConsumerKind::Durable | ConsumerKind::Group)
        );
        let start = self
            .sub
            .cursor()
            .map(str::to_owned)
            .or_else(|| subscribed.and_then(|s| s.cursor.clone()));
        if !named && let Some(c) = start {
            options = options.from(Start::Cursor(c));
        }
        if self.count > 0 {
            options = options.limit(self.count.saturating_sub(self.seen).max(1));
        }
        options
    }
}

/// Whether subscribing again may work later: the broker is not reachable yet, or still
/// draining (5xx).
fn retryable(e: &bus_client::Error) -> bool {
    match e.kind() {
        ErrorKind::Connect | ErrorKind::Io | ErrorKind::Timeout => true,
        ErrorKind::Api { status, .. } => *status >= 500,
        _ => false,
    }
}
