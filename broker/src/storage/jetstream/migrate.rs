//! [`migrate`]: moves every namespace and the broker's state from another engine (a disk
//! data directory, for `bus migrate`) into JetStream, keeping what clients hold on to.
//!
//! Each namespace becomes its stream created with the source's first retained sequence
//! (`first_seq`) and incarnation, so event ids and cursors keep resolving; events are copied
//! in order in atomic batches with their times, headers and dedup ids, and every batch's
//! sequences are checked against the source's. The state (consumers and their positions)
//! is copied key by key. A namespace whose stream already exists is refused: nothing is
//! overwritten.

use std::sync::Arc;

use super::log::JetStreamLog;
use super::options::MAX_ATOMIC_BATCH;
use super::storage::JetStreamStorage;
use crate::storage::{Event, EventLog, ReadItem, Start, Storage, StorageError, parse_event_id};

/// Bytes of payload one copied batch holds at most (besides the event count limit).
const BATCH_BYTES: usize = 4 * 1024 * 1024;

/// What a migration moved.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MigrateReport {
    /// Namespaces moved, with (first sequence, events copied).
    pub namespaces: Vec<(String, u64, u64)>,
    /// State keys copied.
    pub state_keys: u64,
}

/// Moves everything `from` holds into `to`; `progress` hears each namespace as it is done.
pub async fn migrate(
    from: &dyn Storage,
    to: &JetStreamStorage,
    mut progress: impl FnMut(&str, u64),
) -> Result<MigrateReport, StorageError> {
    let mut report = MigrateReport::default();
    for name in from.namespaces().await? {
        let Some(src) = from.namespace(&name, false).await? else {
            continue;
        };
        let stats = src.stats();
        let incarnation = parse_event_id(&src.id_of(1))
            .map(|(_, _, inc)| inc)
            .ok_or_else(|| StorageError::Config(format!("namespace {name}: no incarnation")))?;
        let dst = to
            .import_namespace(&name, stats.first_seq, incarnation)
            .await?;
        let copied = copy(&*src, &dst, stats.last_seq).await?;
        progress(&name, copied);
        report.namespaces.push((name, stats.first_seq, copied));
    }
    let state = from.state();
    let dst = to.state();
    for (k, v) in state.list("").await? {
        dst.put(&k, v).await?;
        report.state_keys += 1;
    }
    Ok(report)
}

/// Copies `src`'s events up to `last` into `dst`; returns how many.
async fn copy(src: &dyn EventLog, dst: &Arc<JetStreamLog>, last: u64) -> Result<u64, StorageError> {
    let mut reader = src.reader(Start::Oldest).await?;
    let mut batch: Vec<Event> = Vec::new();
    let mut bytes = 0;
    let mut copied = 0;
    while reader.position() <= last {
        let Some(item) = reader.next().await? else {
            break;
        };
        let ReadItem::Event(e) = item else {
            return Err(StorageError::Config(format!(
                "namespace {}: a gap inside the retained events; migrate needs them whole",
                src.name()
            )));
        };
        bytes += e.payload.len();
        batch.push(e);
        if batch.len() == MAX_ATOMIC_BATCH || bytes >= BATCH_BYTES {
            copied += batch.len() as u64;
            dst.import(std::mem::take(&mut batch)).await?;
            bytes = 0;
        }
    }
    if !batch.is_empty() {
        copied += batch.len() as u64;
        dst.import(batch).await?;
    }
    Ok(copied)
}
