//! The propagator's plan: rounds of pushes with backoff, the verdict after each round, and a
//! budget that only a bug should ever reach (the verdict settles within `T_proceed`, plus one
//! coordinator lease after a failover).

use std::collections::BTreeSet;
use std::time::Duration;

use crate::clock::MonoTime;
use crate::contact::NodeKey;
use crate::verdict::Verdict;

/// Retry and budget settings of a broadcast.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PropagationPlan {
    /// `broadcast.retry-interval`: the pause after the first round.
    pub retry_interval: Duration,
    /// The longest pause between rounds.
    pub max_retry_interval: Duration,
    /// `broadcast.budget`: give up (a bug) after this long.
    pub budget: Duration,
}

/// What the propagator does after a round.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NextStep {
    /// Return OK.
    Proceed,
    /// Roll back or return `ABORTED`.
    Fail,
    /// Past the budget: return an internal error naming the pending nodes.
    OverBudget,
    /// Push again to the pending nodes at `at` (or earlier if an acknowledgement arrives).
    RetryAt(MonoTime),
}

impl PropagationPlan {
    /// The pause after round `round` (0-based): doubling from the retry interval.
    pub fn pause_after(&self, round: u32) -> Duration {
        let factor = 1u32 << round.min(16);
        (self.retry_interval * factor).min(self.max_retry_interval.max(self.retry_interval))
    }

    /// This plan for a term whose verdict can need up to `needed` after a publication (its
    /// `T_proceed`, from the largest fence that term loaded, plus the promotion floor): the
    /// budget is never below that. The fence may have been lowered since the largest one was
    /// granted, or raised by another coordinator, so the budget is judged per term and never
    /// once at start: a budget the verdict can outrun would make a broadcast to a node whose
    /// answers are lost fail, and its procedure retry, forever.
    pub fn covering(&self, needed: Duration) -> PropagationPlan {
        PropagationPlan { budget: self.budget.max(needed + self.max_retry_interval), ..self.clone() }
    }

    /// The step after round `round` of a broadcast that started at `started`.
    pub fn next_step(&self, verdict: &Verdict, round: u32, started: MonoTime, now: MonoTime) -> NextStep {
        match verdict {
            Verdict::Proceed => NextStep::Proceed,
            Verdict::Fail { .. } => NextStep::Fail,
            Verdict::Wait { next_settlement, .. } => {
                if now.saturating_since(started) >= self.budget {
                    return NextStep::OverBudget;
                }
                let retry = now + self.pause_after(round);
                let at = next_settlement.map_or(retry, |settles| settles.min(retry));
                NextStep::RetryAt(at.min(started + self.budget))
            }
        }
    }
}

/// The nodes the last verdict waited for. Settled nodes stay settled (acknowledgements only
/// grow, time only passes, and the nodes that count are those of the publication's snapshot),
/// so push answers can turn the verdict from `Wait` only once every one of these acknowledged:
/// until then the propagator does not judge again on an answer.
#[derive(Debug, Default)]
pub struct Waiting {
    nodes: BTreeSet<NodeKey>,
}

impl Waiting {
    /// After a verdict: the nodes it waits for.
    pub fn judged(&mut self, verdict: Verdict) {
        self.nodes = match verdict {
            Verdict::Wait { pending, .. } => pending.into_iter().collect(),
            Verdict::Proceed | Verdict::Fail { .. } => BTreeSet::new(),
        };
    }

    /// `key` answered a push of `version` holding `applied`: whether the verdict is worth
    /// judging again (no node it waited for is left).
    pub fn answered(&mut self, key: &NodeKey, applied: u64, version: u64) -> bool {
        if applied >= version {
            self.nodes.remove(key);
        }
        self.nodes.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contact::NodeKey;

    fn at(ms: u64) -> MonoTime {
        MonoTime::from_duration(Duration::from_millis(ms))
    }

    fn plan() -> PropagationPlan {
        PropagationPlan {
            retry_interval: Duration::from_millis(500),
            max_retry_interval: Duration::from_secs(2),
            budget: Duration::from_secs(10),
        }
    }

    #[test]
    fn pauses_double_up_to_the_cap() {
        let pauses: Vec<_> = (0..5).map(|round| plan().pause_after(round).as_millis()).collect();
        assert_eq!(pauses, vec![500, 1000, 2000, 2000, 2000]);
    }

    #[test]
    fn waits_for_the_earlier_of_a_retry_and_a_settlement() {
        let wait = Verdict::Wait { pending: vec![NodeKey::new("a", "1")], next_settlement: Some(at(1200)) };
        assert_eq!(plan().next_step(&wait, 0, at(0), at(1000)), NextStep::RetryAt(at(1200)));
        assert_eq!(plan().next_step(&wait, 0, at(0), at(100)), NextStep::RetryAt(at(600)));
        assert_eq!(plan().next_step(&wait, 3, at(0), at(10_000)), NextStep::OverBudget);
        assert_eq!(plan().next_step(&Verdict::Proceed, 0, at(0), at(0)), NextStep::Proceed);
        assert_eq!(plan().next_step(&Verdict::Fail { refused: vec![] }, 0, at(0), at(0)), NextStep::Fail);
    }

    #[test]
    fn a_term_that_loaded_a_larger_fence_gets_a_budget_its_verdict_cannot_outrun() {
        let plan = PropagationPlan {
            retry_interval: Duration::from_millis(500),
            max_retry_interval: Duration::from_secs(2),
            budget: Duration::from_secs(10),
        };
        assert_eq!(plan.covering(Duration::from_secs(4)).budget, Duration::from_secs(10), "already enough");
        assert_eq!(plan.covering(Duration::from_secs(13)).budget, Duration::from_secs(15), "need plus one round");
        assert_eq!(plan.covering(Duration::from_secs(13)).retry_interval, plan.retry_interval);
    }

    fn wait(nodes: &[&str]) -> Verdict {
        Verdict::Wait { pending: nodes.iter().map(|node| NodeKey::new(*node, "1")).collect(), next_settlement: None }
    }

    #[test]
    fn answers_call_for_a_new_verdict_only_once_every_waited_node_acknowledged() {
        let mut waiting = Waiting::default();
        waiting.judged(wait(&["a", "b", "c"]));
        assert!(!waiting.answered(&NodeKey::new("a", "1"), 7, 7), "b and c are still waited for");
        assert!(!waiting.answered(&NodeKey::new("b", "1"), 6, 7), "b holds an older version");
        assert!(!waiting.answered(&NodeKey::new("d", "1"), 7, 7), "d was not waited for");
        assert!(!waiting.answered(&NodeKey::new("c", "1"), 8, 7), "b is still waited for");
        assert!(waiting.answered(&NodeKey::new("b", "1"), 7, 7), "the last one acknowledged");
    }

    #[test]
    fn a_new_verdict_replaces_the_nodes_waited_for() {
        let mut waiting = Waiting::default();
        waiting.judged(wait(&["a", "b"]));
        waiting.judged(wait(&["b"]));
        assert!(waiting.answered(&NodeKey::new("b", "1"), 3, 3));
        waiting.judged(Verdict::Proceed);
        assert!(waiting.answered(&NodeKey::new("a", "1"), 0, 3), "nothing is waited for after a decision");
    }
}
