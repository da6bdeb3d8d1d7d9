//! The leader's side of the data-node lease, for one term (DESIGN §4; docs/PROTOCOL.md).
//!
//! Heartbeats are handled in memory: no store write per heartbeat. The term's state is a
//! [`Ledger`] under one lock: handling a heartbeat records the contact and chooses the version
//! of the response in one ledger call, and publishing a committed version snapshots every
//! node's stale bound in another. So every response handled after a publication carries the
//! new version, and every earlier grant is covered by the snapshot. This file does the store
//! transactions around the ledger, serializes publications, and encodes what it decides.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use leasehold::v1::{
    self, BarrierChange, DataNodeLeaseStatus, DataNodeStatus, HeartbeatRequest, HeartbeatResponse, MetadataChange,
    MetadataSnapshot,
};
use leasehold_core::buckets::{Handoff, Slot};
use leasehold_core::catalog::{Catalog, CatalogChange, Orphaned};
use leasehold_core::contact::{ContactStatus, NodeKey};
use leasehold_core::ddl::{self, DataTarget};
use leasehold_core::lease_timing::LeaseTimings;
use leasehold_core::ledger::{
    self, Answer, Beat, BroadcastStep, Departure, Inherited, Ledger, Refusal, Refusals, TermStart,
};
use leasehold_core::{Clock, MonoTime};
use leasehold_store::{GuardedTx, Store, StoreError, StoredObject, WriteGuard};
use prost::Message;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::locks::LockTable;
use crate::metrics;

mod buckets;
mod change_tx;
mod error;
mod load;
mod registry;
mod resources;

pub use buckets::{PassReport, PoolView};
pub use change_tx::ChangeTx;
pub use error::MetadataError;
pub(crate) use load::load_catalog;
pub use registry::{MAX_REGISTRATION_BATCH, Registration};

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
    /// `assign.offline-timeout`: how long a pool member may stay silent and still count.
    pub offline_after: Duration,
    /// `assign.interval`: the longest between two assignment passes.
    pub assign_interval: Duration,
}

/// Whether a heartbeat's answer may carry a snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Carry {
    /// A unary answer: the snapshot itself.
    Snapshot,
    /// A stream's answer: `resync` instead.
    NoSnapshot,
}

/// One node a broadcast still waits for, and what to push to it.
pub type PushTarget = ledger::PushTarget<MetadataChange>;

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
    state: Mutex<Ledger<MetadataChange>>,
    acks: Notify,
    /// How many times `acks` was notified this term: a broadcast that skips judging after its
    /// own answers still learns of acknowledgements that came another way meanwhile.
    ack_events: std::sync::atomic::AtomicU64,
    /// Woken when a data node registers or is put to rest: the assigner runs a pass.
    membership_changed: Notify,
    publications: tokio::sync::Mutex<()>,
    /// Registrations waiting to be written in the next batch (see [`registry`]).
    registrations: registry::RegistrationQueue,
    locks: LockTable,
    /// The catalog's messages at the newest version a resync was answered at, built once per
    /// version and shared: a fleet resyncing after a store restore does not rebuild a large
    /// catalog under the state lock once per agent. (Only publications change the catalog, so
    /// the version names it; bucket ownership also moves between versions as revokes settle,
    /// and is small, so it is read fresh.)
    catalog_snapshot: Mutex<Option<(u64, Arc<Vec<v1::CatalogChange>>)>>,
    /// Set once every procedure an earlier leader left running holds its locks again: until
    /// then a new DDL could take a lock ahead of one of them (see [`Self::accepts_ddl`]).
    resumed: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for MetadataLeader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetadataLeader").field("term", &self.identity.term).finish()
    }
}

impl MetadataLeader {
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
        let floor = self.state().floor();
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

    fn state(&self) -> std::sync::MutexGuard<'_, Ledger<MetadataChange>> {
        self.state.lock().expect("data-node state poisoned")
    }

    /// Handles a heartbeat: grants a lease (records the contact) and answers with the
    /// changes the agent lacks, or a snapshot. `hold_until` (the instant from which this
    /// leader may grant nothing, `None` without a coordinator lease) is read right before the
    /// grant, under the lock.
    pub fn heartbeat(
        &self,
        request: &HeartbeatRequest,
        hold_until: impl Fn() -> Option<MonoTime>,
    ) -> Result<HeartbeatResponse, MetadataError> {
        self.heartbeat_carrying(request, hold_until, Carry::Snapshot)
    }

    /// [`Self::heartbeat`], answering `resync` instead of a snapshot with [`Carry::NoSnapshot`]
    /// (a KeepAlive stream: a large snapshot must not hold up the renewals queued behind it).
    pub fn heartbeat_carrying(
        &self,
        request: &HeartbeatRequest,
        hold_until: impl Fn() -> Option<MonoTime>,
        carry: Carry,
    ) -> Result<HeartbeatResponse, MetadataError> {
        let key = NodeKey::new(&request.node_id, &request.incarnation);
        let refused = request.refused.as_ref().filter(|refused| refused.store_epoch == self.store_epoch);
        let beat = Beat {
            key: &key,
            applied: request.applied_version,
            store_epoch: &request.store_epoch,
            needs_resync: request.needs_resync,
            refused: refused.map(|refused| refused.version),
        };
        let mut state = self.state();
        // A state given up grants nothing: checked under the lock `invalidate` takes.
        let hold_until = if self.state_token.is_cancelled() { Some(MonoTime::ZERO) } else { hold_until() };
        let grant = state.heartbeat(beat, hold_until, self.clock.now()).map_err(|refusal| match refusal {
            Refusal::Retired => MetadataError::IncarnationRetired {
                node_id: request.node_id.clone(),
                incarnation: request.incarnation.clone(),
            },
            Refusal::NotRegistered => MetadataError::NotRegistered {
                node_id: request.node_id.clone(),
                incarnation: request.incarnation.clone(),
            },
            Refusal::NotLeading => MetadataError::TermEnded { term: self.identity.term },
        })?;
        if grant.wakes_broadcasts {
            if let Some(refused) = refused {
                let reason: String = refused.reason.chars().take(1024).collect();
                warn!(node = %key, version = refused.version, %reason, "a data node reports that its host refused a change");
            }
            self.acknowledgements_moved();
        }
        let mut response = HeartbeatResponse {
            term: self.identity.term,
            leader_node_id: self.identity.node_id.clone(),
            leader_address: self.identity.address.clone(),
            fence_ms: self.settings.timings.fence.as_millis() as u64,
            store_epoch: self.store_epoch.clone(),
            version: grant.version,
            changes: Vec::new(),
            snapshot: None,
            resync: false,
        };
        match grant.answer {
            Answer::Changes(changes) => response.changes = changes,
            Answer::Snapshot if carry == Carry::NoSnapshot => response.resync = true,
            Answer::Snapshot => {
                let catalog = self.catalog_snapshot_at(&state, grant.version);
                let buckets = buckets::snapshot(&state);
                drop(state);
                // The copy into the answer is made outside the state lock.
                response.snapshot = Some(MetadataSnapshot {
                    store_epoch: self.store_epoch.clone(),
                    version: grant.version,
                    catalog: Vec::clone(&catalog),
                    buckets,
                });
            }
        }
        Ok(response)
    }

    /// Whether `request` asks for (or needs) the whole catalog: its cache is of another store
    /// epoch, or it asks to resync. (An agent too far behind the retained changes gets one too,
    /// which only the ledger can tell.)
    pub fn asks_for_snapshot(&self, request: &HeartbeatRequest) -> bool {
        !ledger::answers_with_changes(&request.store_epoch, request.needs_resync, &self.store_epoch)
    }

    /// The catalog's messages at `version`, the newest, which `state` holds: the shared ones
    /// when they were built at that version, else built now (once per version) and kept.
    fn catalog_snapshot_at(&self, state: &Ledger<MetadataChange>, version: u64) -> Arc<Vec<v1::CatalogChange>> {
        let mut kept = self.catalog_snapshot.lock().expect("snapshot cache poisoned");
        if let Some((_, catalog)) = kept.as_ref().filter(|(built_at, _)| *built_at == version) {
            return catalog.clone();
        }
        let catalog = Arc::new(leasehold::catalog::snapshot_messages(state.catalog()));
        *kept = Some((version, catalog.clone()));
        catalog
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
        self.state().version()
    }

    /// Reads the catalog, with the version it is at (read together, under one lock).
    pub fn with_catalog<R>(&self, read: impl FnOnce(&Catalog) -> R) -> (R, u64) {
        let state = self.state();
        (read(state.catalog()), state.version())
    }

    /// The changes after `since` up to the newest version, with that version, if they are all
    /// still retained (read together, under one lock).
    pub fn changes_since(&self, since: u64) -> Option<(Vec<MetadataChange>, u64)> {
        self.state().changes_since(since)
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

    /// One round of the broadcast of `version`, decided now (returned with it): see
    /// [`Ledger::broadcast_step`].
    pub fn broadcast_step(
        &self,
        version: u64,
        refusals: Refusals<'_>,
        pushes_due: Option<&BTreeSet<NodeKey>>,
    ) -> (BroadcastStep<MetadataChange>, MonoTime) {
        let now = self.clock.now();
        (self.state().broadcast_step(version, refusals, pushes_due, now), now)
    }

    /// Records that `key` holds `version`; whether that moved its acknowledgement (and so
    /// counted one of [`Self::ack_events`]).
    pub fn record_ack(&self, key: &NodeKey, version: u64) -> bool {
        let moved = self.state().record_ack(key, version);
        if moved {
            self.acknowledgements_moved();
        }
        moved
    }

    /// Counts the event, then wakes every waiter: a broadcast that reads the count after it
    /// armed [`Self::acknowledged`] either sees the event counted or is woken by it.
    fn acknowledgements_moved(&self) {
        self.ack_events.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        self.acks.notify_waiters();
    }

    /// How many times acknowledgements moved (or a heartbeat reported a refusal) this term.
    pub fn ack_events(&self) -> u64 {
        self.ack_events.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Waits until an acknowledgement arrives (or returns at once if one arrived since the
    /// returned future was created).
    pub fn acknowledged(&self) -> tokio::sync::futures::Notified<'_> {
        self.acks.notified()
    }

    /// Completes at the next registration or retirement of a data node (or at once, if one
    /// happened since the last wait).
    pub fn membership_changed(&self) -> tokio::sync::futures::Notified<'_> {
        self.membership_changed.notified()
    }

    /// A broadcast of `version` begins: its publication snapshot stays until the matching
    /// [`MetadataLeader::forget`] (one is taken now for a version this leader did not publish).
    pub fn watch(&self, version: u64) {
        let now = self.clock.now();
        self.state().watch(version, now);
    }

    /// A broadcast of `version` is decided.
    pub fn forget(&self, version: u64) {
        self.state().forget(version);
    }

    /// The leader's clock.
    pub fn now(&self) -> MonoTime {
        self.clock.now()
    }

    /// Every node with its lease status, for `ListDataNodes`.
    pub fn statuses(&self) -> (Vec<DataNodeStatus>, u64) {
        let now = self.clock.now();
        let (statuses, version) = {
            let state = self.state();
            let statuses: Vec<_> = state
                .statuses(now)
                .into_iter()
                .map(|node| {
                    let resource = state.resource_of(&node.key).unwrap_or_default().to_owned();
                    (node, resource)
                })
                .collect();
            (statuses, state.version())
        };
        let nodes = statuses
            .into_iter()
            .map(|(node, resource_id)| {
                let (status, silent) = match node.contact {
                    ContactStatus::Live { silent_for } => (DataNodeLeaseStatus::Live, Some(silent_for)),
                    ContactStatus::FencedByNow { silent_for } => (DataNodeLeaseStatus::FencedByNow, Some(silent_for)),
                    ContactStatus::Unknown => (DataNodeLeaseStatus::Unknown, None),
                    ContactStatus::NeverGranted => (DataNodeLeaseStatus::NeverGranted, None),
                };
                DataNodeStatus {
                    node_id: node.key.node_id,
                    incarnation: node.key.incarnation,
                    address: node.address,
                    registered: node.registered,
                    status: status as i32,
                    silent_ms: silent.map_or(-1, |silent| silent.as_millis() as i64),
                    acked_version: node.acked,
                    departure: node.departure.map(Departure::as_str).unwrap_or_default().to_owned(),
                    resource_id,
                }
            })
            .collect();
        (nodes, version)
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
