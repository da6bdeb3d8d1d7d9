//! The broadcast verdict (`MetadataBroadcastVerdict`, DESIGN §4): may the leader proceed past
//! version `V`?
//!
//! A node is settled for `V` when it acknowledged `V`, or when `now − S(n, V) ≥ T_proceed`:
//! by then it has fenced, whatever its clock and the network did. `Proceed` once every node
//! is settled; `Fail` at once when an agent answered that it cannot apply `V`; `Wait`
//! otherwise, with the earliest instant at which time alone would settle a pending node.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::clock::MonoTime;
use crate::contact::{NodeKey, Settlement};

/// The verdict on one version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Every node acknowledged or has provably fenced.
    Proceed,
    /// Some nodes are pending.
    Wait {
        /// The nodes that are neither acknowledged nor provably fenced.
        pending: Vec<NodeKey>,
        /// The earliest instant at which one of them is settled by time alone.
        next_settlement: Option<MonoTime>,
    },
    /// An agent answered that it cannot apply the version.
    Fail {
        /// The agents that refused.
        refused: Vec<NodeKey>,
    },
}

/// Decides the verdict on `version` at `now`.
pub fn decide(
    version: u64,
    settlements: &[Settlement],
    refused: &BTreeSet<NodeKey>,
    now: MonoTime,
    proceed_after: Duration,
) -> Verdict {
    if !refused.is_empty() {
        return Verdict::Fail { refused: refused.iter().cloned().collect() };
    }
    let mut pending = Vec::new();
    let mut next_settlement: Option<MonoTime> = None;
    for settlement in settlements {
        if settlement.acked >= version {
            continue;
        }
        let Some(bound) = settlement.stale_bound else {
            continue;
        };
        let settles_at = bound + proceed_after;
        if now >= settles_at {
            continue;
        }
        pending.push(settlement.key.clone());
        next_settlement = Some(next_settlement.map_or(settles_at, |next| next.min(settles_at)));
    }
    if pending.is_empty() { Verdict::Proceed } else { Verdict::Wait { pending, next_settlement } }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PROCEED: Duration = Duration::from_millis(4060);

    fn at(ms: u64) -> MonoTime {
        MonoTime::from_duration(Duration::from_millis(ms))
    }

    fn settlement(node: &str, acked: u64, bound: Option<u64>) -> Settlement {
        Settlement { key: NodeKey::new(node, "1"), acked, stale_bound: bound.map(at) }
    }

    #[test]
    fn proceeds_once_every_node_acknowledged() {
        let settlements = [settlement("a", 7, Some(100)), settlement("b", 8, Some(100))];
        assert_eq!(decide(7, &settlements, &BTreeSet::new(), at(200), PROCEED), Verdict::Proceed);
    }

    #[test]
    fn a_silent_node_settles_t_proceed_after_its_stale_bound() {
        let settlements = [settlement("a", 7, Some(100)), settlement("b", 6, Some(1000))];
        let waiting = decide(7, &settlements, &BTreeSet::new(), at(5059), PROCEED);
        assert_eq!(waiting, Verdict::Wait { pending: vec![NodeKey::new("b", "1")], next_settlement: Some(at(5060)) });
        assert_eq!(decide(7, &settlements, &BTreeSet::new(), at(5060), PROCEED), Verdict::Proceed);
    }

    #[test]
    fn a_node_that_held_no_lease_is_settled() {
        assert_eq!(decide(7, &[settlement("a", 0, None)], &BTreeSet::new(), at(0), PROCEED), Verdict::Proceed);
    }

    #[test]
    fn a_refusal_fails_at_once() {
        let refused: BTreeSet<_> = [NodeKey::new("a", "1")].into();
        let verdict = decide(7, &[settlement("a", 6, Some(100))], &refused, at(0), PROCEED);
        assert_eq!(verdict, Verdict::Fail { refused: vec![NodeKey::new("a", "1")] });
    }
}
