//! [`ConsumerState`]: the bookkeeping of one consumer, free of I/O so that every rule can be
//! tested on its own: which events are pending (delivered, not yet acknowledged) with their
//! delivery counts, who holds each, when each is due back, which are ready to go out again,
//! and how far the consumer has read in every namespace.
//!
//! Invariants:
//! - In every namespace, every matching event below `next` was delivered; those not in
//!   `pending` are resolved (acked, terminated, or passed to the dead-letter subject).
//! - An entry is in exactly one of: held by a member (with a deadline in `timers`), waiting
//!   for a delayed redelivery (deadline in `timers`, no holder), `ready` (to go out now), or
//!   `dead` (its dead letter is being published).
//! - `pending.len()` never exceeds `max_in_flight` through new deliveries (redeliveries are
//!   already counted). An ack frees its room at once; a rollback (a failed write, rare) may
//!   put `pending` above the bound until those events are acked again.
//! - A resolution (ack, dead letter published) is tentative until the state recording it is
//!   durable: the entry moves from `pending` to `resolving`, which snapshots leave out. A
//!   successful write of a snapshot taken at version `v` makes every resolution up to `v`
//!   final ([`ConsumerState::commit`]); a failed write puts every tentative one back as it
//!   was ([`ConsumerState::rollback`]), so that memory never says more than the disk.
//!
//! Bounded: at most `max_in_flight` pending entries, as many resolving ones as acks arrive
//! within one state write, plus one position per namespace.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::settings::{AckMode, ConsumerSettings};

/// Identifies one member (a live subscription) of a consumer.
pub type MemberId = u64;

/// An event of the consumer: namespace and sequence.
#[derive(Debug, Clone, Eq)]
pub struct Key {
    /// The namespace.
    pub ns: Arc<str>,
    /// The sequence in it.
    pub seq: u64,
}

// Ordered by namespace text, then sequence. Keys of one consumer share their namespace's
// text (see [`ConsumerState::key`]), so the common comparison is a pointer test, not a
// string comparison: these run for every delivery and ack.
impl Ord for Key {
    fn cmp(&self, other: &Key) -> std::cmp::Ordering {
        if Arc::ptr_eq(&self.ns, &other.ns) {
            return self.seq.cmp(&other.seq);
        }
        self.ns.cmp(&other.ns).then(self.seq.cmp(&other.seq))
    }
}

impl PartialOrd for Key {
    fn partial_cmp(&self, other: &Key) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Key {
    fn eq(&self, other: &Key) -> bool {
        self.seq == other.seq && (Arc::ptr_eq(&self.ns, &other.ns) || self.ns == other.ns)
    }
}

impl Key {
    /// The key of `seq` in `ns`.
    pub fn new(ns: &str, seq: u64) -> Key {
        Key { ns: ns.into(), seq }
    }
}

#[derive(Debug, Clone)]
struct Entry {
    /// Deliveries so far.
    count: u32,
    /// The member holding the current delivery.
    holder: Option<MemberId>,
    /// When it comes back (held: ack wait; not held: delayed nack).
    due: Option<Instant>,
    /// Being passed to the dead-letter subject.
    dead: bool,
}

#[derive(Debug, Clone, Copy, Default)]
struct Member {
    held: usize,
    max: usize,
    /// The member's own cap as it asked (its `max` is this within `max_in_flight`).
    requested: Option<usize>,
}

/// What an acknowledgement verb did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The event is resolved now.
    Acked,
    /// The event was already resolved (acked before, terminated, dead-lettered).
    AlreadyResolved,
    /// The event will be redelivered (now or after the delay).
    Nacked,
    /// The ack wait restarted.
    InProgress,
    /// The event goes to the dead-letter subject and is never redelivered.
    Terminated,
    /// The consumer never read this event.
    NotDelivered,
    /// `in progress` for an event whose delivery is no longer held (its ack wait ran out).
    NotHeld,
}

/// The verb of an acknowledgement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    /// Done with it.
    Ack,
    /// Redeliver now, or after the delay.
    Nack(Option<Duration>),
    /// Still working: restart the ack wait.
    InProgress,
    /// Never redeliver; dead-letter it.
    Term,
}

/// The persisted form: position per namespace and pending deliveries with their counts.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Snapshot {
    /// Namespace → next sequence to read.
    pub next: BTreeMap<String, u64>,
    /// (namespace, sequence, deliveries so far) of every pending event.
    pub pending: Vec<(String, u64, u32)>,
    /// Namespace → lowest sequence the consumer ever started reading at (absent in records
    /// written before it existed: no floor).
    #[serde(default)]
    pub origin: BTreeMap<String, u64>,
}

/// The bookkeeping of one consumer.
#[derive(Debug)]
pub struct ConsumerState {
    settings: ConsumerSettings,
    next: BTreeMap<Arc<str>, u64>,
    pending: BTreeMap<Key, Entry>,
    ready: BTreeSet<Key>,
    timers: BTreeSet<(Instant, Key)>,
    members: HashMap<MemberId, Member>,
    /// Per namespace, the lowest sequence the consumer ever started reading at (creation,
    /// seek): events below it were never delivered to it. Absent: read from the oldest.
    origin: BTreeMap<Arc<str>, u64>,
    /// Resolved but not yet durable: each entry as it was, with the version of its
    /// resolution. Put back by [`ConsumerState::rollback`] when the write fails.
    resolving: BTreeMap<Key, (Entry, u64)>,
    /// Version of the newest resolution: an event answered "already resolved" is durably
    /// so once this version is.
    resolved_version: u64,
    /// Whether resolutions wait in `resolving` for a durable write (durable consumers);
    /// otherwise they are final at once (nothing would ever commit them).
    tentative: bool,
    /// Redeliveries made (for the listing).
    redelivered: u64,
    /// Bumped by every change worth persisting.
    version: u64,
}

impl ConsumerState {
    /// A fresh consumer with nothing read.
    pub fn new(settings: ConsumerSettings) -> ConsumerState {
        ConsumerState {
            settings,
            next: BTreeMap::new(),
            pending: BTreeMap::new(),
            ready: BTreeSet::new(),
            timers: BTreeSet::new(),
            members: HashMap::new(),
            origin: BTreeMap::new(),
            resolving: BTreeMap::new(),
            resolved_version: 0,
            tentative: false,
            redelivered: 0,
            version: 0,
        }
    }

    /// The state persisted in `snapshot`. No delivery has a holder after a restart: every
    /// pending event is ready at once, except those that used up their deliveries, which are
    /// returned to be dead-lettered.
    pub fn restore(settings: ConsumerSettings, snapshot: Snapshot) -> (ConsumerState, Vec<Key>) {
        let mut s = ConsumerState::new(settings);
        s.next = snapshot
            .next
            .into_iter()
            .map(|(ns, n)| (Arc::from(ns.as_str()), n))
            .collect();
        s.origin = snapshot
            .origin
            .into_iter()
            .map(|(ns, n)| (s.intern(&ns), n))
            .collect();
        let mut dead = Vec::new();
        for (ns, seq, count) in snapshot.pending {
            let ns = s.intern(&ns);
            let key = Key { ns, seq };
            let exhausted = s.settings.exhausted(count);
            s.pending.insert(
                key.clone(),
                Entry {
                    count,
                    holder: None,
                    due: None,
                    dead: exhausted,
                },
            );
            if exhausted {
                dead.push(key);
            } else {
                s.ready.insert(key);
            }
        }
        (s, dead)
    }

    /// Makes resolutions tentative until [`ConsumerState::commit`] (for a consumer whose
    /// state is written to disk).
    pub fn tentative(mut self) -> ConsumerState {
        self.tentative = true;
        self
    }

    /// The key of `seq` in `ns`, sharing the namespace's text with the positions.
    pub fn key(&self, ns: &str, seq: u64) -> Key {
        Key {
            ns: self.intern(ns),
            seq,
        }
    }

    fn intern(&self, ns: &str) -> Arc<str> {
        self.next
            .get_key_value(ns)
            .map(|(k, _)| k.clone())
            .unwrap_or_else(|| Arc::from(ns))
    }

    /// The persisted form.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            next: self.next.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
            pending: self
                .pending
                .iter()
                .map(|(k, e)| (k.ns.to_string(), k.seq, e.count))
                .collect(),
            origin: self
                .origin
                .iter()
                .map(|(k, v)| (k.to_string(), *v))
                .collect(),
        }
    }

    /// The settings.
    pub fn settings(&self) -> &ConsumerSettings {
        &self.settings
    }

    /// The version of the last change.
    pub fn version(&self) -> u64 {
        self.version
    }

    fn bump(&mut self) -> u64 {
        self.version += 1;
        self.version
    }

    /// The version at which the newest resolution happened: once it is durable, so is every
    /// resolution made so far (every answer "already resolved" waits for it).
    pub fn resolved_version(&self) -> u64 {
        self.resolved_version
    }

    /// A snapshot taken at `version` is durable: every resolution up to it is final.
    pub fn commit(&mut self, version: u64) {
        self.resolving.retain(|_, (_, v)| *v > version);
    }

    /// The write of the state failed: every resolution not yet durable is undone, each entry
    /// as it was (held by its member with its ack wait when the member is still there, else
    /// ready to go out again). An ack wait that ran out while the write was in flight
    /// starts again at `now`: the member did ack in time, and its retry must not find the
    /// event redelivered, or dead-lettered after its last delivery. Returns the entries that
    /// were being dead-lettered, to publish their dead letters again (their dedup ids keep
    /// that idempotent).
    pub fn rollback(&mut self, now: Instant) -> Vec<Key> {
        let mut dead = Vec::new();
        let undone = std::mem::take(&mut self.resolving);
        let any = !undone.is_empty();
        for (key, (mut entry, _)) in undone {
            if entry.dead {
                entry.holder = None;
                entry.due = None;
                dead.push(key.clone());
            } else if let Some(m) = entry.holder.and_then(|h| self.members.get_mut(&h)) {
                m.held += 1;
                if let Some(due) = entry.due {
                    let due = if due <= now {
                        now + self.settings.wait_after(entry.count)
                    } else {
                        due
                    };
                    entry.due = Some(due);
                    self.timers.insert((due, key.clone()));
                }
            } else {
                entry.holder = None;
                entry.due = None;
                self.ready.insert(key.clone());
            }
            self.pending.insert(key, entry);
        }
        if any {
            self.bump();
        }
        dead
    }

    /// Resolutions made but not yet durable.
    pub fn resolving_count(&self) -> usize {
        self.resolving.len()
    }

    /// Next sequence to read in every namespace read so far.
    pub fn positions(&self) -> impl Iterator<Item = (&str, u64)> {
        self.next.iter().map(|(k, v)| (&**k, *v))
    }

    /// Records where reading starts in `ns` (when the reader opens there).
    pub fn set_position(&mut self, ns: &str, next: u64) {
        let ns = self.intern(ns);
        let o = self.origin.entry(ns.clone()).or_insert(next);
        *o = (*o).min(next);
        let e = self.next.entry(ns).or_insert(next);
        *e = (*e).max(next);
        self.bump();
    }

    /// Whether the consumer read `seq` of `ns` already.
    pub fn was_read(&self, ns: &str, seq: u64) -> bool {
        self.next.get(ns).is_some_and(|n| seq < *n)
    }

    /// Pending events (delivered, unresolved).
    pub fn pending_count(&self) -> usize {
        self.pending.len()
    }

    /// Redeliveries made so far.
    pub fn redelivered(&self) -> u64 {
        self.redelivered
    }

    /// Live members.
    pub fn member_count(&self) -> usize {
        self.members.len()
    }

    /// Adds a member that holds at most `max` deliveries at once (never more than the
    /// consumer's `max_in_flight`).
    pub fn join(&mut self, id: MemberId, max: Option<usize>) {
        let requested = max;
        let max = max
            .unwrap_or(self.settings.max_in_flight)
            .min(self.settings.max_in_flight);
        self.members.insert(
            id,
            Member {
                held: 0,
                max,
                requested,
            },
        );
    }

    /// Changes the settings (`PATCH /v1/consumers/{name}`; the ack mode stays). Pending
    /// deliveries keep their deadlines; the new ack wait, backoff and `max_deliver` apply
    /// from their next delivery, the new `max_in_flight` to new deliveries at once.
    pub fn set_settings(&mut self, settings: ConsumerSettings) {
        let cap = settings.max_in_flight;
        for m in self.members.values_mut() {
            m.max = m.requested.unwrap_or(cap).min(cap);
        }
        self.settings = ConsumerSettings {
            ack: self.settings.ack,
            ..settings
        };
        self.bump();
    }

    /// Removes a member; what it held is ready for the others at once, except events that
    /// used up their deliveries, which are returned for dead-lettering.
    pub fn leave(&mut self, id: MemberId) -> Vec<Key> {
        self.members.remove(&id);
        let held: Vec<Key> = self
            .pending
            .iter()
            .filter(|(_, e)| e.holder == Some(id))
            .map(|(k, _)| k.clone())
            .collect();
        let mut dead = Vec::new();
        for key in held {
            let count = self.pending.get(&key).map_or(0, |e| e.count);
            self.release(&key);
            if self.settings.exhausted(count) {
                self.mark_dead(&key);
                dead.push(key);
            } else {
                self.ready.insert(key);
            }
        }
        self.bump();
        dead
    }

    /// Clears the holder and timer of `key`.
    fn release(&mut self, key: &Key) {
        let Some(e) = self.pending.get_mut(key) else {
            return;
        };
        if let Some(h) = e.holder.take()
            && let Some(m) = self.members.get_mut(&h)
        {
            m.held = m.held.saturating_sub(1);
        }
        if let Some(due) = e.due.take() {
            self.timers.remove(&(due, key.clone()));
        }
    }

    fn member_has_room(&self, id: MemberId) -> bool {
        self.members.get(&id).is_some_and(|m| m.held < m.max)
    }

    /// Whether `member` may take a new event from the log now.
    pub fn room_for_new(&self, member: MemberId) -> bool {
        self.member_has_room(member)
            && (self.settings.ack == AckMode::None
                || self.pending.len() < self.settings.max_in_flight)
    }

    /// Gives `member` the lowest ready event, if it has room: (key, delivery count).
    pub fn take_ready(&mut self, member: MemberId, now: Instant) -> Option<(Key, u32)> {
        if !self.member_has_room(member) {
            return None;
        }
        let key = self.ready.pop_first()?;
        self.redelivered += 1;
        let count = self.hold(&key, member, now);
        Some((key, count))
    }

    /// Counts a delivery of `key` to `member` and starts its ack wait.
    fn hold(&mut self, key: &Key, member: MemberId, now: Instant) -> u32 {
        let wait = {
            let Some(e) = self.pending.get_mut(key) else {
                return 0;
            };
            e.count = e.count.saturating_add(1);
            e.holder = Some(member);
            self.settings.wait_after(e.count)
        };
        let due = now + wait;
        if let Some(e) = self.pending.get_mut(key) {
            e.due = Some(due);
        }
        self.timers.insert((due, key.clone()));
        if let Some(m) = self.members.get_mut(&member) {
            m.held += 1;
        }
        let count = self.pending.get(key).map_or(1, |e| e.count);
        self.bump();
        count
    }

    /// Records that `member` read `key` from the log and is sent it: pending in manual mode,
    /// resolved at once in mode `none`. Returns the delivery count (1).
    pub fn deliver_new(&mut self, member: MemberId, key: Key, now: Instant) -> u32 {
        let next = self.next.entry(key.ns.clone()).or_insert(0);
        *next = (*next).max(key.seq + 1);
        if self.settings.ack == AckMode::None {
            self.bump();
            return 1;
        }
        self.pending.insert(
            key.clone(),
            Entry {
                count: 0,
                holder: None,
                due: None,
                dead: false,
            },
        );
        self.hold(&key, member, now)
    }

    /// Events of `ns` below `resume_at` were deleted by retention: they are no longer
    /// pending, and reading resumes at `resume_at`.
    pub fn gap(&mut self, ns: &str, resume_at: u64) -> usize {
        let ns = self.intern(ns);
        let gone: Vec<Key> = self
            .pending
            .range(Key::new(&ns, 0)..Key::new(&ns, resume_at))
            .map(|(k, _)| k.clone())
            .collect();
        for key in &gone {
            self.release(key);
            self.ready.remove(key);
            self.pending.remove(key);
        }
        self.resolving
            .retain(|k, _| *k.ns != *ns || k.seq >= resume_at);
        let next = self.next.entry(ns).or_insert(0);
        *next = (*next).max(resume_at);
        self.bump();
        gone.len()
    }

    /// The earliest deadline.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.timers.first().map(|(t, _)| *t)
    }

    /// Handles every deadline at or before `now`: the delivery is no longer held and goes
    /// back to `ready`, or, when it used up its deliveries, is returned for dead-lettering.
    pub fn expire(&mut self, now: Instant) -> Vec<Key> {
        let mut dead = Vec::new();
        while let Some((t, _)) = self.timers.first() {
            if *t > now {
                break;
            }
            let Some((_, key)) = self.timers.pop_first() else {
                break;
            };
            if let Some(e) = self.pending.get_mut(&key) {
                e.due = None;
            }
            self.release(&key);
            // An ack wait that ran out, or a delayed nack coming due, ends a delivery: when
            // that was the last one allowed, the event goes to the dead-letter subject.
            let count = self.pending.get(&key).map_or(0, |e| e.count);
            if self.settings.exhausted(count) {
                self.mark_dead(&key);
                dead.push(key);
            } else if self.pending.contains_key(&key) {
                self.ready.insert(key);
            }
            self.bump();
        }
        dead
    }

    fn mark_dead(&mut self, key: &Key) {
        self.release(key);
        self.ready.remove(key);
        if let Some(e) = self.pending.get_mut(key) {
            e.dead = true;
        }
    }

    /// Applies a verb to `key`; `dead` receives the key when it must be dead-lettered.
    pub fn apply(&mut self, key: &Key, verb: Verb, now: Instant) -> (Outcome, Option<Key>) {
        let Some(e) = self.pending.get(key) else {
            let before_start = self.origin.get(&key.ns).is_some_and(|o| key.seq < *o);
            return if !before_start && self.was_read(&key.ns, key.seq) {
                (Outcome::AlreadyResolved, None)
            } else {
                (Outcome::NotDelivered, None)
            };
        };
        if e.dead {
            return match verb {
                Verb::Ack => {
                    self.resolve(key);
                    (Outcome::Acked, None)
                }
                _ => (Outcome::AlreadyResolved, None),
            };
        }
        let (count, held) = (e.count, e.holder.is_some());
        match verb {
            Verb::Ack => {
                self.resolve(key);
                (Outcome::Acked, None)
            }
            Verb::Nack(delay) => {
                self.release(key);
                match delay {
                    Some(d) if !d.is_zero() => {
                        // Also when nobody held it (it awaited redelivery): it waits too.
                        self.ready.remove(key);
                        let due = now + d;
                        if let Some(e) = self.pending.get_mut(key) {
                            e.due = Some(due);
                        }
                        self.timers.insert((due, key.clone()));
                    }
                    _ if self.settings.exhausted(count) => {
                        self.mark_dead(key);
                        self.bump();
                        return (Outcome::Nacked, Some(key.clone()));
                    }
                    _ => {
                        self.ready.insert(key.clone());
                    }
                }
                self.bump();
                (Outcome::Nacked, None)
            }
            Verb::InProgress => {
                if !held {
                    return (Outcome::NotHeld, None);
                }
                let due = now + self.settings.wait_after(count);
                if let Some(old) = self.pending.get_mut(key).and_then(|e| e.due.replace(due)) {
                    self.timers.remove(&(old, key.clone()));
                }
                self.timers.insert((due, key.clone()));
                (Outcome::InProgress, None)
            }
            Verb::Term => {
                self.mark_dead(key);
                self.bump();
                (Outcome::Terminated, Some(key.clone()))
            }
        }
    }

    /// The delivery count of a pending event.
    pub fn count(&self, key: &Key) -> Option<u32> {
        self.pending.get(key).map(|e| e.count)
    }

    /// Resolves `key` (acked, or its dead letter was published): no longer pending, and
    /// final once a snapshot that leaves it out is durable ([`ConsumerState::commit`]).
    pub fn resolve(&mut self, key: &Key) -> bool {
        let Some(entry) = self.pending.get(key).cloned() else {
            return false;
        };
        self.release(key);
        self.ready.remove(key);
        self.pending.remove(key);
        let v = self.bump();
        self.resolved_version = v;
        if self.tentative {
            self.resolving.insert(key.clone(), (entry, v));
        }
        true
    }

    /// Moves the consumer: every pending delivery is dropped and reading restarts at the
    /// given positions (namespaces not named start from their oldest event).
    pub fn reset(&mut self, positions: BTreeMap<String, u64>) {
        self.pending.clear();
        self.resolving.clear();
        self.ready.clear();
        self.timers.clear();
        for m in self.members.values_mut() {
            m.held = 0;
        }
        // Reading restarts at `positions`: the floor of what may have been delivered only
        // goes down (a namespace not named is read from its oldest: no floor).
        self.origin.retain(|ns, o| match positions.get(&**ns) {
            Some(p) => {
                *o = (*o).min(*p);
                true
            }
            None => false,
        });
        self.next = positions
            .into_iter()
            .map(|(k, v)| (Arc::from(k.as_str()), v))
            .collect();
        self.bump();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manual(max_deliver: Option<u32>, max_in_flight: usize) -> ConsumerState {
        ConsumerState::new(ConsumerSettings {
            ack: AckMode::Manual,
            ack_wait: Duration::from_secs(30),
            max_deliver,
            backoff: Vec::new(),
            max_in_flight,
        })
    }

    #[test]
    fn a_failed_write_puts_every_tentative_ack_back_as_it_was() {
        let now = Instant::now();
        let mut s = manual(None, 2).tentative();
        s.join(1, None);
        let (a, b) = (Key::new("user", 1), Key::new("user", 2));
        s.deliver_new(1, a.clone(), now);
        s.deliver_new(1, b.clone(), now);
        assert_eq!(s.apply(&a, Verb::Ack, now).0, Outcome::Acked);
        // Not durable yet: the snapshot leaves it out.
        assert_eq!(s.snapshot().pending, vec![("user".to_owned(), 2, 1)]);
        assert_eq!(s.apply(&a, Verb::Ack, now).0, Outcome::AlreadyResolved);
        let before = s.version();
        assert!(s.rollback(now).is_empty());
        assert!(s.version() > before);
        // Held again by its member, with its ack wait: it comes back when that runs out.
        assert_eq!(s.pending_count(), 2);
        assert_eq!(s.take_ready(1, now), None);
        assert_eq!(s.next_deadline(), Some(now + Duration::from_secs(30)));
        assert_eq!(s.apply(&a, Verb::Ack, now).0, Outcome::Acked);
    }

    #[test]
    fn an_ack_wait_that_ran_out_during_the_failed_write_starts_again() {
        let now = Instant::now();
        let mut s = manual(Some(1), 10).tentative();
        s.join(1, None);
        let k = Key::new("user", 1);
        s.deliver_new(1, k.clone(), now);
        s.apply(&k, Verb::Ack, now);
        let later = now + Duration::from_secs(31);
        assert!(s.rollback(later).is_empty());
        // Not dead-lettered (its only delivery) nor redelivered: held, with a fresh wait.
        assert!(s.expire(later).is_empty());
        assert_eq!(s.take_ready(1, later), None);
        assert_eq!(s.next_deadline(), Some(later + Duration::from_secs(30)));
        assert_eq!(s.apply(&k, Verb::Ack, later).0, Outcome::Acked);
    }

    #[test]
    fn a_commit_makes_resolutions_up_to_its_version_final() {
        let now = Instant::now();
        let mut s = manual(None, 10).tentative();
        s.join(1, None);
        let (a, b) = (Key::new("user", 1), Key::new("user", 2));
        s.deliver_new(1, a.clone(), now);
        s.deliver_new(1, b.clone(), now);
        s.apply(&a, Verb::Ack, now);
        let written = s.version();
        s.apply(&b, Verb::Ack, now);
        assert_eq!(s.resolved_version(), s.version());
        s.commit(written);
        assert_eq!(s.resolving_count(), 1);
        // Only `b`, not yet durable, comes back; its member left meanwhile: ready at once.
        s.leave(1);
        s.join(2, None);
        assert!(s.rollback(now).is_empty());
        assert_eq!(s.take_ready(2, now).map(|(k, c)| (k.seq, c)), Some((2, 2)));
        assert_eq!(s.apply(&a, Verb::Ack, now).0, Outcome::AlreadyResolved);
    }

    #[test]
    fn a_rolled_back_dead_letter_is_returned_to_publish_again() {
        let now = Instant::now();
        let mut s = manual(None, 10).tentative();
        s.join(1, None);
        let k = Key::new("user", 1);
        s.deliver_new(1, k.clone(), now);
        assert_eq!(s.apply(&k, Verb::Term, now).1, Some(k.clone()));
        assert!(s.resolve(&k));
        assert_eq!(s.rollback(now), vec![k.clone()]);
        assert_eq!(s.take_ready(1, now), None);
        assert_eq!(s.count(&k), Some(1));
    }

    #[test]
    fn new_settings_apply_to_members_and_later_deliveries() {
        let now = Instant::now();
        let mut s = manual(None, 1);
        s.join(1, None);
        s.join(2, Some(5));
        s.deliver_new(1, Key::new("user", 1), now);
        assert!(!s.room_for_new(2));
        let mut wider = s.settings().clone();
        wider.max_in_flight = 10;
        wider.max_deliver = Some(1);
        let v = s.version();
        s.set_settings(wider);
        assert!(s.version() > v);
        // Member 1 follows the consumer's bound; member 2 keeps its own cap of 5.
        assert!(s.room_for_new(1) && s.room_for_new(2));
        for seq in 2..=6 {
            s.deliver_new(2, Key::new("user", seq), now);
        }
        assert!(!s.room_for_new(2));
        assert!(s.settings().exhausted(1));
    }

    #[test]
    fn resolutions_of_a_consumer_kept_in_memory_are_final_at_once() {
        let now = Instant::now();
        let mut s = manual(None, 10);
        s.join(1, None);
        let k = Key::new("user", 1);
        s.deliver_new(1, k.clone(), now);
        s.apply(&k, Verb::Ack, now);
        assert_eq!(s.resolving_count(), 0);
        assert!(s.rollback(now).is_empty());
        assert_eq!(s.pending_count(), 0);
    }

    #[test]
    fn ack_resolves_and_reack_is_idempotent() {
        let now = Instant::now();
        let mut s = manual(None, 10);
        s.join(1, None);
        let k = Key::new("user", 5);
        assert_eq!(s.deliver_new(1, k.clone(), now), 1);
        assert_eq!(s.apply(&k, Verb::Ack, now).0, Outcome::Acked);
        assert_eq!(s.apply(&k, Verb::Ack, now).0, Outcome::AlreadyResolved);
        assert_eq!(
            s.apply(&Key::new("user", 6), Verb::Ack, now).0,
            Outcome::NotDelivered
        );
        assert_eq!(
            s.apply(&Key::new("other", 1), Verb::Ack, now).0,
            Outcome::NotDelivered
        );
        assert_eq!(s.pending_count(), 0);
    }

    #[test]
    fn ack_wait_expiry_redelivers_in_sequence_order_with_counts() {
        let now = Instant::now();
        let mut s = manual(None, 10);
        s.join(1, None);
        for seq in [3, 1, 2] {
            s.deliver_new(1, Key::new("user", seq), now);
        }
        assert!(s.take_ready(1, now).is_none());
        assert!(s.expire(now + Duration::from_secs(29)).is_empty());
        assert!(s.take_ready(1, now).is_none());
        s.expire(now + Duration::from_secs(30));
        let later = now + Duration::from_secs(30);
        let order: Vec<_> = std::iter::from_fn(|| s.take_ready(1, later))
            .map(|(k, c)| (k.seq, c))
            .collect();
        assert_eq!(order, vec![(1, 2), (2, 2), (3, 2)]);
        assert_eq!(s.redelivered(), 3);
    }

    #[test]
    fn max_deliver_dead_letters_after_the_last_ack_wait() {
        let now = Instant::now();
        let mut s = manual(Some(2), 10);
        s.join(1, None);
        let k = Key::new("user", 1);
        s.deliver_new(1, k.clone(), now);
        let t1 = now + Duration::from_secs(30);
        assert!(s.expire(t1).is_empty());
        assert_eq!(s.take_ready(1, t1), Some((k.clone(), 2)));
        let dead = s.expire(t1 + Duration::from_secs(30));
        assert_eq!(dead, vec![k.clone()]);
        assert!(s.take_ready(1, t1 + Duration::from_secs(60)).is_none());
        // Still pending (counted) until its dead letter is published.
        assert_eq!(s.pending_count(), 1);
        assert!(s.resolve(&k));
        assert_eq!(s.apply(&k, Verb::Ack, now).0, Outcome::AlreadyResolved);
    }

    #[test]
    fn nack_now_nack_later_progress_and_term() {
        let now = Instant::now();
        let mut s = manual(None, 10);
        s.join(1, None);
        let (a, b, c, d) = (
            Key::new("n", 1),
            Key::new("n", 2),
            Key::new("n", 3),
            Key::new("n", 4),
        );
        for k in [&a, &b, &c, &d] {
            s.deliver_new(1, k.clone(), now);
        }
        assert_eq!(s.apply(&a, Verb::Nack(None), now).0, Outcome::Nacked);
        assert_eq!(s.take_ready(1, now), Some((a.clone(), 2)));
        let delay = Duration::from_secs(5);
        assert_eq!(s.apply(&b, Verb::Nack(Some(delay)), now).0, Outcome::Nacked);
        assert!(s.take_ready(1, now).is_none());
        s.expire(now + delay);
        assert_eq!(s.take_ready(1, now + delay), Some((b.clone(), 2)));
        // In progress pushes the deadline out by a whole ack wait.
        let t = now + Duration::from_secs(20);
        assert_eq!(s.apply(&c, Verb::InProgress, t).0, Outcome::InProgress);
        s.expire(now + Duration::from_secs(40));
        assert_eq!(s.count(&c), Some(1));
        assert!(
            s.take_ready(1, now + Duration::from_secs(40))
                .is_some_and(|(k, _)| k != c)
        );
        let (o, dead) = s.apply(&d, Verb::Term, now);
        assert_eq!((o, dead), (Outcome::Terminated, Some(d.clone())));
    }

    #[test]
    fn a_delayed_nack_holds_back_an_event_that_awaited_redelivery() {
        let now = Instant::now();
        let mut s = manual(None, 10);
        s.join(1, None);
        let k = Key::new("n", 1);
        s.deliver_new(1, k.clone(), now);
        s.leave(1);
        s.join(2, None);
        let delay = Duration::from_secs(5);
        assert_eq!(s.apply(&k, Verb::Nack(Some(delay)), now).0, Outcome::Nacked);
        assert!(
            s.take_ready(2, now).is_none(),
            "redelivered before the delay"
        );
        s.expire(now + delay);
        assert_eq!(s.take_ready(2, now + delay), Some((k, 2)));
    }

    #[test]
    fn events_before_where_the_consumer_started_were_never_delivered() {
        let now = Instant::now();
        let mut s = manual(None, 10);
        s.join(1, None);
        s.set_position("n", 5);
        s.deliver_new(1, Key::new("n", 6), now);
        assert_eq!(s.apply(&Key::new("n", 6), Verb::Ack, now).0, Outcome::Acked);
        assert_eq!(
            s.apply(&Key::new("n", 6), Verb::Ack, now).0,
            Outcome::AlreadyResolved
        );
        assert_eq!(
            s.apply(&Key::new("n", 4), Verb::Ack, now).0,
            Outcome::NotDelivered
        );
        // Kept across a restart.
        let (r, _) = ConsumerState::restore(s.settings().clone(), s.snapshot());
        let mut r = r;
        assert_eq!(
            r.apply(&Key::new("n", 4), Verb::Ack, now).0,
            Outcome::NotDelivered
        );
        // A seek further on keeps the floor; one back lowers it; one from the oldest drops it.
        r.reset(BTreeMap::from([("n".to_owned(), 9)]));
        assert_eq!(
            r.apply(&Key::new("n", 6), Verb::Ack, now).0,
            Outcome::AlreadyResolved
        );
        assert_eq!(
            r.apply(&Key::new("n", 4), Verb::Ack, now).0,
            Outcome::NotDelivered
        );
        r.reset(BTreeMap::from([("n".to_owned(), 2)]));
        r.next.insert(Arc::from("n"), 9);
        assert_eq!(
            r.apply(&Key::new("n", 4), Verb::Ack, now).0,
            Outcome::AlreadyResolved
        );
        r.reset(BTreeMap::new());
        r.next.insert(Arc::from("n"), 9);
        assert_eq!(
            r.apply(&Key::new("n", 1), Verb::Ack, now).0,
            Outcome::AlreadyResolved
        );
        // Records written before the floor existed read back without one.
        let old: Snapshot = serde_json::from_str(r#"{"next":{"n":9},"pending":[]}"#).unwrap();
        let (mut o, _) = ConsumerState::restore(s.settings().clone(), old);
        assert_eq!(
            o.apply(&Key::new("n", 1), Verb::Ack, now).0,
            Outcome::AlreadyResolved
        );
    }

    #[test]
    fn max_in_flight_and_member_caps() {
        let now = Instant::now();
        let mut s = manual(None, 2);
        s.join(1, Some(1));
        s.join(2, None);
        assert!(s.room_for_new(1));
        s.deliver_new(1, Key::new("n", 1), now);
        assert!(!s.room_for_new(1), "member 1 is capped at 1");
        assert!(s.room_for_new(2));
        s.deliver_new(2, Key::new("n", 2), now);
        assert!(!s.room_for_new(2), "consumer-wide bound reached");
        s.apply(&Key::new("n", 1), Verb::Ack, now);
        assert!(s.room_for_new(1) && s.room_for_new(2));
    }

    #[test]
    fn a_leaving_member_hands_its_deliveries_to_the_next_at_once() {
        let now = Instant::now();
        let mut s = manual(None, 10);
        s.join(1, None);
        s.join(2, None);
        s.deliver_new(1, Key::new("n", 1), now);
        s.deliver_new(2, Key::new("n", 2), now);
        assert!(s.leave(1).is_empty());
        assert_eq!(s.take_ready(2, now), Some((Key::new("n", 1), 2)));
        assert!(s.take_ready(2, now).is_none());
    }

    #[test]
    fn a_member_leaving_with_the_last_delivery_dead_letters_it() {
        let now = Instant::now();
        let mut s = manual(Some(1), 10);
        s.join(1, None);
        s.deliver_new(1, Key::new("n", 1), now);
        assert_eq!(s.leave(1), vec![Key::new("n", 1)]);
        s.join(2, None);
        assert!(s.take_ready(2, now).is_none());
    }

    #[test]
    fn snapshot_round_trip_makes_every_pending_ready() {
        let now = Instant::now();
        let mut s = manual(Some(3), 10);
        s.join(1, None);
        s.set_position("other", 7);
        for seq in 1..=4 {
            s.deliver_new(1, Key::new("n", seq), now);
        }
        s.apply(&Key::new("n", 2), Verb::Ack, now);
        let snap = s.snapshot();
        let json = serde_json::to_string(&snap).unwrap();
        let back: Snapshot = serde_json::from_str(&json).unwrap();
        assert_eq!(back, snap);
        let (mut r, dead) = ConsumerState::restore(s.settings().clone(), back);
        assert!(dead.is_empty());
        r.join(9, None);
        let seqs: Vec<u64> = std::iter::from_fn(|| r.take_ready(9, now))
            .map(|(k, _)| k.seq)
            .collect();
        assert_eq!(seqs, vec![1, 3, 4]);
        assert!(r.was_read("n", 4) && !r.was_read("n", 5) && r.was_read("other", 6));
    }

    #[test]
    fn retention_gap_drops_pending_below_it() {
        let now = Instant::now();
        let mut s = manual(None, 10);
        s.join(1, None);
        for seq in 1..=3 {
            s.deliver_new(1, Key::new("n", seq), now);
        }
        assert_eq!(s.gap("n", 3), 2);
        assert_eq!(s.pending_count(), 1);
        assert_eq!(
            s.apply(&Key::new("n", 1), Verb::Ack, now).0,
            Outcome::AlreadyResolved
        );
    }

    #[test]
    fn ack_none_keeps_nothing_pending() {
        let now = Instant::now();
        let mut s = ConsumerState::new(ConsumerSettings::default());
        s.join(1, None);
        for seq in 1..=5000 {
            assert!(s.room_for_new(1));
            s.deliver_new(1, Key::new("n", seq), now);
        }
        assert_eq!(s.pending_count(), 0);
        assert!(s.was_read("n", 5000));
    }
}
