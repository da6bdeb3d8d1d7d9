//! The resource keeper (DESIGN §7): while this coordinator leads, restarts dead worker
//! processes and keeps every group at its minimum. The decisions are core's
//! ([`leasehold_core::keeper::Keeper::keep`]); this loop gathers what they need, carries out
//! the actions with term-guarded writes, and requeues. Starting and stopping a process is the
//! job of the coordinator that runs its container ([`crate::container_runner`]): the leader
//! only writes the intent (a new attempt id, or the cleaning mark) and wakes it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use leasehold_core::keeper::{Action, GroupView, Keeper, Observation, Policy, ResourceState, ResourceView, Subject};
use leasehold_store::ResourceRow;
use tokio::sync::Notify;
use tracing::{info, warn};

use crate::container::Containers;
use crate::metadata_leader::{MetadataError, MetadataLeader};
use crate::metrics;

/// What the keeper runs with, shared by the loop of every term and the `Resources` service.
#[derive(Debug)]
pub struct ResourceKeeper {
    /// `resources.auto-restart.*`.
    pub policy: Policy,
    /// How often a pass runs.
    pub interval: Duration,
    /// The configured containers.
    pub containers: Containers,
    /// The current term's memory (orphans and when they became one).
    memory: Mutex<Keeper>,
    /// Woken when an intent was written, so that this coordinator's container runner acts at
    /// once rather than at its next poll.
    pub intents: Arc<Notify>,
}

impl ResourceKeeper {
    /// A keeper with `policy`, passes every `interval`, over `containers`.
    pub fn new(policy: Policy, interval: Duration, containers: Containers) -> Self {
        Self { policy, interval, containers, memory: Mutex::new(Keeper::new()), intents: Arc::new(Notify::new()) }
    }

    /// Since when `resource` has been an orphan in this term's view (store clock, ms).
    pub fn orphan_since(&self, resource: &str) -> Option<i64> {
        self.memory.lock().expect("keeper poisoned").orphan_since(resource)
    }

    /// Runs passes until `leader`'s term (or state) ends.
    pub async fn run(self: Arc<Self>, leader: Arc<MetadataLeader>) {
        *self.memory.lock().expect("keeper poisoned") = Keeper::new();
        loop {
            metrics::loop_iteration("keeper");
            let started = Instant::now();
            match self.pass(&leader).await {
                Ok(()) => {}
                Err(MetadataError::TermEnded { .. } | MetadataError::StaleTerm { .. }) => return,
                Err(error) => warn!(%error, "resource keeper pass failed; trying again"),
            }
            metrics::keeper_pass(started.elapsed());
            tokio::select! {
                _ = leader.token().cancelled() => return,
                _ = tokio::time::sleep(self.interval) => {}
            }
        }
    }

    async fn pass(&self, leader: &MetadataLeader) -> Result<(), MetadataError> {
        let (groups, resources) = leader.resources().await?;
        let now_ms = leader.store_now_ms().await?;
        let live = leader.live_resources();
        let in_flight = self.in_flight(&resources);
        let group_views: Vec<GroupView> = groups
            .iter()
            .map(|group| GroupView {
                name: group.name.clone(),
                container: group.container.clone(),
                min_members: group.min_members,
            })
            .collect();
        let resource_views: Vec<ResourceView> = resources
            .iter()
            .map(|row| ResourceView {
                id: row.id.clone(),
                group: row.group.clone(),
                container: row.container.clone(),
                state: row.state,
                attempts: row.attempts,
                last_attempt_ms: row.last_attempt_ms,
            })
            .collect();
        let support = self.containers.support();
        let seen = Observation {
            groups: &group_views,
            resources: &resource_views,
            live: &live,
            in_flight: &in_flight,
            containers: &support,
            now_ms,
        };
        let actions = {
            let mut memory = self.memory.lock().expect("keeper poisoned");
            let actions = memory.keep(&seen, &self.policy);
            metrics::keeper_orphans(memory.orphans().count());
            actions
        };
        let rows: BTreeMap<&str, &ResourceRow> = resources.iter().map(|row| (row.id.as_str(), row)).collect();
        for action in actions {
            // One resource's failure must not hold up the others.
            if let Err(error) = self.act(leader, &action, &rows).await {
                if matches!(error, MetadataError::TermEnded { .. } | MetadataError::StaleTerm { .. }) {
                    return Err(error);
                }
                warn!(?action, %error, "resource keeper action failed; it is tried again at the next pass");
            }
        }
        Ok(())
    }

    /// Resources whose start or stop the container's coordinator has not done yet. A start
    /// no coordinator will ever take on (an external or unknown container) is not in flight:
    /// such a resource is an orphan to warn about.
    fn in_flight(&self, resources: &[ResourceRow]) -> BTreeSet<String> {
        resources
            .iter()
            .filter(|row| {
                let start = row.start_pending() && self.has_runner(row);
                start || self.awaits_stop(row)
            })
            .map(|row| row.id.clone())
            .collect()
    }

    /// Whether a coordinator runs the resource's container (it is `local`).
    fn has_runner(&self, row: &ResourceRow) -> bool {
        self.containers.get(&row.container).is_some_and(|container| container.node().is_some())
    }

    /// Whether a cleaning resource still waits for its container's coordinator to stop it.
    fn awaits_stop(&self, row: &ResourceRow) -> bool {
        row.stop_pending() && self.has_runner(row)
    }

    async fn act(
        &self,
        leader: &MetadataLeader,
        action: &Action,
        rows: &BTreeMap<&str, &ResourceRow>,
    ) -> Result<(), MetadataError> {
        match action {
            Action::Restart { resource, attempt } => {
                let since = self.orphan_since(resource);
                if let Some(attempt_id) = leader.record_attempt(resource, *attempt).await? {
                    info!(
                        %resource,
                        attempt,
                        max_retries = self.policy.max_retries,
                        attempt_id = %attempt_id,
                        orphan_since_ms = ?since,
                        "restarting an orphaned resource: no live data node carries its id"
                    );
                    metrics::keeper_restart("requested");
                    self.intents.notify_waiters();
                }
            }
            Action::Provision { group, count } => {
                for _ in 0..*count {
                    let id = format!("{group}-{}", short_id());
                    leader.create_resource(&id, group, &BTreeMap::new()).await?;
                    info!(%group, resource = %id, "provisioned a resource: the group is below its minimum");
                    metrics::keeper_provisioned();
                }
                self.intents.notify_waiters();
            }
            Action::Cleanup { resource } => {
                let mut row = rows.get(resource.as_str()).map(|row| (*row).clone());
                if row.as_ref().is_some_and(|row| row.state == ResourceState::Active) {
                    let attempts = row.as_ref().map_or(0, |row| row.attempts);
                    warn!(%resource, attempts, "giving up on a resource after its last attempt; cleaning it up");
                    row = Some(leader.mark_cleaning(resource).await?);
                }
                let Some(row) = row else { return Ok(()) };
                if self.awaits_stop(&row) {
                    // Its container's coordinator stops it first; the next pass finishes.
                    self.intents.notify_waiters();
                    return Ok(());
                }
                leader.finish_cleanup(resource).await?;
                info!(%resource, "resource cleaned up: stopped, its data node deregistered, its row deleted");
                metrics::keeper_cleanup();
            }
            Action::ResetAttempts { resource } => {
                leader.reset_attempts(resource).await?;
                info!(%resource, "a resource stayed live for a whole grace period; its attempts start from 0 again");
            }
            Action::Warn { subject, reason } => {
                match subject {
                    Subject::Resource(resource) => {
                        warn!(%resource, reason = reason.as_str(), "an orphaned resource is not restarted: its container is unknown or opted out of restarts; delete it or fix [containers]")
                    }
                    Subject::Group(group) => {
                        warn!(%group, reason = reason.as_str(), "a group below its minimum is not filled: its container is unknown or opted out of restarts")
                    }
                }
                metrics::keeper_warned(reason.as_str());
            }
        }
        Ok(())
    }
}

/// A short random suffix for a provisioned resource's id.
fn short_id() -> String {
    let mut bytes = [0u8; 3];
    getrandom::fill(&mut bytes).expect("the OS random source failed");
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}
