//! Bucket pools in the ledger: who is a live member, which revokes have settled, and the
//! handoffs a pass writes (DESIGN §6; the plan and the handoff rule are in
//! [`crate::buckets`]).
//!
//! "Live" is defined here once: registered, heard from within the offline timeout (a member
//! inherited from an earlier term counts as heard at the promotion), not asking for a
//! resync, and holding every version published more than the offline timeout ago. A
//! member whose heartbeats arrive but whose answers are lost has fenced although its contact
//! is fresh; the last condition is what tells, as soon as anything was published.
//!
//! A revoke settles on its old owner alone, by the verdict's rule applied to that one node:
//! it acknowledged the revoke's version, or its stale bound at the revoke's publication is
//! `T_proceed` old. The publication snapshot of every unsettled revoke is watched until the
//! last bucket it revoked is released.

use super::*;
use crate::buckets::{self, Handoff};
use crate::contact::ContactStatus;

/// One bucket pool as the leader holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pool {
    /// Its fixed number of buckets.
    pub bucket_count: u32,
    /// Every bucket, by number.
    pub slots: Vec<Slot>,
    /// Being deleted: every bucket was revoked, none is granted again, and the pool goes once
    /// every revoke has settled (see [`Ledger::finished_deleting`]).
    pub deleting: bool,
}

impl<C: Clone> Ledger<C> {
    pub(super) fn inherit_pools(
        &mut self,
        pools: Vec<(String, u32, bool)>,
        assignments: Vec<(String, u32, Slot)>,
        now: MonoTime,
    ) {
        for (name, bucket_count, deleting) in pools {
            self.pools
                .insert(name, Pool { bucket_count, slots: vec![Slot::default(); bucket_count as usize], deleting });
        }
        for (name, bucket, slot) in assignments {
            let revoke = slot.revoke;
            let Some(target) = self.pools.get_mut(&name).and_then(|pool| pool.slots.get_mut(bucket as usize)) else {
                continue;
            };
            *target = slot;
            if let Some(version) = revoke {
                // An earlier leader's revoke: its snapshot is taken now, every inherited node
                // bounded by the promotion floor.
                self.watch_revoke(version, now);
            }
        }
    }

    fn watch_revoke(&mut self, version: u64, now: MonoTime) {
        let waiting = self.revoke_watches.entry(version).or_insert(0);
        if *waiting == 0 {
            self.tracker.collect_tombstones(now, self.proceed_after);
            self.tracker.watch(version);
        }
        *waiting += 1;
    }

    fn unwatch_revoke(&mut self, version: u64) {
        if let Some(waiting) = self.revoke_watches.get_mut(&version) {
            *waiting -= 1;
            if *waiting == 0 {
                self.revoke_watches.remove(&version);
                self.tracker.forget(version);
            }
        }
    }

    /// Records that `key` joined `pools` (its registration's).
    pub fn set_pools(&mut self, key: &NodeKey, pools: Vec<String>) {
        if pools.is_empty() {
            self.memberships.remove(key);
        } else {
            self.memberships.insert(key.clone(), pools);
        }
    }

    /// `key` stopped owning every bucket (it said so as it deregistered): a revoke from it
    /// settles at once. Only bucket ownership is settled so; its cache counts until it fenced.
    pub fn drained(&mut self, key: &NodeKey) {
        self.drained.insert(key.clone());
    }

    /// Creates pool `name` with `bucket_count` buckets, none owned, each at `base_epoch` (the
    /// highest epoch an earlier pool of that name reached, so that epochs never go back);
    /// false when it exists.
    pub fn create_pool(&mut self, name: &str, bucket_count: u32, base_epoch: u64) -> bool {
        if self.pools.contains_key(name) {
            return false;
        }
        let slot = Slot { owner: None, epoch: base_epoch, revoke: None };
        self.pools
            .insert(name.to_owned(), Pool { bucket_count, slots: vec![slot; bucket_count as usize], deleting: false });
        true
    }

    /// Marks pool `name` as being deleted (its buckets were revoked in the same change).
    pub fn mark_deleting(&mut self, name: &str) {
        if let Some(pool) = self.pools.get_mut(name) {
            pool.deleting = true;
        }
    }

    /// Whether pool `name` is being deleted and every bucket of it is released: no revoke of
    /// it is unsettled, so the pool may go.
    pub fn finished_deleting(&self, name: &str) -> bool {
        self.pools.get(name).is_some_and(|pool| {
            pool.deleting && pool.slots.iter().all(|slot| slot.owner.is_none() && slot.revoke.is_none())
        })
    }

    /// Forgets pool `name`; false when there was none.
    pub fn remove_pool(&mut self, name: &str) -> bool {
        let Some(pool) = self.pools.remove(name) else { return false };
        self.revoked_at.retain(|(pool, _), _| pool != name);
        for version in pool.slots.iter().filter_map(|slot| slot.revoke) {
            self.unwatch_revoke(version);
        }
        true
    }

    /// Every pool, by name.
    pub fn pools(&self) -> &BTreeMap<String, Pool> {
        &self.pools
    }

    /// Whether `key` counts as a live member at `now` (see the module's documentation).
    pub fn is_live(&self, key: &NodeKey, now: MonoTime) -> bool {
        if !self.tracker.is_registered(key) || self.resyncing.contains(key) {
            return false;
        }
        let heard = match self.tracker.status(key, now, self.proceed_after) {
            Some(ContactStatus::Live { silent_for }) => silent_for < self.offline_after,
            // Inherited and not heard from by this leader yet: a failover must not make every
            // member look offline before its first heartbeat arrives.
            Some(ContactStatus::Unknown) => now.saturating_since(self.promoted_at) < self.offline_after,
            _ => false,
        };
        let due = self
            .published_at
            .iter()
            .take_while(|(_, at)| *at + self.offline_after <= now)
            .last()
            .map_or(0, |(version, _)| *version);
        heard && self.tracker.acked(key) >= due
    }

    /// The live members of pool `name` at `now`.
    pub fn live_members(&self, name: &str, now: MonoTime) -> Vec<NodeKey> {
        if self.pools.get(name).is_some_and(|pool| pool.deleting) {
            return Vec::new();
        }
        self.memberships
            .iter()
            .filter(|(key, pools)| pools.iter().any(|pool| pool == name) && self.is_live(key, now))
            .map(|(key, _)| key.clone())
            .collect()
    }

    /// Whether the revoke published at `version` has settled on its old owner `key` at `now`:
    /// it acknowledged the version, or it has provably fenced since the publication.
    pub fn revoke_settled(&self, key: &NodeKey, version: u64, now: MonoTime) -> bool {
        self.revoke_settlements(std::iter::once((key, version)), now).contains(&(key.clone(), version))
    }

    fn revoke_settlements<'a>(
        &self,
        revokes: impl Iterator<Item = (&'a NodeKey, u64)>,
        now: MonoTime,
    ) -> BTreeSet<(NodeKey, u64)> {
        let mut by_version: BTreeMap<u64, BTreeSet<&NodeKey>> = BTreeMap::new();
        for (key, version) in revokes {
            by_version.entry(version).or_default().insert(key);
        }
        let mut settled = BTreeSet::new();
        let none = BTreeSet::new();
        for (version, keys) in by_version {
            let settlements = self.tracker.settlements(version);
            for key in keys {
                let done = self.drained.contains(key)
                    || match settlements.iter().find(|settlement| settlement.key == *key) {
                        // Not tracked when it was published: it held no lease.
                        None => true,
                        Some(settlement) => {
                            decide(version, std::slice::from_ref(settlement), &none, now, self.proceed_after)
                                == Verdict::Proceed
                        }
                    };
                if done {
                    settled.insert((key.clone(), version));
                }
            }
        }
        settled
    }

    /// One assignment pass over pool `name` at `now`: the releases of settled revokes, then
    /// the revokes and grants that move toward the balance over its live members.
    pub fn bucket_pass(&self, name: &str, now: MonoTime) -> Vec<Handoff> {
        let Some(pool) = self.pools.get(name) else { return Vec::new() };
        let revokes = pool.slots.iter().filter_map(|slot| Some((slot.owner.as_ref()?, slot.revoke?)));
        let settled = self.revoke_settlements(revokes, now);
        let members = self.live_members(name, now);
        buckets::pass(&pool.slots, &members, |key, version| settled.contains(&(key.clone(), version)))
    }

    /// Records `handoffs` of pool `name`, written at `version` (a revoke's version is the one
    /// its owner must acknowledge; a release and a grant need none of their own). Call right
    /// after publishing `version`, under the same lock, so that its snapshot is still held.
    /// Returns how long each handoff this finished took, from its revoke to its grant.
    pub fn record_handoffs(&mut self, name: &str, handoffs: &[Handoff], version: u64, now: MonoTime) -> Vec<Duration> {
        let mut finished = Vec::new();
        for handoff in handoffs {
            let Some(slot) = self.pools.get(name).and_then(|pool| pool.slots.get(handoff_bucket(handoff) as usize))
            else {
                continue;
            };
            let released = slot.revoke.filter(|_| matches!(handoff, Handoff::Release { .. }));
            if let Some(pool) = self.pools.get_mut(name) {
                buckets::apply(&mut pool.slots, handoff, version);
            }
            let bucket = handoff_bucket(handoff);
            match handoff {
                Handoff::Revoke { .. } => {
                    self.watch_revoke(version, now);
                    self.revoked_at.insert((name.to_owned(), bucket), now);
                }
                Handoff::Release { .. } => released.into_iter().for_each(|version| self.unwatch_revoke(version)),
                Handoff::Grant { .. } => {
                    if let Some(revoked_at) = self.revoked_at.remove(&(name.to_owned(), bucket)) {
                        finished.push(now.saturating_since(revoked_at));
                    }
                }
            }
        }
        finished
    }
}

fn handoff_bucket(handoff: &Handoff) -> u32 {
    match handoff {
        Handoff::Revoke { bucket, .. } | Handoff::Release { bucket, .. } | Handoff::Grant { bucket, .. } => *bucket,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::buckets::MoveReason;

    const PROCEED: Duration = Duration::from_millis(4000);

    fn at(ms: u64) -> MonoTime {
        MonoTime::from_duration(Duration::from_millis(ms))
    }

    fn key(node: &str) -> NodeKey {
        NodeKey::new(node, "1")
    }

    /// A term promoted at `promoted_at` ms, after earlier leaders' `earlier_grants`, with the
    /// offline timeout at its floor.
    fn term_start(promoted_at: u64, earlier_grants: Duration) -> TermStart {
        TermStart {
            promoted_at: at(promoted_at),
            earlier_grants,
            proceed_after: PROCEED,
            retention: 8,
            store_epoch: "e".into(),
            offline_after: PROCEED,
        }
    }

    /// A term at 0 with `nodes` registered in pool `p` of 4 buckets, each heard from at 10.
    fn ledger(nodes: &[&str]) -> Ledger<&'static str> {
        let start = term_start(0, Duration::ZERO);
        let mut ledger = Ledger::new(start, Inherited::default());
        assert!(ledger.create_pool("p", 4, 0));
        for node in nodes {
            ledger.register(node, "1", "addr", None, at(0));
            ledger.set_pools(&key(node), vec!["p".into()]);
            beat(&mut ledger, node, 0, 10);
        }
        ledger
    }

    fn beat(ledger: &mut Ledger<&'static str>, node: &str, applied: u64, now: u64) {
        let key = key(node);
        let beat = Beat { key: &key, applied, store_epoch: "e", needs_resync: false, refused: None };
        ledger.heartbeat(beat, None, at(now)).unwrap();
    }

    /// Publishes `handoffs` at the next version, as the coordinator does.
    fn write(ledger: &mut Ledger<&'static str>, handoffs: &[Handoff], now: u64) -> u64 {
        let version = ledger.version() + 1;
        ledger.publish(version, "buckets", None, at(now)).unwrap();
        ledger.record_handoffs("p", handoffs, version, at(now));
        version
    }

    fn owners(ledger: &Ledger<&'static str>) -> Vec<Option<String>> {
        ledger.pools()["p"].slots.iter().map(|slot| slot.owner.as_ref().map(|key| key.node_id.clone())).collect()
    }

    #[test]
    fn a_new_pool_is_granted_to_its_live_members_at_epoch_one() {
        let mut ledger = ledger(&["a", "b"]);
        let handoffs = ledger.bucket_pass("p", at(20));
        assert!(
            handoffs
                .iter()
                .all(|handoff| matches!(handoff, Handoff::Grant { epoch: 1, reason: MoveReason::Unowned, .. }))
        );
        write(&mut ledger, &handoffs, 20);
        assert_eq!(owners(&ledger), [Some("a".into()), Some("a".into()), Some("b".into()), Some("b".into())]);
        assert_eq!(ledger.bucket_pass("p", at(30)), [], "balanced");
    }

    #[test]
    fn a_joining_member_gets_buckets_only_after_their_owner_acknowledged_the_revoke() {
        let mut ledger = ledger(&["a"]);
        let grants = ledger.bucket_pass("p", at(20));
        let granted_at = write(&mut ledger, &grants, 20);
        ledger.register("b", "1", "addr", None, at(30));
        ledger.set_pools(&key("b"), vec!["p".into()]);
        beat(&mut ledger, "b", granted_at, 30);
        let revokes = ledger.bucket_pass("p", at(40));
        assert_eq!(revokes.len(), 2);
        assert!(revokes.iter().all(|handoff| matches!(handoff, Handoff::Revoke { reason: MoveReason::Balance, .. })));
        let revoked_at = write(&mut ledger, &revokes, 40);
        assert_eq!(ledger.bucket_pass("p", at(50)), [], "a still owns them until it acknowledges");

        beat(&mut ledger, "a", revoked_at, 60);
        let moves = ledger.bucket_pass("p", at(70));
        let grants: Vec<&Handoff> = moves.iter().filter(|handoff| matches!(handoff, Handoff::Grant { .. })).collect();
        assert_eq!(grants.len(), 2, "{moves:?}");
        assert!(grants.iter().all(|handoff| matches!(handoff, Handoff::Grant { epoch: 2, .. })), "{moves:?}");
        write(&mut ledger, &moves, 70);
        assert_eq!(owners(&ledger), [Some("a".into()), Some("a".into()), Some("b".into()), Some("b".into())]);
    }

    #[test]
    fn a_silent_members_buckets_move_only_once_it_has_provably_fenced() {
        let mut ledger = ledger(&["a", "b"]);
        let grants = ledger.bucket_pass("p", at(20));
        let granted_at = write(&mut ledger, &grants, 20);
        beat(&mut ledger, "a", granted_at, 30);
        beat(&mut ledger, "b", granted_at, 30);
        // b falls silent after 30; offline at 30 + PROCEED; a keeps beating.
        let offline = 30 + PROCEED.as_millis() as u64;
        beat(&mut ledger, "a", granted_at, offline);
        assert!(ledger.is_live(&key("b"), at(offline - 1)), "silent for less than the offline timeout");
        assert!(!ledger.is_live(&key("b"), at(offline)));
        let revokes = ledger.bucket_pass("p", at(offline));
        assert!(revokes.iter().all(|handoff| matches!(handoff, Handoff::Revoke { reason: MoveReason::Departed, .. })));
        let revoked_at = write(&mut ledger, &revokes, offline);
        // b's stale bound at the revoke's publication is 30: it has fenced by 30 + PROCEED,
        // and no earlier: at the floor of the offline timeout its buckets move at once.
        assert!(ledger.revoke_settled(&key("b"), revoked_at, at(offline)));
        assert!(!ledger.revoke_settled(&key("b"), revoked_at, at(offline - 1)));
        assert!(!ledger.revoke_settled(&key("a"), revoked_at, at(offline)), "a acknowledged nothing of it");
    }

    #[test]
    fn an_inherited_member_counts_as_live_until_one_offline_timeout_after_the_promotion() {
        let start = term_start(1000, Duration::from_millis(500));
        let inherited = Inherited {
            registered: vec![(key("a"), "addr".into())],
            memberships: vec![(key("a"), vec!["p".into()])],
            pools: vec![("p".into(), 4, false)],
            ..Inherited::default()
        };
        let ledger: Ledger<&'static str> = Ledger::new(start, inherited);
        let offline = 1000 + PROCEED.as_millis() as u64;
        assert_eq!(ledger.live_members("p", at(offline - 1)), [key("a")], "not heard from yet, not offline either");
        assert!(
            ledger.bucket_pass("p", at(offline - 1)).iter().all(|handoff| !matches!(handoff, Handoff::Revoke { .. }))
        );
        assert!(ledger.live_members("p", at(offline)).is_empty());
    }

    #[test]
    fn a_member_that_deregistered_drained_gives_its_buckets_away_at_once() {
        let mut ledger = ledger(&["a", "b"]);
        let grants = ledger.bucket_pass("p", at(20));
        write(&mut ledger, &grants, 20);
        ledger.drained(&key("a"));
        ledger.retire(&[key("a")], &[key("a")], Departure::Left, at(30));
        let revokes = ledger.bucket_pass("p", at(40));
        let revoked_at = write(&mut ledger, &revokes, 40);
        assert!(ledger.revoke_settled(&key("a"), revoked_at, at(41)), "no wait for a's fence");
        let moves = ledger.bucket_pass("p", at(41));
        assert_eq!(moves.iter().filter(|handoff| matches!(handoff, Handoff::Grant { .. })).count(), 2, "{moves:?}");
        let version = publish_barrier(&mut ledger, 50);
        let step = ledger.broadcast_step(version, Refusals::Ignored, None, at(51));
        assert!(matches!(step.verdict, Verdict::Wait { .. }), "its cache still counts: {step:?}");
    }

    #[test]
    fn a_new_leader_settles_the_revokes_of_a_drained_tombstone_at_once() {
        let start = term_start(1000, Duration::from_millis(500));
        let slot = Slot { owner: Some(key("a")), epoch: 3, revoke: Some(7) };
        let inherited = Inherited {
            version: 7,
            tombstones: vec![key("a"), key("b")],
            pools: vec![("p".into(), 2, false)],
            assignments: vec![("p".into(), 1, Slot { owner: Some(key("b")), ..slot.clone() }), ("p".into(), 0, slot)],
            drained: vec![key("a")],
            ..Inherited::default()
        };
        let ledger: Ledger<&'static str> = Ledger::new(start, inherited);
        assert!(ledger.revoke_settled(&key("a"), 7, at(1001)), "a said it released everything");
        assert!(!ledger.revoke_settled(&key("b"), 7, at(1001)), "b is waited out from the promotion floor");
    }

    fn publish_barrier(ledger: &mut Ledger<&'static str>, now: u64) -> u64 {
        let version = ledger.version() + 1;
        ledger.publish(version, "barrier", None, at(now)).unwrap();
        version
    }

    #[test]
    fn a_deleted_pool_goes_only_once_its_revokes_settled_and_a_new_one_carries_on_its_epochs() {
        let mut ledger = ledger(&["a"]);
        let grants = ledger.bucket_pass("p", at(20));
        let granted_at = write(&mut ledger, &grants, 20);
        beat(&mut ledger, "a", granted_at, 30);
        let revokes: Vec<Handoff> = ledger.pools()["p"]
            .slots
            .iter()
            .enumerate()
            .map(|(bucket, slot)| Handoff::Revoke {
                bucket: bucket as u32,
                from: slot.owner.clone().unwrap(),
                epoch: slot.epoch,
                reason: crate::buckets::MoveReason::Departed,
            })
            .collect();
        let deleted_at = write(&mut ledger, &revokes, 40);
        ledger.mark_deleting("p");
        assert_eq!(ledger.bucket_pass("p", at(50)), [], "nothing is granted, nothing settled yet");
        assert!(!ledger.finished_deleting("p"), "a may still work on its buckets");
        beat(&mut ledger, "a", deleted_at, 60);
        let releases = ledger.bucket_pass("p", at(70));
        assert!(releases.iter().all(|handoff| matches!(handoff, Handoff::Release { .. })) && releases.len() == 4);
        write(&mut ledger, &releases, 70);
        assert!(ledger.finished_deleting("p"));
        assert!(ledger.remove_pool("p"));
        assert!(ledger.create_pool("p", 2, 1));
        let grants = ledger.bucket_pass("p", at(80));
        assert!(grants.iter().all(|handoff| matches!(handoff, Handoff::Grant { epoch: 2, .. })), "{grants:?}");
    }

    #[test]
    fn a_member_whose_answers_are_lost_is_not_live_though_its_contact_is_fresh() {
        let mut ledger = ledger(&["a"]);
        let version = write(&mut ledger, &[], 20);
        let late = 20 + PROCEED.as_millis() as u64;
        beat(&mut ledger, "a", version - 1, late);
        assert!(!ledger.is_live(&key("a"), at(late)), "it holds no version published T_offline ago");
        beat(&mut ledger, "a", version, late + 1);
        assert!(ledger.is_live(&key("a"), at(late + 1)));
        let resync = Beat { key: &key("a"), applied: version, store_epoch: "e", needs_resync: true, refused: None };
        ledger.heartbeat(resync, None, at(late + 2)).unwrap();
        assert!(!ledger.is_live(&key("a"), at(late + 2)), "asking for a resync");
    }

    #[test]
    fn a_restarted_member_gets_its_buckets_back_only_through_a_settled_revoke_and_a_higher_epoch() {
        let mut ledger = ledger(&["a"]);
        let grants = ledger.bucket_pass("p", at(20));
        write(&mut ledger, &grants, 20);
        ledger.register("a", "2", "addr", Some("1".into()), at(30));
        let fresh = NodeKey::new("a", "2");
        ledger.set_pools(&fresh, vec!["p".into()]);
        let beat2 = Beat { key: &fresh, applied: 1, store_epoch: "e", needs_resync: false, refused: None };
        ledger.heartbeat(beat2, None, at(40)).unwrap();
        let revokes = ledger.bucket_pass("p", at(50));
        assert_eq!(revokes.len(), 4);
        assert!(revokes.iter().all(|handoff| matches!(handoff, Handoff::Revoke { from, .. } if *from == key("a"))));
        let revoked_at = write(&mut ledger, &revokes, 50);
        assert_eq!(
            ledger.bucket_pass("p", at(60)).iter().filter(|handoff| matches!(handoff, Handoff::Grant { .. })).count(),
            0
        );
        // The old incarnation's last grant was at 10: settled by 10 + PROCEED.
        let settled = 10 + PROCEED.as_millis() as u64;
        let beat2 = Beat { key: &fresh, applied: revoked_at, store_epoch: "e", needs_resync: false, refused: None };
        ledger.heartbeat(beat2, None, at(settled)).unwrap();
        let moves = ledger.bucket_pass("p", at(settled));
        assert_eq!(
            moves
                .iter()
                .filter(|handoff| matches!(handoff, Handoff::Grant { epoch: 2, to, .. } if *to == fresh))
                .count(),
            4,
            "{moves:?}"
        );
    }
}
