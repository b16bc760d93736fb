//! [`Routes`]: the live path's registry — every subscription's [`Slot`] in the subject trie,
//! and one [`NsRouter`] per namespace someone is live in.
//!
//! Every subscription registers a slot when it opens (plain streams, consumers' shared
//! readers, pulls) and unregisters when dropped ([`SlotGuard`]). Routers are started on the
//! first join in a namespace, on a tokio task, and run until the broker shuts down.
//!
//! Bounds: one slot per open subscription (each bounded by the connection limit, HTTP/2's
//! streams per connection, and the consumer and request limits), one router per namespace
//! (bounded by `--max-namespaces`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio_util::sync::CancellationToken;

use super::slot::SlotHandle;
use super::{LiveCounters, LiveFigures, NsRouter, Slot};
use crate::error::Error;
use crate::storage::{EventLog, Start};
use crate::subject::Pattern;
use crate::sync::lock;
use crate::trie::SharedSubjectTrie;

/// The live path's registry. See the module docs.
pub struct Routes {
    /// Every open subscription's slot, by pattern.
    trie: Arc<SharedSubjectTrie<SlotHandle>>,
    /// The router of each namespace someone joined.
    routers: Mutex<HashMap<Arc<str>, Arc<NsRouter>>>,
    /// The next slot id.
    next_id: AtomicU64,
    /// The live path's counters.
    counters: Arc<LiveCounters>,
    /// Stops the routers.
    shutdown: CancellationToken,
}

impl std::fmt::Debug for Routes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Routes")
            .field("slots", &self.trie.len())
            .finish()
    }
}

impl Routes {
    /// An empty registry whose routers stop on `shutdown`.
    pub fn new(counters: Arc<LiveCounters>, shutdown: CancellationToken) -> Routes {
        Routes {
            trie: Arc::default(),
            routers: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(0),
            counters,
            shutdown,
        }
    }

    /// Registers a new slot for `pattern` until the guard drops.
    pub fn register(&self, pattern: &Pattern) -> SlotGuard {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        let slot = Arc::new(Slot::new(id));
        self.trie.insert(pattern, SlotHandle(slot.clone()));
        SlotGuard {
            trie: self.trie.clone(),
            pattern: pattern.clone(),
            slot,
        }
    }

    /// The router of `namespace`, started (reading from `log`'s tail) if there is none or the
    /// last one ended.
    pub async fn router(
        &self,
        namespace: &Arc<str>,
        log: &Arc<dyn EventLog>,
    ) -> Result<Arc<NsRouter>, Error> {
        if let Some(r) = self.running(namespace) {
            return Ok(r);
        }
        if self.shutdown.is_cancelled() {
            // No new routers while closing; the caller keeps reading the log.
            return Ok(Arc::new(NsRouter::ended_router(namespace.clone())));
        }
        let reader = log.reader(Start::Newest).await?;
        let mut routers = lock(&self.routers);
        if let Some(r) = routers.get(namespace).filter(|r| !r.ended()) {
            return Ok(r.clone());
        }
        let router = Arc::new(NsRouter::new(namespace.clone(), reader.position()));
        routers.insert(namespace.clone(), router.clone());
        drop(routers);
        tokio::spawn(router.clone().run(
            reader,
            self.trie.clone(),
            self.counters.clone(),
            self.shutdown.clone(),
        ));
        Ok(router)
    }

    fn running(&self, namespace: &str) -> Option<Arc<NsRouter>> {
        lock(&self.routers)
            .get(namespace)
            .filter(|r| !r.ended())
            .cloned()
    }

    /// Slots registered.
    pub fn slots(&self) -> usize {
        self.trie.len()
    }

    /// Nodes of the trie.
    pub fn trie_nodes(&self) -> usize {
        self.trie.node_count()
    }

    /// Routers running.
    pub fn routers(&self) -> usize {
        lock(&self.routers).values().filter(|r| !r.ended()).count()
    }

    /// The sizes `/metrics` shows.
    pub fn figures(&self) -> LiveFigures {
        LiveFigures {
            slots: self.slots(),
            trie_nodes: self.trie_nodes(),
            routers: self.routers(),
        }
    }

    /// The live path's counters.
    pub fn counters(&self) -> &LiveCounters {
        &self.counters
    }
}

/// Keeps a slot registered; unregisters it when dropped.
pub struct SlotGuard {
    /// The trie it is in.
    trie: Arc<SharedSubjectTrie<SlotHandle>>,
    /// Its key there.
    pattern: Pattern,
    /// The slot.
    slot: Arc<Slot>,
}

impl std::fmt::Debug for SlotGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SlotGuard")
            .field("slot", &self.slot.id())
            .finish()
    }
}

impl SlotGuard {
    /// The slot.
    pub fn slot(&self) -> &Slot {
        &self.slot
    }
}

impl Drop for SlotGuard {
    fn drop(&mut self) {
        self.trie
            .remove(&self.pattern, &SlotHandle(self.slot.clone()));
    }
}
