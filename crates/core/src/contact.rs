//! The leader's record of when it last granted each data node a lease (DESIGN §4).
//!
//! A heartbeat is a grant: the leader records the handling time as the node's contact. When a
//! change at version `V` is published, the tracker snapshots every node's *stale bound*
//! `S(n, V)`: the latest instant `n` could have been granted a lease by a response that did
//! not carry `V`. The caller handles heartbeats and publishes under one lock, so every
//! response handled after the snapshot carries `V`. For nodes that an earlier leader may
//! have served, the bound is at least the instant this leader was promoted plus the longest
//! any earlier leader could have kept granting (`floor`). A node registered with this leader
//! under a new incarnation was never granted anything before, so its bound is its first
//! contact here, if any.
//!
//! Deregistered and replaced incarnations stay as tombstones until their bound is settled:
//! they may still hold a lease, and they cannot get a new one (their heartbeats are refused).

use std::collections::BTreeMap;
use std::time::Duration;

use crate::clock::MonoTime;

/// One incarnation of a data node.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeKey {
    /// The stable node id.
    pub node_id: String,
    /// The process incarnation.
    pub incarnation: String,
}

impl NodeKey {
    /// The key of `node_id` at `incarnation`.
    pub fn new(node_id: impl Into<String>, incarnation: impl Into<String>) -> Self {
        Self { node_id: node_id.into(), incarnation: incarnation.into() }
    }

    /// The least key of `node_id`: every incarnation of the node sorts from it on, before any
    /// other node's (keys order by node id, then incarnation).
    pub fn first_of(node_id: &str) -> Self {
        Self { node_id: node_id.to_owned(), incarnation: String::new() }
    }
}

impl std::fmt::Display for NodeKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.node_id, &self.incarnation[..self.incarnation.len().min(8)])
    }
}

#[derive(Debug, Clone)]
struct Tracked {
    /// When this leader began to count it: its registration here, or the promotion floor.
    known_since: MonoTime,
    last_contact: Option<MonoTime>,
    /// An earlier leader may have granted this incarnation a lease.
    inherited: bool,
    acked: u64,
    tombstone_since: Option<MonoTime>,
}

/// What a node needs for a verdict on one version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settlement {
    /// The node.
    pub key: NodeKey,
    /// The highest version it acknowledged.
    pub acked: u64,
    /// `S(n, V)`; `None` when it held no lease at publication.
    pub stale_bound: Option<MonoTime>,
}

/// How a node looks to the leader now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContactStatus {
    /// Heard from within the last fence duration.
    Live {
        /// Since the last contact.
        silent_for: Duration,
    },
    /// Silent long enough that it has fenced, whatever its clock did.
    FencedByNow {
        /// Since the last contact (or since the promotion floor).
        silent_for: Duration,
    },
    /// Not heard from by this leader, and it may still hold an earlier leader's lease.
    Unknown,
    /// Registered with this leader and never heard from: it holds no lease.
    NeverGranted,
}

/// The stale bounds of one published version, and how many broadcasts wait on them.
#[derive(Debug, Clone)]
struct Publication {
    bounds: BTreeMap<NodeKey, Option<MonoTime>>,
    watchers: usize,
}

/// The leader's contacts, acknowledgements and publication snapshots.
#[derive(Debug, Clone)]
pub struct ContactTracker {
    floor: MonoTime,
    nodes: BTreeMap<NodeKey, Tracked>,
    publications: BTreeMap<u64, Publication>,
}

impl ContactTracker {
    /// A tracker for a leader promoted at `promoted_at`; earlier leaders may have granted
    /// leases until `promoted_at + earlier_grants` on this leader's clock (for a coordinator
    /// lease of `ttl`, that is `ttl · (1+ρ)/(1−ρ)`).
    pub fn new(promoted_at: MonoTime, earlier_grants: Duration) -> Self {
        Self { floor: promoted_at + earlier_grants, nodes: BTreeMap::new(), publications: BTreeMap::new() }
    }

    /// The instant until which earlier leaders may have granted leases.
    pub fn floor(&self) -> MonoTime {
        self.floor
    }

    /// A node that was registered before this leader took over.
    pub fn inherit(&mut self, key: NodeKey) {
        let floor = self.floor;
        self.nodes.entry(key).or_insert(Tracked {
            known_since: floor,
            last_contact: None,
            inherited: true,
            acked: 0,
            tombstone_since: None,
        });
    }

    /// An incarnation an earlier leader put to rest (deregistered, evicted or replaced): it
    /// may still hold that leader's lease, and it gets no new one.
    pub fn inherit_tombstone(&mut self, key: NodeKey) {
        let floor = self.floor;
        let tracked = self.nodes.entry(key).or_insert(Tracked {
            known_since: floor,
            last_contact: None,
            inherited: true,
            acked: 0,
            tombstone_since: None,
        });
        tracked.tombstone_since.get_or_insert(floor);
    }

    /// A node registering with this leader at `now`. Other live incarnations of the same node id
    /// become tombstones: they may still hold a lease.
    pub fn register(&mut self, key: NodeKey, now: MonoTime) {
        // Keys order by node id first: the node's incarnations are one range, so a cold start
        // of N nodes costs N·log N here, not N².
        let incarnations = self.nodes.range_mut(NodeKey::first_of(&key.node_id)..);
        for (other, tracked) in incarnations.take_while(|(other, _)| other.node_id == key.node_id) {
            if *other != key && tracked.tombstone_since.is_none() {
                tracked.tombstone_since = Some(now);
            }
        }
        let tracked = self.nodes.entry(key).or_insert(Tracked {
            known_since: now,
            last_contact: None,
            inherited: false,
            acked: 0,
            tombstone_since: None,
        });
        tracked.tombstone_since = None;
    }

    /// A node deregistering (or evicted) at `now`: it stays as a tombstone until settled.
    pub fn deregister(&mut self, key: &NodeKey, now: MonoTime) {
        if let Some(tracked) = self.nodes.get_mut(key) {
            tracked.tombstone_since.get_or_insert(now);
        }
    }

    /// A node whose host stopped serving before it deregistered (`released`, see
    /// docs/PROTOCOL.md): whatever lease it held serves nothing any more, so it is forgotten
    /// at once, also in the snapshots of the versions being broadcast, where it then counts
    /// as a node that held no lease.
    pub fn release(&mut self, key: &NodeKey) {
        self.nodes.remove(key);
        for publication in self.publications.values_mut() {
            publication.bounds.remove(key);
        }
    }

    /// Whether `key` is registered (and not a tombstone).
    pub fn is_registered(&self, key: &NodeKey) -> bool {
        self.nodes.get(key).is_some_and(|tracked| tracked.tombstone_since.is_none())
    }

    /// Whether `key` was put to rest (deregistered, evicted or replaced) and is still counted:
    /// it must not be registered again, or a delayed registration would revive it.
    pub fn is_tombstone(&self, key: &NodeKey) -> bool {
        self.nodes.get(key).is_some_and(|tracked| tracked.tombstone_since.is_some())
    }

    /// The registered nodes not heard from for `evict_after` at `now` (counted from their
    /// last contact, else from their registration here or the promotion floor). `evict_after`
    /// is at least `T_proceed`, so each has provably fenced and its tombstone is settled.
    pub fn silent_for_at_least(&self, now: MonoTime, evict_after: Duration) -> Vec<NodeKey> {
        self.nodes
            .iter()
            .filter(|(_, tracked)| tracked.tombstone_since.is_none())
            .filter(|(_, tracked)| {
                now.saturating_since(tracked.last_contact.unwrap_or(tracked.known_since)) >= evict_after
            })
            .map(|(key, _)| key.clone())
            .collect()
    }

    /// Records a grant to `key` at `now`; false (and nothing recorded) when `key` is not
    /// registered: such a heartbeat must be refused.
    pub fn record_contact(&mut self, key: &NodeKey, now: MonoTime) -> bool {
        self.record_beat(key, now, None).is_some()
    }

    /// Records a heartbeat of `key` at `now` with one lookup: a grant, and with `ack` the
    /// version its cache holds (never lowering what it acknowledged). The acknowledgement it
    /// had before, or `None` (nothing recorded) when `key` is not registered.
    pub fn record_beat(&mut self, key: &NodeKey, now: MonoTime, ack: Option<u64>) -> Option<u64> {
        let tracked = self.nodes.get_mut(key).filter(|tracked| tracked.tombstone_since.is_none())?;
        tracked.last_contact = Some(tracked.last_contact.map_or(now, |last| last.max(now)));
        let before = tracked.acked;
        if let Some(version) = ack {
            tracked.acked = before.max(version);
        }
        Some(before)
    }

    /// Records that `key` holds `version` in its cache.
    pub fn record_ack(&mut self, key: &NodeKey, version: u64) {
        if let Some(tracked) = self.nodes.get_mut(key) {
            tracked.acked = tracked.acked.max(version);
        }
    }

    /// The highest version `key` acknowledged.
    pub fn acked(&self, key: &NodeKey) -> u64 {
        self.nodes.get(key).map_or(0, |tracked| tracked.acked)
    }

    fn stale_bound_of(&self, tracked: &Tracked) -> Option<MonoTime> {
        stale_bound(tracked, self.floor)
    }

    /// Snapshots `S(n, version)` of every node, tombstones included. Call it under the lock
    /// that heartbeat handling holds while it records a contact and picks its response.
    /// Snapshots of older versions that no broadcast waits on are dropped: one taken again
    /// later is only more cautious.
    pub fn publish(&mut self, version: u64) {
        self.publications.retain(|published, publication| *published >= version || publication.watchers > 0);
        let bounds = self.bounds_now();
        self.publications.insert(version, Publication { bounds, watchers: 0 });
    }

    /// Every node's stale bound as of now. Taken after a version's publication it can only be
    /// later than the snapshot at publication (contacts only move forward), so waiting on it
    /// is safe, merely slower for nodes heard from since.
    fn bounds_now(&self) -> BTreeMap<NodeKey, Option<MonoTime>> {
        self.nodes.iter().map(|(key, tracked)| (key.clone(), self.stale_bound_of(tracked))).collect()
    }

    /// A broadcast of `version` begins: keeps its snapshot until the matching
    /// [`ContactTracker::forget`], taking one now if there is none (a version an earlier
    /// leader published, or one whose snapshot was dropped).
    pub fn watch(&mut self, version: u64) {
        if let Some(publication) = self.publications.get_mut(&version) {
            publication.watchers += 1;
            return;
        }
        let bounds = self.bounds_now();
        self.publications.insert(version, Publication { bounds, watchers: 1 });
    }

    /// The nodes that count for `version`: those known at its publication. Without a snapshot
    /// (nobody watches it), the bounds as of now: never an empty set that would read as
    /// "everyone settled".
    pub fn settlements(&self, version: u64) -> Vec<Settlement> {
        let settlement = |(key, stale_bound): (&NodeKey, &Option<MonoTime>)| Settlement {
            key: key.clone(),
            acked: self.acked(key),
            stale_bound: *stale_bound,
        };
        match self.publications.get(&version) {
            Some(publication) => publication.bounds.iter().map(settlement).collect(),
            None => self.bounds_now().iter().map(settlement).collect(),
        }
    }

    /// A broadcast of `version` is decided: its snapshot goes when no other broadcast waits on it.
    pub fn forget(&mut self, version: u64) {
        if let Some(publication) = self.publications.get_mut(&version) {
            publication.watchers = publication.watchers.saturating_sub(1);
            if publication.watchers == 0 {
                self.publications.remove(&version);
            }
        }
    }

    /// Removes tombstones that can no longer hold a lease at `now`.
    pub fn collect_tombstones(&mut self, now: MonoTime, proceed_after: Duration) {
        let floor = self.floor;
        self.nodes.retain(|_, tracked| {
            tracked.tombstone_since.is_none()
                || stale_bound(tracked, floor).is_some_and(|bound| now.saturating_since(bound) < proceed_after)
        });
    }

    /// How `key` looks at `now`.
    pub fn status(&self, key: &NodeKey, now: MonoTime, proceed_after: Duration) -> Option<ContactStatus> {
        let tracked = self.nodes.get(key)?;
        let Some(bound) = self.stale_bound_of(tracked) else {
            return Some(ContactStatus::NeverGranted);
        };
        let silent_for = now.saturating_since(tracked.last_contact.unwrap_or(bound));
        Some(if now.saturating_since(bound) >= proceed_after {
            ContactStatus::FencedByNow { silent_for }
        } else if tracked.last_contact.is_none() {
            ContactStatus::Unknown
        } else {
            ContactStatus::Live { silent_for }
        })
    }

    /// Every tracked node, with whether it is a tombstone.
    pub fn nodes(&self) -> impl Iterator<Item = (&NodeKey, bool)> {
        self.nodes.iter().map(|(key, tracked)| (key, tracked.tombstone_since.is_some()))
    }
}

/// `S(n, ·)` of a node now: its last grant here, never earlier than the promotion floor when
/// an earlier leader may have served it; `None` when it never held a lease.
fn stale_bound(tracked: &Tracked, floor: MonoTime) -> Option<MonoTime> {
    match (tracked.last_contact, tracked.inherited) {
        (Some(contact), true) => Some(contact.max(floor)),
        (Some(contact), false) => Some(contact),
        (None, true) => Some(floor),
        (None, false) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GRANTS: Duration = Duration::from_millis(1020);
    const PROCEED: Duration = Duration::from_millis(4060);

    fn at(ms: u64) -> MonoTime {
        MonoTime::from_duration(Duration::from_millis(ms))
    }

    fn key(node: &str, incarnation: &str) -> NodeKey {
        NodeKey::new(node, incarnation)
    }

    #[test]
    fn publication_snapshots_the_last_contact_before_it() {
        let mut tracker = ContactTracker::new(at(0), Duration::ZERO);
        tracker.register(key("a", "1"), at(0));
        tracker.record_contact(&key("a", "1"), at(100));
        tracker.publish(7);
        tracker.record_contact(&key("a", "1"), at(900));
        let settlements = tracker.settlements(7);
        assert_eq!(settlements, vec![Settlement { key: key("a", "1"), acked: 0, stale_bound: Some(at(100)) }]);
    }

    #[test]
    fn an_inherited_tombstone_counts_until_the_floor_is_settled_and_gets_no_lease() {
        let mut tracker = ContactTracker::new(at(5000), GRANTS);
        tracker.inherit_tombstone(key("a", "old"));
        assert!(!tracker.record_contact(&key("a", "old"), at(5100)), "its heartbeats are refused");
        tracker.publish(1);
        assert_eq!(tracker.settlements(1)[0].stale_bound, Some(at(6020)));
        tracker.collect_tombstones(at(6020 + 4059), PROCEED);
        assert_eq!(tracker.nodes().count(), 1, "kept until settled");
        tracker.collect_tombstones(at(6020 + 4060), PROCEED);
        assert_eq!(tracker.nodes().count(), 0);
    }

    #[test]
    fn a_version_published_by_an_earlier_leader_is_never_settled_by_default() {
        // A new leader resumes a broadcast of a version it did not publish itself.
        let mut tracker = ContactTracker::new(at(5000), GRANTS);
        tracker.inherit(key("a", "1"));
        let settlements = tracker.settlements(9);
        assert_eq!(settlements, vec![Settlement { key: key("a", "1"), acked: 0, stale_bound: Some(at(6020)) }]);
        tracker.watch(9);
        tracker.record_contact(&key("a", "1"), at(7000));
        assert_eq!(tracker.settlements(9)[0].stale_bound, Some(at(6020)), "the snapshot taken at watch holds");
    }

    #[test]
    fn a_snapshot_lives_while_any_broadcast_of_its_version_waits() {
        let mut tracker = ContactTracker::new(at(0), Duration::ZERO);
        tracker.register(key("a", "1"), at(0));
        tracker.record_contact(&key("a", "1"), at(100));
        tracker.publish(3);
        tracker.watch(3);
        tracker.watch(3);
        tracker.record_contact(&key("a", "1"), at(900));
        tracker.forget(3);
        assert_eq!(tracker.settlements(3)[0].stale_bound, Some(at(100)), "the second broadcast still waits on it");
        tracker.forget(3);
        assert_eq!(tracker.settlements(3)[0].stale_bound, Some(at(900)), "gone: judged on the bounds now");
    }

    #[test]
    fn unwatched_older_snapshots_go_when_a_newer_version_is_published() {
        let mut tracker = ContactTracker::new(at(0), Duration::ZERO);
        tracker.register(key("a", "1"), at(0));
        tracker.record_contact(&key("a", "1"), at(100));
        tracker.publish(1);
        tracker.publish(2);
        tracker.watch(2);
        tracker.publish(3);
        assert_eq!(tracker.publications.keys().copied().collect::<Vec<_>>(), vec![2, 3]);
    }

    #[test]
    fn inherited_nodes_are_bounded_by_the_promotion_floor() {
        let mut tracker = ContactTracker::new(at(5000), GRANTS);
        tracker.inherit(key("a", "1"));
        tracker.inherit(key("b", "1"));
        tracker.record_contact(&key("b", "1"), at(7000));
        tracker.publish(1);
        let bounds: Vec<_> = tracker.settlements(1).into_iter().map(|s| s.stale_bound).collect();
        assert_eq!(bounds, vec![Some(at(6020)), Some(at(7000))]);
    }

    #[test]
    fn a_new_incarnation_registered_here_holds_no_earlier_lease() {
        let mut tracker = ContactTracker::new(at(5000), GRANTS);
        tracker.register(key("a", "2"), at(5100));
        tracker.publish(1);
        assert_eq!(tracker.settlements(1)[0].stale_bound, None);
        assert_eq!(tracker.status(&key("a", "2"), at(5200), PROCEED), Some(ContactStatus::NeverGranted));
    }

    #[test]
    fn replaced_and_deregistered_incarnations_stay_until_settled() {
        let mut tracker = ContactTracker::new(at(0), Duration::ZERO);
        tracker.register(key("a", "1"), at(0));
        tracker.record_contact(&key("a", "1"), at(1000));
        tracker.register(key("a", "2"), at(1500));
        assert!(!tracker.is_registered(&key("a", "1")));
        assert!(!tracker.record_contact(&key("a", "1"), at(1600)), "a tombstone gets no new lease");
        tracker.publish(3);
        assert_eq!(tracker.settlements(3).len(), 2, "the old incarnation still counts");
        tracker.collect_tombstones(at(5000), PROCEED);
        assert_eq!(tracker.nodes().count(), 2, "not settled before 1000 + 4060");
        tracker.collect_tombstones(at(5060), PROCEED);
        assert_eq!(tracker.nodes().map(|(k, _)| k.clone()).collect::<Vec<_>>(), vec![key("a", "2")]);
        // The snapshot still remembers the removed tombstone's bound.
        assert_eq!(tracker.settlements(3).len(), 2);
        tracker.deregister(&key("a", "2"), at(6000));
        assert!(!tracker.is_registered(&key("a", "2")));
    }

    #[test]
    fn acks_only_grow_and_unknown_nodes_are_refused() {
        let mut tracker = ContactTracker::new(at(0), Duration::ZERO);
        tracker.register(key("a", "1"), at(0));
        tracker.record_ack(&key("a", "1"), 5);
        tracker.record_ack(&key("a", "1"), 3);
        assert_eq!(tracker.acked(&key("a", "1")), 5);
        assert!(!tracker.record_contact(&key("z", "1"), at(1)));
    }

    #[test]
    fn nodes_silent_for_the_eviction_time_are_found_and_their_tombstones_refuse_registration() {
        let evict_after = Duration::from_secs(60);
        let mut tracker = ContactTracker::new(at(0), GRANTS);
        tracker.inherit(key("inherited", "i"));
        tracker.register(key("talks", "t"), at(1_000));
        tracker.register(key("never", "n"), at(3_000));
        tracker.record_contact(&key("talks", "t"), at(50_000));
        // The inherited node counts from the floor, the silent one from its registration.
        assert_eq!(tracker.silent_for_at_least(at(62_000), evict_after), [key("inherited", "i")]);
        assert_eq!(tracker.silent_for_at_least(at(63_000), evict_after), [key("inherited", "i"), key("never", "n")]);
        tracker.deregister(&key("never", "n"), at(63_000));
        assert!(tracker.is_tombstone(&key("never", "n")) && !tracker.is_registered(&key("never", "n")));
        assert_eq!(
            tracker.silent_for_at_least(at(62_000), evict_after),
            [key("inherited", "i")],
            "tombstones are not evicted twice"
        );
        assert!(!tracker.is_tombstone(&key("talks", "t")));
    }

    #[test]
    fn status_tells_live_from_fenced_by_now() {
        let mut tracker = ContactTracker::new(at(0), Duration::ZERO);
        tracker.register(key("a", "1"), at(0));
        tracker.record_contact(&key("a", "1"), at(1000));
        assert_eq!(
            tracker.status(&key("a", "1"), at(1500), PROCEED),
            Some(ContactStatus::Live { silent_for: Duration::from_millis(500) })
        );
        assert_eq!(
            tracker.status(&key("a", "1"), at(5060), PROCEED),
            Some(ContactStatus::FencedByNow { silent_for: Duration::from_millis(4060) })
        );
        let mut promoted = ContactTracker::new(at(1000), GRANTS);
        promoted.inherit(key("b", "1"));
        assert_eq!(promoted.status(&key("b", "1"), at(1500), PROCEED), Some(ContactStatus::Unknown));
    }
}
