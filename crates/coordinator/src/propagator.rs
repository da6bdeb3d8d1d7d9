//! `ClusterCachePropagator`: pushes a published version to every agent that has not
//! acknowledged it, in parallel, in rounds with backoff, and asks the verdict after each
//! round (DESIGN §4). Acknowledgements count whether they come back from a push or with a
//! heartbeat; a node that stays silent is waited out until it has provably fenced.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::time::Duration;

use leasehold::status::{error_reason, reason};
use leasehold::v1::ApplyInvalidationRequest;
use leasehold::v1::agent_client::AgentClient;
use leasehold_core::contact::NodeKey;
use leasehold_core::ledger::Refusals;
use leasehold_core::propagation::{NextStep, PropagationPlan, Waiting};
use leasehold_core::verdict::Verdict;
use tonic::transport::{Channel, Endpoint};
use tracing::{debug, info, warn};

use crate::metadata_leader::{MetadataError, MetadataLeader, PushTarget};
use crate::metrics;

/// How a broadcast ended well.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BroadcastOutcome {
    /// The version.
    pub version: u64,
    /// Nodes that acknowledged it.
    pub acknowledged: Vec<String>,
    /// Nodes waited out until they had provably fenced.
    pub fenced: Vec<String>,
    /// How long it took on the leader's clock.
    pub waited: Duration,
}

/// How a broadcast ended badly.
#[derive(Debug, thiserror::Error)]
pub enum BroadcastError {
    /// Agents answered that they cannot apply the version.
    #[error("broadcast of version {version} failed: {} cannot apply it", .refused.join(", "))]
    Failed {
        /// The version.
        version: u64,
        /// The agents that refused.
        refused: Vec<String>,
    },
    /// Past the budget, which only a bug reaches.
    #[error("broadcast of version {version} ran past its budget of {budget:?}; still waiting for {}", .pending.join(", "))]
    OverBudget {
        /// The version.
        version: u64,
        /// The budget.
        budget: Duration,
        /// The nodes still pending.
        pending: Vec<String>,
    },
    /// The term ended (or the store failed) while broadcasting.
    #[error(transparent)]
    Leader(#[from] MetadataError),
}

/// Whether an agent's refusal fails a broadcast.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// A reversible step (a prepare): a refusal fails the broadcast at once, and the caller
    /// rolls back.
    Reversible,
    /// A step that only rolls forward (a commit, a rollback): a node that cannot apply it
    /// cannot renew its lease either, so it is waited out until it has fenced.
    Forward,
}

/// Pushes to agents, with a cached channel per agent address.
#[derive(Debug)]
pub struct Propagator {
    plan: PropagationPlan,
    push_timeout: Duration,
    channels: Mutex<BTreeMap<String, Channel>>,
}

struct Forget<'a> {
    leader: &'a MetadataLeader,
    version: u64,
}

impl Drop for Forget<'_> {
    fn drop(&mut self) {
        self.leader.forget(self.version);
    }
}

enum PushResult {
    Applied(u64),
    CannotApply,
    Other,
}

impl Propagator {
    /// A propagator with `plan`; each push has `push_timeout`.
    pub fn new(plan: PropagationPlan, push_timeout: Duration) -> Self {
        Self { plan, push_timeout, channels: Mutex::new(BTreeMap::new()) }
    }

    fn channel(&self, address: &str) -> Option<Channel> {
        let mut channels = self.channels.lock().expect("channel map poisoned");
        if let Some(channel) = channels.get(address) {
            return Some(channel.clone());
        }
        let channel = Endpoint::from_shared(format!("http://{address}"))
            .ok()?
            .connect_timeout(self.push_timeout)
            .timeout(self.push_timeout)
            .tcp_nodelay(true)
            .connect_lazy();
        channels.insert(address.to_owned(), channel.clone());
        Some(channel)
    }

    /// Broadcasts `version` until the verdict is `Proceed` or (in `Reversible` mode) `Fail`.
    pub async fn broadcast(
        &self,
        leader: &MetadataLeader,
        version: u64,
        mode: Mode,
    ) -> Result<BroadcastOutcome, BroadcastError> {
        // Whatever ends the broadcast (an answer, an error, the caller going away), the
        // publication snapshot is no longer needed.
        leader.watch(version);
        let _forget = Forget { leader, version };
        let mut plan = self.plan.covering(leader.proceed_after() + leader.earlier_grants());
        if let Some(cut) = crate::failpoint::millis(crate::failpoint::BROADCAST_BUDGET_CUT) {
            warn!(version, budget_ms = cut, "failpoint: the broadcast's budget is cut");
            plan.budget = Duration::from_millis(cut);
        }
        let started = leader.now();
        let mut refused = BTreeSet::new();
        let mut round = 0u32;
        // Pushes stay in flight across evaluations: a slow or unreachable node never holds up
        // the verdict on the others, and a node is never pushed to twice at once.
        let mut inflight = tokio::task::JoinSet::new();
        let mut pushing: BTreeSet<NodeKey> = BTreeSet::new();
        let mut next_push_at = started;
        // The verdict is judged again only when something it depends on may have changed: an
        // answer that settles the last node the previous verdict waited for, a refusal, an
        // acknowledgement that came with a heartbeat (or a refusal it reported), the time at
        // which a node settles by time alone, a push round, or the term's end. Between those,
        // nothing can turn `Wait` into `Proceed`, and judging after every answer cost a pass
        // over every node (with 1 000 agents, most of the leader's CPU in a broadcast).
        let mut judge = true;
        let mut waiting = Waiting::default();
        // Acknowledgement events this loop accounts for (its own answers' included): any other
        // (a heartbeat's, another broadcast's push) calls for a verdict, even one that came
        // while this loop was busy with its answers and not waiting on `acknowledged`.
        let mut accounted = leader.ack_events();
        let mut wake_at = started;
        let result = loop {
            leader.check_term()?;
            // Armed before the verdict is read, so that no acknowledgement slips between.
            let acknowledged = leader.acknowledged();
            tokio::pin!(acknowledged);
            acknowledged.as_mut().enable();
            let events = leader.ack_events();
            judge |= events != accounted;
            accounted = events;
            let push_time = leader.now() >= next_push_at;
            if judge || push_time {
                judge = false;
                // Pushes are due once per pause, and only to nodes not pushed to already: the
                // ledger plans them for the nodes the verdict still waits for (one settled by
                // time has provably fenced, and a push would only time out).
                let pushes_due = push_time.then_some(&pushing);
                let refusals = match mode {
                    Mode::Reversible => Refusals::Counted(&refused),
                    Mode::Forward => Refusals::Ignored,
                };
                let (step, now) = leader.broadcast_step(version, refusals, pushes_due);
                wake_at = match plan.next_step(&step.verdict, round, started, now) {
                    NextStep::Proceed => {
                        let names = |keys: &[NodeKey]| keys.iter().map(ToString::to_string).collect();
                        break Ok(BroadcastOutcome {
                            version,
                            acknowledged: names(&step.acknowledged),
                            fenced: names(&step.fenced),
                            waited: now - started,
                        });
                    }
                    NextStep::Fail => {
                        // The verdict names every refusal it counted: the pushes' and those the
                        // nodes' heartbeats report.
                        let refused = match &step.verdict {
                            Verdict::Fail { refused } => refused.iter().map(ToString::to_string).collect(),
                            _ => refused.iter().map(ToString::to_string).collect(),
                        };
                        break Err(BroadcastError::Failed { version, refused });
                    }
                    NextStep::OverBudget => {
                        let pending = match &step.verdict {
                            Verdict::Wait { pending, .. } => pending.iter().map(ToString::to_string).collect(),
                            _ => Vec::new(),
                        };
                        break Err(BroadcastError::OverBudget { version, budget: plan.budget, pending });
                    }
                    NextStep::RetryAt(at) => at,
                };
                waiting.judged(step.verdict);
                if push_time {
                    if !step.targets.is_empty() {
                        metrics::broadcast_round();
                    }
                    for (key, push) in self.pushes(leader, step.targets) {
                        pushing.insert(key);
                        inflight.spawn(push);
                    }
                    next_push_at = now + plan.pause_after(round);
                    round += 1;
                }
            }
            let wait = leader.now().until(wake_at.min(next_push_at));
            tokio::select! {
                Some(joined) = inflight.join_next(), if !inflight.is_empty() => {
                    // Take every answer that is in, then judge once, if they can have changed
                    // the verdict.
                    let mut answers = vec![joined];
                    while let Some(more) = inflight.try_join_next() {
                        answers.push(more);
                    }
                    for answer in answers {
                        // A push task cannot panic; if one did, forget which are in flight
                        // rather than never pushing to its node again (a second push is
                        // harmless).
                        let Ok((key, result)) = answer else {
                            pushing.clear();
                            judge = true;
                            continue;
                        };
                        pushing.remove(&key);
                        match result {
                            PushResult::Applied(applied) => {
                                if leader.record_ack(&key, applied) {
                                    accounted += 1;
                                }
                                judge |= waiting.answered(&key, applied, version);
                            }
                            PushResult::CannotApply if mode == Mode::Reversible => {
                                warn!(version, node = %key, "an agent cannot apply the change: the broadcast fails");
                                refused.insert(key);
                                judge = true;
                            }
                            PushResult::CannotApply => {
                                warn!(version, node = %key, "an agent cannot apply a change that only rolls forward; waiting until it has fenced");
                            }
                            PushResult::Other => {}
                        }
                    }
                }
                _ = tokio::time::sleep(wait) => judge = true,
                _ = &mut acknowledged => judge = true,
                _ = leader.token().cancelled() => judge = true,
            }
        };
        let waited = leader.now() - started;
        match &result {
            Ok(outcome) => {
                metrics::broadcast("proceed", waited);
                info!(version, rounds = round, waited_ms = waited.as_millis() as u64, waited_us = waited.as_micros() as u64, acknowledged = outcome.acknowledged.len(), fenced = ?outcome.fenced, "broadcast settled: proceed");
            }
            Err(error) => {
                metrics::broadcast("fail", waited);
                warn!(version, rounds = round, waited_ms = waited.as_millis() as u64, %error, "broadcast failed");
            }
        }
        result
    }

    /// One push per target that has changes to carry, each with its own timeout.
    fn pushes(
        &self,
        leader: &MetadataLeader,
        targets: Vec<PushTarget>,
    ) -> Vec<(NodeKey, impl Future<Output = (NodeKey, PushResult)> + Send + 'static)> {
        targets
            .into_iter()
            .filter(|target| !target.changes.is_empty())
            .filter_map(|target| {
                let channel = self.channel(&target.address)?;
                let request = ApplyInvalidationRequest {
                    term: leader.term(),
                    leader_node_id: leader.leader_node_id().to_owned(),
                    store_epoch: leader.store_epoch().to_owned(),
                    changes: target.changes,
                    incarnation: target.key.incarnation.clone(),
                };
                let timeout = self.push_timeout;
                let key = target.key;
                let push = {
                    let key = key.clone();
                    async move {
                        let answer =
                            tokio::time::timeout(timeout, AgentClient::new(channel).apply_invalidation(request)).await;
                        let result = match answer {
                            Ok(Ok(response)) => PushResult::Applied(response.into_inner().applied_version),
                            Ok(Err(status)) if error_reason(&status).as_deref() == Some(reason::CANNOT_APPLY) => {
                                PushResult::CannotApply
                            }
                            Ok(Err(status)) => {
                                debug!(node = %key, code = ?status.code(), message = status.message(), "push not applied");
                                PushResult::Other
                            }
                            Err(_) => {
                                debug!(node = %key, "push timed out");
                                PushResult::Other
                            }
                        };
                        metrics::push(match result {
                            PushResult::Applied(_) => "applied",
                            PushResult::CannotApply => "cannot_apply",
                            PushResult::Other => "not_applied",
                        });
                        (key, result)
                    }
                };
                Some((key, push))
            })
            .collect()
    }
}
