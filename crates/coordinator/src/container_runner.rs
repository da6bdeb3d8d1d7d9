//! Runs the containers this coordinator hosts (DESIGN §7): starts and stops the processes the
//! leader asked for. Every coordinator runs it, leader or not: a `local` container names the
//! coordinator whose host runs its processes, and only that one ever touches them.
//!
//! The leader writes an intent with a term-guarded write (a new attempt id, or the cleaning
//! mark); this runner claims an attempt in the store before it spawns, so one attempt is
//! started at most once however many runners or restarts there are, and records the process
//! only while the attempt is still the latest. A deposed leader cannot write an intent, so it
//! cannot make anything spawn. The process gets its attempt id; its data node presents it at
//! registration, and the leader refuses an attempt a later one replaced.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use leasehold_store::{GroupRow, ResourceRow, Store, StoreError};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::container::{Container, Containers, Launch};
use crate::metrics;

/// The longest between two looks at the store for intents.
const POLL: Duration = Duration::from_secs(1);

/// The containers coordinator `node_id` runs, and how to reach the store and the cluster.
#[derive(Debug, Clone)]
pub struct ContainerRunner {
    /// The store.
    pub store: Store,
    /// The cluster.
    pub cluster: String,
    /// This coordinator.
    pub node_id: String,
    /// Every configured container.
    pub containers: Containers,
    /// Woken when this process's leader wrote an intent.
    pub intents: Arc<Notify>,
}

impl ContainerRunner {
    /// Carries out intents until `shutdown`. Returns at once when this coordinator runs no
    /// container.
    pub async fn run(self, shutdown: CancellationToken) {
        let mine = self.containers.run_by(&self.node_id);
        if mine.is_empty() {
            return;
        }
        info!(node_id = %self.node_id, containers = ?mine, "running the local containers of this host");
        loop {
            let woken = self.intents.notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            metrics::loop_iteration("containers");
            if let Err(error) = self.round(&mine).await {
                warn!(%error, "could not read the resources to start or stop; trying again");
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = &mut woken => {}
                _ = tokio::time::sleep(POLL) => {}
            }
        }
    }

    async fn round(&self, mine: &[String]) -> Result<(), StoreError> {
        let cluster = &self.cluster;
        let (groups, resources) = self
            .store
            .run("list resources", async |db| Ok((db.list_groups(cluster).await?, db.list_resources(cluster).await?)))
            .await?;
        let due = resources.iter().filter(|row| mine.contains(&row.container));
        for row in due {
            let Some(container) = self.containers.get(&row.container) else { continue };
            let outcome = if row.start_pending() {
                self.start(container.as_ref(), row, &groups).await
            } else if row.stop_pending() {
                self.stop(container.as_ref(), row).await
            } else {
                Ok(())
            };
            if let Err(error) = outcome {
                warn!(resource = %row.id, %error, "could not record a start or stop; trying again");
            }
        }
        Ok(())
    }

    async fn start(&self, container: &dyn Container, row: &ResourceRow, groups: &[GroupRow]) -> Result<(), StoreError> {
        let (cluster, id, attempt) = (&self.cluster, row.id.as_str(), row.attempt_id.as_str());
        let claimed = self.store.run("claim start", async |db| db.claim_start(cluster, id, attempt).await).await?;
        if !claimed {
            return Ok(());
        }
        // A process of an earlier attempt may still run (paused, or cut off): never two.
        if container.is_alive(&row.process) {
            info!(resource = id, pid = ?row.process.get("pid"), "stopping the earlier process of a resource before starting it again");
            if let Err(error) = container.stop(&row.process).await {
                warn!(resource = id, %error, "could not stop the earlier process; starting anyway, its registrations are refused");
            }
        }
        let mut properties = groups
            .iter()
            .find(|group| group.name == row.group)
            .map(|group| group.properties.clone())
            .unwrap_or_default();
        properties.extend(row.properties.clone());
        let launch = Launch {
            resource_id: id.to_owned(),
            group: row.group.clone(),
            attempt_id: attempt.to_owned(),
            properties,
            coordinators: self.coordinators().await,
        };
        let (process, error) = match container.start(&launch).await {
            Ok(process) => {
                info!(resource = id, attempt, attempts = row.attempts, pid = ?process.get("pid"), log = ?process.get("log"), "resource process started");
                metrics::keeper_restart("started");
                (process, String::new())
            }
            Err(error) => {
                warn!(resource = id, attempt, %error, "could not start a resource process");
                metrics::keeper_restart("failed");
                (BTreeMap::new(), error.to_string())
            }
        };
        let recorded = self
            .store
            .run("record start", async |db| db.record_start(cluster, id, attempt, &process, &error).await)
            .await?;
        if !recorded && container.is_alive(&process) {
            // A later attempt replaced this one while it started: its data node would be
            // refused anyway; do not leave it running.
            let _ = container.stop(&process).await;
        }
        Ok(())
    }

    async fn stop(&self, container: &dyn Container, row: &ResourceRow) -> Result<(), StoreError> {
        let (cluster, id) = (&self.cluster, row.id.as_str());
        let (stopped, error) = match container.stop(&row.process).await {
            Ok(()) => {
                info!(resource = id, pid = ?row.process.get("pid"), "resource process stopped for its cleanup");
                (true, String::new())
            }
            Err(error) => {
                warn!(resource = id, %error, "could not stop a resource process; trying again");
                (false, error.to_string())
            }
        };
        self.store.run("record stop", async |db| db.record_stop(cluster, id, stopped, &error).await).await?;
        Ok(())
    }

    /// Every coordinator's address, comma separated, for `{coordinators}`.
    async fn coordinators(&self) -> String {
        let cluster = &self.cluster;
        match self.store.run("list nodes", async |db| db.list_nodes(cluster).await).await {
            Ok(list) => list.nodes.iter().map(|node| node.address.as_str()).collect::<Vec<_>>().join(","),
            Err(error) => {
                warn!(%error, "could not list the coordinators for a resource's command");
                String::new()
            }
        }
    }
}
