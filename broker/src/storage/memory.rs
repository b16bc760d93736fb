//! [`MemoryStorage`]: the storage traits kept in memory, for tests and embedding.
//!
//! Same semantics as the disk engine (sequences, ids, dedup window, gaps after retention,
//! the batch byte limit, waiting readers) without durability: everything is gone when it is
//! dropped. One difference: an append is made when `append` is called, not when its future
//! is first polled (a dropped, never-polled append is stored; on disk it is not). Retention
//! here drops single events rather than whole segments. Bounded only by the retention
//! settings: with none, it grows with what is appended.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, RwLock};

use bytes::Bytes;
use futures::future::BoxFuture;
use tokio::sync::watch;

use super::dedup::{DedupEntry, DedupTable};
use super::log::check_batch;
use super::{
    EventLog, IdLookup, LogConfig, LogReader, LogStats, NewEvent, ReadItem, Receipt, Start,
    StateStore, Storage, StorageError, check_namespace, event_id, now_ns, parse_event_id, record,
};
use crate::storage::Event;
use crate::sync::lock;

/// A log's contents, behind its lock.
#[derive(Debug)]
struct Inner {
    /// The retained events, oldest first.
    events: VecDeque<Event>,
    /// The sequence of the oldest retained event (the next one when empty).
    first_seq: u64,
    /// The sequence the next append gets.
    next_seq: u64,
    /// The newest event's time (times never go back).
    last_time: u64,
    /// Encoded bytes of the retained events, as the disk engine would count them.
    bytes: u64,
    /// Dedup ids seen within the window.
    dedup: DedupTable,
    /// Set at close: appends are refused, waiting readers end.
    closed: bool,
}

/// One namespace in memory.
#[derive(Debug)]
pub struct MemoryLog {
    /// The namespace.
    name: Arc<str>,
    /// Its settings (payload limit, retention, dedup window).
    config: LogConfig,
    /// Random, fixed at creation: ids of a re-created namespace differ.
    incarnation: u32,
    /// The contents.
    inner: Mutex<Inner>,
    /// The newest sequence, for readers waiting at the tail.
    tail: watch::Sender<u64>,
}

impl MemoryLog {
    /// An empty log.
    pub fn new(name: &str, config: LogConfig) -> Self {
        MemoryLog {
            name: Arc::from(name),
            incarnation: (uuid::Uuid::new_v4().as_u128() >> 96) as u32,
            inner: Mutex::new(Inner {
                events: VecDeque::new(),
                first_seq: 1,
                next_seq: 1,
                last_time: 0,
                bytes: 0,
                dedup: DedupTable::new(config.dedup_window, config.dedup_max_entries),
                closed: false,
            }),
            tail: watch::Sender::new(0),
            config,
        }
    }

    fn receipt(&self, sequence: u64, time_ns: u64, duplicate: bool) -> Receipt {
        Receipt {
            namespace: self.name.clone(),
            incarnation: self.incarnation,
            sequence,
            time_ns,
            duplicate,
        }
    }

    fn append_now(&self, events: Vec<NewEvent>) -> Result<Vec<Receipt>, StorageError> {
        check_batch(&events, &self.name, self.config.max_payload_bytes)?;
        let now = now_ns();
        let mut g = lock(&self.inner);
        if g.closed {
            return Err(StorageError::Closed);
        }
        let mut out = Vec::with_capacity(events.len());
        for e in events {
            if let Some(m) = e.msg_id.as_deref()
                && let Some(d) = g.dedup.get(m, now)
            {
                out.push(self.receipt(d.sequence, d.time_ns, true));
                continue;
            }
            let seq = g.next_seq;
            g.next_seq += 1;
            let time = now.max(g.last_time);
            g.last_time = time;
            if let Some(m) = e.msg_id.as_deref() {
                g.dedup.insert(
                    m,
                    DedupEntry {
                        sequence: seq,
                        time_ns: time,
                    },
                );
            }
            let id = event_id(&self.name, seq, self.incarnation);
            g.bytes += record::encoded_len(&e, id.len()) as u64;
            g.events.push_back(Event {
                sequence: seq,
                id,
                subject: e.subject,
                time_ns: time,
                headers: e.headers,
                reply_to: e.reply_to,
                msg_id: e.msg_id,
                content_type: e.content_type,
                payload: e.payload,
            });
            out.push(self.receipt(seq, time, false));
        }
        self.retain(&mut g, now);
        let last = g.next_seq - 1;
        drop(g);
        self.tail.send_replace(last);
        Ok(out)
    }

    fn retain(&self, g: &mut Inner, now: u64) -> u64 {
        let r = self.config.retention;
        if r.max_age.is_none() && r.max_bytes.is_none() && r.max_events.is_none() {
            return 0;
        }
        let mut dropped = 0;
        while let Some(front) = g.events.front() {
            let size = record::encoded_len_of(front) as u64;
            let old = r
                .max_age
                .is_some_and(|a| now.saturating_sub(front.time_ns) > a.as_nanos() as u64);
            let bytes = r.max_bytes.is_some_and(|m| g.bytes - size >= m);
            let count = r.max_events.is_some_and(|m| g.events.len() as u64 > m);
            if !(old || bytes || count) {
                break;
            }
            g.events.pop_front();
            g.bytes -= size;
            g.first_seq += 1;
            dropped += 1;
        }
        dropped
    }

    /// Drops events older than `max_age`, which ages them without any append: the disk
    /// engine does it every second, this engine whenever the log is read or its figures are
    /// asked for.
    fn expire(&self, g: &mut Inner) {
        if self.config.retention.max_age.is_some() {
            self.retain(g, now_ns());
        }
    }

    fn close(&self) {
        lock(&self.inner).closed = true;
        self.tail.send_modify(|_| {});
    }
}

/// Implemented on the `Arc` so that readers can hold their log.
impl EventLog for Arc<MemoryLog> {
    fn name(&self) -> &str {
        &self.name
    }

    fn append(
        &self,
        events: Vec<NewEvent>,
    ) -> BoxFuture<'static, Result<Vec<Receipt>, StorageError>> {
        let res = self.append_now(events);
        Box::pin(async move { res })
    }

    fn reader(&self, start: Start) -> BoxFuture<'_, Result<Box<dyn LogReader>, StorageError>> {
        let reader = self.open_reader(start);
        Box::pin(async move { reader })
    }

    fn lookup_id<'a>(&'a self, id: &'a str) -> BoxFuture<'a, IdLookup> {
        let found = self.find_id(id);
        Box::pin(async move { found })
    }

    fn id_of(&self, sequence: u64) -> String {
        event_id(&self.name, sequence, self.incarnation)
    }

    fn lookup_msg_id<'a>(&'a self, msg_id: &'a str) -> BoxFuture<'a, Option<Receipt>> {
        let d = lock(&self.inner).dedup.get(msg_id, now_ns());
        let receipt = d.map(|d| self.receipt(d.sequence, d.time_ns, true));
        Box::pin(async move { receipt })
    }

    fn apply_retention(&self) -> BoxFuture<'_, Result<u64, StorageError>> {
        let dropped = {
            let mut g = lock(&self.inner);
            self.retain(&mut g, now_ns())
        };
        Box::pin(async move { Ok(dropped) })
    }

    fn stats(&self) -> LogStats {
        let mut g = lock(&self.inner);
        self.expire(&mut g);
        LogStats {
            events: g.next_seq - g.first_seq,
            bytes: g.bytes,
            first_seq: g.first_seq,
            last_seq: g.next_seq - 1,
            last_time_ns: g.last_time,
            segments: 0,
            read_only: None,
            damaged: None,
            appended: g.next_seq - 1,
            groups: 0,
            syncs: 0,
            sync_ns: 0,
            corrupt_reads: 0,
            heals: 0,
        }
    }
}

impl MemoryLog {
    /// A reader positioned at `start`.
    fn open_reader(self: &Arc<Self>, start: Start) -> Result<Box<dyn LogReader>, StorageError> {
        let next = {
            let mut g = lock(&self.inner);
            self.expire(&mut g);
            match start {
                Start::Oldest => g.first_seq,
                Start::Newest => g.next_seq,
                Start::Sequence(s) => s.max(1),
                Start::Time(t) => {
                    let i = g.events.partition_point(|e| e.time_ns < t);
                    g.first_seq + i as u64
                }
                Start::AfterId(id) => {
                    drop(g);
                    match self.find_id(&id) {
                        IdLookup::Found(s) | IdLookup::Deleted { sequence: s, .. } => s + 1,
                        IdLookup::Unknown => return Err(StorageError::UnknownEvent(id)),
                    }
                }
            }
        };
        Ok(Box::new(MemoryReader {
            log: self.clone(),
            next,
            tail: self.tail.subscribe(),
        }))
    }

    /// Resolves an event id.
    fn find_id(&self, id: &str) -> IdLookup {
        let Some((ns, sequence, inc)) = parse_event_id(id) else {
            return IdLookup::Unknown;
        };
        let g = lock(&self.inner);
        if ns != &*self.name || inc != self.incarnation || sequence == 0 || sequence >= g.next_seq {
            IdLookup::Unknown
        } else if sequence < g.first_seq {
            IdLookup::Deleted {
                sequence,
                first_available: g.first_seq,
            }
        } else {
            IdLookup::Found(sequence)
        }
    }
}

/// A cursor over a [`MemoryLog`].
struct MemoryReader {
    /// The log read.
    log: Arc<MemoryLog>,
    /// The sequence of the next event to return.
    next: u64,
    /// Wakes the reader when events are appended.
    tail: watch::Receiver<u64>,
}

impl LogReader for MemoryReader {
    fn try_next(&mut self) -> Result<Option<ReadItem>, StorageError> {
        let mut g = lock(&self.log.inner);
        self.log.expire(&mut g);
        if self.next < g.first_seq {
            let gap = ReadItem::Gap {
                missed_from: self.next,
                resume_at: g.first_seq,
                reason: super::GapReason::Retention,
            };
            self.next = g.first_seq;
            return Ok(Some(gap));
        }
        let i = (self.next - g.first_seq) as usize;
        Ok(g.events.get(i).map(|e| {
            self.next += 1;
            ReadItem::Event(e.clone())
        }))
    }

    fn next(&mut self) -> BoxFuture<'_, Result<Option<ReadItem>, StorageError>> {
        Box::pin(async move {
            loop {
                self.tail.borrow_and_update();
                if let Some(item) = self.try_next()? {
                    return Ok(Some(item));
                }
                if lock(&self.log.inner).closed || self.tail.changed().await.is_err() {
                    return Ok(None);
                }
            }
        })
    }

    fn position(&self) -> u64 {
        self.next
    }
}

/// Key-value state in memory.
#[derive(Debug, Default)]
pub struct MemoryState {
    /// Every key and its value, in key order (for prefix listing).
    map: Mutex<BTreeMap<String, Bytes>>,
}

impl StateStore for MemoryState {
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Bytes>, StorageError>> {
        let value = lock(&self.map).get(key).cloned();
        Box::pin(async move { Ok(value) })
    }
    fn list<'a>(
        &'a self,
        prefix: &'a str,
    ) -> BoxFuture<'a, Result<Vec<(String, Bytes)>, StorageError>> {
        let entries = lock(&self.map)
            .range(prefix.to_owned()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        Box::pin(async move { Ok(entries) })
    }
    fn put(&self, key: &str, value: Bytes) -> BoxFuture<'static, Result<(), StorageError>> {
        lock(&self.map).insert(key.to_owned(), value);
        Box::pin(async { Ok(()) })
    }
    fn delete(&self, key: &str) -> BoxFuture<'static, Result<(), StorageError>> {
        lock(&self.map).remove(key);
        Box::pin(async { Ok(()) })
    }
}

/// The in-memory storage engine.
#[derive(Debug, Default)]
pub struct MemoryStorage {
    /// Settings of namespaces without an override.
    defaults: LogConfig,
    /// Per-namespace settings.
    overrides: HashMap<String, LogConfig>,
    /// Every namespace by name.
    logs: RwLock<BTreeMap<String, Arc<MemoryLog>>>,
    /// The broker's state.
    state: Arc<MemoryState>,
}

impl MemoryStorage {
    /// An empty storage whose namespaces use `defaults`, or their entry in `overrides`.
    pub fn new(defaults: LogConfig, overrides: HashMap<String, LogConfig>) -> Self {
        MemoryStorage {
            defaults,
            overrides,
            ..MemoryStorage::default()
        }
    }
}

impl Storage for MemoryStorage {
    fn namespace<'a>(
        &'a self,
        name: &'a str,
        create: bool,
    ) -> BoxFuture<'a, Result<Option<Arc<dyn EventLog>>, StorageError>> {
        let log = self.log(name, create);
        Box::pin(async move { log })
    }

    fn namespaces(&self) -> BoxFuture<'_, Result<Vec<String>, StorageError>> {
        let names = self
            .logs
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .cloned()
            .collect();
        Box::pin(async move { Ok(names) })
    }

    fn state(&self) -> Arc<dyn StateStore> {
        self.state.clone()
    }

    fn close(&self) -> BoxFuture<'_, Result<(), StorageError>> {
        for log in self.logs.read().unwrap_or_else(|e| e.into_inner()).values() {
            log.close();
        }
        Box::pin(async { Ok(()) })
    }
}

impl MemoryStorage {
    /// The log of `name`, created when `create` is set.
    fn log(&self, name: &str, create: bool) -> Result<Option<Arc<dyn EventLog>>, StorageError> {
        check_namespace(name)?;
        let mut logs = self.logs.write().unwrap_or_else(|e| e.into_inner());
        if let Some(l) = logs.get(name) {
            return Ok(Some(Arc::new(l.clone())));
        }
        if !create {
            return Ok(None);
        }
        let config = self
            .overrides
            .get(name)
            .cloned()
            .unwrap_or_else(|| self.defaults.clone());
        let log = Arc::new(MemoryLog::new(name, config));
        logs.insert(name.to_owned(), log.clone());
        Ok(Some(Arc::new(log)))
    }
}
