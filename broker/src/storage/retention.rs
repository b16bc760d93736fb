//! Retention: deleting whole sealed segments, oldest first, once the namespace's
//! [`Retention`](super::Retention) settings (age, bytes, events) ask for it, or once a floor
//! has superseded them (the state store after a snapshot).
//!
//! The writer applies it after each roll; after a group becomes visible and before its
//! appenders are answered, when the bytes or events held pass a limit by more than the
//! oldest segment ([`apply_if_due_by_size`]); and, for age, at the time the
//! oldest segment becomes too old ([`next_age_due`], armed on the one timer thread): never
//! on a tick, so an idle namespace costs nothing. [`EventLog::apply_retention`]
//! (super::EventLog::apply_retention) runs it at once. A segment leaves the readers' view
//! first and its files are deleted after: a reader that already holds its map reads on, one
//! that looks for it later finds a gap.

use std::time::{Duration, Instant};

use super::shared::{Removal, Shared};
use super::{StorageError, now_ns};

/// Applies retention when the bytes or events limit asks for the oldest sealed segment to go
/// (checked in memory first: cheap when nothing is due). Run after a group becomes visible,
/// before its appenders are answered.
pub(crate) fn apply_if_due_by_size(shared: &Shared) {
    if due_by_size(shared)
        && let Err(e) = apply(shared)
    {
        tracing::warn!(namespace = %shared.name(), error = %e, "retention failed");
    }
}

/// Whether the bytes or events limit asks for the oldest sealed segment to go (cheap: the
/// figures in memory only).
fn due_by_size(shared: &Shared) -> bool {
    let (bytes, events) = room_by_size(shared);
    bytes == 0 || events == 0
}

/// How many more bytes and events the log can take before the bytes or events limit asks
/// for the oldest sealed segment to go (`u64::MAX` for a limit not set, or while no segment
/// is sealed); 0 when it asks already. Cheap: the figures in memory only.
pub(crate) fn room_by_size(shared: &Shared) -> (u64, u64) {
    let r = shared.config().retention;
    if r.max_bytes.is_none() && r.max_events.is_none() {
        return (u64::MAX, u64::MAX);
    }
    let Some((oldest, total)) = shared.oldest_with_totals() else {
        return (u64::MAX, u64::MAX);
    };
    let room = |limit: Option<u64>, kept: u64| limit.map_or(u64::MAX, |m| m.saturating_sub(kept));
    (
        room(r.max_bytes, total.bytes - oldest.bytes),
        room(r.max_events, total.events - oldest.counted_events()),
    )
}

/// When the oldest sealed segment becomes older than the age limit: `None` without an age
/// limit or a sealed segment, or when its age cannot be read (the writer looks again later).
pub(crate) fn next_age_due(shared: &Shared) -> Option<Instant> {
    let age = shared.config().retention.max_age?;
    let oldest = shared.oldest_sealed()?;
    let newest = oldest.last_time().ok()?;
    let due_ns = newest.saturating_add(age.as_nanos().min(u64::MAX as u128) as u64 + 1);
    Some(Instant::now() + Duration::from_nanos(due_ns.saturating_sub(now_ns())))
}

/// Deletes whole sealed segments, oldest first, as the retention settings ask. Returns the
/// events deleted.
pub(crate) fn apply(shared: &Shared) -> Result<u64, StorageError> {
    let r = shared.config().retention;
    if r.max_age.is_none() && r.max_bytes.is_none() && r.max_events.is_none() {
        return Ok(0);
    }
    remove_oldest(shared, 0)
}

/// Deletes sealed segments, oldest first, while retention asks for it or while the segment
/// holds only sequences below `floor`. Returns the events deleted.
pub(crate) fn remove_oldest(shared: &Shared, floor: u64) -> Result<u64, StorageError> {
    let r = shared.config().retention;
    let now = now_ns();
    let mut removed = Vec::new();
    loop {
        let Some(oldest) = shared.oldest_sealed() else {
            break;
        };
        // The age check needs the segment's newest time: load it without holding the view.
        let too_old = match r.max_age {
            Some(age) => match oldest.last_time() {
                Ok(t) => now.saturating_sub(t) > age.as_nanos().min(u64::MAX as u128) as u64,
                Err(e) => {
                    tracing::warn!(namespace = %shared.name(), error = %e, "retention: cannot read segment age");
                    false
                }
            },
            None => false,
        };
        let removal = shared.remove_oldest_if(&oldest, |total| {
            let by_bytes = r.max_bytes.is_some_and(|m| total.bytes - oldest.bytes >= m);
            let by_events = r
                .max_events
                .is_some_and(|m| total.events - oldest.counted_events() >= m);
            let below_floor = oldest.last_seq < floor;
            too_old || by_bytes || by_events || below_floor
        });
        match removal {
            Removal::Moved => continue,
            Removal::Kept => break,
            Removal::Removed => removed.push(oldest),
        }
    }
    let mut events = 0;
    for seg in &removed {
        events += seg.counted_events();
        for path in [seg.path.clone(), seg.index_path()] {
            if let Err(e) = std::fs::remove_file(&path)
                && e.kind() != std::io::ErrorKind::NotFound
            {
                return Err(StorageError::io("delete", path, e));
            }
        }
        tracing::info!(namespace = %shared.name(), segment = %seg.path.display(), events = seg.counted_events(), "retention deleted segment");
    }
    if !removed.is_empty() {
        let _ = std::fs::File::open(shared.dir()).and_then(|d| d.sync_all());
    }
    Ok(events)
}
