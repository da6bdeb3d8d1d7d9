//! Properties of the bucket plan and the handoff: balance, stickiness, minimal moves (against
//! the lower bound, and against a brute-force optimum for small pools), determinism, and
//! epochs that only grow with a bucket never granted while it has an owner.

use std::collections::BTreeMap;

use leasehold_core::buckets::{Handoff, Slot, apply, lower_bound, pass, plan};
use leasehold_core::contact::NodeKey;
use proptest::prelude::*;

/// A small deterministic generator, so that one seed stands for a whole pool.
struct SplitMix(u64);

impl SplitMix {
    fn below(&mut self, bound: u64) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        (z ^ (z >> 31)) % bound
    }
}

fn member(index: usize) -> NodeKey {
    NodeKey::new(format!("n{index:04}"), "1")
}

/// `members` live members, `departed` others that still own buckets, and `bucket_count`
/// buckets whose owners are drawn from both (or none) by `seed`.
fn pool(members: usize, departed: usize, bucket_count: usize, seed: u64) -> (Vec<NodeKey>, Vec<Option<NodeKey>>) {
    let mut rng = SplitMix(seed);
    let live: Vec<NodeKey> = (0..members).map(member).collect();
    let gone: Vec<NodeKey> = (0..departed).map(|index| NodeKey::new(format!("gone{index}"), "1")).collect();
    // Skew the draw so that some members hold far more than others.
    let owners = (0..bucket_count)
        .map(|_| match rng.below(10) {
            0 => None,
            1 if !gone.is_empty() => Some(gone[rng.below(gone.len() as u64) as usize].clone()),
            2..=4 => Some(live[0].clone()),
            _ => Some(live[rng.below(live.len() as u64) as usize].clone()),
        })
        .collect();
    (live, owners)
}

fn refs(owners: &[Option<NodeKey>]) -> Vec<Option<&NodeKey>> {
    owners.iter().map(Option::as_ref).collect()
}

fn counts(owners: &[Option<NodeKey>]) -> BTreeMap<NodeKey, usize> {
    let mut counts = BTreeMap::new();
    for owner in owners.iter().flatten() {
        *counts.entry(owner.clone()).or_default() += 1;
    }
    counts
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn the_plan_is_balanced_sticky_minimal_and_deterministic(
        members in 1usize..=1000,
        departed in 0usize..4,
        bucket_count in 1usize..=65_536,
        seed in any::<u64>(),
    ) {
        let (live, owners) = pool(members, departed, bucket_count, seed);
        let moves = plan(&refs(&owners), &live);
        prop_assert_eq!(moves.len(), lower_bound(&refs(&owners), &live), "moves equal the lower bound");

        let mut next = owners.clone();
        for step in &moves {
            prop_assert_eq!(&next[step.bucket as usize], &step.from, "each bucket moves once, from its owner");
            next[step.bucket as usize] = Some(step.to.clone());
        }
        let before = counts(&owners);
        let after = counts(&next);
        let (base, larger) = (bucket_count / members, bucket_count % members);
        prop_assert!(next.iter().all(|owner| owner.as_ref().is_some_and(|owner| live.contains(owner))), "every bucket has a live owner");
        for key in &live {
            let count = after.get(key).copied().unwrap_or(0);
            prop_assert!(count == base || count == base + 1, "{key} holds {count}, not {base} or {}", base + 1);
        }
        prop_assert_eq!(after.values().filter(|count| **count == base + 1).count(), if base == 0 && larger == 0 { 0 } else { larger });
        // Sticky: a live member loses buckets only above its target, and then only those.
        for step in &moves {
            if let Some(from) = step.from.as_ref().filter(|from| live.contains(from)) {
                prop_assert!(before[from] > after[from], "{from} lost a bucket below its target");
            }
        }
        // The larger shares go to the members that held more.
        if larger > 0 && base > 0 {
            let held = |key: &NodeKey| before.get(key).copied().unwrap_or(0);
            let least_large = live.iter().filter(|key| after[*key] == base + 1).map(held).min().unwrap();
            let most_small = live.iter().filter(|key| after[*key] == base).map(held).max().unwrap_or(0);
            prop_assert!(least_large >= most_small, "a member holding {most_small} got the smaller share over one holding {least_large}");
        }
        // Deterministic whatever the members' order; and a balanced pool stays put.
        let mut shuffled = live.clone();
        shuffled.reverse();
        prop_assert_eq!(&plan(&refs(&owners), &shuffled), &moves);
        prop_assert!(plan(&refs(&next), &live).is_empty());
    }

    #[test]
    fn no_balanced_assignment_moves_fewer_buckets(
        members in 1usize..=3,
        departed in 0usize..2,
        bucket_count in 1usize..=6,
        seed in any::<u64>(),
    ) {
        let (live, owners) = pool(members, departed, bucket_count, seed);
        let (base, larger) = (bucket_count / members, bucket_count % members);
        let mut best = usize::MAX;
        for code in 0..members.pow(bucket_count as u32) {
            let mut rest = code;
            let mut held = vec![0usize; members];
            let mut changed = 0;
            for owner in &owners {
                let to = rest % members;
                rest /= members;
                held[to] += 1;
                changed += usize::from(owner.as_ref() != Some(&live[to]));
            }
            let balanced = held.iter().all(|count| *count == base || *count == base + 1)
                && held.iter().filter(|count| **count == base + 1).count() == larger;
            if balanced {
                best = best.min(changed);
            }
        }
        prop_assert_eq!(plan(&refs(&owners), &live).len(), best);
    }

    #[test]
    fn handoffs_never_grant_an_owned_bucket_and_epochs_only_grow(
        seed in any::<u64>(),
        passes in 1usize..40,
    ) {
        let mut rng = SplitMix(seed);
        let bucket_count = 1 + rng.below(32) as usize;
        let everyone: Vec<NodeKey> = (0..6).map(member).collect();
        let mut slots = vec![Slot::default(); bucket_count];
        let mut version = 1u64;
        let mut acked: BTreeMap<NodeKey, u64> = BTreeMap::new();
        for _ in 0..passes {
            let live: Vec<NodeKey> = everyone.iter().filter(|_| rng.below(3) > 0).cloned().collect();
            for key in &everyone {
                if rng.below(2) == 0 {
                    acked.insert(key.clone(), version);
                }
            }
            let handoffs = pass(&slots, &live, |owner, at| acked.get(owner).is_some_and(|acked| *acked >= at));
            for handoff in &handoffs {
                version += 1;
                let before = slots.clone();
                apply(&mut slots, handoff, version);
                match handoff {
                    Handoff::Grant { bucket, epoch, .. } => {
                        let slot = &before[*bucket as usize];
                        prop_assert!(slot.owner.is_none() && slot.revoke.is_none(), "granted while owned: {slot:?}");
                        prop_assert_eq!(*epoch, slot.epoch + 1);
                    }
                    Handoff::Release { bucket, .. } => {
                        let slot = &before[*bucket as usize];
                        let (owner, at) = (slot.owner.clone().unwrap(), slot.revoke.unwrap());
                        prop_assert!(acked.get(&owner).is_some_and(|acked| *acked >= at), "released before its revoke settled");
                    }
                    Handoff::Revoke { bucket, .. } => prop_assert!(before[*bucket as usize].revoke.is_none()),
                }
                for (old, new) in before.iter().zip(&slots) {
                    prop_assert!(new.epoch >= old.epoch, "an epoch went down");
                }
            }
        }
    }
}
