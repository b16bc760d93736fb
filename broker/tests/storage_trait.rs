//! The `Storage` trait's contract, checked against every engine (disk, memory, and
//! JetStream on a real `nats-server`), through the trait only: what routing and delivery
//! rely on.

use std::sync::Arc;

use bus_broker::storage::{
    DiskStorage, GapReason, IdLookup, JetStreamOptions, JetStreamStorage, LogConfig, MemoryStorage,
    NewEvent, ReadItem, Retention, Start, Storage, StorageError, StorageOptions,
};
use bus_testkit::NatsServer;

fn with_id(subject: &str, msg_id: &str) -> NewEvent {
    NewEvent {
        msg_id: Some(msg_id.into()),
        ..NewEvent::new(subject, "x")
    }
}

async fn contract(storage: Arc<dyn Storage>) {
    assert!(storage.namespace("user", false).await.unwrap().is_none());
    assert!(matches!(
        storage.namespace("a.b", true).await,
        Err(StorageError::InvalidNamespace(_))
    ));
    let log = storage.namespace("user", true).await.unwrap().unwrap();
    assert_eq!(storage.namespaces().await.unwrap(), ["user"]);

    // Appends: sequences from 1, atomic batches, dedup.
    let r = log
        .append(vec![NewEvent::new("user.a", "1")])
        .await
        .unwrap();
    assert_eq!(
        (r[0].sequence, &*r[0].namespace, r[0].duplicate),
        (1, "user", false)
    );
    let r = log
        .append(vec![NewEvent::new("user.b", "2"), with_id("user.c", "m")])
        .await
        .unwrap();
    assert_eq!(r.iter().map(|r| r.sequence).collect::<Vec<_>>(), [2, 3]);
    let dup = log.append(vec![with_id("user.c", "m")]).await.unwrap();
    assert!(dup[0].duplicate && dup[0].sequence == 3);
    assert_eq!(log.lookup_msg_id("m").await.map(|r| r.sequence), Some(3));
    assert!(matches!(
        log.append(vec![]).await,
        Err(StorageError::InvalidEvent(_))
    ));
    // A batch over the byte limit (1 GiB encoded) is refused whole; the payloads share one
    // buffer, so the test allocates 1 MiB.
    let mib = bytes::Bytes::from(vec![b'x'; 1 << 20]);
    let huge: Vec<NewEvent> = (0..1100)
        .map(|_| NewEvent::new("user.big", mib.clone()))
        .collect();
    assert!(matches!(
        log.append(huge).await,
        Err(StorageError::InvalidEvent(m)) if m.contains("exceeds")
    ));

    // Readers: every start position; a waiting reader wakes on append.
    let mut all = log.reader(Start::Oldest).await.unwrap();
    let mut seen = Vec::new();
    while let Some(ReadItem::Event(e)) = all.try_next().unwrap() {
        seen.push((e.sequence, e.subject));
    }
    assert_eq!(
        seen,
        [
            (1, "user.a".into()),
            (2, "user.b".into()),
            (3, "user.c".into())
        ]
    );
    let id2 = log.id_of(2);
    assert_eq!(log.lookup_id(&id2).await, IdLookup::Found(2));
    assert_eq!(log.lookup_id(&log.id_of(9)).await, IdLookup::Unknown);
    let mut after = log.reader(Start::AfterId(id2)).await.unwrap();
    assert!(matches!(after.try_next().unwrap(), Some(ReadItem::Event(e)) if e.sequence == 3));
    assert!(matches!(
        log.reader(Start::AfterId("user-1-ffffffff".into())).await,
        Err(StorageError::UnknownEvent(_))
    ));
    let mut tail = log.reader(Start::Newest).await.unwrap();
    assert!(tail.try_next().unwrap().is_none());
    let waiter = tokio::spawn(async move { tail.next().await });
    log.append(vec![NewEvent::new("user.d", "4")])
        .await
        .unwrap();
    let got = tokio::time::timeout(std::time::Duration::from_secs(10), waiter)
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(got, Ok(Some(ReadItem::Event(e))) if e.sequence == 4));

    // Stats, and the durable state store.
    let s = log.stats();
    assert_eq!((s.events, s.first_seq, s.last_seq), (4, 1, 4));
    let st = storage.state();
    st.put("c/1", "a".into()).await.unwrap();
    st.put("c/2", "b".into()).await.unwrap();
    st.delete("c/1").await.unwrap();
    assert_eq!(
        st.list("c/").await.unwrap(),
        vec![("c/2".to_string(), bytes::Bytes::from("b"))]
    );
    storage.close().await.unwrap();
}

#[tokio::test]
async fn the_disk_engine_keeps_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    let (disk, _) = DiskStorage::open(StorageOptions::new(dir.path())).unwrap();
    contract(Arc::new(disk)).await;
}

#[tokio::test]
async fn the_memory_engine_keeps_the_contract() {
    contract(Arc::new(MemoryStorage::default())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_jetstream_engine_keeps_the_contract() {
    if !NatsServer::available() {
        return;
    }
    let nats = NatsServer::start();
    let js = JetStreamStorage::connect(JetStreamOptions::new(vec![nats.url().to_owned()]))
        .await
        .unwrap();
    contract(Arc::new(js)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_jetstream_engine_reports_gaps_after_retention() {
    if !NatsServer::available() {
        return;
    }
    let nats = NatsServer::start();
    let mut options = JetStreamOptions::new(vec![nats.url().to_owned()]);
    options.defaults.retention.max_events = Some(2);
    let storage = JetStreamStorage::connect(options).await.unwrap();
    let log = storage.namespace("user", true).await.unwrap().unwrap();
    let mut early = log.reader(Start::Oldest).await.unwrap();
    let first = log
        .append(vec![NewEvent::new("user.a", "0")])
        .await
        .unwrap()
        .remove(0)
        .id();
    for i in 1..5 {
        log.append(vec![NewEvent::new("user.a", format!("{i}"))])
            .await
            .unwrap();
    }
    // JetStream keeps at most `max_msgs`: events 4 and 5.
    assert_eq!(
        early.next().await.unwrap(),
        Some(ReadItem::Gap {
            missed_from: 1,
            resume_at: 4,
            reason: GapReason::Retention,
        })
    );
    assert!(matches!(early.next().await.unwrap(), Some(ReadItem::Event(e)) if e.sequence == 4));
    assert_eq!(
        log.lookup_id(&first).await,
        IdLookup::Deleted {
            sequence: 1,
            first_available: 4
        }
    );
    assert_eq!(log.stats().first_seq, 4);
    storage.close().await.unwrap();
}

#[tokio::test]
async fn the_memory_engine_reports_gaps_after_retention() {
    let config = LogConfig {
        retention: Retention {
            max_events: Some(2),
            ..Retention::default()
        },
        ..LogConfig::default()
    };
    let storage = MemoryStorage::new(config, Default::default());
    let log = storage.namespace("user", true).await.unwrap().unwrap();
    let mut early = log.reader(Start::Oldest).await.unwrap();
    let first = log
        .append(vec![NewEvent::new("user.a", "0")])
        .await
        .unwrap()
        .remove(0)
        .id();
    for i in 1..5 {
        log.append(vec![NewEvent::new("user.a", format!("{i}"))])
            .await
            .unwrap();
    }
    assert_eq!(log.stats().first_seq, 4);
    assert_eq!(
        early.try_next().unwrap(),
        Some(ReadItem::Gap {
            missed_from: 1,
            resume_at: 4,
            reason: bus_broker::storage::GapReason::Retention,
        })
    );
    assert_eq!(
        log.lookup_id(&first).await,
        IdLookup::Deleted {
            sequence: 1,
            first_available: 4
        }
    );
}

#[tokio::test]
async fn the_memory_engine_expires_by_age_without_an_append() {
    let config = LogConfig {
        retention: Retention {
            max_age: Some(std::time::Duration::from_nanos(1)),
            ..Retention::default()
        },
        ..LogConfig::default()
    };
    let storage = MemoryStorage::new(config, Default::default());
    let log = storage.namespace("user", true).await.unwrap().unwrap();
    let mut early = log.reader(Start::Oldest).await.unwrap();
    let stored = log
        .append(vec![NewEvent::new("user.a", "0")])
        .await
        .unwrap()
        .remove(0);
    // Waits on the clock, not on a sleep: once it has passed the event's age limit, the
    // event is gone from the figures and from every reader, with no append since.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while bus_broker::storage::now_ns() <= stored.time_ns + 1 {
        assert!(
            std::time::Instant::now() < deadline,
            "the clock did not move"
        );
        std::hint::spin_loop();
    }
    assert_eq!(log.stats().events, 0);
    assert_eq!(
        early.try_next().unwrap(),
        Some(ReadItem::Gap {
            missed_from: 1,
            resume_at: 2,
            reason: bus_broker::storage::GapReason::Retention,
        })
    );
    let mut late = log.reader(Start::Oldest).await.unwrap();
    assert_eq!(late.try_next().unwrap(), None);
}
