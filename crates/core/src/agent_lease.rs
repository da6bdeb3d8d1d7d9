//! The agent side of the data-node lease (DESIGN §4; the argument is in docs/PROTOCOL.md).
//!
//! The agent anchors its lease at the instant it *sent* the heartbeat, so a lost or late
//! response can only shorten the lease, never lengthen it. It renews only after it applied
//! the changes (or the full resync) that the response carried, and only from a leader whose
//! term is at least the highest it has seen. When the lease runs out it fences: the schema
//! cache is dropped and every read is refused until a resync has been applied.

use std::time::Duration;

use crate::clock::MonoTime;

/// The leader an agent follows: the one named by its latest successful heartbeat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaderRef {
    /// The leader's node id.
    pub node_id: String,
    /// The leader's address.
    pub address: String,
    /// The leader's term.
    pub term: u64,
}

/// What an agent is doing with its lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgentState {
    /// A valid lease over a trusted cache: reads are served.
    Normal,
    /// No valid lease: the cache is dropped and reads are refused.
    Fenced,
    /// Fenced, and a leader has been asked for a full resync.
    Resyncing,
}

/// A heartbeat in flight: when it was sent and against which cache generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeartbeatTicket {
    /// The send instant: the lease is anchored here.
    pub sent: MonoTime,
    /// The cache generation at send; a fence since then makes the response useless.
    pub generation: u64,
    /// Whether the heartbeat asks for a full resync.
    pub needs_resync: bool,
}

/// What to do with a heartbeat response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseDecision {
    /// Apply its changes (or its snapshot, when `resync`), then call [`LeaseManager::renew`].
    Apply {
        /// The response carries a full snapshot.
        resync: bool,
    },
    /// Leave it: it cannot renew the lease.
    Ignore(&'static str),
}

/// Why an agent refuses a pushed change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PushRefusal {
    /// The agent is fenced; it will resync through a heartbeat.
    Fenced,
    /// The pusher is not the leader of the agent's latest successful heartbeat, or its term is
    /// below the highest the agent has seen.
    NotMyLeader {
        /// The leader the agent follows, if any.
        following: Option<LeaderRef>,
    },
}

/// The agent's lease, as a value driven by the instants it is given.
#[derive(Debug, Clone, Default)]
pub struct LeaseManager {
    lease_until: Option<MonoTime>,
    fence: Option<Duration>,
    highest_term: u64,
    leader: Option<LeaderRef>,
    generation: u64,
    cache_valid: bool,
    resync_requested: bool,
    resyncing: bool,
    fences: u64,
}

impl LeaseManager {
    /// A fresh agent: fenced, with nothing cached, waiting for a resync.
    pub fn new() -> Self {
        Self::default()
    }

    /// The end of the lease, if one was ever granted.
    pub fn lease_until(&self) -> Option<MonoTime> {
        self.lease_until
    }

    /// The fence duration of the cluster, from the last response.
    pub fn fence(&self) -> Option<Duration> {
        self.fence
    }

    /// The leader of the latest successful heartbeat.
    pub fn leader(&self) -> Option<&LeaderRef> {
        self.leader.as_ref()
    }

    /// The highest term seen in any accepted response.
    pub fn highest_term(&self) -> u64 {
        self.highest_term
    }

    /// How many times this agent fenced.
    pub fn fences(&self) -> u64 {
        self.fences
    }

    /// The cache generation; it changes at every fence.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// `Some(until)` while the lease is valid at `now` over a trusted cache.
    pub fn valid_until(&self, now: MonoTime) -> Option<MonoTime> {
        self.lease_until.filter(|until| self.cache_valid && now < *until)
    }

    /// The state at `now`.
    pub fn state(&self, now: MonoTime) -> AgentState {
        if self.valid_until(now).is_some() {
            AgentState::Normal
        } else if self.resyncing {
            AgentState::Resyncing
        } else {
            AgentState::Fenced
        }
    }

    /// Fences if the lease has run out at `now`. Returns true on the transition: the caller
    /// must drop its cache before anything else happens.
    pub fn fence_if_expired(&mut self, now: MonoTime) -> bool {
        if !self.cache_valid || self.valid_until(now).is_some() {
            return false;
        }
        self.cache_valid = false;
        self.resyncing = false;
        self.generation += 1;
        self.fences += 1;
        true
    }

    /// Starts a heartbeat at `now`.
    pub fn begin_heartbeat(&mut self, now: MonoTime) -> HeartbeatTicket {
        self.fence_if_expired(now);
        HeartbeatTicket { sent: now, generation: self.generation, needs_resync: self.needs_resync() }
    }

    /// Whether the next heartbeat must ask for a full resync.
    pub fn needs_resync(&self) -> bool {
        !self.cache_valid || self.resync_requested
    }

    /// Decides what to do with the response to `ticket`, from a leader of `term`.
    pub fn consider_response(
        &mut self,
        ticket: &HeartbeatTicket,
        term: u64,
        resync: bool,
        now: MonoTime,
    ) -> ResponseDecision {
        self.fence_if_expired(now);
        if ticket.generation != self.generation {
            return ResponseDecision::Ignore("the agent fenced after this heartbeat was sent");
        }
        if term < self.highest_term {
            return ResponseDecision::Ignore("the response comes from a term older than one already seen");
        }
        if !self.cache_valid && !resync {
            return ResponseDecision::Ignore("the cache was dropped; only a full resync can be applied");
        }
        if resync {
            self.resyncing = !self.cache_valid;
        }
        ResponseDecision::Apply { resync }
    }

    /// The response to `ticket` was applied: renew the lease to `ticket.sent + fence`. Returns
    /// true when this ends a fence.
    pub fn renew(&mut self, ticket: &HeartbeatTicket, fence: Duration, leader: LeaderRef, now: MonoTime) -> bool {
        if ticket.generation != self.generation || leader.term < self.highest_term {
            return false;
        }
        let was_valid = self.valid_until(now).is_some();
        self.highest_term = leader.term;
        self.leader = Some(leader);
        self.fence = Some(fence);
        let until = ticket.sent + fence;
        self.lease_until = Some(self.lease_until.map_or(until, |current| current.max(until)));
        self.cache_valid = true;
        self.resync_requested = false;
        self.resyncing = false;
        !was_valid && self.valid_until(now).is_some()
    }

    /// The response could not be applied (a gap in versions, say): do not renew, and ask for a
    /// full resync next time.
    pub fn apply_failed(&mut self) {
        self.resync_requested = true;
    }

    /// Whether a push from `leader_node_id` at `term` may be applied now.
    pub fn check_push(&self, leader_node_id: &str, term: u64, now: MonoTime) -> Result<(), PushRefusal> {
        if self.valid_until(now).is_none() {
            return Err(PushRefusal::Fenced);
        }
        match &self.leader {
            Some(leader) if leader.node_id == leader_node_id && term >= self.highest_term => Ok(()),
            following => Err(PushRefusal::NotMyLeader { following: following.clone() }),
        }
    }
}

/// What a cache holds: its store epoch and version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CachePoint<'a> {
    /// The store epoch of the catalog it was filled from.
    pub store_epoch: &'a str,
    /// The newest version applied.
    pub version: u64,
}

/// Apply before renew: an answer renews the lease only once the cache holds the answer's
/// version, in the answer's store epoch.
pub fn holds_answer(cache: CachePoint<'_>, answer: CachePoint<'_>) -> bool {
    cache.store_epoch == answer.store_epoch && cache.version >= answer.version
}

/// A resync only ever moves forward: a snapshot of the cache's own epoch but older than the
/// cache (pushes moved it on while the answer travelled) is not installed.
pub fn snapshot_is_behind(cache: CachePoint<'_>, snapshot: CachePoint<'_>) -> bool {
    cache.store_epoch == snapshot.store_epoch && snapshot.version < cache.version
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_renews_only_a_cache_at_its_version_and_epoch_and_a_resync_never_goes_back() {
        let at = |store_epoch, version| CachePoint { store_epoch, version };
        assert!(holds_answer(at("e1", 5), at("e1", 5)));
        assert!(holds_answer(at("e1", 6), at("e1", 5)), "pushes may have moved the cache on");
        assert!(!holds_answer(at("e1", 4), at("e1", 5)));
        assert!(!holds_answer(at("e0", 9), at("e1", 5)), "another store's catalog");
        assert!(snapshot_is_behind(at("e1", 6), at("e1", 5)));
        assert!(!snapshot_is_behind(at("e1", 5), at("e1", 5)));
        assert!(!snapshot_is_behind(at("e0", 9), at("e1", 5)), "a new store's snapshot replaces all");
    }

    const FENCE: Duration = Duration::from_secs(3);

    fn at(ms: u64) -> MonoTime {
        MonoTime::from_duration(Duration::from_millis(ms))
    }

    fn leader(term: u64) -> LeaderRef {
        LeaderRef { node_id: format!("c{term}"), address: "127.0.0.1:7400".into(), term }
    }

    /// A heartbeat sent at `sent`, answered at `answered`, applied and renewed.
    fn round_trip(lease: &mut LeaseManager, sent: u64, answered: u64, term: u64, resync: bool) -> bool {
        let ticket = lease.begin_heartbeat(at(sent));
        match lease.consider_response(&ticket, term, resync, at(answered)) {
            ResponseDecision::Apply { .. } => lease.renew(&ticket, FENCE, leader(term), at(answered)),
            ResponseDecision::Ignore(_) => false,
        }
    }

    #[test]
    fn a_new_agent_is_fenced_until_a_resync_is_applied() {
        let mut lease = LeaseManager::new();
        assert_eq!(lease.state(at(0)), AgentState::Fenced);
        let ticket = lease.begin_heartbeat(at(0));
        assert!(ticket.needs_resync);
        assert_eq!(
            lease.consider_response(&ticket, 1, false, at(10)),
            ResponseDecision::Ignore("the cache was dropped; only a full resync can be applied")
        );
        assert!(round_trip(&mut lease, 100, 150, 1, true), "the resync unfences");
        assert_eq!(lease.state(at(150)), AgentState::Normal);
    }

    #[test]
    fn the_lease_is_anchored_at_the_send_time_not_the_answer() {
        let mut lease = LeaseManager::new();
        round_trip(&mut lease, 1000, 2900, 1, true);
        assert_eq!(lease.valid_until(at(2900)), Some(at(4000)));
        assert_eq!(lease.valid_until(at(4000)), None);
    }

    #[test]
    fn the_lease_never_shrinks_on_a_reordered_response() {
        let mut lease = LeaseManager::new();
        let early = lease.begin_heartbeat(at(0));
        assert!(matches!(lease.consider_response(&early, 1, true, at(5)), ResponseDecision::Apply { .. }));
        lease.renew(&early, FENCE, leader(1), at(5));
        let late = lease.begin_heartbeat(at(1000));
        let earlier_again = HeartbeatTicket { sent: at(500), ..late };
        lease.renew(&late, FENCE, leader(1), at(1100));
        lease.renew(&earlier_again, FENCE, leader(1), at(1200));
        assert_eq!(lease.lease_until(), Some(at(4000)));
    }

    #[test]
    fn expiry_fences_drops_the_generation_and_ignores_older_responses() {
        let mut lease = LeaseManager::new();
        round_trip(&mut lease, 0, 10, 1, true);
        let ticket = lease.begin_heartbeat(at(2000));
        assert!(lease.fence_if_expired(at(3000)));
        assert_eq!(lease.state(at(3000)), AgentState::Fenced);
        assert_eq!(lease.fences(), 1);
        assert!(!lease.fence_if_expired(at(3001)), "fencing happens once");
        // The answer to the heartbeat sent before the fence would renew to 5 s: refused.
        assert!(matches!(lease.consider_response(&ticket, 1, true, at(3100)), ResponseDecision::Ignore(_)));
        assert!(!lease.renew(&ticket, FENCE, leader(1), at(3100)));
        assert_eq!(lease.state(at(3100)), AgentState::Fenced);
        // A resync asked for after the fence unfences.
        let ticket = lease.begin_heartbeat(at(3200));
        assert!(ticket.needs_resync);
        assert!(matches!(
            lease.consider_response(&ticket, 1, true, at(3300)),
            ResponseDecision::Apply { resync: true }
        ));
        assert_eq!(lease.state(at(3300)), AgentState::Resyncing);
        assert!(lease.renew(&ticket, FENCE, leader(1), at(3300)));
        assert_eq!(lease.valid_until(at(3300)), Some(at(6200)));
    }

    #[test]
    fn responses_from_an_older_term_are_ignored() {
        let mut lease = LeaseManager::new();
        round_trip(&mut lease, 0, 10, 5, true);
        assert!(!round_trip(&mut lease, 1000, 1010, 4, false));
        assert_eq!(lease.valid_until(at(1010)), Some(at(3000)));
        assert_eq!(lease.leader().unwrap().term, 5);
        round_trip(&mut lease, 1000, 1010, 6, false);
        assert_eq!(lease.valid_until(at(1010)), Some(at(4000)));
        assert_eq!(lease.highest_term(), 6);
    }

    #[test]
    fn a_failed_apply_does_not_renew_and_asks_for_a_resync() {
        let mut lease = LeaseManager::new();
        round_trip(&mut lease, 0, 10, 1, true);
        let ticket = lease.begin_heartbeat(at(1000));
        assert!(matches!(
            lease.consider_response(&ticket, 1, false, at(1010)),
            ResponseDecision::Apply { resync: false }
        ));
        lease.apply_failed();
        assert_eq!(lease.valid_until(at(1010)), Some(at(3000)), "no renewal");
        assert!(lease.begin_heartbeat(at(2000)).needs_resync);
    }

    #[test]
    fn pushes_are_accepted_only_from_the_current_leader_while_valid() {
        let mut lease = LeaseManager::new();
        assert_eq!(lease.check_push("c1", 1, at(0)), Err(PushRefusal::Fenced));
        round_trip(&mut lease, 0, 10, 1, true);
        assert_eq!(lease.check_push("c1", 1, at(20)), Ok(()));
        assert!(matches!(lease.check_push("c2", 2, at(20)), Err(PushRefusal::NotMyLeader { .. })));
        assert!(matches!(lease.check_push("c1", 0, at(20)), Err(PushRefusal::NotMyLeader { .. })));
        assert_eq!(lease.check_push("c1", 1, at(3000)), Err(PushRefusal::Fenced));
    }
}
