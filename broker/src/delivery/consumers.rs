//! [`Consumers`]: every consumer of the broker by name, and [`Member`], one live
//! subscription attached to a consumer.
//!
//! Durable names are broker-wide, each bound to one filter pattern; group names share the
//! same space (a group cannot take a durable's name). Single manual-ack subscriptions get a
//! generated name `~s-<n>`, which no client-chosen name can be. Durable consumers are read
//! back from the state store at start-up; ephemeral ones (groups, single subscriptions) are
//! dropped with their last member.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::consumer::{Consumer, ConsumerKind, ConsumerRecord, Out, STATE_PREFIX};
use super::consumer_state::MemberId;
use super::parts::ConsumerParts;
use super::settings::{ConsumerSettings, check_name};
use crate::error::{Error, ErrorCode};
use crate::interest::InterestGuard;
use crate::subject::Pattern;
use crate::subscription::StartSpec;
use crate::sync::lock;

/// Most deliveries a member takes from the consumer in one go (fewer when the consumer or
/// the member has less room): amortises the locks over events that are ready anyway.
pub const MEMBER_BATCH: usize = 64;

/// What a subscription asks for when it attaches to a consumer.
#[derive(Debug, Clone, Default)]
pub struct Attach {
    /// Durable consumer name.
    pub durable: Option<String>,
    /// Ephemeral queue group name.
    pub group: Option<String>,
    /// Settings of a new consumer (an existing one keeps its own).
    pub settings: ConsumerSettings,
    /// This member's own cap on unacknowledged deliveries.
    pub member_max: Option<usize>,
    /// The principal attaching (recorded as the owner of a single subscription's consumer).
    pub owner: Option<std::sync::Arc<str>>,
}

/// The broker's consumers.
pub struct Consumers {
    /// What each consumer works with.
    parts: ConsumerParts,
    /// Every consumer by name.
    map: std::sync::Mutex<BTreeMap<String, Arc<Consumer>>>,
    /// Serialises creations (which write durable records) so that a name is created once.
    creating: tokio::sync::Mutex<()>,
    next_member: AtomicU64,
}

impl Consumers {
    /// No consumers yet; they will work with `parts`.
    pub fn new(parts: ConsumerParts) -> Consumers {
        Consumers {
            parts,
            map: Default::default(),
            creating: Default::default(),
            next_member: Default::default(),
        }
    }

    /// Reads every durable consumer back from the state store.
    pub(crate) async fn restore(&self) -> Result<usize, Error> {
        let records = self.parts.store.list(STATE_PREFIX).await?;
        let mut n = 0;
        for (key, bytes) in records {
            let record: ConsumerRecord = serde_json::from_slice(&bytes).map_err(|e| {
                Error::internal("reading consumer state", format!("record {key:?}: {e}"))
            })?;
            let name = record.name.clone();
            let c = Consumer::restore(&self.parts, record).await?;
            lock(&self.map).insert(name, c);
            n += 1;
        }
        Ok(n)
    }

    /// The consumer called `name`.
    pub fn get(&self, name: &str) -> Option<Arc<Consumer>> {
        lock(&self.map).get(name).cloned()
    }

    /// Every consumer, by name.
    pub fn all(&self) -> Vec<Arc<Consumer>> {
        lock(&self.map).values().cloned().collect()
    }

    /// Deletes consumer `name`.
    pub async fn delete(&self, name: &str) -> Result<(), Error> {
        let c = lock(&self.map).remove(name).ok_or_else(|| unknown(name))?;
        c.delete().await
    }

    /// Writes every durable consumer a last time, and forgets all (at broker close).
    pub(crate) async fn close(&self) {
        let all: Vec<_> = std::mem::take(&mut *lock(&self.map))
            .into_values()
            .collect();
        for c in all {
            c.deleted().cancel();
            c.close().await;
        }
    }

    /// Attaches a new member, creating the consumer when it does not exist.
    pub(crate) async fn attach(
        self: &Arc<Self>,
        pattern: Pattern,
        start: StartSpec,
        a: Attach,
        guard: InterestGuard,
    ) -> Result<Member, Error> {
        let (name, kind) = match (&a.durable, &a.group) {
            (Some(_), Some(_)) => {
                return Err(Error::new(
                    ErrorCode::InvalidParameter,
                    "give durable or group, not both",
                ));
            }
            (Some(d), None) => {
                check_name("durable", d)?;
                (d.clone(), ConsumerKind::Durable)
            }
            (None, Some(g)) => {
                check_name("group", g)?;
                (g.clone(), ConsumerKind::Group)
            }
            (None, None) => (format!("~{}", guard.id()), ConsumerKind::Subscription),
        };
        let member = self.next_member.fetch_add(1, Ordering::Relaxed);
        if let Some(m) = self.try_join(&name, kind, &pattern, &a, member)? {
            return Ok(Member::new(m, member, guard, self));
        }
        let _creating = self.creating.lock().await;
        if let Some(m) = self.try_join(&name, kind, &pattern, &a, member)? {
            return Ok(Member::new(m, member, guard, self));
        }
        let c =
            Consumer::create(&self.parts, name.clone(), kind, pattern, &start, a.settings).await?;
        if kind == ConsumerKind::Subscription
            && let Some(owner) = &a.owner
        {
            c.set_owner(owner.clone());
        }
        c.join(member, a.member_max);
        lock(&self.map).insert(name, c.clone());
        Ok(Member::new(c, member, guard, self))
    }

    fn try_join(
        &self,
        name: &str,
        kind: ConsumerKind,
        pattern: &Pattern,
        a: &Attach,
        member: MemberId,
    ) -> Result<Option<Arc<Consumer>>, Error> {
        let map = lock(&self.map);
        let Some(c) = map.get(name) else {
            return Ok(None);
        };
        if c.kind() != kind {
            return Err(Error::new(
                ErrorCode::ConsumerConflict,
                format!(
                    "{name:?} is a {} consumer; it cannot be attached as a {}",
                    c.kind().as_str(),
                    kind.as_str()
                ),
            ));
        }
        if c.pattern() != pattern {
            return Err(Error::new(
                ErrorCode::ConsumerConflict,
                format!(
                    "consumer {name:?} filters {:?}, not {:?}; delete it to change its filter",
                    c.pattern().as_str(),
                    pattern.as_str()
                ),
            ));
        }
        c.join(member, a.member_max);
        Ok(Some(c.clone()))
    }

    /// Called when a member leaves: ephemeral consumers go with their last member.
    pub(crate) fn left(&self, c: &Arc<Consumer>, member: MemberId) {
        let mut map = lock(&self.map);
        let remaining = c.leave(member);
        if remaining == 0
            && c.kind() != ConsumerKind::Durable
            && map.get(c.name()).is_some_and(|x| Arc::ptr_eq(x, c))
        {
            map.remove(c.name());
            c.deleted().cancel();
        }
    }
}

/// The error for a consumer name that does not exist.
pub fn unknown(name: &str) -> Error {
    Error::new(
        ErrorCode::UnknownConsumer,
        format!("no consumer named {name:?}"),
    )
}

/// One live subscription of a consumer. Dropping it leaves the consumer: what it held goes
/// to the other members at once.
pub struct Member {
    consumer: Arc<Consumer>,
    id: MemberId,
    /// Deliveries taken (held by this member) and not yet handed out.
    buffered: std::collections::VecDeque<Out>,
    /// Most events to take in all.
    limit: Option<u64>,
    /// Events taken so far.
    taken: u64,
    /// Its registration in the registry of live interest.
    guard: InterestGuard,
    /// The registry it leaves when dropped.
    consumers: Arc<Consumers>,
}

impl Member {
    fn new(
        consumer: Arc<Consumer>,
        id: MemberId,
        mut guard: InterestGuard,
        consumers: &Arc<Consumers>,
    ) -> Member {
        guard.follow(consumer.live_flag());
        Member {
            consumer,
            id,
            buffered: Default::default(),
            limit: None,
            taken: 0,
            guard,
            consumers: consumers.clone(),
        }
    }

    /// The consumer.
    pub fn consumer(&self) -> &Arc<Consumer> {
        &self.consumer
    }

    /// Takes at most `n` events in all (redeliveries included) from the consumer.
    pub fn set_limit(&mut self, n: u64) {
        self.limit = Some(n);
    }

    /// The registered subscription's id (`s-<n>`).
    pub fn subscription_id(&self) -> String {
        self.guard.id()
    }

    /// The next delivery, waiting for it; `Ok(None)` once the broker closes.
    ///
    /// With a [`limit`](Member::set_limit) reached, it holds what it took and waits until the
    /// consumer is deleted (answered as `unknown_consumer`, as for any member); the caller's
    /// shutdown arm ends it otherwise.
    pub async fn next(&mut self) -> Result<Option<Out>, Error> {
        if self.buffered.is_empty() {
            let room = self.limit.map_or(MEMBER_BATCH as u64, |l| l - self.taken);
            if room == 0 {
                return Err(self.consumer.wait_deleted().await);
            }
            let max = room.min(MEMBER_BATCH as u64) as usize;
            match self.consumer.next(self.id, max).await? {
                None => return Ok(None),
                Some(batch) => {
                    self.taken += batch
                        .iter()
                        .filter(|o| matches!(o, Out::Event { .. }))
                        .count() as u64;
                    self.buffered.extend(batch)
                }
            }
        }
        let out = self.buffered.pop_front();
        if let Some(Out::Event { .. }) = &out {
            self.guard.delivered();
        }
        Ok(out)
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        self.consumers.left(&self.consumer, self.id);
    }
}
