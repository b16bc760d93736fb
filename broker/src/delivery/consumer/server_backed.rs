//! [`ServerBacked`]: a durable consumer whose deliveries the storage engine keeps (a
//! JetStream durable pull consumer), and the [`Consumer`] methods that run it.
//!
//! **Which consumers.** A durable, manual-ack consumer whose pattern lies in one namespace,
//! on an engine with [`ServerConsumers`](crate::storage::ServerConsumers) (and unless
//! `Config::jetstream_consumers` is off). Groups, single subscriptions, `ack=none` and
//! patterns spanning namespaces stay on the broker's own engine. Before the namespace
//! exists, the server's consumer is opened with its first event (from sequence 1).
//!
//! **What the server keeps**: the position, the pending deliveries and their counts, the
//! redelivery timers (ack wait, backoff, nack delays, `in progress`) and the bound on
//! unacknowledged deliveries (`max_in_flight`). The server's own `max_deliver` is unlimited
//! (at its limit JetStream drops an event without a word): a delivery past bus's
//! `max_deliver` never reaches a member, it is this node's signal to publish the dead letter
//! and end the event with `+TERM`. Should either fail (or the node crash between them), the
//! server delivers it again after its ack wait and the next node to fetch it tries again;
//! the dead letter's dedup id keeps it from being stored twice.
//!
//! **What this node keeps** (in memory, rebuilt from nothing at start): the members and
//! their caps; the deliveries it made and not yet settled (to answer `in progress` for one
//! no longer held, to give a leaving member's events back at once, to settle with the
//! delivery's own handle, and to tell of events retention deleted while pending); a
//! bounded list of sequences it acknowledged (to answer a repeated ack `already_acked`);
//! deliveries fetched but not yet handed out (at most one fetch). One fetch is on its way at
//! a time, in a task of its own, so that a member leaving mid-fetch loses nothing; between
//! fetches members wait on this node's signals and poll (see [`POLL`]).

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::time::Instant;

use super::{AckItem, Consumer, ConsumerInfo, DeadReason, Out};
use crate::delivery::consumer_state::{Key, MemberId, Outcome, Verb};
use crate::delivery::settings::ConsumerSettings;
use crate::error::{Error, ErrorCode};
use crate::live::RoutedEvent;
use crate::storage::{
    GapReason, ServerConsumer, ServerConsumerConfig, ServerMessage, ServerStart, Settle,
};
use crate::sync::lock;

/// How long one pull request waits on the server for a first delivery: short, so that a
/// request is rarely open when its member leaves. Between requests a member waits on this
/// node's own signals (new events, acks, nacks, its deliveries' ack waits) and polls.
const FETCH_WAIT: Duration = Duration::from_millis(5);
/// Longest a waiting member goes without asking the server again (for what other bus
/// nodes' deliveries, timers and writers make available).
const POLL: Duration = Duration::from_secs(1);
/// Slack after a delivery's ack wait before asking the server for its redelivery (the
/// server's timer runs from its own send, a little earlier than this node's).
const DUE_SLACK: Duration = Duration::from_millis(20);
/// Entries of one acknowledgement batch sent to the server at once.
const ACK_CONCURRENCY: usize = 1_024;
/// Most deliveries one pull request asks for (so the most fetched and not handed out).
const FETCH_MAX: usize = 256;
/// Sequences acknowledged here that a repeated ack is answered `already_acked` for.
const RECENT_RESOLVED: usize = 8_192;
/// Deliveries given back (no member holds them) that this node remembers beyond
/// `max_in_flight`: the server may have redelivered them to another node, which settles
/// them there; the oldest are forgotten first.
const GIVEN_BACK_SLACK: usize = 1_024;
/// How long a delivery given back (or whose ack wait ran out) is remembered past its due
/// time: enough for the next member here to be told of it as a gap if retention deleted it.
const GIVEN_BACK_MEMORY: Duration = Duration::from_secs(10);

/// A delivery this node made and has not settled.
#[derive(Debug, Clone)]
struct Held {
    /// The member holding it; `None` once given back (nacked, or its member left): the
    /// server redelivers it.
    holder: Option<MemberId>,
    /// Deliveries so far.
    count: u32,
    /// The server's handle on it.
    token: String,
    /// When its ack wait runs out.
    due: Instant,
    /// Set while its member's departure gives it back to the server: an acknowledgement
    /// waits until that is sent, so that the server sees the two in order.
    returning: bool,
}

#[derive(Debug, Default)]
struct Local {
    held: HashMap<u64, Held>,
    /// Members and their caps: (held now, cap).
    members: HashMap<MemberId, (usize, Option<usize>)>,
    /// Fetched, not yet handed out, with when each arrived.
    spare: VecDeque<(ServerMessage, Instant)>,
    recent: VecDeque<u64>,
    recent_set: HashSet<u64>,
    /// Highest sequence delivered here for the first time (new events after it that are
    /// gone by the next one are told of as a gap).
    last_new: u64,
    /// Whether a fetch is on its way.
    fetching: bool,
    /// Departed members whose deliveries are still being given back (listed as members
    /// until then: a departure is complete once the server has what it held).
    departing: usize,
    /// Set when the last fetch found nothing while the namespace's newest sequence was
    /// this: members wait for a signal before asking again.
    idle: Option<u64>,
    /// The last fetch's error, for the next member to answer with.
    error: Option<Error>,
}

impl Local {
    fn remember(&mut self, seq: u64) {
        if self.recent_set.insert(seq) {
            self.recent.push_back(seq);
            if self.recent.len() > RECENT_RESOLVED
                && let Some(old) = self.recent.pop_front()
            {
                self.recent_set.remove(&old);
            }
        }
    }

    fn release(&mut self, seq: u64) -> Option<Held> {
        let h = self.held.get_mut(&seq)?;
        if let Some(m) = h.holder.take()
            && let Some((n, _)) = self.members.get_mut(&m)
        {
            *n = n.saturating_sub(1);
        }
        Some(h.clone())
    }

    fn resolve(&mut self, seq: u64) {
        self.release(seq);
        self.held.remove(&seq);
        self.remember(seq);
    }

    /// One pass over the deliveries remembered here. Those whose ack wait ran out are no
    /// longer their members' (the server gives them out again, and the members have room
    /// again); those given back long ago are forgotten (the server has redelivered them,
    /// here or elsewhere). Returns how many deliveries members hold, and when the next ack
    /// wait runs out.
    fn sweep(&mut self, now: Instant) -> (usize, Option<Instant>) {
        let mut freed = Vec::new();
        let (mut holding, mut next_due) = (0, None::<Instant>);
        self.held.retain(|_, h| {
            if h.due <= now
                && let Some(m) = h.holder.take()
            {
                freed.push(m);
            }
            if h.holder.is_some() {
                holding += 1;
            }
            if h.due > now {
                next_due = Some(next_due.map_or(h.due, |d| d.min(h.due)));
            }
            h.holder.is_some() || h.returning || h.due + GIVEN_BACK_MEMORY > now
        });
        for m in freed {
            if let Some((n, _)) = self.members.get_mut(&m) {
                *n = n.saturating_sub(1);
            }
        }
        (holding, next_due)
    }

    /// Forgets the given-back deliveries with the oldest ack waits while more than `cap`
    /// deliveries are remembered.
    fn prune(&mut self, cap: usize) {
        if self.held.len() <= cap {
            return;
        }
        let mut unheld: Vec<(Instant, u64)> = self
            .held
            .iter()
            .filter(|(_, h)| h.holder.is_none() && !h.returning)
            .map(|(s, h)| (h.due, *s))
            .collect();
        unheld.sort_unstable();
        let excess = self.held.len() - cap;
        for (_, s) in unheld.into_iter().take(excess) {
            self.held.remove(&s);
        }
    }

    fn room(&self, member: MemberId) -> usize {
        match self.members.get(&member) {
            Some((n, Some(max))) => max.saturating_sub(*n),
            Some((_, None)) => usize::MAX,
            None => 0,
        }
    }
}

/// The server-side half of a durable consumer. See the module documentation.
pub(in crate::delivery) struct ServerBacked {
    namespace: Arc<str>,
    /// The server's consumer and where it started (acks of events before are
    /// `not_delivered`); both replaced by a seek. `None` until the namespace exists (a
    /// consumer created before its namespace's first event gets the server's consumer,
    /// from the first sequence, when the namespace is created).
    current: std::sync::RwLock<Option<(Arc<dyn ServerConsumer>, u64)>>,
    local: std::sync::Mutex<Local>,
}

/// What a server-backed consumer's record keeps (the rest is on the server).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ServerRecord {
    /// The namespace whose stream holds the consumer.
    pub namespace: String,
    /// Where it started.
    pub origin: u64,
}

/// The server's configuration for a consumer with these settings. The server's own
/// `max_deliver` stays unlimited: at its limit JetStream drops an event without a word,
/// where bus must publish its dead letter first (see the module documentation).
pub(in crate::delivery) fn server_config(
    namespace: &str,
    name: &str,
    filter: &str,
    start: u64,
    s: &ConsumerSettings,
) -> ServerConsumerConfig {
    ServerConsumerConfig {
        namespace: namespace.to_owned(),
        name: name.to_owned(),
        filter: filter.to_owned(),
        start: ServerStart::Sequence(start),
        ack_wait: s.ack_wait,
        backoff: s.backoff.clone(),
        max_deliver: None,
        max_ack_pending: s.max_in_flight,
    }
}

impl ServerBacked {
    /// Runs `consumer`, which started at `origin`; `delivered` is the highest sequence the
    /// server delivered so far.
    pub(in crate::delivery) fn new(
        namespace: &str,
        consumer: Option<Arc<dyn ServerConsumer>>,
        origin: u64,
        delivered: u64,
    ) -> ServerBacked {
        ServerBacked {
            namespace: namespace.into(),
            current: std::sync::RwLock::new(consumer.map(|c| (c, origin))),
            local: std::sync::Mutex::new(Local {
                last_new: delivered.max(origin.saturating_sub(1)),
                ..Local::default()
            }),
        }
    }

    /// What its record keeps.
    pub(in crate::delivery) fn record(&self) -> ServerRecord {
        ServerRecord {
            namespace: self.namespace.to_string(),
            origin: self.origin(),
        }
    }

    /// The namespace.
    pub(in crate::delivery) fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The server's consumer (an error before the namespace exists).
    pub(in crate::delivery) fn consumer(&self) -> Result<Arc<dyn ServerConsumer>, Error> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(|(c, _)| c.clone())
            .ok_or_else(|| {
                Error::new(
                    ErrorCode::UnknownEvent,
                    format!("namespace {:?} holds no event yet", self.namespace),
                )
            })
    }

    /// Whether the server's consumer is open.
    fn is_open(&self) -> bool {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .is_some()
    }

    /// Whether `server` is still its consumer (a seek replaces it).
    fn is_current(&self, server: &Arc<dyn ServerConsumer>) -> bool {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .is_some_and(|(c, _)| Arc::ptr_eq(c, server))
    }

    /// Where it started (1 until the namespace exists: it will hold only later events).
    fn origin(&self) -> u64 {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map_or(1, |(_, o)| *o)
    }

    /// Starts over on `consumer` (a seek): nothing this node held or fetched counts.
    pub(in crate::delivery) fn replace(
        &self,
        consumer: Option<Arc<dyn ServerConsumer>>,
        origin: u64,
    ) {
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = consumer.map(|c| (c, origin));
        let mut l = lock(&self.local);
        let members: Vec<MemberId> = l.members.keys().copied().collect();
        let caps: Vec<Option<usize>> = l.members.values().map(|(_, c)| *c).collect();
        *l = Local {
            last_new: origin.saturating_sub(1),
            members: members
                .into_iter()
                .zip(caps)
                .map(|(m, c)| (m, (0, c)))
                .collect(),
            ..Local::default()
        };
    }
}

impl Consumer {
    fn server(&self) -> Result<&ServerBacked, Error> {
        self.server
            .as_ref()
            .ok_or_else(|| Error::internal("consumer engine", "not a server-backed consumer"))
    }

    pub(super) fn server_join(&self, sb: &ServerBacked, member: MemberId, max: Option<usize>) {
        lock(&sb.local).members.insert(member, (0, max));
    }

    /// A member leaves: what it held goes back to the server at once (its last allowed
    /// delivery to the dead letters).
    pub(super) fn server_leave(self: &Arc<Self>, member: MemberId) -> usize {
        let Ok(sb) = self.server() else { return 0 };
        let settings = self.settings();
        let (given_back, last, fetching, left) = {
            let mut l = lock(&sb.local);
            l.members.remove(&member);
            let mut mine: Vec<u64> = l
                .held
                .iter()
                .filter(|(_, h)| h.holder == Some(member))
                .map(|(s, _)| *s)
                .collect();
            // Given back lowest first: the server redelivers in the order it is told.
            mine.sort_unstable();
            let given: Vec<(u64, Held)> = mine
                .into_iter()
                .filter_map(|s| l.release(s).map(|h| (s, h)))
                .collect();
            let now = Instant::now();
            for (s, _) in &given {
                if let Some(h) = l.held.get_mut(s) {
                    h.returning = true;
                    h.due = now;
                }
            }
            let last = l.members.is_empty();
            (
                given,
                last,
                l.fetching || !l.spare.is_empty(),
                l.members.len(),
            )
        };
        if given_back.is_empty() && !(last && fetching) {
            self.server_changed();
            return left;
        }
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            // At teardown: the server redelivers them after their ack wait.
            return left;
        };
        lock(&sb.local).departing += 1;
        let this = self.clone();
        rt.spawn(async move {
            let Ok(sb) = this.server() else { return };
            let returned: Vec<u64> = given_back.iter().map(|(s, _)| *s).collect();
            this.give_back(sb, given_back, last, settings).await;
            let mut l = lock(&sb.local);
            l.departing = l.departing.saturating_sub(1);
            for s in returned {
                if let Some(h) = l.held.get_mut(&s) {
                    h.returning = false;
                }
            }
            drop(l);
            this.server_changed();
        });
        self.server_changed();
        left
    }

    /// Sends back what a departed member held (its last allowed deliveries to the dead
    /// letters), and, when it was the `last` member here, what was fetched and not handed
    /// out.
    async fn give_back(
        &self,
        sb: &ServerBacked,
        given_back: Vec<(u64, Held)>,
        last: bool,
        settings: ConsumerSettings,
    ) {
        let this = self;
        // A pull request still open would take what is given back (and, with no member
        // left, hold it here): wait until the fetch on its way ended (it waits 5 ms at
        // most on the server), then give back what it brought too.
        if last {
            self.fetch_ended(sb).await;
        }
        let spare: Vec<ServerMessage> = {
            let mut l = lock(&sb.local);
            if last && l.members.is_empty() {
                l.spare.drain(..).map(|(m, _)| m).collect()
            } else {
                Vec::new()
            }
        };
        {
            let Ok(server) = sb.consumer() else { return };
            for (seq, h) in given_back {
                if settings.exhausted(h.count) {
                    this.server_dead_letter(seq, DeadReason::MaxDeliver).await;
                } else if let Err(e) = server.settle(seq, Some(&h.token), Settle::Nak(None)).await {
                    tracing::warn!(consumer = %this.name, sequence = seq, error = %e, "giving a delivery back");
                }
            }
            for m in spare {
                let seq = m.event.sequence;
                let _ = server.settle(seq, Some(&m.token), Settle::Nak(None)).await;
            }
        }
    }

    /// The next deliveries for `member` (see [`Consumer::next`]).
    pub(super) async fn server_next(
        self: &Arc<Self>,
        member: MemberId,
        max: usize,
    ) -> Result<Option<Vec<Out>>, Error> {
        let sb = self.server()?;
        let mut created = self.parts.namespaces.changes();
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.deleted.is_cancelled() {
                return Err(self.deleted_error());
            }
            if !self.server_open(sb).await? {
                tokio::select! {
                    _ = created.changed() => {}
                    _ = &mut notified => {}
                }
                continue;
            }
            if let Some(e) = lock(&sb.local).error.take() {
                return Err(e);
            }
            if let Some(gap) = self.server_gone(sb).await {
                return Ok(Some(vec![gap]));
            }
            let settings = self.settings();
            let now = Instant::now();
            let (out, exhausted, start_fetch, room, idle, (next_due, saturated, full)) = {
                let mut l = lock(&sb.local);
                // Before the room is taken: a delivery whose ack wait ran out frees it.
                // (Deliveries handed out below matter only when this returns them.)
                let (holding, next_due) = l.sweep(now);
                l.prune(settings.max_in_flight.saturating_add(GIVEN_BACK_SLACK));
                let member_room = l.room(member);
                let room = member_room.min(max);
                let mut out = Vec::new();
                let mut exhausted = Vec::new();
                let first_seq = self.first_seq(sb);
                while out.len() < room {
                    let Some((m, at)) = l.spare.pop_front() else {
                        break;
                    };
                    let seq = m.event.sequence;
                    if settings.max_deliver.is_some_and(|x| m.delivered > x) {
                        exhausted.push(m);
                        continue;
                    }
                    // Older than its ack wait: the server gives it out again anyway.
                    if now.duration_since(at) >= settings.wait_after(m.delivered) {
                        continue;
                    }
                    if m.delivered <= 1 {
                        if seq > l.last_new + 1 && first_seq > l.last_new + 1 {
                            out.push(Out::Gap {
                                namespace: sb.namespace.to_string(),
                                missed_from: l.last_new + 1,
                                resume_at: first_seq.min(seq),
                                reason: GapReason::Retention,
                            });
                        }
                        l.last_new = l.last_new.max(seq);
                    }
                    if let Some((n, _)) = l.members.get_mut(&member) {
                        *n += 1;
                    }
                    if let Some(old) = l.held.insert(
                        seq,
                        Held {
                            holder: Some(member),
                            count: m.delivered,
                            token: m.token,
                            due: now + settings.wait_after(m.delivered),
                            returning: false,
                        },
                    ) && let Some(h) = old.holder
                        && let Some((n, _)) = l.members.get_mut(&h)
                    {
                        // Redelivered by the server while another member held it (its
                        // ack wait ran out): it is this member's now.
                        *n = n.saturating_sub(1);
                    }
                    if m.delivered > 1 {
                        self.parts
                            .metrics
                            .redelivered
                            .fetch_add(1, Ordering::Relaxed);
                    }
                    out.push(Out::Event {
                        event: Arc::new(RoutedEvent::new(sb.namespace.clone(), m.event)),
                        count: m.delivered,
                    });
                }
                let start_fetch = out.is_empty()
                    && room > 0
                    && !l.fetching
                    && l.idle.is_none()
                    && l.spare.is_empty();
                if start_fetch {
                    l.fetching = true;
                }
                let idle = if out.is_empty() && room > 0 && !l.fetching {
                    l.idle
                } else {
                    None
                };
                // At max_in_flight new events cannot come: wait for acks and ack waits.
                let saturated = holding >= settings.max_in_flight;
                (
                    out,
                    exhausted,
                    start_fetch,
                    member_room,
                    idle,
                    (next_due, saturated, room == 0),
                )
            };
            if !exhausted.is_empty() {
                self.spawn_server_dead_letters(exhausted);
            }
            if !out.is_empty() {
                return Ok(Some(out));
            }
            if start_fetch {
                // What the member may take beyond this call waits in the spare deliveries.
                self.spawn_fetch(room.min(FETCH_MAX));
            }
            let due = next_due.map_or(now + POLL, |d| (d + DUE_SLACK).min(now + POLL));
            match idle {
                Some(seen) => {
                    let server = sb.consumer()?;
                    tokio::select! {
                        _ = &mut notified => {}
                        () = server.wait_past(seen, POLL), if !saturated => {}
                        () = tokio::time::sleep_until(due) => {}
                    }
                    self.wake_fetch(sb);
                }
                // At its cap: until an ack or nack, or an ack wait runs out.
                None if full => {
                    tokio::select! {
                        _ = &mut notified => {}
                        () = tokio::time::sleep_until(due) => {}
                    }
                }
                None => notified.await,
            }
        }
    }

    /// Waits until no fetch is on its way (one ends within `FETCH_WAIT` and a round trip).
    pub(super) async fn fetch_ended(&self, sb: &ServerBacked) {
        loop {
            let ended = self.changed.notified();
            tokio::pin!(ended);
            ended.as_mut().enable();
            if !lock(&sb.local).fetching {
                return;
            }
            ended.await;
        }
    }

    /// Lets the next member ask the server again (something may have become available).
    fn wake_fetch(&self, sb: &ServerBacked) {
        lock(&sb.local).idle = None;
        self.changed.notify_waiters();
    }

    /// Wakes the members after a change that may make deliveries available (an ack, a
    /// nack, a departure, new settings, a seek): they ask the server again.
    pub(super) fn server_changed(&self) {
        if let Some(sb) = &self.server {
            lock(&sb.local).idle = None;
        }
        self.changed.notify_waiters();
    }

    /// Opens the server's consumer once the namespace exists; whether it is open.
    async fn server_open(&self, sb: &ServerBacked) -> Result<bool, Error> {
        if sb.is_open() {
            return Ok(true);
        }
        let (Some(_), Some(servers)) = (
            self.parts.namespaces.get(&sb.namespace),
            &self.parts.server_consumers,
        ) else {
            return Ok(false);
        };
        let config = server_config(
            &sb.namespace,
            &self.name,
            self.pattern.as_str(),
            1,
            &self.settings(),
        );
        let server = servers.open(config).await?;
        let mut current = sb.current.write().unwrap_or_else(|e| e.into_inner());
        if current.is_none() {
            *current = Some((server, 1));
        }
        Ok(true)
    }

    /// The namespace's first sequence as last known.
    fn first_seq(&self, sb: &ServerBacked) -> u64 {
        self.parts
            .namespaces
            .get(&sb.namespace)
            .map_or(0, |l| l.stats().first_seq)
    }

    /// A gap for given-back deliveries whose events retention deleted (the server drops
    /// them without a word).
    async fn server_gone(&self, sb: &ServerBacked) -> Option<Out> {
        let lowest = {
            let l = lock(&sb.local);
            l.held
                .iter()
                .filter(|(_, h)| h.holder.is_none())
                .map(|(s, _)| *s)
                .min()?
        };
        let log = self.parts.namespaces.get(&sb.namespace)?;
        if log.stats().first_seq <= lowest {
            log.refresh_stats().await;
        }
        let first = log.stats().first_seq;
        if first <= lowest {
            return None;
        }
        let mut l = lock(&sb.local);
        let gone: Vec<u64> = l
            .held
            .iter()
            .filter(|(s, h)| h.holder.is_none() && **s < first)
            .map(|(s, _)| *s)
            .collect();
        for s in &gone {
            l.held.remove(s);
        }
        Some(Out::Gap {
            namespace: sb.namespace.to_string(),
            missed_from: lowest,
            resume_at: first,
            reason: GapReason::Retention,
        })
    }

    /// Starts the one fetch of this node; what it brings goes to the spare deliveries.
    fn spawn_fetch(self: &Arc<Self>, max: usize) {
        let this = self.clone();
        tokio::spawn(async move {
            let Ok(sb) = this.server() else { return };
            let server = match sb.consumer() {
                Ok(c) => c,
                Err(e) => {
                    lock(&sb.local).fetching = false;
                    lock(&sb.local).error = Some(e);
                    this.changed.notify_waiters();
                    return;
                }
            };
            let seen = server.newest();
            // Never cancelled: it ends within FETCH_WAIT (plus a round trip), and what it
            // brings is handed out or given back, never dropped.
            let result = server.fetch(max.max(1), FETCH_WAIT).await;
            {
                let mut l = lock(&sb.local);
                l.fetching = false;
                match result {
                    // From the consumer a seek replaced (and deleted): moot.
                    Ok(_) if !sb.is_current(&server) => {}
                    Ok(msgs) if msgs.is_empty() => l.idle = Some(seen),
                    Ok(msgs) => {
                        let now = Instant::now();
                        l.idle = None;
                        l.spare.extend(msgs.into_iter().map(|m| (m, now)));
                        // As bus's engine hands them out: redeliveries first, lowest
                        // sequence first (the server keeps the order they came back in).
                        l.spare
                            .make_contiguous()
                            .sort_by_key(|(m, _)| (m.delivered <= 1, m.event.sequence));
                    }
                    Err(e) => {
                        tracing::warn!(consumer = %this.name, error = %e, "fetching from the server's consumer");
                        l.error = Some(Error::from(e));
                    }
                }
            }
            this.changed.notify_waiters();
        });
    }

    fn spawn_server_dead_letters(self: &Arc<Self>, msgs: Vec<ServerMessage>) {
        let this = self.clone();
        tokio::spawn(async move {
            for m in msgs {
                let seq = m.event.sequence;
                let count = m.delivered.saturating_sub(1);
                if this
                    .publish_dead_letter(m.event, count, DeadReason::MaxDeliver)
                    .await
                    .is_ok()
                    && let Ok(sb) = this.server()
                    && let Ok(server) = sb.consumer()
                    && server
                        .settle(seq, Some(&m.token), Settle::Term)
                        .await
                        .is_ok()
                {
                    this.parts
                        .metrics
                        .dead_lettered
                        .fetch_add(1, Ordering::Relaxed);
                    lock(&sb.local).resolve(seq);
                }
            }
        });
    }

    /// Publishes the dead letter of `seq` (read back from the log), then ends it on the
    /// server. Whether both happened; on failure the event stays pending there.
    async fn server_dead_letter(&self, seq: u64, reason: DeadReason) -> bool {
        let Ok(sb) = self.server() else { return false };
        let (count, token) = {
            let l = lock(&sb.local);
            l.held
                .get(&seq)
                .map_or((0, None), |h| (h.count, Some(h.token.clone())))
        };
        let key = Key::new(&sb.namespace, seq);
        let published = self.dead_letter_of(&key, count, reason).await;
        let settled = match (published, sb.consumer()) {
            (Ok(()), Ok(server)) => server
                .settle(seq, token.as_deref(), Settle::Term)
                .await
                .map_err(Error::from),
            (Err(e), _) | (_, Err(e)) => Err(e),
        };
        match settled {
            Ok(()) => {
                self.parts
                    .metrics
                    .dead_lettered
                    .fetch_add(1, Ordering::Relaxed);
                lock(&sb.local).resolve(seq);
                self.server_changed();
                true
            }
            Err(e) => {
                tracing::error!(consumer = %self.name, namespace = %sb.namespace, sequence = seq, error = %e.message, "publishing a dead letter");
                false
            }
        }
    }

    /// Applies a batch of acknowledgements (see [`Consumer::acknowledge`]).
    pub(super) async fn server_acknowledge(
        self: &Arc<Self>,
        items: &[AckItem],
    ) -> Vec<Result<Outcome, Error>> {
        let Ok(sb) = self.server() else {
            return Vec::new();
        };
        let settings = self.settings();
        let server_state = tokio::sync::OnceCell::new();
        let mut results = Vec::with_capacity(items.len());
        // Entries go to the server together, up to ACK_CONCURRENCY at once, in runs that
        // name each event once (a repeated id waits for the run before it): so a batch
        // costs a few round trips, and verbs on one event apply in order.
        let mut start = 0;
        while start < items.len() {
            let mut ids = HashSet::new();
            let mut end = start;
            while end < items.len()
                && end - start < ACK_CONCURRENCY
                && ids.insert(items[end].id.as_str())
            {
                end += 1;
            }
            let run = items[start..end]
                .iter()
                .map(|item| self.server_ack_one(sb, item, &settings, &server_state));
            results.extend(futures::future::join_all(run).await);
            start = end;
        }
        self.server_changed();
        results
    }

    /// One entry of an acknowledgement batch.
    async fn server_ack_one(
        self: &Arc<Self>,
        sb: &ServerBacked,
        item: &AckItem,
        settings: &ConsumerSettings,
        server_state: &tokio::sync::OnceCell<crate::storage::ServerConsumerState>,
    ) -> Result<Outcome, Error> {
        let key = self.key_of(&item.id).await?;
        if *key.ns != *sb.namespace {
            return Ok(Outcome::NotDelivered);
        }
        let seq = key.seq;
        // A delivery fetched but not handed out is superseded by an ack, a nack (its
        // delay) or a term: the server decides when it comes again. `in progress` leaves
        // it to be handed out.
        let spare_token = if item.verb == Verb::InProgress {
            None
        } else {
            let mut l = lock(&sb.local);
            let i = l.spare.iter().position(|(m, _)| m.event.sequence == seq);
            i.and_then(|i| l.spare.remove(i)).map(|(m, _)| m.token)
        };
        let held = loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let h = lock(&sb.local).held.get(&seq).cloned();
            match h {
                Some(h) if h.returning => changed.await,
                other => break other,
            }
        };
        let (token, count, holder, due) = match held {
            Some(h) => (
                spare_token.or(Some(h.token)),
                h.count,
                h.holder,
                Some(h.due),
            ),
            None => {
                if lock(&sb.local).recent_set.contains(&seq) {
                    return Ok(Outcome::AlreadyResolved);
                }
                if seq < sb.origin() {
                    return Ok(Outcome::NotDelivered);
                }
                let st = *server_state
                    .get_or_try_init(|| async { sb.consumer()?.state().await.map_err(Error::from) })
                    .await?;
                if seq > st.delivered || !self.was_delivered(&key).await {
                    return Ok(Outcome::NotDelivered);
                }
                if seq <= st.ack_floor {
                    return Ok(Outcome::AlreadyResolved);
                }
                (None, 0, None, None)
            }
        };
        match item.verb {
            Verb::Ack => {
                sb.consumer()?
                    .settle(seq, token.as_deref(), Settle::Ack)
                    .await?;
                lock(&sb.local).resolve(seq);
                self.parts.metrics.acked.fetch_add(1, Ordering::Relaxed);
                self.parts
                    .confirmations
                    .acked(&sb.namespace, seq, &self.name);
                Ok(Outcome::Acked)
            }
            Verb::Nack(delay) => {
                let delay = delay.filter(|d| !d.is_zero());
                if delay.is_none() && count > 0 && settings.exhausted(count) {
                    lock(&sb.local).release(seq);
                    let this = self.clone();
                    tokio::spawn(async move {
                        this.server_dead_letter(seq, DeadReason::MaxDeliver).await;
                    });
                } else {
                    // Released before the server hears of it: its redelivery may come back
                    // in the fetch on its way, to another member.
                    {
                        let mut l = lock(&sb.local);
                        l.release(seq);
                        if let Some(h) = l.held.get_mut(&seq) {
                            h.due = Instant::now() + delay.unwrap_or_default();
                        }
                    }
                    sb.consumer()?
                        .settle(seq, token.as_deref(), Settle::Nak(delay))
                        .await?;
                }
                self.parts.metrics.nacked.fetch_add(1, Ordering::Relaxed);
                Ok(Outcome::Nacked)
            }
            Verb::InProgress => {
                let now = Instant::now();
                if holder.is_none() || due.is_some_and(|d| d <= now) {
                    return Ok(Outcome::NotHeld);
                }
                sb.consumer()?
                    .settle(seq, token.as_deref(), Settle::Progress)
                    .await?;
                if let Some(h) = lock(&sb.local).held.get_mut(&seq) {
                    h.due = now + settings.wait_after(count);
                }
                Ok(Outcome::InProgress)
            }
            Verb::Term => {
                if self.server_dead_letter(seq, DeadReason::Terminated).await {
                    Ok(Outcome::Terminated)
                } else {
                    Err(Error::new(
                        ErrorCode::ReadOnly,
                        "the dead letter could not be stored; the event stays pending (see the broker log)",
                    ))
                }
            }
        }
    }

    /// The listing, with the server's figures.
    pub(super) async fn server_info(&self, mut info: ConsumerInfo) -> ConsumerInfo {
        let Ok(sb) = self.server() else { return info };
        let members = {
            let l = lock(&sb.local);
            l.members.len() + l.departing
        };
        info.members = members as u64;
        let Ok(server) = sb.consumer() else {
            // No event yet, nothing delivered.
            info.positions = Default::default();
            return info;
        };
        match server.state().await {
            Ok(st) => {
                let next = st.delivered.max(sb.origin().saturating_sub(1)) + 1;
                info.positions = [(sb.namespace.to_string(), next)].into_iter().collect();
                info.pending = st.ack_pending;
                info.redelivered = st.redelivered;
                info.lag = match self.parts.namespaces.get(&sb.namespace) {
                    Some(log) => {
                        let s = log.stats();
                        (s.last_seq + 1).saturating_sub(next.max(s.first_seq))
                    }
                    None => 0,
                };
            }
            Err(e) => {
                tracing::warn!(consumer = %self.name, error = %e, "reading the server's consumer figures");
            }
        }
        info
    }

    /// Sends the new settings to the server.
    pub(super) async fn server_update(&self, settings: &ConsumerSettings) -> Result<(), Error> {
        let sb = self.server()?;
        if !sb.is_open() {
            // Opened with the settings of the day when the namespace exists.
            return Ok(());
        }
        let config = server_config(
            &sb.namespace,
            &self.name,
            self.pattern.as_str(),
            sb.origin(),
            settings,
        );
        sb.consumer()?.update(config).await.map_err(Error::from)
    }
}
