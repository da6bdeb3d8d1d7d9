//! The leader's side of the data-node lease, for one term (DESIGN §4; docs/PROTOCOL.md).
//!
//! Heartbeats are handled in memory: no store write per heartbeat. Handling a heartbeat
//! records the contact and chooses the version of the response under one lock, and publishing
//! a committed version snapshots every node's stale bound under that same lock. So every
//! response handled after a publication carries the new version, and every earlier grant is
//! covered by the snapshot.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use leasehold::v1::{
    self, BarrierChange, DataNodeLeaseStatus, DataNodeStatus, HeartbeatRequest, HeartbeatResponse, MetadataChange,
    MetadataSnapshot,
};
use leasehold_core::catalog::{Catalog, CatalogChange, Orphaned};
use leasehold_core::contact::{ContactStatus, ContactTracker, NodeKey, Settlement};
use leasehold_core::ddl::{self, DataTarget};
use leasehold_core::lease_timing::LeaseTimings;
use leasehold_core::{Clock, MonoTime};
use leasehold_store::{GuardedTx, Store, StoreError, StoredObject, WriteGuard};
use prost::Message;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::locks::LockTable;
use crate::metrics;

/// The cluster setting holding the fence duration agents are granted now (ms).
pub const FENCE_SETTING: &str = "lease_fence_ms";
/// The cluster setting holding the largest fence any leader ever granted (ms).
pub const LARGEST_FENCE_SETTING: &str = "largest_lease_fence_ms";
/// The cluster setting holding the longest any leader's grants may outlast its coordinator
/// lease, `ttl·(1+ρ)/(1−ρ)` with that leader's TTL and drift (ms): the promotion floor.
pub const LARGEST_GRANT_BOUND_SETTING: &str = "largest_grant_bound_ms";

/// Who this leader is, and what it grants.
#[derive(Debug, Clone)]
pub struct LeaderIdentity {
    /// The cluster.
    pub cluster: String,
    /// The leader's node id.
    pub node_id: String,
    /// The leader's address.
    pub address: String,
    /// The term (0 for a stand-alone coordinator).
    pub term: u64,
    /// What its store writes are guarded by.
    pub guard: WriteGuard,
    /// Cancelled when the term ends.
    pub token: CancellationToken,
    /// When it was promoted, on its clock.
    pub promoted_at: MonoTime,
    /// How long earlier leaders may have kept granting leases after `promoted_at`. On a new
    /// term this is the node's own `ttl·(1+ρ)/(1−ρ)`, which the load records for the leaders
    /// after it and raises to the largest any earlier leader recorded.
    pub earlier_grants: Duration,
    /// Whether this is the term's first load (a reload within the term keeps its floor).
    pub new_term: bool,
    /// The HA container of the term, asked to renew when the store refuses the term's guard;
    /// `None` for a stand-alone coordinator, whose writes have no guard to refuse.
    pub ha: Option<crate::ha::Ha>,
}

/// What a leader needs to know about the lease protocol's settings.
#[derive(Debug, Clone, Copy)]
pub struct LeaseSettings {
    /// The data-node lease timings: the fence granted to agents, and what makes `T_proceed`.
    pub timings: LeaseTimings,
    /// How many changes to keep.
    pub retention: u64,
    /// `datanodes.evict-after`: how long a registered incarnation may stay silent.
    pub evict_after: Duration,
}

/// Why the leader refused or failed a data-node call.
#[derive(Debug, thiserror::Error)]
pub enum MetadataError {
    /// This term is over.
    #[error("this coordinator stopped leading term {term}")]
    TermEnded {
        /// The term.
        term: u64,
    },
    /// The heartbeat's incarnation is not registered.
    #[error("data node {node_id} incarnation {incarnation} is not registered with the leader; register again")]
    NotRegistered {
        /// The node.
        node_id: String,
        /// Its incarnation.
        incarnation: String,
    },
    /// The incarnation was put to rest (deregistered, evicted or replaced) and may not come
    /// back: the agent starts a new one.
    #[error("data node {node_id} incarnation {incarnation} was retired; start a new incarnation")]
    IncarnationRetired {
        /// The node.
        node_id: String,
        /// Its incarnation.
        incarnation: String,
    },
    /// The store refused the write: the term is no longer ours.
    #[error("the store refused the write: term {term} was taken over")]
    StaleTerm {
        /// The term.
        term: u64,
    },
    /// The store failed.
    #[error(transparent)]
    Store(StoreError),
    /// A change would put an object into a database that is not there; nothing was written.
    #[error(transparent)]
    Orphaned(leasehold_core::catalog::Orphaned),
    /// A stored change could not be decoded.
    #[error("stored change at version {version} is unreadable: {reason}")]
    Corrupt {
        /// Its version.
        version: u64,
        /// Why.
        reason: String,
    },
}

impl From<StoreError> for MetadataError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::StaleTerm { term } => MetadataError::StaleTerm { term },
            other => MetadataError::Store(other),
        }
    }
}

struct Registered {
    incarnation: String,
    address: String,
}

struct State {
    tracker: ContactTracker,
    version: u64,
    catalog: Catalog,
    /// Consecutive changes ending at `version`.
    changes: VecDeque<MetadataChange>,
    registry: BTreeMap<String, Registered>,
    /// Tombstones with a row in the store, deleted once the tracker has let them go.
    stored_tombstones: BTreeSet<NodeKey>,
    /// Deregistered and evicted incarnations, remembered (like their store rows) until their
    /// node registers again: they are never taken back.
    retired: BTreeSet<NodeKey>,
}

impl State {
    /// Whether `key` was put to rest: a tombstone still counted or still stored, or an
    /// incarnation deregistered or evicted whose node has not registered since.
    fn is_retired(&self, key: &NodeKey) -> bool {
        self.tracker.is_tombstone(key) || self.stored_tombstones.contains(key) || self.retired.contains(key)
    }

    /// The retained changes after `since` up to `upto`, oldest first, or `None` when the
    /// change right after `since` is no longer retained (or `since` is ahead). The log holds
    /// consecutive versions, so the first one is found by its position, not by a scan: this
    /// runs for every heartbeat under the lock.
    fn changes_between(&self, since: u64, upto: u64) -> Option<Vec<MetadataChange>> {
        let oldest = self.changes.front().map_or(self.version + 1, |change| change.version);
        if since > self.version || since.saturating_add(1) < oldest {
            return None;
        }
        let first = (since + 1 - oldest) as usize;
        let last = (upto.min(self.version) + 1).saturating_sub(oldest) as usize;
        Some(self.changes.range(first..last.max(first)).cloned().collect())
    }
}

/// One node a broadcast still waits for, and what to push to it.
#[derive(Debug, Clone)]
pub struct PushTarget {
    /// The node's incarnation.
    pub key: NodeKey,
    /// Its address.
    pub address: String,
    /// The changes it lacks, oldest first (empty when it is too far behind for a push).
    pub changes: Vec<MetadataChange>,
}

/// The leader's data-node state for one term.
pub struct MetadataLeader {
    identity: LeaderIdentity,
    /// Cancelled when the term ends, or when this state may no longer match the store
    /// ([`MetadataLeader::invalidate`]); the keeper then loads it again.
    state_token: CancellationToken,
    store: Store,
    clock: Arc<dyn Clock>,
    store_epoch: String,
    settings: LeaseSettings,
    proceed_after: Duration,
    state: Mutex<State>,
    acks: Notify,
    publications: tokio::sync::Mutex<()>,
    locks: LockTable,
    /// Set once every procedure an earlier leader left running holds its locks again: until
    /// then a new DDL could take a lock ahead of one of them (see [`Self::accepts_ddl`]).
    resumed: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for MetadataLeader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetadataLeader").field("term", &self.identity.term).finish()
    }
}

fn decode_change(version: u64, payload: &[u8]) -> Result<MetadataChange, MetadataError> {
    let change = MetadataChange::decode(payload)
        .map_err(|error| MetadataError::Corrupt { version, reason: error.to_string() })?;
    if change.version != version {
        return Err(MetadataError::Corrupt { version, reason: format!("it says it is version {}", change.version) });
    }
    Ok(change)
}

fn change_kind(change: &MetadataChange) -> &'static str {
    match change.kind {
        Some(v1::metadata_change::Kind::Barrier(_)) | None => "barrier",
        Some(v1::metadata_change::Kind::Catalog(_)) => "catalog",
        Some(v1::metadata_change::Kind::DropData(_)) => "drop_data",
    }
}

/// The catalog as the store keeps it: one row per object. An unreadable row is an error,
/// never skipped: a catalog with an object missing would serve as if it were dropped. A row
/// that reads but has no database to go into (orphaned) is set aside and returned: it is in
/// no catalog any leader served, so leaving it out changes nothing anyone saw.
pub(crate) fn load_catalog(objects: &[StoredObject]) -> Result<(Catalog, Vec<Orphaned>), MetadataError> {
    let mut changes = Vec::with_capacity(objects.len());
    for object in objects {
        let corrupt = |reason: String| MetadataError::Corrupt { version: object.version, reason };
        let change = match object.kind.as_str() {
            "database" => v1::catalog_change::Kind::PutDatabase(
                v1::Database::decode(object.payload.as_slice()).map_err(|e| corrupt(e.to_string()))?,
            ),
            "table" => v1::catalog_change::Kind::PutTable(
                v1::Table::decode(object.payload.as_slice()).map_err(|e| corrupt(e.to_string()))?,
            ),
            "view" => v1::catalog_change::Kind::PutView(
                v1::View::decode(object.payload.as_slice()).map_err(|e| corrupt(e.to_string()))?,
            ),
            other => return Err(corrupt(format!("unknown catalog object kind {other:?}"))),
        };
        changes.extend(leasehold::catalog::change_of(&v1::CatalogChange { kind: Some(change) }));
    }
    Ok(Catalog::quarantining(changes))
}

impl MetadataLeader {
    /// Loads the state of a new term from the store: the newest version and the retained
    /// changes, the registry (every registered node may hold an earlier leader's lease), and
    /// the fence settings, which it updates first if the configured fence changed: the
    /// largest fence ever granted is written before any lease with the new fence is granted.
    pub async fn load(
        identity: LeaderIdentity,
        store: Store,
        clock: Arc<dyn Clock>,
        settings: LeaseSettings,
    ) -> Result<Arc<MetadataLeader>, MetadataError> {
        let cluster = identity.cluster.clone();
        let store_epoch = store.store_epoch(&cluster).await?;
        store.ensure_metadata_rows(&cluster).await?;
        let largest_fence = Self::record_fence(&store, &identity.guard, &cluster, settings.timings.fence).await?;
        let mut identity = identity;
        if identity.new_term && matches!(identity.guard, WriteGuard::Term(_)) {
            // An earlier leader's grants are bounded by its own TTL and drift, not ours.
            identity.earlier_grants =
                Self::record_grant_bound(&store, &identity.guard, &cluster, identity.earlier_grants).await?;
        }
        let version = store.current_version(&cluster).await?;
        let first = version.saturating_sub(settings.retention);
        let mut changes = VecDeque::new();
        for stored in store.changes_since(&cluster, first, settings.retention).await? {
            changes.push_back(decode_change(stored.version, &stored.payload)?);
        }
        // Keep only a run that ends at `version` with no holes.
        while changes.front().is_some_and(|front| front.version + changes.len() as u64 != version + 1) {
            changes.pop_front();
        }
        let (catalog, orphans) = load_catalog(&store.list_objects(&cluster).await?)?;
        for orphaned in &orphans {
            warn!(term = identity.term, %orphaned, "a catalog row has no database to go into; it is quarantined, left in the store and out of the catalog");
        }
        crate::metrics::catalog_quarantined(orphans.len());
        let mut tracker = ContactTracker::new(identity.promoted_at, identity.earlier_grants);
        let mut registry = BTreeMap::new();
        for node in store.list_data_nodes(&cluster).await? {
            tracker.inherit(NodeKey::new(&node.node_id, &node.incarnation));
            registry.insert(node.node_id, Registered { incarnation: node.incarnation, address: node.address });
        }
        // Incarnations put to rest by earlier leaders (or earlier in this term) may still hold
        // a lease: they count until they have provably fenced.
        let mut stored_tombstones = BTreeSet::new();
        for (node_id, incarnation) in store.list_tombstones(&cluster).await? {
            let key = NodeKey::new(&node_id, &incarnation);
            if registry.get(&node_id).is_none_or(|registered| registered.incarnation != incarnation) {
                tracker.inherit_tombstone(key.clone());
            }
            stored_tombstones.insert(key);
        }
        let retired: BTreeSet<NodeKey> = store
            .list_retired_data_nodes(&cluster)
            .await?
            .into_iter()
            .map(|(node_id, incarnation)| NodeKey::new(node_id, incarnation))
            .collect();
        let proceed_after = settings.timings.proceed_after(largest_fence);
        info!(
            term = identity.term,
            version,
            catalog_objects = catalog.len(),
            data_nodes = registry.len(),
            tombstones = stored_tombstones.len(),
            fence_ms = settings.timings.fence.as_millis() as u64,
            largest_fence_ms = largest_fence.as_millis() as u64,
            proceed_after_ms = proceed_after.as_millis() as u64,
            earlier_grants_ms = identity.earlier_grants.as_millis() as u64,
            "data-node leases: leader state loaded"
        );
        metrics::data_nodes_registered(registry.len());
        Ok(Arc::new(MetadataLeader {
            state_token: identity.token.child_token(),
            identity,
            store,
            clock,
            store_epoch,
            settings,
            proceed_after,
            state: Mutex::new(State { tracker, version, catalog, changes, registry, stored_tombstones, retired }),
            acks: Notify::new(),
            publications: tokio::sync::Mutex::new(()),
            locks: LockTable::default(),
            resumed: std::sync::atomic::AtomicBool::new(false),
        }))
    }

    /// Makes `fence` the cluster's fence, keeping the largest ever granted; returns that.
    async fn record_fence(
        store: &Store,
        guard: &WriteGuard,
        cluster: &str,
        fence: Duration,
    ) -> Result<Duration, MetadataError> {
        let parse =
            |value: Option<String>| value.and_then(|value| value.parse::<u64>().ok()).map(Duration::from_millis);
        let stored = parse(store.read_setting(cluster, FENCE_SETTING).await?);
        let largest = parse(store.read_setting(cluster, LARGEST_FENCE_SETTING).await?);
        let new_largest = largest.map_or(fence, |largest| largest.max(fence));
        if stored != Some(fence) || largest != Some(new_largest) {
            if let WriteGuard::Term(guard) = guard
                && crate::failpoint::armed(crate::failpoint::LOAD_GUARD_REFUSED)
            {
                return Err(MetadataError::StaleTerm { term: guard.term });
            }
            let mut tx = store.begin_guarded(guard).await?;
            tx.write_setting(cluster, LARGEST_FENCE_SETTING, &new_largest.as_millis().to_string()).await?;
            tx.write_setting(cluster, FENCE_SETTING, &fence.as_millis().to_string()).await?;
            tx.commit().await?;
            info!(
                fence_ms = fence.as_millis() as u64,
                largest_fence_ms = new_largest.as_millis() as u64,
                "cluster fence duration recorded"
            );
        }
        Ok(new_largest)
    }

    /// Records `own`, this leader's grant bound, unless a larger one is recorded; returns the
    /// largest. Written before this leader grants anything, so a successor always finds it.
    async fn record_grant_bound(
        store: &Store,
        guard: &WriteGuard,
        cluster: &str,
        own: Duration,
    ) -> Result<Duration, MetadataError> {
        let stored = store
            .read_setting(cluster, LARGEST_GRANT_BOUND_SETTING)
            .await?
            .and_then(|value| value.parse::<u64>().ok())
            .map(Duration::from_millis);
        if let Some(stored) = stored.filter(|stored| *stored >= own) {
            return Ok(stored);
        }
        // Rounded up, so the recorded bound is never below the one it stands for.
        let own_ms = own.as_micros().div_ceil(1000).to_string();
        let mut tx = store.begin_guarded(guard).await?;
        tx.write_setting(cluster, LARGEST_GRANT_BOUND_SETTING, &own_ms).await?;
        tx.commit().await?;
        info!(grant_bound_ms = %own_ms, "promotion floor recorded for the leaders after this one");
        Ok(own)
    }

    /// The term this state belongs to.
    pub fn term(&self) -> u64 {
        self.identity.term
    }

    /// Cancelled when the term ends.
    pub fn token(&self) -> &CancellationToken {
        &self.state_token
    }

    /// Gives this state up: it may no longer match the store (a commit whose outcome is
    /// unknown, or a version counter that moved under it). Heartbeats, broadcasts and
    /// procedures on it stop at once; the keeper loads the state again for the same term,
    /// and the new state resumes every unfinished procedure from the store.
    pub fn invalidate(&self, why: &str) {
        if self.state_token.is_cancelled() {
            return;
        }
        warn!(term = self.identity.term, why, "data-node state no longer matches the store; loading it again");
        self.state_token.cancel();
        // Heartbeats check the token under this lock: after it, none is granted on this state.
        drop(self.state());
    }

    /// Waits until no change transaction of this (given up) state is in flight, so that a
    /// state loaded after it reads everything it committed. New ones are refused.
    pub async fn quiesce(&self) {
        drop(self.publications.lock().await);
    }

    /// The identity for loading this term's state again after [`MetadataLeader::invalidate`]:
    /// every lease this state granted began before now, and earlier leaders' grants still
    /// end by the old floor.
    pub fn reload_identity(&self) -> LeaderIdentity {
        let now = self.clock.now();
        let floor = self.state().tracker.floor();
        LeaderIdentity {
            promoted_at: now,
            earlier_grants: floor.saturating_since(now),
            new_term: false,
            ..self.identity.clone()
        }
    }

    /// Whether the term goes on but this state was given up.
    pub fn is_invalidated(&self) -> bool {
        self.state_token.is_cancelled() && !self.identity.token.is_cancelled()
    }

    /// `T_proceed` of this term.
    pub fn proceed_after(&self) -> Duration {
        self.proceed_after
    }

    /// How long earlier leaders may have kept granting leases after this one was promoted
    /// (the promotion floor).
    pub fn earlier_grants(&self) -> Duration {
        self.identity.earlier_grants
    }

    /// The fence granted to agents.
    pub fn fence(&self) -> Duration {
        self.settings.timings.fence
    }

    /// The store epoch versions are issued under.
    pub fn store_epoch(&self) -> &str {
        &self.store_epoch
    }

    /// The leader's node id.
    pub fn leader_node_id(&self) -> &str {
        &self.identity.node_id
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("data-node state poisoned")
    }

    /// Handles a heartbeat: grants a lease (records the contact) and answers with the
    /// changes the agent lacks, or a snapshot. `still_leader` is checked right before the
    /// grant, under the lock.
    pub fn heartbeat(
        &self,
        request: &HeartbeatRequest,
        still_leader: impl Fn() -> bool,
    ) -> Result<HeartbeatResponse, MetadataError> {
        let key = NodeKey::new(&request.node_id, &request.incarnation);
        let mut state = self.state();
        if state.is_retired(&key) {
            return Err(MetadataError::IncarnationRetired {
                node_id: request.node_id.clone(),
                incarnation: request.incarnation.clone(),
            });
        }
        if !state.tracker.is_registered(&key) {
            return Err(MetadataError::NotRegistered {
                node_id: request.node_id.clone(),
                incarnation: request.incarnation.clone(),
            });
        }
        if self.state_token.is_cancelled() || !still_leader() {
            return Err(MetadataError::TermEnded { term: self.identity.term });
        }
        let now = self.clock.now();
        state.tracker.record_contact(&key, now);
        let same_epoch = request.store_epoch == self.store_epoch;
        if same_epoch && !request.needs_resync {
            // An agent cannot hold a version that was never published: never count more.
            let applied = request.applied_version.min(state.version);
            let before = state.tracker.acked(&key);
            state.tracker.record_ack(&key, applied);
            if applied > before {
                self.acks.notify_waiters();
            }
        }
        let version = state.version;
        let incremental = (same_epoch && !request.needs_resync)
            .then(|| state.changes_between(request.applied_version, version))
            .flatten();
        let mut response = HeartbeatResponse {
            term: self.identity.term,
            leader_node_id: self.identity.node_id.clone(),
            leader_address: self.identity.address.clone(),
            fence_ms: self.settings.timings.fence.as_millis() as u64,
            store_epoch: self.store_epoch.clone(),
            version,
            changes: Vec::new(),
            snapshot: None,
        };
        if let Some(changes) = incremental {
            response.changes = changes;
        } else {
            response.snapshot = Some(MetadataSnapshot {
                store_epoch: self.store_epoch.clone(),
                version,
                catalog: leasehold::catalog::snapshot_messages(&state.catalog),
            });
        }
        Ok(response)
    }

    /// Registers `node_id` at `incarnation` (a term-guarded write); an earlier incarnation
    /// becomes a tombstone that still counts for broadcasts.
    /// A retired incarnation is refused: a registration delayed past its own deregistration
    /// (or an evicted agent coming back) must not revive it.
    pub async fn register(&self, node_id: &str, incarnation: &str, address: &str) -> Result<(), MetadataError> {
        let _serial = self.publications.lock().await;
        let cluster = &self.identity.cluster;
        let earlier = {
            let state = self.state();
            let key = NodeKey::new(node_id, incarnation);
            if state.is_retired(&key) {
                return Err(MetadataError::IncarnationRetired {
                    node_id: node_id.to_owned(),
                    incarnation: incarnation.to_owned(),
                });
            }
            state
                .registry
                .get(node_id)
                .map(|registered| registered.incarnation.clone())
                .filter(|earlier| earlier != incarnation)
        };
        let mut tx = self.begin_guarded().await?;
        tx.upsert_data_node(cluster, node_id, incarnation, address).await?;
        if let Some(earlier) = &earlier {
            tx.put_tombstone(cluster, node_id, earlier).await?;
        }
        tx.commit().await?;
        let mut state = self.state();
        if let Some(earlier) = earlier {
            state.stored_tombstones.insert(NodeKey::new(node_id, earlier));
        }
        // The store forgot the node's retired incarnation with this registration.
        state.retired.retain(|retired| retired.node_id != node_id);
        let replaced = state
            .registry
            .insert(node_id.to_owned(), Registered { incarnation: incarnation.to_owned(), address: address.to_owned() })
            .filter(|previous| previous.incarnation != incarnation);
        state.tracker.register(NodeKey::new(node_id, incarnation), self.clock.now());
        metrics::data_nodes_registered(state.registry.len());
        match replaced {
            Some(previous) => {
                info!(node_id, incarnation, replaced = %previous.incarnation, %address, "data node re-registered; the old incarnation counts until it has fenced")
            }
            None => info!(node_id, incarnation, %address, "data node registered"),
        }
        Ok(())
    }

    /// Removes `node_id` at `incarnation`; it still counts for broadcasts until it has fenced.
    pub async fn deregister(&self, node_id: &str, incarnation: &str) -> Result<bool, MetadataError> {
        let _serial = self.publications.lock().await;
        let key = NodeKey::new(node_id, incarnation);
        let removed = self.retire(std::slice::from_ref(&key)).await?;
        info!(
            node_id,
            incarnation,
            removed = !removed.is_empty(),
            "data node deregistered; it counts until it has fenced"
        );
        Ok(!removed.is_empty())
    }

    /// Evicts every registered incarnation not heard from for `datanodes.evict-after` (never
    /// less than `T_proceed`, so each has provably fenced); returns how many.
    pub async fn evict_silent(&self) -> Result<usize, MetadataError> {
        let _serial = self.publications.lock().await;
        let evict_after = self.settings.evict_after.max(self.proceed_after);
        let silent = self.state().tracker.silent_for_at_least(self.clock.now(), evict_after);
        if silent.is_empty() {
            return Ok(0);
        }
        let evicted = self.retire(&silent).await?;
        for key in &evicted {
            warn!(node = %key, silent_for_s = evict_after.as_secs(), "data node evicted: silent past datanodes.evict-after; it is told to start a new incarnation if it comes back");
        }
        metrics::data_nodes_evicted(evicted.len());
        Ok(evicted.len())
    }

    /// Removes the registrations of `keys` and keeps them as tombstones, in the store and
    /// here, in one guarded transaction; returns the ones that were registered. Call it under
    /// the publication lock.
    async fn retire(&self, keys: &[NodeKey]) -> Result<Vec<NodeKey>, MetadataError> {
        let cluster = &self.identity.cluster;
        let mut tx = self.begin_guarded().await?;
        let mut removed = Vec::new();
        for key in keys {
            if tx.retire_data_node(cluster, &key.node_id, &key.incarnation).await? {
                tx.put_tombstone(cluster, &key.node_id, &key.incarnation).await?;
                removed.push(key.clone());
            }
        }
        tx.commit().await?;
        let now = self.clock.now();
        let mut state = self.state();
        for key in keys {
            if removed.contains(key) {
                state.registry.remove(&key.node_id);
                state.stored_tombstones.insert(key.clone());
                state.retired.insert(key.clone());
            }
            state.tracker.deregister(key, now);
        }
        metrics::data_nodes_registered(state.registry.len());
        Ok(removed)
    }

    /// A term-guarded transaction outside the change log; a refused guard is handled as
    /// [`Self::guard_refused`] says.
    async fn begin_guarded(&self) -> Result<GuardedTx, MetadataError> {
        match self.store.begin_guarded(&self.identity.guard).await {
            Ok(tx) => Ok(tx),
            Err(StoreError::StaleTerm { .. }) => Err(self.guard_refused()),
            Err(error) => Err(error.into()),
        }
    }

    /// Deletes the store rows of tombstones that have provably fenced; returns how many.
    pub async fn sweep_tombstones(&self) -> Result<usize, MetadataError> {
        let _serial = self.publications.lock().await;
        let settled: Vec<NodeKey> = {
            let now = self.clock.now();
            let mut state = self.state();
            state.tracker.collect_tombstones(now, self.proceed_after);
            let counted: BTreeSet<&NodeKey> =
                state.tracker.nodes().filter(|(_, tombstone)| *tombstone).map(|(key, _)| key).collect();
            state.stored_tombstones.iter().filter(|key| !counted.contains(key)).cloned().collect()
        };
        if settled.is_empty() {
            return Ok(0);
        }
        let cluster = &self.identity.cluster;
        let mut tx = self.begin_guarded().await?;
        for key in &settled {
            tx.delete_tombstone(cluster, &key.node_id, &key.incarnation).await?;
        }
        tx.commit().await?;
        let mut state = self.state();
        for key in &settled {
            state.stored_tombstones.remove(key);
        }
        info!(tombstones = settled.len(), "settled tombstones forgotten");
        Ok(settled.len())
    }

    /// Commits a barrier change (a version bump) and publishes it; returns its version.
    pub async fn publish_barrier(&self) -> Result<u64, MetadataError> {
        let change = self.begin().await?;
        let version = change.version;
        let barrier = MetadataChange { version, kind: Some(v1::metadata_change::Kind::Barrier(BarrierChange {})) };
        change.publish(barrier, None).await
    }

    /// Opens a term-guarded transaction for the next change. Changes are serialized from here
    /// to their publication, so versions are published in commit order.
    pub async fn begin(&self) -> Result<ChangeTx<'_>, MetadataError> {
        let serial = self.publications.lock().await;
        if self.state_token.is_cancelled() {
            return Err(MetadataError::TermEnded { term: self.identity.term });
        }
        if crate::failpoint::armed(crate::failpoint::BEGIN_FAILS) {
            return Err(MetadataError::Store(StoreError::Timeout { op: "begin", after: Duration::ZERO }));
        }
        let tx = self.begin_guarded().await?;
        let version = self.state().version + 1;
        Ok(ChangeTx { leader: self, _serial: serial, tx, version })
    }

    /// What a write the store refused for this term means, and what is done about it. While
    /// the term's local hold is valid the refusal says only that the store's clock ran ahead:
    /// the leader renews at once and the caller tries again; a term that really ended steps
    /// down and its successor resumes whatever the write was for.
    pub fn guard_refused(&self) -> MetadataError {
        let term = self.identity.term;
        if let Some(ha) = self.identity.ha.as_ref().filter(|ha| ha.is_leader_now()) {
            warn!(
                term,
                "the store refused this term's write guard while the local hold is valid (is the store's clock ahead?); renewing now"
            );
            ha.renew_now();
        }
        MetadataError::StaleTerm { term }
    }

    /// The newest published version.
    pub fn version(&self) -> u64 {
        self.state().version
    }

    /// Reads the catalog, with the version it is at (read together, under one lock).
    pub fn with_catalog<R>(&self, read: impl FnOnce(&Catalog) -> R) -> (R, u64) {
        let state = self.state();
        (read(&state.catalog), state.version)
    }

    /// The changes after `since` up to the newest version, with that version, if they are all
    /// still retained (read together, under one lock).
    pub fn changes_since(&self, since: u64) -> Option<(Vec<MetadataChange>, u64)> {
        let state = self.state();
        Some((state.changes_between(since, state.version)?, state.version))
    }

    /// The DDL locks of this term.
    pub fn locks(&self) -> &LockTable {
        &self.locks
    }

    /// Whether new DDL may start: only once every procedure this state resumes holds its
    /// locks, so none of them is overtaken by a DDL planned against the catalog it is changing.
    pub fn accepts_ddl(&self) -> bool {
        self.resumed.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Opens this state to new DDL (the resumed procedures hold their locks).
    pub fn mark_resumed(&self) {
        self.resumed.store(true, std::sync::atomic::Ordering::Release);
    }

    /// The store this leader writes to.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The cluster.
    pub fn cluster(&self) -> &str {
        &self.identity.cluster
    }

    /// The per-node settlements of `version`.
    pub fn settlements(&self, version: u64) -> Vec<Settlement> {
        let now = self.clock.now();
        let mut state = self.state();
        state.tracker.collect_tombstones(now, self.proceed_after);
        state.tracker.settlements(version)
    }

    /// What to push to each of `nodes` so that it reaches `version`: the changes after the
    /// version it acknowledged. A node that is not registered under that incarnation any more
    /// is left out; one too far behind for the retained changes gets none (it resyncs through
    /// its heartbeat).
    pub fn push_targets(&self, version: u64, nodes: &[(NodeKey, u64)]) -> Vec<PushTarget> {
        let state = self.state();
        nodes
            .iter()
            .filter_map(|(key, acked)| {
                let registered = state.registry.get(&key.node_id)?;
                if registered.incarnation != key.incarnation {
                    return None;
                }
                let changes = state.changes_between(*acked, version).unwrap_or_default();
                Some(PushTarget { key: key.clone(), address: registered.address.clone(), changes })
            })
            .collect()
    }

    /// Records that `key` holds `version`.
    pub fn record_ack(&self, key: &NodeKey, version: u64) {
        let mut state = self.state();
        let version = version.min(state.version);
        state.tracker.record_ack(key, version);
        drop(state);
        self.acks.notify_waiters();
    }

    /// Waits until an acknowledgement arrives (or returns at once if one arrived since the
    /// returned future was created).
    pub fn acknowledged(&self) -> tokio::sync::futures::Notified<'_> {
        self.acks.notified()
    }

    /// A broadcast of `version` begins: its publication snapshot stays until the matching
    /// [`MetadataLeader::forget`] (one is taken now for a version this leader did not publish).
    pub fn watch(&self, version: u64) {
        self.state().tracker.watch(version);
    }

    /// A broadcast of `version` is decided.
    pub fn forget(&self, version: u64) {
        self.state().tracker.forget(version);
    }

    /// The leader's clock.
    pub fn now(&self) -> MonoTime {
        self.clock.now()
    }

    /// Every node with its lease status, for `ListDataNodes`.
    pub fn statuses(&self) -> (Vec<DataNodeStatus>, u64) {
        let now = self.clock.now();
        let mut state = self.state();
        state.tracker.collect_tombstones(now, self.proceed_after);
        let nodes = state
            .tracker
            .nodes()
            .map(|(key, tombstone)| {
                let status = state.tracker.status(key, now, self.proceed_after);
                let (status, silent) = match status {
                    Some(ContactStatus::Live { silent_for }) => (DataNodeLeaseStatus::Live, silent_for),
                    Some(ContactStatus::FencedByNow { silent_for }) => (DataNodeLeaseStatus::FencedByNow, silent_for),
                    Some(ContactStatus::Unknown) => (DataNodeLeaseStatus::Unknown, Duration::ZERO),
                    Some(ContactStatus::NeverGranted) | None => (DataNodeLeaseStatus::NeverGranted, Duration::ZERO),
                };
                let address =
                    state.registry.get(&key.node_id).map(|registered| registered.address.clone()).unwrap_or_default();
                DataNodeStatus {
                    node_id: key.node_id.clone(),
                    incarnation: key.incarnation.clone(),
                    address,
                    registered: !tombstone,
                    status: status as i32,
                    silent_ms: silent.as_millis() as i64,
                    acked_version: state.tracker.acked(key),
                }
            })
            .collect();
        (nodes, state.version)
    }

    /// Whether a broadcast may go on: the term is still ours.
    pub fn check_term(&self) -> Result<(), MetadataError> {
        if self.state_token.is_cancelled() {
            warn!(term = self.identity.term, "broadcast stopped: the term ended or the state is being reloaded");
            return Err(MetadataError::TermEnded { term: self.identity.term });
        }
        Ok(())
    }
}

/// A term-guarded transaction for one change: write procedure rows through
/// [`ChangeTx::store`], then [`ChangeTx::publish`] (or [`ChangeTx::publish_catalog`]) commits the
/// change and makes it part of every later heartbeat answer.
pub struct ChangeTx<'a> {
    leader: &'a MetadataLeader,
    _serial: tokio::sync::MutexGuard<'a, ()>,
    tx: GuardedTx,
    version: u64,
}

impl std::fmt::Debug for ChangeTx<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChangeTx").field("version", &self.version).finish()
    }
}

impl ChangeTx<'_> {
    /// The version this change commits at.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The transaction, for writes that commit with the change (procedure rows).
    pub fn store(&mut self) -> &mut GuardedTx {
        &mut self.tx
    }

    /// Commits without a change (a procedure moving on): no version is consumed.
    pub async fn commit(self) -> Result<(), MetadataError> {
        self.tx.commit().await?;
        Ok(())
    }

    /// Writes `change` to the catalog rows and the change log, commits, and publishes it.
    pub async fn publish_catalog(mut self, change: &CatalogChange) -> Result<u64, MetadataError> {
        // Creation versions come from the catalog this change lands on; the serial guard
        // held by this transaction keeps it from moving underneath.
        let (stamped, _) = self.leader.with_catalog(|catalog| {
            let stamped = catalog.stamp(change, self.version);
            catalog.admits(&stamped).map(|()| stamped)
        });
        // An orphaned put would write a row no catalog shows until its database is created
        // again: refused before anything is written.
        let change = stamped.map_err(MetadataError::Orphaned)?;
        self.write_object(&change).await?;
        let message = MetadataChange {
            version: self.version,
            kind: Some(v1::metadata_change::Kind::Catalog(leasehold::catalog::change_message(&change))),
        };
        self.publish(message, Some(change)).await
    }

    /// Writes the catalog rows `change` makes, at this change's version.
    async fn write_object(&mut self, change: &CatalogChange) -> Result<(), MetadataError> {
        let cluster = self.leader.identity.cluster.clone();
        let object = |kind: &str, database: &str, name: &str, payload: Vec<u8>, version: u64| StoredObject {
            kind: kind.to_owned(),
            database: database.to_owned(),
            name: name.to_owned(),
            payload,
            version,
        };
        match change {
            CatalogChange::PutDatabase(database) => {
                let payload = leasehold::catalog::database_message(database).encode_to_vec();
                self.tx.put_object(&cluster, &object("database", &database.name, "", payload, self.version)).await?;
            }
            CatalogChange::RemoveDatabase { name } => self.tx.remove_database_objects(&cluster, name).await?,
            CatalogChange::PutTable(table) => {
                let payload = leasehold::catalog::table_message(table, None).encode_to_vec();
                self.tx
                    .put_object(&cluster, &object("table", &table.database, &table.name, payload, self.version))
                    .await?;
            }
            CatalogChange::RemoveTable { database, name } => {
                self.tx.remove_object(&cluster, "table", database, name).await?
            }
            CatalogChange::PutView(view) => {
                let payload = leasehold::catalog::view_message(view).encode_to_vec();
                self.tx
                    .put_object(&cluster, &object("view", &view.database, &view.name, payload, self.version))
                    .await?;
            }
            CatalogChange::RemoveView { database, name } => {
                self.tx.remove_object(&cluster, "view", database, name).await?
            }
        }
        Ok(())
    }

    /// Publishes the order to delete `target`'s data, marked at `marker_version`. The marked
    /// object records the order's version in the same transaction, so snapshots carry it: a
    /// data node that learns of the order only from a snapshot still deletes the data before
    /// it acknowledges the order's version.
    pub async fn publish_drop_data(mut self, target: &DataTarget, marker_version: u64) -> Result<u64, MetadataError> {
        let (ordered, _) = self.leader.with_catalog(|catalog| ddl::drop_order(catalog, target, self.version));
        if let Some(ordered) = &ordered {
            self.write_object(ordered).await?;
        } else {
            warn!(?target, "no marked object for this order to drop data; it travels as a change alone");
        }
        let (database, table, column, created_version) = target.parts();
        let message = MetadataChange {
            version: self.version,
            kind: Some(v1::metadata_change::Kind::DropData(v1::DropDataChange {
                database: database.to_owned(),
                table: table.to_owned(),
                column: column.to_owned(),
                marker_version,
                created_version,
            })),
        };
        self.publish(message, ordered).await
    }

    /// Appends `message` to the change log, commits, and publishes it.
    async fn publish(mut self, message: MetadataChange, catalog: Option<CatalogChange>) -> Result<u64, MetadataError> {
        let leader = self.leader;
        let retention = leader.settings.retention;
        let version = self
            .tx
            .append_change(&leader.identity.cluster, change_kind(&message), &message.encode_to_vec(), retention)
            .await?;
        if version != self.version {
            // Another writer bumped the counter: this leader's view is stale. Roll back.
            leader.invalidate("the version counter moved under this leader");
            return Err(MetadataError::Store(StoreError::Inconsistent(format!(
                "metadata version moved to {version} under term {}, expected {}",
                leader.identity.term, self.version
            ))));
        }
        // From here until the state below is updated, stopping halfway (an error, or the
        // caller's future dropped mid-commit) leaves this state unsure which version is next.
        let unsettled = Unsettled { leader, settled: false };
        if let Err(error) = self.tx.commit().await {
            return Err(error.into());
        }
        if crate::failpoint::armed(crate::failpoint::COMMIT_ANSWER_LOST) {
            warn!(version, "failpoint: the commit's answer is lost");
            return Err(MetadataError::Store(StoreError::Timeout { op: "commit", after: Duration::ZERO }));
        }
        let mut state = leader.state();
        state.version = version;
        if let Some(change) = &catalog {
            state.catalog.apply(change).expect("admitted before it was written, under the serial guard");
        }
        state.changes.push_back(message);
        while state.changes.len() as u64 > retention {
            state.changes.pop_front();
        }
        state.tracker.publish(version);
        drop(state);
        unsettled.settle();
        Ok(version)
    }
}

/// Gives the leader's state up unless the change it guards was settled: a commit may have
/// happened that the state does not show.
struct Unsettled<'a> {
    leader: &'a MetadataLeader,
    settled: bool,
}

impl Unsettled<'_> {
    fn settle(mut self) {
        self.settled = true;
    }
}

impl Drop for Unsettled<'_> {
    fn drop(&mut self) {
        if !self.settled {
            self.leader.invalidate("the outcome of a change's commit is unknown");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use leasehold_core::catalog::{Database, ObjectState, Table};

    fn row(change: &CatalogChange, version: u64) -> StoredObject {
        let (kind, database, name, payload) = match change {
            CatalogChange::PutDatabase(database) => (
                "database",
                database.name.clone(),
                String::new(),
                leasehold::catalog::database_message(database).encode_to_vec(),
            ),
            CatalogChange::PutTable(table) => (
                "table",
                table.database.clone(),
                table.name.clone(),
                leasehold::catalog::table_message(table, None).encode_to_vec(),
            ),
            other => panic!("no row for {other:?}"),
        };
        StoredObject { kind: kind.into(), database, name, payload, version }
    }

    #[test]
    fn orphaned_rows_are_quarantined_and_the_rest_of_the_catalog_loads() {
        let database = Database {
            name: "db".into(),
            ttl: None,
            properties: Default::default(),
            state: ObjectState::Visible,
            version: 9,
            created_version: 9,
            drop_ordered_version: 0,
        };
        let table = |database: &str, name: &str, created_version| Table {
            database: database.into(),
            name: name.into(),
            columns: vec![],
            ttl: None,
            properties: Default::default(),
            comment: String::new(),
            state: ObjectState::Visible,
            version: created_version,
            created_version,
            drop_ordered_version: 0,
        };
        let rows = [
            row(&CatalogChange::PutDatabase(database), 9),
            row(&CatalogChange::PutTable(table("db", "from_before_the_drop", 4)), 4),
            row(&CatalogChange::PutTable(table("db", "kept", 10)), 10),
            row(&CatalogChange::PutTable(table("gone", "t", 5)), 5),
        ];
        let (catalog, orphans) = load_catalog(&rows).expect("orphans do not fail the load");
        let mut quarantined: Vec<_> =
            orphans.iter().map(|orphan| format!("{}.{}", orphan.database, orphan.name)).collect();
        quarantined.sort();
        assert_eq!(quarantined, ["db.from_before_the_drop", "gone.t"]);
        assert!(catalog.visible_table("db", "kept").is_some());
        assert!(catalog.table("db", "from_before_the_drop").is_none());
    }
}
