//! Consumers: how a subscription attaches to one ([`SubscribeOptions`], [`AckMode`]) and what
//! the broker reports about them ([`ConsumerInfo`], [`ConsumerKind`]; these three are the
//! wire types of `bus-proto`, re-exported).
//!
//! A plain subscription reads the log and acknowledges nothing. Asking for manual acks,
//! naming a durable consumer or naming a queue group makes the subscription a **member of a
//! consumer**: each event goes to exactly one member, and in manual mode every delivery is
//! pending until it is acknowledged ([`Message::ack`](crate::Message::ack) and its
//! siblings), coming back when it is not (`proto-docs/delivery.md`).

use std::time::Duration;

use crate::client::encode;
use crate::message::Start;

pub use bus_proto::{AckMode, ConsumerInfo, ConsumerKind, ConsumerUpdate};

/// How [`Client::subscribe_with`](crate::Client::subscribe_with) subscribes: where it starts
/// and, for a consumer, its name and delivery settings. `Default` equals
/// [`SubscribeOptions::new`]: a plain subscription from [`Start::Newest`].
///
/// The consumer settings (`ack_wait`, `max_deliver`, `backoff`, `max_in_flight`) and `limit`
/// are sent only when the subscription attaches to a consumer (a durable, a group, or
/// [`AckMode::Manual`]); a plain stream sends none of them.
///
/// The start position and the settings apply when the consumer is **created**; attaching
/// again to an existing durable consumer resumes from its state, whatever they say. Settings
/// left unset take the broker's defaults.
///
/// ```no_run
/// use std::time::Duration;
/// use futures::StreamExt as _;
/// use bus_client::{AckMode, Client, Start, StreamItem, SubscribeOptions};
///
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// let client = Client::connect("http://127.0.0.1:2021").await?;
/// let options = SubscribeOptions::new()
///     .from(Start::Oldest)
///     .durable("orders")
///     .ack(AckMode::Manual)
///     .ack_wait(Duration::from_secs(10))
///     .max_deliver(5);
/// let mut sub = client.subscribe_with("order.>", options).await?;
/// println!("attached to consumer {:?}", sub.consumer());
/// while let Some(item) = sub.next().await {
///     if let StreamItem::Event(m) = item? {
///         println!("{} (delivery {:?})", m.subject, m.delivery_count);
///         m.ack().await?;
///     }
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SubscribeOptions {
    /// Where reading starts (for a consumer: where a new one starts).
    from: Start,
    /// The ack mode.
    ack: AckMode,
    /// The durable consumer to attach to.
    durable: Option<String>,
    /// The ephemeral queue group to join.
    group: Option<String>,
    /// Redelivery wait; `None`: the broker's default.
    ack_wait: Option<Duration>,
    /// Deliveries before dead-lettering; `None`: unlimited.
    max_deliver: Option<u32>,
    /// Successive redelivery waits; empty: `ack_wait` every time.
    backoff: Vec<Duration>,
    /// Bound on unacknowledged deliveries; `None`: the broker's default.
    max_in_flight: Option<usize>,
    /// Most deliveries this member takes; `None`: no bound.
    limit: Option<u64>,
}

impl SubscribeOptions {
    /// These options without the settings of a new consumer (ack wait, max deliver,
    /// backoff): what a reconnection to an existing durable consumer sends, so that a
    /// change made since (`PATCH /v1/consumers/{name}`) is not refused as a conflict.
    pub(crate) fn without_consumer_settings(mut self) -> SubscribeOptions {
        self.ack_wait = None;
        self.max_deliver = None;
        self.backoff.clear();
        self
    }

    /// A plain subscription from [`Start::Newest`], no consumer.
    ///
    /// ```no_run
    /// # async fn demo(client: bus_client::Client) -> Result<(), bus_client::Error> {
    /// use bus_client::SubscribeOptions;
    /// // The same as `client.subscribe("user.>", Start::Newest)`.
    /// let sub = client.subscribe_with("user.>", SubscribeOptions::new()).await?;
    /// # Ok(()) }
    /// ```
    pub fn new() -> SubscribeOptions {
        SubscribeOptions::default()
    }

    /// Where reading starts; for a consumer, where it starts when it is created.
    /// Default: [`Start::Newest`].
    ///
    /// ```no_run
    /// use bus_client::{Start, SubscribeOptions};
    /// let everything = SubscribeOptions::new().from(Start::Oldest);
    /// let after_42 = SubscribeOptions::new().from("user-42-9f3c2a1b");
    /// ```
    pub fn from(mut self, from: impl Into<Start>) -> SubscribeOptions {
        self.from = from.into();
        self
    }

    /// The ack mode; [`AckMode::Manual`] makes the subscription a member of a consumer
    /// (unnamed: a group of one). Default: [`AckMode::None`].
    ///
    /// ```no_run
    /// use bus_client::{AckMode, SubscribeOptions};
    /// let options = SubscribeOptions::new().ack(AckMode::Manual);
    /// ```
    pub fn ack(mut self, ack: AckMode) -> SubscribeOptions {
        self.ack = ack;
        self
    }

    /// Attaches to (or creates) the durable consumer `name`: 1 to 64 ASCII letters, digits,
    /// `_` and `-`. Connections with the same durable name share its events. Default: none.
    ///
    /// ```no_run
    /// use bus_client::{AckMode, SubscribeOptions};
    /// let options = SubscribeOptions::new().durable("mailer").ack(AckMode::Manual);
    /// ```
    pub fn durable(mut self, name: impl Into<String>) -> SubscribeOptions {
        self.durable = Some(name.into());
        self
    }

    /// Joins (or creates) the ephemeral queue group `name`, dropped with its last member.
    /// Default: none.
    ///
    /// ```no_run
    /// let options = bus_client::SubscribeOptions::new().group("resizers");
    /// ```
    pub fn group(mut self, name: impl Into<String>) -> SubscribeOptions {
        self.group = Some(name.into());
        self
    }

    /// A delivery not acked within this is redelivered (1 ms to 24 h, sent in whole
    /// milliseconds, rounded up). Default: unset, the broker's 30 s.
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use bus_client::{AckMode, SubscribeOptions};
    /// // Slow jobs: two minutes before a delivery counts as lost.
    /// let options = SubscribeOptions::new()
    ///     .durable("encoder")
    ///     .ack(AckMode::Manual)
    ///     .ack_wait(Duration::from_secs(120));
    /// ```
    pub fn ack_wait(mut self, wait: Duration) -> SubscribeOptions {
        self.ack_wait = Some(wait);
        self
    }

    /// Deliveries of one event before it goes to the dead-letter subject. Default: unset,
    /// unlimited.
    ///
    /// ```no_run
    /// use bus_client::{AckMode, SubscribeOptions};
    /// // The third failure dead-letters the event.
    /// let options = SubscribeOptions::new().durable("mailer").ack(AckMode::Manual).max_deliver(3);
    /// ```
    pub fn max_deliver(mut self, n: u32) -> SubscribeOptions {
        self.max_deliver = Some(n);
        self
    }

    /// Ack waits of successive deliveries: `backoff[i]` after delivery `i + 1`, the last
    /// repeating; replaces [`ack_wait`](Self::ack_wait). Default: empty.
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use bus_client::{AckMode, SubscribeOptions};
    /// let options = SubscribeOptions::new()
    ///     .durable("webhooks")
    ///     .ack(AckMode::Manual)
    ///     .backoff([1, 10, 60].map(Duration::from_secs));
    /// ```
    pub fn backoff(mut self, waits: impl IntoIterator<Item = Duration>) -> SubscribeOptions {
        self.backoff = waits.into_iter().collect();
        self
    }

    /// Most unacknowledged deliveries across the consumer's members (1 to 100,000); given
    /// when attaching, it also caps this member alone. Default: unset, the broker's 1,000.
    ///
    /// ```no_run
    /// use bus_client::{AckMode, SubscribeOptions};
    /// let options = SubscribeOptions::new()
    ///     .group("resizers")
    ///     .ack(AckMode::Manual)
    ///     .max_in_flight(10);
    /// ```
    pub fn max_in_flight(mut self, n: usize) -> SubscribeOptions {
        self.max_in_flight = Some(n);
        self
    }

    /// This member takes at most `n` deliveries (redeliveries included), then the broker
    /// sends it nothing more while it stays connected to ack them; `limit` alone also caps
    /// its unacknowledged deliveries on the broker. On a plain stream (no consumer) nothing
    /// is sent: the subscription ends by itself after `n` events. Default: no bound.
    ///
    /// ```no_run
    /// # async fn demo(client: bus_client::Client) -> Result<(), bus_client::Error> {
    /// use futures::StreamExt as _;
    /// use bus_client::{AckMode, StreamItem, SubscribeOptions};
    /// // Take one job, do it, ack it, leave.
    /// let options = SubscribeOptions::new().group("jobs").ack(AckMode::Manual).limit(1);
    /// let mut sub = client.subscribe_with("job.>", options).await?;
    /// while let Some(item) = sub.next().await {
    ///     if let StreamItem::Event(m) = item? {
    ///         m.double_ack().await?;
    ///         break;
    ///     }
    /// }
    /// # Ok(()) }
    /// ```
    pub fn limit(mut self, n: u64) -> SubscribeOptions {
        self.limit = Some(n);
        self
    }

    /// The bound on deliveries, if set.
    pub(crate) fn limit_value(&self) -> Option<u64> {
        self.limit
    }

    /// The start position.
    ///
    /// ```no_run
    /// use bus_client::{Start, SubscribeOptions};
    /// let options = SubscribeOptions::new().from(Start::Oldest);
    /// assert_eq!(options.start(), &Start::Oldest);
    /// ```
    pub fn start(&self) -> &Start {
        &self.from
    }

    /// Whether the subscription attaches to a consumer: a durable, a group, or manual acks.
    /// Only then are the consumer settings (`ack_wait`, `max_deliver`, `backoff`,
    /// `max_in_flight`) and `limit` sent; a plain stream takes none of them
    /// (`proto-docs/delivery.md`, "Attaching").
    pub(crate) fn attaches_consumer(&self) -> bool {
        self.durable.is_some() || self.group.is_some() || self.ack == AckMode::Manual
    }

    /// The query string of `GET /v1/stream` for `pattern`, without the `?`: `pattern` and
    /// `from`, and for a consumer ([`attaches_consumer`](Self::attaches_consumer)) its
    /// name, ack mode, settings and `limit`. A plain stream sends only the documented
    /// `pattern` and `from` (the broker answers a consumer setting on a plain stream
    /// `400 invalid_parameter`); its `limit` is kept by the [`Subscription`]
    /// (crate::Subscription) itself. `max_in_flight` is sent only when set: `limit` alone
    /// caps the member on the broker, so nothing is derived from it here.
    pub(crate) fn query(&self, pattern: &str) -> String {
        let mut q = format!(
            "pattern={}&from={}",
            encode(pattern),
            encode(&self.from.as_param())
        );
        if !self.attaches_consumer() {
            return q;
        }
        if self.ack == AckMode::Manual {
            q.push_str("&ack=manual");
        }
        if let Some(d) = &self.durable {
            q.push_str(&format!("&durable={}", encode(d)));
        }
        if let Some(g) = &self.group {
            q.push_str(&format!("&group={}", encode(g)));
        }
        if let Some(w) = self.ack_wait {
            q.push_str(&format!("&ack_wait={}", millis_param(w)));
        }
        if let Some(n) = self.max_deliver {
            q.push_str(&format!("&max_deliver={n}"));
        }
        if !self.backoff.is_empty() {
            let steps: Vec<String> = self.backoff.iter().map(|d| millis_param(*d)).collect();
            q.push_str(&format!("&backoff={}", encode(&steps.join(","))));
        }
        if let Some(n) = self.max_in_flight {
            q.push_str(&format!("&max_in_flight={n}"));
        }
        if let Some(n) = self.limit {
            q.push_str(&format!("&limit={n}"));
        }
        q
    }
}

/// `1500ms`: whole milliseconds, rounded up so that a positive duration never becomes 0.
pub(crate) fn millis_param(d: Duration) -> String {
    let ms = d.as_nanos().div_ceil(1_000_000);
    format!("{ms}ms")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plain_subscription_sends_only_pattern_and_start() {
        assert_eq!(
            SubscribeOptions::new().query("user.>"),
            "pattern=user.%3E&from=newest"
        );
        assert_eq!(SubscribeOptions::default(), SubscribeOptions::new());
        // Ack mode none is the broker's default and is not sent.
        assert_eq!(
            SubscribeOptions::new()
                .ack(AckMode::None)
                .from(Start::Oldest)
                .query("a"),
            "pattern=a&from=oldest"
        );
    }

    #[test]
    fn consumer_settings_become_query_parameters() {
        let q = SubscribeOptions::new()
            .from(Start::Cursor("user-3-ab".into()))
            .ack(AckMode::Manual)
            .durable("orders-1")
            .ack_wait(Duration::from_secs(10))
            .max_deliver(5)
            .backoff([Duration::from_secs(1), Duration::from_millis(2500)])
            .max_in_flight(20)
            .query("order.*");
        assert_eq!(
            q,
            "pattern=order.%2A&from=user-3-ab&ack=manual&durable=orders-1&ack_wait=10000ms\
             &max_deliver=5&backoff=1000ms%2C2500ms&max_in_flight=20"
        );
        let q = SubscribeOptions::new().group("g w").query("a");
        assert_eq!(q, "pattern=a&from=newest&group=g%20w");
    }

    #[test]
    fn a_reconnecting_durable_attaches_by_name_without_new_consumer_settings() {
        let q = SubscribeOptions::new()
            .ack(AckMode::Manual)
            .durable("orders")
            .ack_wait(Duration::from_secs(10))
            .max_deliver(5)
            .backoff([Duration::from_secs(1)])
            .max_in_flight(20)
            .without_consumer_settings()
            .query("order.*");
        assert_eq!(
            q,
            "pattern=order.%2A&from=newest&ack=manual&durable=orders&max_in_flight=20"
        );
    }

    #[test]
    fn a_plain_subscription_never_sends_consumer_settings_or_limit() {
        let q = SubscribeOptions::new()
            .from(Start::Oldest)
            .ack_wait(Duration::from_secs(10))
            .max_deliver(5)
            .backoff([Duration::from_secs(1)])
            .max_in_flight(20)
            .limit(3)
            .query("a.>");
        assert_eq!(q, "pattern=a.%3E&from=oldest");
        assert!(
            !SubscribeOptions::new()
                .ack(AckMode::None)
                .attaches_consumer()
        );
    }

    #[test]
    fn each_consumer_mode_sends_its_settings() {
        let settings = |o: SubscribeOptions| {
            o.ack_wait(Duration::from_secs(1))
                .max_deliver(2)
                .backoff([Duration::from_millis(5)])
                .max_in_flight(7)
                .limit(4)
        };
        let tail = "&ack_wait=1000ms&max_deliver=2&backoff=5ms&max_in_flight=7&limit=4";
        let cases = [
            (
                settings(SubscribeOptions::new().durable("d")),
                format!("pattern=a&from=newest&durable=d{tail}"),
            ),
            (
                settings(SubscribeOptions::new().group("g")),
                format!("pattern=a&from=newest&group=g{tail}"),
            ),
            (
                settings(SubscribeOptions::new().ack(AckMode::Manual)),
                format!("pattern=a&from=newest&ack=manual{tail}"),
            ),
            (
                settings(SubscribeOptions::new().group("g").ack(AckMode::Manual)),
                format!("pattern=a&from=newest&ack=manual&group=g{tail}"),
            ),
        ];
        for (options, want) in cases {
            assert!(options.attaches_consumer());
            assert_eq!(options.query("a"), want);
        }
    }

    #[test]
    fn limit_alone_sends_no_max_in_flight() {
        let q = SubscribeOptions::new()
            .group("jobs")
            .ack(AckMode::Manual)
            .limit(1)
            .query("job.>");
        assert_eq!(
            q,
            "pattern=job.%3E&from=newest&ack=manual&group=jobs&limit=1"
        );
    }

    #[test]
    fn durations_round_up_to_whole_milliseconds() {
        assert_eq!(millis_param(Duration::from_micros(1)), "1ms");
        assert_eq!(millis_param(Duration::from_micros(1500)), "2ms");
        assert_eq!(millis_param(Duration::from_secs(30)), "30000ms");
        assert_eq!(millis_param(Duration::ZERO), "0ms");
    }
}
