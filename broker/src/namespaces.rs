//! [`Namespaces`]: the registry of namespaces over the storage engine.
//!
//! Subscriptions, consumers and the publish path find logs here, never through the
//! [`Broker`](crate::broker::Broker) façade. The registry opens every existing namespace once
//! at start and keeps its log; every creation goes through [`Namespaces::get_or_create`], so
//! the map is the whole truth and lookups ([`Namespaces::get`], [`Namespaces::names`]) are
//! served from memory without asking the engine.
//!
//! Bound: at most `max_namespaces` logs (`--max-namespaces`); a publish that would create
//! one more is refused with `namespace_limit`. Reserved namespaces (`_bus_`, dead letters)
//! are created by the broker itself and count too.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use tokio::sync::watch;

use crate::error::{Error, ErrorCode};
use crate::storage::{EventLog, Recovery, StateStore, Storage, StorageError};
use crate::subject::is_reserved_namespace;

/// Which namespaces may exist.
#[derive(Debug, Clone, Default)]
pub struct NamespacePolicy {
    /// When set, only these (and the reserved ones) may be used (`--namespaces`).
    pub allowed: Option<Vec<String>>,
    /// Most namespaces the broker holds (`--max-namespaces`).
    pub max: usize,
}

/// The namespaces of the broker and their logs.
pub struct Namespaces {
    /// The engine the logs come from.
    storage: Arc<dyn Storage>,
    /// What the engine found at open: the namespaces it set aside as damaged (not in
    /// `logs`; refused by every lookup that would use them) and the tails it cut.
    recovery: Recovery,
    /// Every open log by name: the registry's view, complete (see the module docs).
    logs: RwLock<BTreeMap<String, Arc<dyn EventLog>>>,
    /// Serialises creations, so that the limit holds and a name is created once.
    creating: tokio::sync::Mutex<()>,
    /// Bumped whenever a namespace is created, so multi-namespace subscriptions pick it up.
    created: watch::Sender<u64>,
    /// Which namespaces may exist.
    policy: NamespacePolicy,
    /// Set by [`Namespaces::close`]: no namespace is created after it (checked under
    /// `creating`).
    closed: std::sync::atomic::AtomicBool,
    /// Who created each namespace created under `--auth` (kept in the state store under
    /// [`OWNER_PREFIX`]), for the `create_namespace` quota.
    owners: std::sync::Mutex<BTreeMap<String, String>>,
}

/// State-store keys naming the principal that created a namespace.
pub const OWNER_PREFIX: &str = "namespace-owner/";

impl std::fmt::Debug for Namespaces {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Namespaces")
            .field("names", &self.names())
            .finish()
    }
}

impl Namespaces {
    /// Opens every namespace `storage` holds.
    pub async fn open(
        storage: Arc<dyn Storage>,
        policy: NamespacePolicy,
    ) -> Result<Namespaces, StorageError> {
        let mut logs = BTreeMap::new();
        for name in storage.namespaces().await? {
            if let Some(log) = storage.namespace(&name, false).await? {
                logs.insert(name, log);
            }
        }
        let mut owners = BTreeMap::new();
        for (key, value) in storage.state().list(OWNER_PREFIX).await? {
            if let (Some(ns), Ok(owner)) =
                (key.strip_prefix(OWNER_PREFIX), std::str::from_utf8(&value))
            {
                owners.insert(ns.to_owned(), owner.to_owned());
            }
        }
        Ok(Namespaces {
            recovery: storage.recovery(),
            owners: std::sync::Mutex::new(owners),
            storage,
            logs: RwLock::new(logs),
            creating: tokio::sync::Mutex::new(()),
            created: watch::Sender::new(0),
            policy,
            closed: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// The log of `name`, if it exists.
    pub fn get(&self, name: &str) -> Option<Arc<dyn EventLog>> {
        self.logs
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .cloned()
    }

    /// Names of the existing namespaces, sorted.
    pub fn names(&self) -> Vec<String> {
        self.logs
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .cloned()
            .collect()
    }

    /// Every (name, log), sorted by name.
    pub fn all(&self) -> Vec<(String, Arc<dyn EventLog>)> {
        self.logs
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(n, l)| (n.clone(), l.clone()))
            .collect()
    }

    /// Why `name` is set aside, if it is: damage found at open, or since by a reader (a
    /// sealed segment is checked when first read). The message names file, offset and the
    /// repair command.
    pub fn damage(&self, name: &str) -> Option<String> {
        self.look(name).err()
    }

    /// The namespace's log, if it exists, or why it is set aside ([`Namespaces::damage`]).
    fn look(&self, name: &str) -> Result<Option<Arc<dyn EventLog>>, String> {
        if let Some(d) = self.recovery.damaged.get(name) {
            return Err(d.message.clone());
        }
        match self.get(name) {
            Some(log) => match log.damaged() {
                Some(message) => Err(message),
                None => Ok(Some(log)),
            },
            None => Ok(None),
        }
    }

    /// Refuses a namespace set aside as damaged (`503 namespace_damaged`).
    pub fn check_damaged(&self, name: &str) -> Result<(), Error> {
        self.check_damaged_exists(name).map(|_| ())
    }

    /// [`Namespaces::check_damaged`], then whether the namespace exists, from one look-up.
    pub fn check_damaged_exists(&self, name: &str) -> Result<bool, Error> {
        self.look(name)
            .map(|log| log.is_some())
            .map_err(|message| Error::new(ErrorCode::NamespaceDamaged, message))
    }

    /// Every namespace set aside as damaged, with why, sorted by name.
    pub fn damaged(&self) -> Vec<(String, String)> {
        let mut all: BTreeMap<String, String> = self
            .recovery
            .damaged
            .iter()
            .map(|(n, d)| (n.clone(), d.message.clone()))
            .collect();
        for (n, log) in self.all() {
            if let Some(m) = log.damaged() {
                all.insert(n, m);
            }
        }
        all.into_iter().collect()
    }

    /// What the engine found at open (tails cut, namespaces set aside).
    pub fn recovery(&self) -> &Recovery {
        &self.recovery
    }

    /// Changes whenever a namespace is created.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.created.subscribe()
    }

    /// The broker's durable state, from the same engine.
    pub fn state_store(&self) -> Arc<dyn StateStore> {
        self.storage.state()
    }

    /// The durable consumers the storage engine keeps itself, when it has them.
    pub fn server_consumers(&self) -> Option<Arc<dyn crate::storage::ServerConsumers>> {
        self.storage.server_consumers()
    }

    /// Refuses a namespace outside `--namespaces`.
    pub fn check_allowed(&self, namespace: &str) -> Result<(), Error> {
        if let Some(allowed) = &self.policy.allowed
            && !is_reserved_namespace(namespace)
            && !allowed.iter().any(|a| a == namespace)
        {
            return Err(Error::new(
                ErrorCode::UnknownNamespace,
                format!(
                    "namespace {namespace:?} does not exist; namespaces: {}",
                    allowed.join(", ")
                ),
            ));
        }
        Ok(())
    }

    /// The log of `namespace`, created on first use (within the policy).
    pub async fn get_or_create(&self, namespace: &str) -> Result<Arc<dyn EventLog>, Error> {
        self.get_or_create_as(namespace, None).await
    }

    /// Namespaces `owner` created.
    pub fn owned_by(&self, owner: &str) -> usize {
        crate::sync::lock(&self.owners)
            .values()
            .filter(|o| *o == owner)
            .count()
    }

    /// The log of `namespace`, created on first use by `creator` (its name and quota) when
    /// given: `403 forbidden` when it created its quota already; the creator is recorded
    /// durably before the namespace is used.
    pub async fn get_or_create_as(
        &self,
        namespace: &str,
        creator: Option<(&str, usize)>,
    ) -> Result<Arc<dyn EventLog>, Error> {
        self.check_allowed(namespace)?;
        // Set aside at open. Damage a reader found since is refused by the log's append
        // itself, so the publish path does not read the stats here.
        if let Some(d) = self.recovery.damaged.get(namespace) {
            return Err(Error::new(ErrorCode::NamespaceDamaged, d.message.clone()));
        }
        if let Some(log) = self.get(namespace) {
            return Ok(log);
        }
        let _creating = self.creating.lock().await;
        if let Some(log) = self.get(namespace) {
            return Ok(log);
        }
        if self.closed.load(std::sync::atomic::Ordering::Acquire) {
            return Err(Error::new(
                ErrorCode::ShuttingDown,
                "the broker is shutting down",
            ));
        }
        let max = self.policy.max;
        if self.logs.read().unwrap_or_else(|e| e.into_inner()).len() >= max {
            return Err(Error::new(
                ErrorCode::NamespaceLimit,
                format!(
                    "cannot create namespace {namespace:?}: the broker holds its limit of {max} namespaces (--max-namespaces)"
                ),
            ));
        }
        if let Some((owner, quota)) = creator {
            let owned = self.owned_by(owner);
            if owned >= quota {
                return Err(Error::new(
                    ErrorCode::Forbidden,
                    format!(
                        "principal {owner:?} may not create namespace {namespace:?}: it created {owned} of its quota of {quota} (create_namespace)"
                    ),
                ));
            }
            self.storage
                .state()
                .put(
                    &format!("{OWNER_PREFIX}{namespace}"),
                    bytes::Bytes::copy_from_slice(owner.as_bytes()),
                )
                .await?;
            crate::sync::lock(&self.owners).insert(namespace.to_owned(), owner.to_owned());
        }
        let log = self
            .storage
            .namespace(namespace, true)
            .await?
            .ok_or_else(|| Error::internal("creating a namespace", namespace))?;
        self.logs
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(namespace.to_owned(), log.clone());
        self.created.send_modify(|v| *v += 1);
        tracing::info!(namespace, "namespace created");
        Ok(log)
    }

    /// Finishes queued appends, syncs and closes the engine.
    pub async fn close(&self) -> Result<(), StorageError> {
        {
            let _creating = self.creating.lock().await;
            self.closed
                .store(true, std::sync::atomic::Ordering::Release);
        }
        self.storage.close().await
    }
}
