//! The leader's data-node state for one term, as a plain value (DESIGN §4; docs/PROTOCOL.md).
//!
//! The ledger holds what the lease protocol decides on: the contact tracker, the newest
//! published version with the changes retained up to it, the catalog at that version, the
//! registry with its tombstones and retired incarnations, and every node's acknowledgement.
//! Its methods take `now` and return decisions; the coordinator holds it under one lock, does
//! the store writes around it and encodes what it returns.
//!
//! The step the promise rests on is [`Ledger::heartbeat`]: it checks that the leader may
//! still grant, records the contact and chooses the answer's version in one call, and
//! [`Ledger::publish`] snapshots every node's stale bound in one call. Under one lock, every
//! answer chosen after a publication carries the new version and every earlier grant is in
//! the snapshot.
//!
//! Generic over the change payload `C`, so that core never sees the wire format. Reads
//! (`&self`) never change anything.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use crate::buckets::Slot;
use crate::catalog::{Catalog, CatalogChange, Orphaned};
use crate::clock::MonoTime;
use crate::contact::{ContactStatus, ContactTracker, NodeKey, Settlement};
use crate::verdict::{Verdict, decide};

mod pools;
mod resources;

pub use pools::Pool;

/// What a new term starts from, as the store holds it.
#[derive(Debug, Clone)]
pub struct Inherited<C> {
    /// The newest committed version.
    pub version: u64,
    /// Retained changes by version, oldest first; only the run that ends at `version` with
    /// no holes is kept.
    pub changes: Vec<(u64, C)>,
    /// The catalog at `version`.
    pub catalog: Catalog,
    /// Every registered incarnation with its address: each may hold an earlier leader's lease.
    pub registered: Vec<(NodeKey, String)>,
    /// Incarnations put to rest that still have a tombstone row: they count until fenced.
    pub tombstones: Vec<NodeKey>,
    /// Incarnations deregistered or evicted whose node has not registered since.
    pub retired: Vec<NodeKey>,
    /// The bucket pools each registered incarnation joined.
    pub memberships: Vec<(NodeKey, Vec<String>)>,
    /// Every bucket pool, with its bucket count and whether it is being deleted.
    pub pools: Vec<(String, u32, bool)>,
    /// The stored ownership of buckets: pool, bucket, slot.
    pub assignments: Vec<(String, u32, Slot)>,
    /// Tombstones whose incarnation gave every bucket up as it deregistered.
    pub drained: Vec<NodeKey>,
    /// Tombstones whose incarnation deregistered (it left; the others were lost).
    pub left: Vec<NodeKey>,
    /// The resource each registered incarnation runs as, if any.
    pub resources: Vec<(NodeKey, String)>,
}

impl<C> Default for Inherited<C> {
    fn default() -> Self {
        Self {
            version: 0,
            changes: Vec::new(),
            catalog: Catalog::default(),
            registered: Vec::new(),
            tombstones: Vec::new(),
            retired: Vec::new(),
            memberships: Vec::new(),
            pools: Vec::new(),
            assignments: Vec::new(),
            drained: Vec::new(),
            left: Vec::new(),
            resources: Vec::new(),
        }
    }
}

/// The term's fixed terms: when it began and what it grants.
#[derive(Debug, Clone)]
pub struct TermStart {
    /// When the leader was promoted (or its state loaded again), on its clock.
    pub promoted_at: MonoTime,
    /// How long earlier leaders may have kept granting leases after `promoted_at`.
    pub earlier_grants: Duration,
    /// `T_proceed`: how long after a node's stale bound it has provably fenced.
    pub proceed_after: Duration,
    /// How many changes to retain for incremental answers and pushes.
    pub retention: u64,
    /// The store epoch versions are issued under.
    pub store_epoch: String,
    /// `assign.offline-timeout`: a pool member silent this long is offline (never below
    /// `T_proceed`).
    pub offline_after: Duration,
}

/// A registered incarnation's address.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Registered {
    incarnation: String,
    address: String,
}

/// What removing a data node by hand does (see [`Ledger::removal`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Removal {
    /// Nothing is registered under that id.
    Unknown,
    /// It may still hold a lease this leader granted: it is live.
    Live {
        /// The registered incarnation.
        key: NodeKey,
        /// Since its last heartbeat.
        silent_for: Duration,
    },
    /// Retire this incarnation.
    Retire(NodeKey),
}

/// One heartbeat, as the ledger needs it.
#[derive(Debug, Clone, Copy)]
pub struct Beat<'a> {
    /// Who sends it.
    pub key: &'a NodeKey,
    /// The version its cache holds.
    pub applied: u64,
    /// The store epoch its cache came from.
    pub store_epoch: &'a str,
    /// Whether it asks for a snapshot.
    pub needs_resync: bool,
    /// The version of a change its host refused (in the leader's store epoch), reported until
    /// it renews: a refusal the leader could not hear as a push's answer (it arrived in a
    /// heartbeat's answer or a snapshot, or the push's answer was lost).
    pub refused: Option<u64>,
}

/// Whether a heartbeat from a cache of `agent_epoch` that does (not) ask to resync is answered
/// with the changes it lacks (true) or with a snapshot, in a store of `store_epoch`.
pub fn answers_with_changes(agent_epoch: &str, needs_resync: bool, store_epoch: &str) -> bool {
    agent_epoch == store_epoch && !needs_resync
}

/// A granted heartbeat: the lease was recorded, and this is the answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant<C> {
    /// The version the answer carries: the newest published.
    pub version: u64,
    /// What brings the agent to `version`.
    pub answer: Answer<C>,
    /// Whether a broadcast waiting on the node may decide now: the heartbeat acknowledged a
    /// version above what the node had acknowledged, or reported a refusal not heard before.
    pub wakes_broadcasts: bool,
}

/// What brings an agent to the answer's version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer<C> {
    /// The changes after the version it holds, oldest first (none when it is up to date).
    Changes(Vec<C>),
    /// The whole catalog ([`Ledger::catalog`]): its epoch differs, it asked for one, or the
    /// changes it lacks are no longer retained.
    Snapshot,
}

/// Why a heartbeat or a registration was refused; nothing was recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The incarnation was put to rest (deregistered, evicted or replaced); it starts anew.
    Retired,
    /// The incarnation is not registered with this leader.
    NotRegistered,
    /// The leader's hold ended (or the state was given up): it grants nothing more.
    NotLeading,
}

/// One node a broadcast still waits for, and what to push to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushTarget<C> {
    /// The node's incarnation.
    pub key: NodeKey,
    /// Its address.
    pub address: String,
    /// The changes it lacks, oldest first (empty when it is too far behind for a push: it
    /// resyncs through its heartbeat).
    pub changes: Vec<C>,
}

/// Which refusals a broadcast's verdict counts.
#[derive(Debug, Clone, Copy)]
pub enum Refusals<'a> {
    /// A reversible step: a refusal fails it. The nodes given refused its push; every
    /// registered node whose heartbeat reports refusing the version counts as well.
    Counted(&'a BTreeSet<NodeKey>),
    /// A step that only rolls forward: a node that cannot apply it cannot renew either, and
    /// is waited out until it has provably fenced.
    Ignored,
}

/// One round of a broadcast: the verdict, and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BroadcastStep<C> {
    /// The verdict on the version.
    pub verdict: Verdict,
    /// On `Proceed`: the nodes that acknowledged the version.
    pub acknowledged: Vec<NodeKey>,
    /// On `Proceed`: the nodes waited out until they had provably fenced.
    pub fenced: Vec<NodeKey>,
    /// On `Wait`, when pushes are due: the pending nodes not already being pushed to.
    pub targets: Vec<PushTarget<C>>,
}

/// How one tracked incarnation looks now, for `ListDataNodes`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeStatus {
    /// The incarnation.
    pub key: NodeKey,
    /// The address its node id is registered at now (empty when none is).
    pub address: String,
    /// Registered, as opposed to a tombstone that still counts.
    pub registered: bool,
    /// How a tombstone's incarnation went; `None` while registered.
    pub departure: Option<Departure>,
    /// Its lease as the leader sees it.
    pub contact: ContactStatus,
    /// The highest version it acknowledged.
    pub acked: u64,
}

/// How an incarnation was put to rest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Departure {
    /// It deregistered.
    Left,
    /// It was evicted, replaced by a new incarnation, or removed by an operator.
    Lost,
}

impl Departure {
    /// The name listings show.
    pub fn as_str(self) -> &'static str {
        match self {
            Departure::Left => "left",
            Departure::Lost => "lost",
        }
    }
}

/// The leader's data-node state for one term.
#[derive(Debug, Clone)]
pub struct Ledger<C> {
    tracker: ContactTracker,
    proceed_after: Duration,
    retention: u64,
    store_epoch: String,
    version: u64,
    /// Consecutive changes ending at `version`.
    changes: VecDeque<C>,
    catalog: Catalog,
    registry: BTreeMap<String, Registered>,
    /// Tombstones with a row in the store, deleted once the tracker has let them go.
    stored_tombstones: BTreeSet<NodeKey>,
    /// Deregistered and evicted incarnations, remembered (like their store rows) until their
    /// node registers again: they are never taken back.
    retired: BTreeSet<NodeKey>,
    /// The version each node's latest heartbeat reports its host refused.
    refusals: BTreeMap<NodeKey, u64>,
    /// Nodes whose latest heartbeat asked for a snapshot (or came from another epoch).
    resyncing: BTreeSet<NodeKey>,
    /// The bucket pools of each registered incarnation.
    memberships: BTreeMap<NodeKey, Vec<String>>,
    /// Bucket pools by name.
    pools: BTreeMap<String, Pool>,
    /// The resource each registered incarnation runs as (the resource keeper's link).
    resources: BTreeMap<NodeKey, String>,
    /// Recent versions with when they were published: the oldest entry is the newest
    /// version published at least `offline_after` ago.
    published_at: VecDeque<(u64, MonoTime)>,
    offline_after: Duration,
    /// When the term began: an inherited member not heard from yet counts as live for one
    /// offline timeout from here, as if heard at the promotion.
    promoted_at: MonoTime,
    /// When each unsettled revoke of (pool, bucket) was recorded: a handoff's duration is
    /// measured from there to the grant that ends it.
    revoked_at: BTreeMap<(String, u32), MonoTime>,
    /// Incarnations that deregistered saying they released every bucket: their revokes are
    /// settled (for buckets only; their caches still count until they have fenced).
    drained: BTreeSet<NodeKey>,
    /// Tombstones whose incarnation deregistered.
    left: BTreeSet<NodeKey>,
    /// Versions of unsettled revokes, with how many buckets each still holds: their
    /// publication snapshots are watched until the last of them is released.
    revoke_watches: BTreeMap<u64, usize>,
}

/// The keys of `node_id` at the start of `from`, a range of keys that begins at
/// [`NodeKey::first_of`] the node.
fn incarnations_of<'a>(from: impl Iterator<Item = &'a NodeKey>, node_id: &str) -> Vec<NodeKey> {
    from.take_while(|key| key.node_id == node_id).cloned().collect()
}

impl<C: Clone> Ledger<C> {
    /// The state of a term that begins at `start` from what the store holds.
    pub fn new(start: TermStart, inherited: Inherited<C>) -> Self {
        let mut tracker = ContactTracker::new(start.promoted_at, start.earlier_grants);
        let mut registry = BTreeMap::new();
        for (key, address) in inherited.registered {
            tracker.inherit(key.clone());
            registry.insert(key.node_id, Registered { incarnation: key.incarnation, address });
        }
        let mut stored_tombstones = BTreeSet::new();
        for key in inherited.tombstones {
            if registry.get(&key.node_id).is_none_or(|registered| registered.incarnation != key.incarnation) {
                tracker.inherit_tombstone(key.clone());
            }
            stored_tombstones.insert(key);
        }
        let version = inherited.version;
        let mut changes: VecDeque<(u64, C)> = inherited.changes.into_iter().collect();
        // Keep only the run that ends at `version` with no holes.
        while changes.front().is_some_and(|(front, _)| front + changes.len() as u64 != version + 1) {
            changes.pop_front();
        }
        let mut ledger = Self {
            tracker,
            proceed_after: start.proceed_after,
            retention: start.retention,
            store_epoch: start.store_epoch,
            version,
            changes: changes.into_iter().map(|(_, change)| change).collect(),
            catalog: inherited.catalog,
            registry,
            stored_tombstones,
            retired: inherited.retired.into_iter().collect(),
            refusals: BTreeMap::new(),
            resyncing: BTreeSet::new(),
            memberships: inherited.memberships.into_iter().collect(),
            pools: BTreeMap::new(),
            resources: inherited.resources.into_iter().collect(),
            published_at: VecDeque::from([(version, start.promoted_at)]),
            offline_after: start.offline_after.max(start.proceed_after),
            promoted_at: start.promoted_at,
            drained: inherited.drained.into_iter().collect(),
            left: inherited.left.into_iter().collect(),
            revoked_at: BTreeMap::new(),
            revoke_watches: BTreeMap::new(),
        };
        ledger.inherit_pools(inherited.pools, inherited.assignments, start.promoted_at);
        ledger
    }

    /// Handles a heartbeat at `now`: grants a lease (records the contact), counts what the
    /// agent acknowledged, and chooses the answer. `hold_until` is the instant from which
    /// this leader may grant nothing (its local hold on the coordinator lease); `None` for a
    /// leader without a coordinator lease.
    pub fn heartbeat(
        &mut self,
        beat: Beat<'_>,
        hold_until: Option<MonoTime>,
        now: MonoTime,
    ) -> Result<Grant<C>, Refusal> {
        let current = answers_with_changes(beat.store_epoch, beat.needs_resync, &self.store_epoch);
        let leading = hold_until.is_none_or(|until| now < until);
        // One lookup on the hot path: a registered incarnation is never retired, so the
        // refusals are told apart only when the beat is refused.
        let acked_before = if leading {
            let ack = current.then(|| beat.applied.min(self.version));
            self.tracker.record_beat(beat.key, now, ack)
        } else {
            None
        };
        debug_assert!(acked_before.is_none() || !self.is_retired(beat.key), "a registered incarnation is retired");
        let Some(acked_before) = acked_before else {
            return Err(if self.is_retired(beat.key) {
                Refusal::Retired
            } else if !self.tracker.is_registered(beat.key) {
                Refusal::NotRegistered
            } else {
                Refusal::NotLeading
            });
        };
        // Both sets are empty in a settled cluster: no lookup then.
        if current {
            if !self.resyncing.is_empty() {
                self.resyncing.remove(beat.key);
            }
        } else {
            self.resyncing.insert(beat.key.clone());
        }
        let acknowledged_more = current && beat.applied.min(self.version) > acked_before;
        let refused_anew = match beat.refused {
            Some(version) => self.refusals.insert(beat.key.clone(), version) != Some(version),
            None => {
                if !self.refusals.is_empty() {
                    self.refusals.remove(beat.key);
                }
                false
            }
        };
        let answer = current
            .then(|| self.changes_between(beat.applied, self.version))
            .flatten()
            .map_or(Answer::Snapshot, Answer::Changes);
        Ok(Grant { version: self.version, answer, wakes_broadcasts: acknowledged_more || refused_anew })
    }

    /// Records that `key` holds `version` (never more than was published); whether that is
    /// more than it had acknowledged.
    pub fn record_ack(&mut self, key: &NodeKey, version: u64) -> bool {
        let version = version.min(self.version);
        let before = self.tracker.acked(key);
        self.tracker.record_ack(key, version);
        version > before
    }

    /// Publishes the change committed at `version` (the next one): every later answer carries
    /// it, and every node's stale bound is snapshotted for its broadcast. A catalog change is
    /// applied to the catalog; one the catalog does not admit is refused with nothing changed.
    pub fn publish(
        &mut self,
        version: u64,
        change: C,
        catalog: Option<&CatalogChange>,
        now: MonoTime,
    ) -> Result<(), Orphaned> {
        if let Some(catalog_change) = catalog {
            self.catalog.apply(catalog_change)?;
        }
        self.version = version;
        self.published_at.push_back((version, now));
        while self.published_at.get(1).is_some_and(|(_, at)| *at + self.offline_after <= now) {
            self.published_at.pop_front();
        }
        self.changes.push_back(change);
        while self.changes.len() as u64 > self.retention {
            self.changes.pop_front();
        }
        self.tracker.collect_tombstones(now, self.proceed_after);
        self.tracker.publish(version);
        Ok(())
    }

    /// A broadcast of `version` begins: its publication snapshot stays until the matching
    /// [`Ledger::forget`] (one is taken at `now` for a version this leader did not publish).
    pub fn watch(&mut self, version: u64, now: MonoTime) {
        self.tracker.collect_tombstones(now, self.proceed_after);
        self.tracker.watch(version);
    }

    /// A broadcast of `version` is decided.
    pub fn forget(&mut self, version: u64) {
        self.tracker.forget(version);
    }

    /// One round of the broadcast of `version` at `now`: the verdict given the `refusals` it
    /// counts, and when `pushes_due` says which nodes are being pushed to already, what to
    /// push to each other pending node.
    pub fn broadcast_step(
        &self,
        version: u64,
        refusals: Refusals<'_>,
        pushes_due: Option<&BTreeSet<NodeKey>>,
        now: MonoTime,
    ) -> BroadcastStep<C> {
        let settlements = self.tracker.settlements(version);
        let refused = match refusals {
            Refusals::Counted(pushed) => {
                let reported = self
                    .refusals
                    .iter()
                    .filter(|(key, refused)| **refused == version && self.tracker.is_registered(key))
                    .map(|(key, _)| key.clone());
                pushed.iter().cloned().chain(reported).collect()
            }
            Refusals::Ignored => BTreeSet::new(),
        };
        let verdict = decide(version, &settlements, &refused, now, self.proceed_after);
        let mut step = BroadcastStep { verdict, acknowledged: Vec::new(), fenced: Vec::new(), targets: Vec::new() };
        match &step.verdict {
            Verdict::Proceed => {
                let (acknowledged, fenced): (Vec<&Settlement>, Vec<&Settlement>) = settlements
                    .iter()
                    .filter(|settlement| settlement.acked >= version || settlement.stale_bound.is_some())
                    .partition(|settlement| settlement.acked >= version);
                step.acknowledged = acknowledged.into_iter().map(|settlement| settlement.key.clone()).collect();
                step.fenced = fenced.into_iter().map(|settlement| settlement.key.clone()).collect();
            }
            Verdict::Wait { pending, .. } => {
                if let Some(in_flight) = pushes_due {
                    let acked: BTreeMap<&NodeKey, u64> =
                        settlements.iter().map(|settlement| (&settlement.key, settlement.acked)).collect();
                    step.targets = pending
                        .iter()
                        .filter(|key| !in_flight.contains(*key))
                        .filter_map(|key| self.push_target(key, acked.get(key).copied().unwrap_or(0), version))
                        .collect();
                }
            }
            Verdict::Fail { .. } => {}
        }
        step
    }

    /// What to push to `key` so that it reaches `version`, given the version it acknowledged;
    /// `None` when that incarnation is not registered any more.
    fn push_target(&self, key: &NodeKey, acked: u64, version: u64) -> Option<PushTarget<C>> {
        let registered =
            self.registry.get(&key.node_id).filter(|registered| registered.incarnation == key.incarnation)?;
        let changes = self.changes_between(acked, version).unwrap_or_default();
        Some(PushTarget { key: key.clone(), address: registered.address.clone(), changes })
    }

    /// Whether `node_id` may register at `incarnation`; the incarnation it replaces, if any,
    /// which becomes a tombstone in the same store write.
    pub fn check_registration(&self, node_id: &str, incarnation: &str) -> Result<Option<String>, Refusal> {
        if self.is_retired(&NodeKey::new(node_id, incarnation)) {
            return Err(Refusal::Retired);
        }
        Ok(self
            .registry
            .get(node_id)
            .map(|registered| registered.incarnation.clone())
            .filter(|earlier| earlier != incarnation))
    }

    /// `node_id` registered at `incarnation` and `address` at `now` (the store write done),
    /// with `replaced` made a tombstone; returns the incarnation registered before, if it was
    /// another one.
    pub fn register(
        &mut self,
        node_id: &str,
        incarnation: &str,
        address: &str,
        replaced: Option<String>,
        now: MonoTime,
    ) -> Option<String> {
        if let Some(replaced) = replaced {
            self.stored_tombstones.insert(NodeKey::new(node_id, replaced));
        }
        // The store forgot the node's retired incarnation with this registration.
        // Keys order by node id first, so a node's incarnations are one range: a cold start of
        // N nodes costs N·log N here, not N².
        let first = NodeKey::first_of(node_id);
        for retired in incarnations_of(self.retired.range(&first..), node_id) {
            self.retired.remove(&retired);
        }
        let before = self
            .registry
            .insert(node_id.to_owned(), Registered { incarnation: incarnation.to_owned(), address: address.to_owned() })
            .filter(|before| before.incarnation != incarnation);
        self.tracker.register(NodeKey::new(node_id, incarnation), now);
        let others = |keys: Vec<NodeKey>| keys.into_iter().filter(|key| key.incarnation != incarnation);
        for other in others(incarnations_of(self.memberships.range(&first..).map(|(key, _)| key), node_id)) {
            self.memberships.remove(&other);
        }
        for other in others(incarnations_of(self.resources.range(&first..).map(|(key, _)| key), node_id)) {
            self.resources.remove(&other);
        }
        before.map(|before| before.incarnation)
    }

    /// What an operator's removal of `node_id` at `now` does: retire its registered
    /// incarnation, which then counts as a tombstone until it has provably fenced; unless this
    /// leader heard from it too recently to know that it has fenced (it is live: removed, it
    /// would only register again), or nothing is registered under that id.
    pub fn removal(&self, node_id: &str, now: MonoTime) -> Removal {
        let Some(registered) = self.registry.get(node_id) else {
            return Removal::Unknown;
        };
        let key = NodeKey::new(node_id, registered.incarnation.clone());
        match self.tracker.status(&key, now, self.proceed_after) {
            Some(ContactStatus::Live { silent_for }) => Removal::Live { key, silent_for },
            _ => Removal::Retire(key),
        }
    }

    /// `keys` were put to rest at `now`; `removed` are those whose registration the store
    /// write removed (the rest were not registered). Each stays a tombstone until it has
    /// provably fenced, and is never taken back.
    pub fn retire(&mut self, keys: &[NodeKey], removed: &[NodeKey], departure: Departure, now: MonoTime) {
        for key in keys {
            if removed.contains(key) {
                self.registry.remove(&key.node_id);
                self.stored_tombstones.insert(key.clone());
                self.retired.insert(key.clone());
                if departure == Departure::Left {
                    self.left.insert(key.clone());
                }
            }
            self.tracker.deregister(key, now);
            self.refusals.remove(key);
            self.memberships.remove(key);
            self.resources.remove(key);
            self.resyncing.remove(key);
        }
    }

    /// `key` deregistered after its host stopped serving (`released`): it is forgotten at once
    /// rather than kept as a tombstone, its buckets are free, and every broadcast stops
    /// waiting for it. The caller deleted its registration and any tombstone row of it. Its
    /// incarnation stays refused for the rest of the term.
    pub fn release(&mut self, key: &NodeKey) {
        if self.registry.get(&key.node_id).is_some_and(|registered| registered.incarnation == key.incarnation) {
            self.registry.remove(&key.node_id);
        }
        self.stored_tombstones.remove(key);
        self.retired.insert(key.clone());
        self.tracker.release(key);
        self.drained.remove(key);
        self.left.remove(key);
        self.refusals.remove(key);
        self.memberships.remove(key);
        self.resources.remove(key);
        self.resyncing.remove(key);
    }

    /// The registered incarnations silent at `now` for `evict_after`, never less than
    /// `T_proceed` (so each has provably fenced).
    pub fn silent(&self, now: MonoTime, evict_after: Duration) -> Vec<NodeKey> {
        self.tracker.silent_for_at_least(now, evict_after.max(self.proceed_after))
    }

    /// Lets go of tombstones that have provably fenced at `now`; returns the stored ones whose
    /// rows may go ([`Ledger::tombstones_deleted`] once they have).
    pub fn settle_tombstones(&mut self, now: MonoTime) -> Vec<NodeKey> {
        self.tracker.collect_tombstones(now, self.proceed_after);
        let tracked: BTreeSet<&NodeKey> = self.tracker.nodes().map(|(key, _)| key).collect();
        self.drained.retain(|key| tracked.contains(key));
        self.left.retain(|key| tracked.contains(key));
        let counted: BTreeSet<&NodeKey> =
            self.tracker.nodes().filter(|(_, tombstone)| *tombstone).map(|(key, _)| key).collect();
        self.stored_tombstones.iter().filter(|key| !counted.contains(key)).cloned().collect()
    }

    /// The store rows of `keys` were deleted.
    pub fn tombstones_deleted(&mut self, keys: &[NodeKey]) {
        for key in keys {
            self.stored_tombstones.remove(key);
        }
    }

    /// Every incarnation that still counts, with its lease status at `now`. A tombstone that
    /// has provably fenced by `now` is left out.
    pub fn statuses(&self, now: MonoTime) -> Vec<NodeStatus> {
        self.tracker
            .nodes()
            .filter_map(|(key, tombstone)| {
                let contact = self.tracker.status(key, now, self.proceed_after)?;
                let settled = matches!(contact, ContactStatus::FencedByNow { .. } | ContactStatus::NeverGranted);
                if tombstone && settled {
                    return None;
                }
                let address =
                    self.registry.get(&key.node_id).map(|registered| registered.address.clone()).unwrap_or_default();
                let left = self.left.contains(key);
                Some(NodeStatus {
                    key: key.clone(),
                    address,
                    registered: !tombstone,
                    departure: tombstone.then_some(if left { Departure::Left } else { Departure::Lost }),
                    contact,
                    acked: self.tracker.acked(key),
                })
            })
            .collect()
    }

    /// The newest published version.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The catalog at [`Ledger::version`].
    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// The changes after `since` up to the newest version, with that version, if they are all
    /// still retained.
    pub fn changes_since(&self, since: u64) -> Option<(Vec<C>, u64)> {
        Some((self.changes_between(since, self.version)?, self.version))
    }

    /// How many incarnations are registered.
    pub fn registered_count(&self) -> usize {
        self.registry.len()
    }

    /// How many tombstones have a store row.
    pub fn stored_tombstone_count(&self) -> usize {
        self.stored_tombstones.len()
    }

    /// The instant until which earlier leaders may have granted leases.
    pub fn floor(&self) -> MonoTime {
        self.tracker.floor()
    }

    /// `T_proceed`.
    pub fn proceed_after(&self) -> Duration {
        self.proceed_after
    }

    /// Whether `key` was put to rest: a tombstone still counted or still stored, or an
    /// incarnation deregistered or evicted whose node has not registered since.
    fn is_retired(&self, key: &NodeKey) -> bool {
        self.tracker.is_tombstone(key) || self.stored_tombstones.contains(key) || self.retired.contains(key)
    }

    /// The retained changes after `since` up to `upto`, oldest first, or `None` when the
    /// change right after `since` is no longer retained (or `since` is ahead). The log holds
    /// consecutive versions, so the first one is found by its position, not by a scan: this
    /// runs for every heartbeat.
    fn changes_between(&self, since: u64, upto: u64) -> Option<Vec<C>> {
        let oldest = self.version + 1 - self.changes.len() as u64;
        if since > self.version || since.saturating_add(1) < oldest {
            return None;
        }
        let first = (since + 1 - oldest) as usize;
        let last = (upto.min(self.version) + 1).saturating_sub(oldest) as usize;
        Some(self.changes.range(first..last.max(first)).cloned().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PROCEED: Duration = Duration::from_millis(4060);
    const GRANTS: Duration = Duration::from_millis(1020);

    fn at(ms: u64) -> MonoTime {
        MonoTime::from_duration(Duration::from_millis(ms))
    }

    fn key(node: &str, incarnation: &str) -> NodeKey {
        NodeKey::new(node, incarnation)
    }

    fn start(promoted_at: u64, earlier_grants: Duration) -> TermStart {
        TermStart {
            promoted_at: at(promoted_at),
            earlier_grants,
            proceed_after: PROCEED,
            retention: 3,
            store_epoch: "e".into(),
            offline_after: PROCEED,
        }
    }

    /// A fresh term at 0 with nothing inherited, and `nodes` registered at 0.
    fn ledger(nodes: &[&str]) -> Ledger<&'static str> {
        let mut ledger = Ledger::new(start(0, Duration::ZERO), Inherited::default());
        for node in nodes {
            ledger.register(node, "1", &format!("{node}:1"), None, at(0));
        }
        ledger
    }

    fn beat(key: &NodeKey, applied: u64) -> Beat<'_> {
        Beat { key, applied, store_epoch: "e", needs_resync: false, refused: None }
    }

    fn publish(ledger: &mut Ledger<&'static str>, change: &'static str, now: u64) -> u64 {
        let version = ledger.version() + 1;
        ledger.publish(version, change, None, at(now)).unwrap();
        version
    }

    #[test]
    fn a_tombstone_shows_whether_its_incarnation_left_or_was_lost() {
        let mut ledger = ledger(&["a", "b"]);
        let (a, b) = (key("a", "1"), key("b", "1"));
        ledger.heartbeat(beat(&a, 0), None, at(100)).unwrap();
        ledger.heartbeat(beat(&b, 0), None, at(100)).unwrap();
        ledger.retire(std::slice::from_ref(&a), std::slice::from_ref(&a), Departure::Left, at(200));
        ledger.retire(std::slice::from_ref(&b), std::slice::from_ref(&b), Departure::Lost, at(200));
        let departures: Vec<(String, Option<Departure>)> =
            ledger.statuses(at(300)).into_iter().map(|status| (status.key.node_id, status.departure)).collect();
        assert_eq!(departures, [("a".to_owned(), Some(Departure::Left)), ("b".to_owned(), Some(Departure::Lost))]);

        let inherited =
            Inherited { tombstones: vec![a.clone(), b.clone()], left: vec![a.clone()], ..Inherited::default() };
        let successor: Ledger<&'static str> = Ledger::new(start(1000, GRANTS), inherited);
        let departures: Vec<Option<Departure>> =
            successor.statuses(at(1100)).into_iter().map(|status| status.departure).collect();
        assert_eq!(departures, [Some(Departure::Left), Some(Departure::Lost)], "a new leader reads it from the store");
    }

    #[test]
    fn a_released_node_is_forgotten_at_once_and_no_broadcast_waits_for_it() {
        let mut ledger = ledger(&["a", "b"]);
        let (a, b) = (key("a", "1"), key("b", "1"));
        ledger.heartbeat(beat(&a, 0), None, at(100)).unwrap();
        ledger.heartbeat(beat(&b, 0), None, at(100)).unwrap();
        let version = publish(&mut ledger, "v1", 200);
        ledger.watch(version, at(200));
        ledger.heartbeat(beat(&b, 1), None, at(210)).unwrap();
        let waiting = |ledger: &Ledger<&'static str>| -> Vec<NodeKey> {
            ledger.statuses(at(220)).into_iter().map(|status| status.key).collect()
        };
        assert_eq!(waiting(&ledger), [a.clone(), b.clone()]);
        let before = ledger.tracker.settlements(version);
        assert!(before.iter().any(|settlement| settlement.key == a), "a counts for v1 until released");

        ledger.release(&a);
        assert_eq!(waiting(&ledger), std::slice::from_ref(&b), "no tombstone is left");
        assert!(ledger.tracker.settlements(version).iter().all(|settlement| settlement.key != a));
        assert_eq!(ledger.check_registration("a", "1"), Err(Refusal::Retired), "the incarnation does not come back");
        assert_eq!(ledger.settle_tombstones(at(220)), Vec::<NodeKey>::new(), "no stored tombstone to delete");
    }

    #[test]
    fn a_data_node_is_removed_by_hand_only_once_it_cannot_hold_a_lease_from_here() {
        let mut ledger = ledger(&["a", "never"]);
        let a = key("a", "1");
        ledger.heartbeat(beat(&a, 0), None, at(100)).unwrap();
        assert_eq!(
            ledger.removal("a", at(200)),
            Removal::Live { key: a.clone(), silent_for: Duration::from_millis(100) }
        );
        assert_eq!(ledger.removal("a", at(100) + PROCEED), Removal::Retire(a.clone()), "provably fenced");
        assert_eq!(ledger.removal("never", at(200)), Removal::Retire(key("never", "1")), "never granted a lease");
        assert_eq!(ledger.removal("zzz", at(200)), Removal::Unknown);
        ledger.retire(std::slice::from_ref(&a), std::slice::from_ref(&a), Departure::Lost, at(100) + PROCEED);
        assert_eq!(ledger.removal("a", at(100) + PROCEED), Removal::Unknown, "removed: only its tombstone is left");
    }

    #[test]
    fn a_heartbeat_is_answered_with_the_changes_after_what_the_agent_holds() {
        let mut ledger = ledger(&["a"]);
        publish(&mut ledger, "v1", 10);
        publish(&mut ledger, "v2", 20);
        let grant = ledger.heartbeat(beat(&key("a", "1"), 1), Some(at(1000)), at(30));
        assert_eq!(grant, Ok(Grant { version: 2, answer: Answer::Changes(vec!["v2"]), wakes_broadcasts: true }));
    }

    #[test]
    fn an_agent_up_to_date_gets_no_changes_and_acknowledges_nothing_new() {
        let mut ledger = ledger(&["a"]);
        publish(&mut ledger, "v1", 10);
        ledger.heartbeat(beat(&key("a", "1"), 1), None, at(20)).unwrap();
        let grant = ledger.heartbeat(beat(&key("a", "1"), 1), None, at(30));
        assert_eq!(grant, Ok(Grant { version: 1, answer: Answer::Changes(vec![]), wakes_broadcasts: false }));
    }

    #[test]
    fn an_agent_behind_the_retained_changes_gets_a_snapshot() {
        let mut ledger = ledger(&["a"]);
        for change in ["v1", "v2", "v3", "v4"] {
            publish(&mut ledger, change, 10);
        }
        assert_eq!(ledger.changes_since(0), None, "three are retained");
        let grant = ledger.heartbeat(beat(&key("a", "1"), 0), None, at(20)).unwrap();
        assert_eq!(grant.answer, Answer::Snapshot);
        assert_eq!(ledger.changes_since(1), Some((vec!["v2", "v3", "v4"], 4)));
    }

    #[test]
    fn a_resync_or_another_store_epoch_gets_a_snapshot_and_counts_no_acknowledgement() {
        let mut ledger = ledger(&["a"]);
        publish(&mut ledger, "v1", 10);
        let a = key("a", "1");
        let resync = Beat { needs_resync: true, ..beat(&a, 1) };
        assert_eq!(
            ledger.heartbeat(resync, None, at(20)),
            Ok(Grant { version: 1, answer: Answer::Snapshot, wakes_broadcasts: false })
        );
        let other_epoch = Beat { store_epoch: "other", ..beat(&a, 1) };
        assert_eq!(ledger.heartbeat(other_epoch, None, at(30)).unwrap().answer, Answer::Snapshot);
        assert_eq!(ledger.statuses(at(30))[0].acked, 0);
    }

    #[test]
    fn a_heartbeat_at_or_past_the_hold_is_refused_and_records_no_contact() {
        let mut ledger = ledger(&["a"]);
        let a = key("a", "1");
        assert_eq!(ledger.heartbeat(beat(&a, 0), Some(at(500)), at(500)), Err(Refusal::NotLeading));
        assert_eq!(ledger.statuses(at(600))[0].contact, ContactStatus::NeverGranted, "no lease was granted");
        assert!(ledger.heartbeat(beat(&a, 0), Some(at(501)), at(500)).is_ok());
    }

    #[test]
    fn an_unregistered_incarnation_is_refused_before_the_hold_is_looked_at() {
        let mut ledger = ledger(&["a"]);
        assert_eq!(ledger.heartbeat(beat(&key("a", "2"), 0), Some(at(0)), at(10)), Err(Refusal::NotRegistered));
    }

    #[test]
    fn an_acknowledgement_never_counts_past_the_published_version() {
        let mut ledger = ledger(&["a"]);
        publish(&mut ledger, "v1", 10);
        ledger.heartbeat(beat(&key("a", "1"), 9), None, at(20)).unwrap();
        assert_eq!(ledger.statuses(at(20))[0].acked, 1);
        assert!(!ledger.record_ack(&key("a", "1"), 1), "nothing new");
    }

    #[test]
    fn a_broadcast_waits_for_a_node_heard_before_the_publication_and_pushes_it_the_changes() {
        let mut ledger = ledger(&["a", "b"]);
        ledger.heartbeat(beat(&key("a", "1"), 0), None, at(100)).unwrap();
        ledger.heartbeat(beat(&key("b", "1"), 0), None, at(100)).unwrap();
        let version = publish(&mut ledger, "v1", 200);
        ledger.watch(version, at(200));
        ledger.heartbeat(beat(&key("a", "1"), 1), None, at(300)).unwrap();
        let step = ledger.broadcast_step(version, Refusals::Ignored, Some(&BTreeSet::new()), at(300));
        assert_eq!(
            step,
            BroadcastStep {
                verdict: Verdict::Wait { pending: vec![key("b", "1")], next_settlement: Some(at(100) + PROCEED) },
                acknowledged: vec![],
                fenced: vec![],
                targets: vec![PushTarget { key: key("b", "1"), address: "b:1".into(), changes: vec!["v1"] }],
            }
        );
    }

    #[test]
    fn no_push_is_planned_when_none_is_due_or_the_node_is_being_pushed_to() {
        let mut ledger = ledger(&["b"]);
        ledger.heartbeat(beat(&key("b", "1"), 0), None, at(100)).unwrap();
        let version = publish(&mut ledger, "v1", 200);
        assert!(ledger.broadcast_step(version, Refusals::Ignored, None, at(300)).targets.is_empty());
        let in_flight = BTreeSet::from([key("b", "1")]);
        assert!(ledger.broadcast_step(version, Refusals::Ignored, Some(&in_flight), at(300)).targets.is_empty());
    }

    #[test]
    fn a_broadcast_proceeds_naming_who_acknowledged_and_who_was_waited_out() {
        let mut ledger = ledger(&["a", "b", "c"]);
        ledger.heartbeat(beat(&key("a", "1"), 0), None, at(100)).unwrap();
        ledger.heartbeat(beat(&key("b", "1"), 0), None, at(100)).unwrap();
        let version = publish(&mut ledger, "v1", 200);
        ledger.watch(version, at(200));
        ledger.record_ack(&key("a", "1"), 1);
        let step = ledger.broadcast_step(version, Refusals::Ignored, Some(&BTreeSet::new()), at(100) + PROCEED);
        assert_eq!(
            step,
            BroadcastStep {
                verdict: Verdict::Proceed,
                acknowledged: vec![key("a", "1")],
                // c was never granted a lease: it neither acknowledged nor was waited out.
                fenced: vec![key("b", "1")],
                targets: vec![],
            }
        );
    }

    #[test]
    fn a_refusal_a_heartbeat_reports_fails_a_reversible_broadcast_of_that_version_only() {
        let mut ledger = ledger(&["a", "b"]);
        let (a, b) = (key("a", "1"), key("b", "1"));
        ledger.heartbeat(beat(&a, 0), None, at(50)).unwrap();
        let version = publish(&mut ledger, "prepare", 100);
        ledger.heartbeat(beat(&b, version), None, at(150)).unwrap();
        let refusing = Beat { needs_resync: true, refused: Some(version), ..beat(&a, 0) };
        let grant = ledger.heartbeat(refusing, None, at(200)).unwrap();
        assert!(grant.wakes_broadcasts, "the waiting broadcast hears of it at once");
        let none = BTreeSet::new();
        let step = ledger.broadcast_step(version, Refusals::Counted(&none), None, at(210));
        assert_eq!(step.verdict, Verdict::Fail { refused: vec![a.clone()] });
        assert!(
            matches!(ledger.broadcast_step(version, Refusals::Ignored, None, at(210)).verdict, Verdict::Wait { .. }),
            "a step that only rolls forward waits the refusing node out"
        );
        let later = publish(&mut ledger, "another", 300);
        let step = ledger.broadcast_step(later, Refusals::Counted(&none), None, at(310));
        assert!(matches!(step.verdict, Verdict::Wait { .. }), "another version is not refused: {step:?}");
        let again = ledger.heartbeat(Beat { needs_resync: true, refused: Some(version), ..beat(&a, 0) }, None, at(320));
        assert!(!again.unwrap().wakes_broadcasts, "the same refusal wakes nobody twice");
        ledger.heartbeat(beat(&a, version), None, at(400)).unwrap();
        let step = ledger.broadcast_step(version, Refusals::Counted(&none), None, at(410));
        assert_eq!(step.verdict, Verdict::Proceed, "a node that renewed since reports no refusal");
    }

    #[test]
    fn a_refusal_of_a_retired_incarnation_counts_no_more() {
        let mut ledger = ledger(&["a"]);
        let version = publish(&mut ledger, "prepare", 100);
        let a = key("a", "1");
        ledger.heartbeat(Beat { needs_resync: true, refused: Some(version), ..beat(&a, 0) }, None, at(200)).unwrap();
        ledger.retire(std::slice::from_ref(&a), std::slice::from_ref(&a), Departure::Left, at(300));
        let none = BTreeSet::new();
        let step = ledger.broadcast_step(version, Refusals::Counted(&none), None, at(310));
        assert!(!matches!(step.verdict, Verdict::Fail { .. }), "{step:?}");
    }

    #[test]
    fn a_refused_change_fails_its_broadcast_with_no_pushes() {
        let mut ledger = ledger(&["a"]);
        ledger.heartbeat(beat(&key("a", "1"), 0), None, at(100)).unwrap();
        let version = publish(&mut ledger, "v1", 200);
        let refused = BTreeSet::from([key("a", "1")]);
        let step = ledger.broadcast_step(version, Refusals::Counted(&refused), Some(&BTreeSet::new()), at(300));
        assert_eq!(step.verdict, Verdict::Fail { refused: vec![key("a", "1")] });
        assert!(step.targets.is_empty());
    }

    #[test]
    fn an_inherited_node_is_waited_for_until_the_promotion_floor_is_settled() {
        let inherited =
            Inherited::<&str> { version: 4, registered: vec![(key("a", "1"), "a:1".into())], ..Default::default() };
        let mut ledger = Ledger::new(start(5000, GRANTS), inherited);
        ledger.watch(4, at(5000));
        let just_before = (at(5000) + GRANTS + PROCEED).saturating_sub(Duration::from_millis(1));
        assert!(matches!(ledger.broadcast_step(4, Refusals::Ignored, None, just_before).verdict, Verdict::Wait { .. }));
        assert_eq!(
            ledger.broadcast_step(4, Refusals::Ignored, None, at(5000) + GRANTS + PROCEED).verdict,
            Verdict::Proceed
        );
    }

    #[test]
    fn inherited_changes_keep_only_the_run_that_ends_at_the_version() {
        let inherited =
            Inherited { version: 7, changes: vec![(3, "v3"), (5, "v5"), (6, "v6"), (7, "v7")], ..Default::default() };
        let ledger = Ledger::new(start(0, Duration::ZERO), inherited);
        assert_eq!(ledger.changes_since(4), Some((vec!["v5", "v6", "v7"], 7)));
        assert_eq!(ledger.changes_since(3), None, "the hole after 3 is not bridged");
    }

    #[test]
    fn an_inherited_tombstone_of_the_registered_incarnation_is_only_a_stored_row() {
        let inherited = Inherited::<&str> {
            registered: vec![(key("a", "2"), "a:2".into())],
            tombstones: vec![key("a", "1"), key("a", "2")],
            ..Default::default()
        };
        let ledger = Ledger::new(start(0, GRANTS), inherited);
        let statuses: Vec<(NodeKey, bool)> =
            ledger.statuses(at(10)).into_iter().map(|status| (status.key, status.registered)).collect();
        assert_eq!(statuses, [(key("a", "1"), false), (key("a", "2"), true)]);
        assert_eq!(ledger.stored_tombstone_count(), 2);
    }

    #[test]
    fn a_new_incarnation_replaces_the_old_one_which_is_refused_from_then_on() {
        let mut ledger = ledger(&["a"]);
        assert_eq!(ledger.check_registration("a", "2"), Ok(Some("1".into())));
        assert_eq!(ledger.register("a", "2", "a:2", Some("1".into()), at(50)), Some("1".into()));
        assert_eq!(ledger.heartbeat(beat(&key("a", "1"), 0), None, at(60)), Err(Refusal::Retired));
        assert_eq!(ledger.check_registration("a", "1"), Err(Refusal::Retired));
        assert_eq!(ledger.check_registration("a", "2"), Ok(None), "registering again changes nothing");
        assert_eq!(ledger.registered_count(), 1);
    }

    #[test]
    fn a_retired_incarnation_is_refused_until_its_node_registers_anew() {
        let mut ledger = ledger(&["a"]);
        ledger.retire(&[key("a", "1")], &[key("a", "1")], Departure::Left, at(10));
        assert_eq!(ledger.registered_count(), 0);
        // Settled and swept, it is still remembered as retired.
        let settled = ledger.settle_tombstones(at(10) + PROCEED);
        assert_eq!(settled, [key("a", "1")]);
        ledger.tombstones_deleted(&settled);
        assert_eq!(ledger.check_registration("a", "1"), Err(Refusal::Retired));
        ledger.register("a", "2", "a:2", None, at(20_000));
        assert_eq!(ledger.check_registration("a", "1"), Ok(Some("2".into())), "the store forgot it too");
    }

    #[test]
    fn registering_a_node_touches_only_its_own_incarnations_not_a_node_whose_id_it_prefixes() {
        let mut ledger = ledger(&[]);
        for (node, incarnation) in [("a", "1"), ("ab", "1"), ("a-", "1")] {
            ledger.register(node, incarnation, "x:1", None, at(0));
            ledger.set_pools(&key(node, incarnation), vec!["p".into()]);
            ledger.set_resource(&key(node, incarnation), "r");
        }
        ledger.retire(&[key("ab", "1")], &[key("ab", "1")], Departure::Left, at(10));
        assert_eq!(ledger.register("a", "2", "x:2", Some("1".into()), at(20)), Some("1".into()));
        assert_eq!(ledger.check_registration("a", "3"), Ok(Some("2".into())));
        assert_eq!(ledger.check_registration("a-", "2"), Ok(Some("1".into())), "another node id is left alone");
        assert_eq!(ledger.check_registration("ab", "1"), Err(Refusal::Retired), "another node stays retired");
        assert_eq!(ledger.resource_of(&key("a", "1")), None);
        assert_eq!(ledger.resource_of(&key("a-", "1")), Some("r"));
    }

    #[test]
    fn a_tombstone_is_listed_until_it_has_provably_fenced_and_never_collected_by_a_read() {
        let mut ledger = ledger(&["a"]);
        ledger.heartbeat(beat(&key("a", "1"), 0), None, at(1000)).unwrap();
        ledger.retire(&[key("a", "1")], &[key("a", "1")], Departure::Left, at(2000));
        let listed = |ledger: &Ledger<&str>, now| ledger.statuses(now).len();
        assert_eq!(listed(&ledger, (at(1000) + PROCEED).saturating_sub(Duration::from_millis(1))), 1);
        assert_eq!(listed(&ledger, at(1000) + PROCEED), 0);
        assert_eq!(ledger.settle_tombstones((at(1000) + PROCEED).saturating_sub(Duration::from_millis(1))), []);
        assert_eq!(ledger.settle_tombstones(at(1000) + PROCEED), [key("a", "1")]);
    }

    #[test]
    fn silent_nodes_are_found_after_at_least_t_proceed() {
        let mut ledger = ledger(&["a", "b"]);
        ledger.heartbeat(beat(&key("b", "1"), 0), None, at(3000)).unwrap();
        // Asked for less than T_proceed, the ledger still waits T_proceed.
        assert_eq!(ledger.silent(at(4059), Duration::from_millis(10)), []);
        assert_eq!(ledger.silent(at(4060), Duration::from_millis(10)), [key("a", "1")]);
    }

    #[test]
    fn an_orphaned_catalog_change_is_refused_with_nothing_published() {
        let mut ledger = ledger(&[]);
        let table = crate::catalog::tests::table("missing", "t", crate::catalog::ObjectState::Visible);
        let put = CatalogChange::PutTable(table);
        assert!(ledger.publish(1, "v1", Some(&put), at(10)).is_err());
        assert_eq!(ledger.version(), 0);
        assert_eq!(ledger.changes_since(0), Some((vec![], 0)));
    }
}
