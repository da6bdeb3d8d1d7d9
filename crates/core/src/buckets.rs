//! Bucket ownership in a pool (DESIGN §6): the plan that balances buckets over the live
//! members with the fewest moves, and the two-step handoff that never lets a bucket have two
//! owners. Pure: the leader feeds in who owns what and which revokes have settled, and writes
//! what comes out.
//!
//! A bucket moves in two steps. The revoke is published first, at a version the old owner
//! must acknowledge (it stops owning on applying it), or until the old owner has provably
//! fenced. Only once that revoke has settled is the bucket granted to its new owner, with its
//! epoch one higher. So at any instant a bucket has at most one owner that may act on it: the
//! new owner's grant is published after the old owner stopped, and epochs only grow.

use std::collections::BTreeMap;

use crate::contact::NodeKey;

/// The default number of buckets of a pool (`assign.bucket-count`).
pub const DEFAULT_BUCKET_COUNT: u32 = 128;
/// The largest number of buckets a pool may have.
pub const MAX_BUCKET_COUNT: u32 = 65_536;

/// The most pools one data node may join.
pub const MAX_POOLS_PER_NODE: usize = 16;

/// Checks a pool name: named like a catalog object (`[A-Za-z_][A-Za-z0-9_]{0,63}`, not a
/// reserved word).
pub fn validate_pool_name(field: &str, name: &str) -> Result<(), crate::ddl::DdlError> {
    crate::ddl::validate_name(field, name)
}

/// Checks the pools a data node joins: at most [`MAX_POOLS_PER_NODE`], each a valid pool
/// name, none twice.
pub fn validate_memberships(field: &str, pools: &[String]) -> Result<(), crate::ddl::DdlError> {
    if pools.len() > MAX_POOLS_PER_NODE {
        return Err(crate::ddl::DdlError::Invalid {
            field: field.to_owned(),
            message: format!("at most {MAX_POOLS_PER_NODE} pools, got {}", pools.len()),
        });
    }
    for (index, pool) in pools.iter().enumerate() {
        validate_pool_name(field, pool)?;
        if pools[..index].contains(pool) {
            return Err(crate::ddl::DdlError::Invalid {
                field: field.to_owned(),
                message: format!("pool {pool:?} is named twice"),
            });
        }
    }
    Ok(())
}

/// Checks a pool's bucket count: 1 to [`MAX_BUCKET_COUNT`].
pub fn validate_bucket_count(field: &str, bucket_count: u32) -> Result<(), crate::ddl::DdlError> {
    if !(1..=MAX_BUCKET_COUNT).contains(&bucket_count) {
        return Err(crate::ddl::DdlError::Invalid {
            field: field.to_owned(),
            message: format!("{bucket_count} is not between 1 and {MAX_BUCKET_COUNT}"),
        });
    }
    Ok(())
}

/// One bucket as the leader holds it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Slot {
    /// The incarnation it is granted to, if any (also while it is being revoked from it).
    pub owner: Option<NodeKey>,
    /// The epoch of its latest grant (0 before the first): a fencing token that only grows.
    pub epoch: u64,
    /// The version of the revoke published for it, while that revoke has not settled.
    pub revoke: Option<u64>,
}

impl Slot {
    /// Granted to `owner` and not being revoked: the planner counts it as `owner`'s.
    pub fn granted_to(&self) -> Option<&NodeKey> {
        self.owner.as_ref().filter(|_| self.revoke.is_none())
    }
}

/// Why a bucket moves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum MoveReason {
    /// It had no owner (a new pool, or its revoke settled).
    Unowned,
    /// Its owner is not a live member any more (left, offline, or replaced by a new
    /// incarnation).
    Departed,
    /// Its owner holds more than its share.
    Balance,
}

impl MoveReason {
    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            MoveReason::Unowned => "unowned",
            MoveReason::Departed => "departed",
            MoveReason::Balance => "balance",
        }
    }
}

/// One bucket the plan gives to another member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Move {
    /// The bucket.
    pub bucket: u32,
    /// Its owner now (`None` when it has none).
    pub from: Option<NodeKey>,
    /// The member it goes to.
    pub to: NodeKey,
    /// Why.
    pub reason: MoveReason,
}

/// How many buckets each of `members` members holds when balanced: ⌊B/n⌋ or ⌈B/n⌉.
fn shares(bucket_count: usize, members: usize) -> (usize, usize) {
    (bucket_count / members, bucket_count % members)
}

/// The live members, sorted and without repeats.
fn sorted(members: &[NodeKey]) -> Vec<&NodeKey> {
    let mut members: Vec<&NodeKey> = members.iter().collect();
    members.sort();
    members.dedup();
    members
}

/// Each member's target count: the ⌈B/n⌉ shares go to the members that hold the most now
/// (ties to the smaller member id), so that as few buckets as possible have to leave anyone.
fn targets(held: &[Vec<u32>], bucket_count: usize) -> Vec<usize> {
    let (base, larger) = shares(bucket_count, held.len());
    let mut order: Vec<usize> = (0..held.len()).collect();
    order.sort_by(|a, b| held[*b].len().cmp(&held[*a].len()).then(a.cmp(b)));
    let mut targets = vec![base; held.len()];
    for member in order.into_iter().take(larger) {
        targets[member] += 1;
    }
    targets
}

/// A bucket no live member holds, with its owner (a departed one) if any.
type FreeBucket<'a> = (u32, Option<&'a NodeKey>);

/// The buckets each member (by index into the sorted members) holds now, in bucket order,
/// and the buckets no live member holds.
fn holdings<'a>(owners: &'a [Option<&'a NodeKey>], members: &[&NodeKey]) -> (Vec<Vec<u32>>, Vec<FreeBucket<'a>>) {
    let index: BTreeMap<&NodeKey, usize> = members.iter().enumerate().map(|(at, key)| (*key, at)).collect();
    let mut held = vec![Vec::new(); members.len()];
    let mut free = Vec::new();
    for (bucket, owner) in owners.iter().enumerate() {
        match owner.and_then(|owner| index.get(owner)) {
            Some(&member) => held[member].push(bucket as u32),
            None => free.push((bucket as u32, *owner)),
        }
    }
    (held, free)
}

/// The fewest moves any balanced assignment needs from `owners` (one entry per bucket: the
/// member it is granted to): every bucket no live member holds, plus everything a member
/// holds above its target.
pub fn lower_bound(owners: &[Option<&NodeKey>], members: &[NodeKey]) -> usize {
    let members = sorted(members);
    if members.is_empty() {
        return 0;
    }
    let (held, free) = holdings(owners, &members);
    let targets = targets(&held, owners.len());
    free.len() + held.iter().zip(&targets).map(|(held, target)| held.len().saturating_sub(*target)).sum::<usize>()
}

/// The moves that balance `owners` (one entry per bucket: the member it is granted to) over
/// `members`: each member ends with ⌊B/n⌋ or ⌈B/n⌉ buckets, a bucket stays where it is unless
/// balance requires otherwise, and the number of moves is [`lower_bound`]. Deterministic: a
/// member keeps its lowest-numbered buckets, and free buckets go in bucket order to the
/// members short of their target in member order. With no members nothing moves.
pub fn plan(owners: &[Option<&NodeKey>], members: &[NodeKey]) -> Vec<Move> {
    let members = sorted(members);
    if members.is_empty() {
        return Vec::new();
    }
    let (held, free) = holdings(owners, &members);
    let targets = targets(&held, owners.len());
    let mut moving: Vec<(u32, Option<&NodeKey>, MoveReason)> = free
        .into_iter()
        .map(|(bucket, owner)| {
            let reason = if owner.is_some() { MoveReason::Departed } else { MoveReason::Unowned };
            (bucket, owner, reason)
        })
        .collect();
    for (member, (held, target)) in held.iter().zip(&targets).enumerate() {
        moving.extend(held.iter().skip(*target).map(|bucket| (*bucket, Some(members[member]), MoveReason::Balance)));
    }
    moving.sort_by_key(|(bucket, _, _)| *bucket);
    let mut short = held
        .iter()
        .zip(&targets)
        .enumerate()
        .flat_map(|(member, (held, target))| std::iter::repeat_n(member, target.saturating_sub(held.len())));
    moving
        .into_iter()
        .map(|(bucket, from, reason)| {
            let to = short.next().expect("the shortfall equals the buckets that move");
            Move { bucket, from: from.cloned(), to: members[to].clone(), reason }
        })
        .collect()
}

/// One write the leader makes to a bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Handoff {
    /// Take the bucket from `from`, which stops owning it on applying the revoke.
    Revoke {
        /// The bucket.
        bucket: u32,
        /// Its owner.
        from: NodeKey,
        /// The epoch it was granted at.
        epoch: u64,
        /// Why.
        reason: MoveReason,
    },
    /// The revoke from `from` settled: the bucket has no owner.
    Release {
        /// The bucket.
        bucket: u32,
        /// The owner it was revoked from.
        from: NodeKey,
    },
    /// Give the bucket to `to` at `epoch` (one above its last).
    Grant {
        /// The bucket.
        bucket: u32,
        /// The new owner.
        to: NodeKey,
        /// The new epoch.
        epoch: u64,
        /// Why.
        reason: MoveReason,
    },
}

/// One pass over a pool's `slots`: releases every revoke that has settled (`settled(owner,
/// version)`: the old owner acknowledged the revoke's version, or has provably fenced), plans
/// the balance over the live `members`, and returns the writes that move toward it, in this
/// order: releases, revokes, grants. A bucket is granted only when it has no owner and no
/// unsettled revoke, so never while its old owner may still act on it.
pub fn pass(slots: &[Slot], members: &[NodeKey], settled: impl Fn(&NodeKey, u64) -> bool) -> Vec<Handoff> {
    let mut releases = Vec::new();
    let mut pending_revoke = vec![false; slots.len()];
    for (bucket, slot) in slots.iter().enumerate() {
        if let (Some(owner), Some(version)) = (&slot.owner, slot.revoke) {
            if settled(owner, version) {
                releases.push(Handoff::Release { bucket: bucket as u32, from: owner.clone() });
            } else {
                pending_revoke[bucket] = true;
            }
        }
    }
    let owners: Vec<Option<&NodeKey>> = slots.iter().map(Slot::granted_to).collect();
    let mut revokes = Vec::new();
    let mut grants = Vec::new();
    for step in plan(&owners, members) {
        let slot = &slots[step.bucket as usize];
        match step.from {
            Some(from) => {
                revokes.push(Handoff::Revoke { bucket: step.bucket, from, epoch: slot.epoch, reason: step.reason })
            }
            None if pending_revoke[step.bucket as usize] => {}
            None => grants.push(Handoff::Grant {
                bucket: step.bucket,
                to: step.to,
                epoch: slot.epoch + 1,
                reason: step.reason,
            }),
        }
    }
    releases.into_iter().chain(revokes).chain(grants).collect()
}

/// `slots` after `handoff`, published at `version`.
pub fn apply(slots: &mut [Slot], handoff: &Handoff, version: u64) {
    match handoff {
        Handoff::Revoke { bucket, .. } => slots[*bucket as usize].revoke = Some(version),
        Handoff::Release { bucket, .. } => {
            let slot = &mut slots[*bucket as usize];
            (slot.owner, slot.revoke) = (None, None);
        }
        Handoff::Grant { bucket, to, epoch, .. } => {
            let slot = &mut slots[*bucket as usize];
            (slot.owner, slot.epoch, slot.revoke) = (Some(to.clone()), *epoch, None);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(node: &str) -> NodeKey {
        NodeKey::new(node, "1")
    }

    fn members(nodes: &[&str]) -> Vec<NodeKey> {
        nodes.iter().map(|node| key(node)).collect()
    }

    fn counts(owners: &[Option<NodeKey>]) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        for owner in owners.iter().flatten() {
            *counts.entry(owner.node_id.clone()).or_default() += 1;
        }
        counts
    }

    fn after(owners: &[Option<NodeKey>], moves: &[Move]) -> Vec<Option<NodeKey>> {
        let mut owners = owners.to_vec();
        for step in moves {
            owners[step.bucket as usize] = Some(step.to.clone());
        }
        owners
    }

    fn refs(owners: &[Option<NodeKey>]) -> Vec<Option<&NodeKey>> {
        owners.iter().map(Option::as_ref).collect()
    }

    #[test]
    fn a_new_pool_is_dealt_out_in_bucket_order_to_members_in_id_order() {
        let owners = vec![None; 5];
        let moves = plan(&refs(&owners), &members(&["b", "a"]));
        let to: Vec<&str> = moves.iter().map(|step| step.to.node_id.as_str()).collect();
        assert_eq!(to, ["a", "a", "a", "b", "b"], "ties go to the smaller id");
        assert!(moves.iter().all(|step| step.reason == MoveReason::Unowned));
    }

    #[test]
    fn a_member_joining_takes_only_its_share_from_those_above_theirs() {
        let owners: Vec<Option<NodeKey>> = (0..8).map(|bucket| Some(key(if bucket < 4 { "a" } else { "b" }))).collect();
        let moves = plan(&refs(&owners), &members(&["a", "b", "c"]));
        assert_eq!(moves.len(), 2, "8 over 3 is 3, 3, 2: one leaves each of a and b: {moves:?}");
        assert!(moves.iter().all(|step| step.to == key("c") && step.reason == MoveReason::Balance));
        assert_eq!(
            counts(&after(&owners, &moves)),
            BTreeMap::from([("a".into(), 3), ("b".into(), 3), ("c".into(), 2)])
        );
        assert_eq!(lower_bound(&refs(&owners), &members(&["a", "b", "c"])), 2);
    }

    #[test]
    fn a_departed_members_buckets_alone_move_and_the_larger_shares_stay_with_who_holds_more() {
        let owners: Vec<Option<NodeKey>> =
            ["a", "a", "a", "b", "b", "c", "c"].iter().map(|node| Some(key(node))).collect();
        let moves = plan(&refs(&owners), &members(&["a", "b"]));
        let moved: Vec<(u32, &str)> = moves.iter().map(|step| (step.bucket, step.to.node_id.as_str())).collect();
        assert_eq!(moved, [(5, "a"), (6, "b")], "7 over 2 is 4 and 3: a, holding 3, gets the 4");
        assert!(moves.iter().all(|step| step.reason == MoveReason::Departed));
    }

    #[test]
    fn a_new_incarnation_of_a_member_does_not_inherit_its_predecessors_buckets() {
        let owners = vec![Some(NodeKey::new("a", "1")), Some(key("b"))];
        let moves = plan(&refs(&owners), &[NodeKey::new("a", "2"), key("b")]);
        assert_eq!(
            moves,
            [Move {
                bucket: 0,
                from: Some(NodeKey::new("a", "1")),
                to: NodeKey::new("a", "2"),
                reason: MoveReason::Departed
            }]
        );
    }

    #[test]
    fn a_balanced_pool_does_not_move_and_no_members_move_nothing() {
        let owners: Vec<Option<NodeKey>> = (0..6).map(|bucket| Some(key(["a", "b", "c"][bucket % 3]))).collect();
        assert!(plan(&refs(&owners), &members(&["c", "a", "b"])).is_empty());
        assert!(plan(&refs(&owners), &[]).is_empty());
    }

    fn slots(owners: &[Option<&str>]) -> Vec<Slot> {
        owners.iter().map(|owner| Slot { owner: owner.map(key), epoch: 1, revoke: None }).collect()
    }

    #[test]
    fn a_move_revokes_first_and_grants_at_the_next_epoch_only_once_the_revoke_settled() {
        let mut pool = slots(&[Some("a"), Some("a")]);
        let handoffs = pass(&pool, &members(&["a", "b"]), |_, _| false);
        assert_eq!(handoffs, [Handoff::Revoke { bucket: 1, from: key("a"), epoch: 1, reason: MoveReason::Balance }]);
        apply(&mut pool, &handoffs[0], 10);

        assert_eq!(
            pass(&pool, &members(&["a", "b"]), |_, _| false),
            [],
            "nothing is granted while the revoke is unsettled"
        );

        let settled_at_10 = |owner: &NodeKey, version: u64| owner == &key("a") && version == 10;
        let handoffs = pass(&pool, &members(&["a", "b"]), settled_at_10);
        assert_eq!(
            handoffs,
            [
                Handoff::Release { bucket: 1, from: key("a") },
                Handoff::Grant { bucket: 1, to: key("b"), epoch: 2, reason: MoveReason::Unowned },
            ]
        );
        for handoff in &handoffs {
            apply(&mut pool, handoff, 11);
        }
        assert_eq!(pool[1], Slot { owner: Some(key("b")), epoch: 2, revoke: None });
        assert_eq!(pass(&pool, &members(&["a", "b"]), |_, _| false), [], "balanced");
    }

    #[test]
    fn an_unowned_bucket_is_granted_at_once_and_a_departed_owners_bucket_is_revoked_first() {
        let pool = slots(&[None, Some("gone")]);
        let handoffs = pass(&pool, &members(&["a"]), |_, _| false);
        assert_eq!(
            handoffs,
            [
                Handoff::Revoke { bucket: 1, from: key("gone"), epoch: 1, reason: MoveReason::Departed },
                Handoff::Grant { bucket: 0, to: key("a"), epoch: 2, reason: MoveReason::Unowned },
            ]
        );
    }

    #[test]
    fn with_no_members_an_owner_keeps_its_buckets_until_someone_can_take_them() {
        let pool = slots(&[Some("gone")]);
        assert_eq!(pass(&pool, &[], |_, _| true), []);
    }
}
