//! The live path, in process: subscriptions cross from reading the log to being handed
//! events by the namespace routers and back, and see every matching event exactly once and
//! in order; a stalled subscriber falls back to the log without delaying another; an event
//! costs the subscriptions it matches, not those that exist.
//!
//! Deterministic: a current-thread runtime with the clock paused, so tasks interleave only
//! where the test yields, and a bounded wait (`timeout`) ends exactly when nothing else can
//! run. The interleavings come from a seeded generator, the same for every run.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bus_broker::broker::{Broker, Publish};
use bus_broker::config::Config;
use bus_broker::live::QUEUE_EVENTS;
use bus_broker::subscription::{Delivery, Subscription};

/// A small seeded generator (xorshift64*): the interleavings are the same on every run.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n
    }
}

async fn broker() -> Broker {
    Broker::in_memory(Config::default()).await.expect("broker")
}

async fn publish(broker: &Broker, subject: &str) -> u64 {
    broker
        .publish(Publish {
            subject: subject.to_owned(),
            payload: bytes::Bytes::from_static(b"p"),
            ..Publish::default()
        })
        .await
        .expect("publish")
        .sequence
}

/// The next delivery if one comes before the runtime goes idle (the clock is paused, so the
/// wait ends exactly when nothing else can run).
async fn next_now(sub: &mut Subscription) -> Option<(String, u64)> {
    match tokio::time::timeout(Duration::from_millis(1), sub.next()).await {
        Err(_) => None,
        Ok(Ok(Some(Delivery::Event { event, .. }))) => {
            Some((event.namespace.to_string(), event.sequence))
        }
        Ok(other) => panic!("unexpected {other:?}"),
    }
}

/// One seeded run: events published in bursts to three namespaces (one created after the
/// subscription), matching or not, with reads, yields and bursts big enough to overflow a
/// live queue in between; then everything is read. Returns (joins, fall-backs) seen.
async fn interleaving(seed: u64) -> (u64, u64) {
    let broker = broker().await;
    let mut rng = Rng::new(seed);
    let mut expected: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    let mut got: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    let publish_some = |n: u64, rng: &mut Rng, namespaces: u64| {
        let items: Vec<(String, bool)> = (0..n)
            .map(|_| {
                let ns = ["a", "b", "c"][rng.below(namespaces) as usize];
                let matching = rng.below(3) > 0;
                (ns.to_owned(), matching)
            })
            .collect();
        items
    };
    // Before the subscription: it starts behind, in two namespaces.
    for (ns, matching) in publish_some(rng.below(400), &mut rng, 2) {
        let seq = publish(
            &broker,
            &format!("{ns}.{}", if matching { "x" } else { "y" }),
        )
        .await;
        if matching {
            expected.entry(ns).or_default().push(seq);
        }
    }
    let mut sub = broker.subscribe("*.x", "oldest").await.expect("subscribe");
    for _ in 0..120 {
        match rng.below(5) {
            0 | 1 => {
                let n = rng.below(12);
                for (ns, matching) in publish_some(n, &mut rng, 3) {
                    let subject = format!("{ns}.{}", if matching { "x" } else { "y" });
                    let seq = publish(&broker, &subject).await;
                    if matching {
                        expected.entry(ns).or_default().push(seq);
                    }
                }
            }
            2 => {
                for _ in 0..rng.below(40) {
                    match next_now(&mut sub).await {
                        Some((ns, seq)) => got.entry(ns).or_default().push(seq),
                        None => break,
                    }
                }
            }
            3 => {
                for _ in 0..rng.below(4) {
                    tokio::task::yield_now().await;
                }
            }
            _ => {
                // More than a live queue holds, without reading.
                let ns = ["a", "b"][rng.below(2) as usize];
                for _ in 0..(QUEUE_EVENTS as u64 + rng.below(50)) {
                    let seq = publish(&broker, &format!("{ns}.x")).await;
                    expected.entry(ns.to_owned()).or_default().push(seq);
                }
            }
        }
    }
    while let Some((ns, seq)) = next_now(&mut sub).await {
        got.entry(ns).or_default().push(seq);
    }
    assert_eq!(got, expected, "seed {seed}: each event once, in order");
    let live = &broker.metrics().live;
    (
        live.joined.load(Ordering::Relaxed),
        live.fell_back.load(Ordering::Relaxed),
    )
}

#[tokio::test(start_paused = true)]
async fn crossing_between_the_log_and_the_live_path_loses_and_doubles_nothing() {
    let (mut joins, mut fallbacks) = (0, 0);
    for seed in 0..60 {
        let (j, f) = interleaving(seed).await;
        joins += j;
        fallbacks += f;
    }
    // The runs did cross both ways, many times.
    assert!(joins > 100, "joins: {joins}");
    assert!(fallbacks > 20, "fall-backs: {fallbacks}");
}

#[tokio::test(start_paused = true)]
async fn a_stalled_subscriber_falls_back_to_the_log_and_delays_nobody() {
    let broker = broker().await;
    // The namespace exists, so both have its log to join.
    publish(&broker, "user.setup").await;
    let mut stalled = broker.subscribe("user.>", "newest").await.unwrap();
    let mut reading = broker.subscribe("user.>", "newest").await.unwrap();
    // Both join the live path at the tail.
    assert_eq!(next_now(&mut stalled).await, None);
    assert_eq!(next_now(&mut reading).await, None);
    assert!(stalled.is_live() && reading.is_live());
    let total = 3 * QUEUE_EVENTS as u64;
    let mut published = Vec::new();
    for _ in 0..total {
        let seq = publish(&broker, "user.created").await;
        published.push(seq);
        // The reading subscriber has each event as soon as it is published.
        assert_eq!(next_now(&mut reading).await, Some(("user".into(), seq)));
        assert!(
            stalled.queued() <= QUEUE_EVENTS,
            "the stalled queue is bounded"
        );
    }
    assert!(reading.is_live(), "the reader never left the live path");
    let live = &broker.metrics().live;
    assert_eq!(
        live.fell_back.load(Ordering::Relaxed),
        1,
        "only the stalled one fell back"
    );
    // The stalled one takes what was queued, then reads the log: nothing is missing.
    let mut got = Vec::new();
    while let Some((_, seq)) = next_now(&mut stalled).await {
        got.push(seq);
    }
    assert_eq!(got, published);
    assert!(stalled.is_live(), "caught up, it joined again");
    let seq = publish(&broker, "user.created").await;
    assert_eq!(next_now(&mut stalled).await, Some(("user".into(), seq)));
}

#[tokio::test(start_paused = true)]
async fn a_thousand_subscriptions_on_their_own_subjects_get_only_their_own() {
    const N: usize = 1000;
    let broker = broker().await;
    // One event first, so that the namespace exists and every subscription has a log to join.
    publish(&broker, "user.setup").await;
    let mut subs = Vec::new();
    for i in 0..N {
        let mut s = broker
            .subscribe(&format!("user.{i}.inbox"), "newest")
            .await
            .unwrap();
        assert_eq!(next_now(&mut s).await, None);
        assert!(s.is_live());
        subs.push(s);
    }
    let live = &broker.metrics().live;
    let routed_before = live.routed.load(Ordering::Relaxed);
    let mut rng = Rng::new(7);
    let mut order: Vec<usize> = (0..N).collect();
    for i in (1..N).rev() {
        order.swap(i, rng.below(i as u64 + 1) as usize);
    }
    let mut sequence_of = vec![0; N];
    for &i in &order {
        sequence_of[i] = publish(&broker, &format!("user.{i}.inbox")).await;
    }
    for (i, s) in subs.iter_mut().enumerate() {
        assert_eq!(
            next_now(s).await,
            Some(("user".into(), sequence_of[i])),
            "sub {i}"
        );
        assert_eq!(next_now(s).await, None, "sub {i} gets nothing else");
    }
    // Each event was handed to exactly one subscription: the cost of the ones matched.
    assert_eq!(
        live.routed.load(Ordering::Relaxed) - routed_before,
        N as u64
    );
    assert!(subs.iter().all(Subscription::is_live));
}

#[tokio::test(start_paused = true)]
async fn a_subscription_across_namespaces_joins_each_as_it_catches_up() {
    let broker = broker().await;
    for _ in 0..5 {
        publish(&broker, "a.x").await;
    }
    let mut sub = broker.subscribe("*.x", "oldest").await.unwrap();
    assert!(!sub.is_live(), "behind in a, it reads the log");
    let mut got = Vec::new();
    while let Some(d) = next_now(&mut sub).await {
        got.push(d);
    }
    assert_eq!(got.len(), 5);
    assert!(sub.is_live());
    // A namespace created now is read from its oldest event, then joined as well.
    let b1 = publish(&broker, "b.x").await;
    let a6 = publish(&broker, "a.x").await;
    let mut got = Vec::new();
    while let Some(d) = next_now(&mut sub).await {
        got.push(d);
    }
    got.sort();
    assert_eq!(got, vec![("a".into(), a6), ("b".into(), b1)]);
    assert!(sub.is_live());
    let cursor = sub.cursor();
    assert!(cursor.contains("a-") && cursor.contains("b-"), "{cursor}");
}
