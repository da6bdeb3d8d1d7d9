//! The coordinator registry: claiming this node's id at start (a second live process with
//! the same id is refused), refreshing its row while it runs, and ranking the live
//! candidates for an election.

use super::*;

/// One coordinator as a listing of the registry shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedNode {
    /// Its stable node id.
    pub node_id: String,
    /// Its advertised gRPC address.
    pub address: String,
    /// Its mode; `None` when the stored name is unknown to this version.
    pub mode: Option<HaMode>,
    /// Its role as the listing judges it ([`HaRole::listed`]).
    pub role: HaRole,
    /// Its election priority.
    pub priority: i32,
    /// Since it last refreshed its row, on the store's clock.
    pub last_seen_ms_ago: i64,
    /// Refreshed within one lease TTL and not stopped.
    pub alive: bool,
    /// It holds the unexpired lease.
    pub holds_lease: bool,
}

impl Ha {
    /// Claims this node's id in the registry (DESIGN §3: a second live process with the same
    /// id is refused). A row refreshed recently by another incarnation is watched for one
    /// liveness window (the lease TTL): if it moves, the id is in use; if not, its process is
    /// gone and the row is taken over.
    pub async fn register(&self) -> Result<(), HaError> {
        if !self.inner.settings.mode.uses_lease() {
            return Ok(());
        }
        let settings = &self.inner.settings;
        let registration = NodeRegistration {
            cluster: settings.cluster.clone(),
            node_id: settings.node_id.clone(),
            incarnation: self.inner.incarnation.clone(),
            address: settings.address.clone(),
            mode: settings.mode.as_str().to_owned(),
            priority: settings.priority,
            role: HaRole::Starting.as_str().to_owned(),
        };
        let window = settings.timings.lease_ttl;
        let mut watched = None;
        loop {
            let snapshot = self
                .inner
                .store
                .run("read node", async |db| db.read_node(&settings.cluster, &settings.node_id).await)
                .await?;
            if let (Some(first), Some(current)) = (&watched, &snapshot.row)
                && current != first
            {
                match &current.incarnation {
                    // It stopped cleanly while we watched: the id is free.
                    None => watched = None,
                    Some(incarnation) => {
                        let address = self.address_of(&settings.node_id).await.unwrap_or_default();
                        return Err(HaError::DuplicateNodeId {
                            node_id: settings.node_id.clone(),
                            incarnation: incarnation.clone(),
                            address,
                        });
                    }
                }
            }
            match judge_claim(snapshot.row.as_ref(), &self.inner.incarnation, snapshot.store_now_ms, window) {
                ClaimDecision::Register => {
                    if self.inner.store.run("register node", async |db| db.insert_node(&registration).await).await? {
                        break;
                    }
                }
                ClaimDecision::TakeOver => {
                    let row = snapshot.row.expect("a takeover is judged on an existing row");
                    if self
                        .inner
                        .store
                        .run("take over node", async |db| {
                            db.take_over_node(&registration, row.incarnation.as_deref(), row.last_seen_ms).await
                        })
                        .await?
                    {
                        break;
                    }
                    watched = None;
                }
                ClaimDecision::Watch { stale_at_ms } => {
                    if watched.is_none() {
                        info!(
                            node_id = %settings.node_id,
                            wait_ms = stale_at_ms - snapshot.store_now_ms,
                            "another incarnation refreshed this node id recently; watching it to tell a crashed predecessor from a live duplicate"
                        );
                        watched = snapshot.row.clone();
                    }
                    tokio::time::sleep(settings.timings.poll_interval).await;
                }
            }
        }
        info!(node_id = %settings.node_id, incarnation = %self.inner.incarnation, mode = %settings.mode, "registered in the coordinator registry");
        Ok(())
    }

    pub(super) async fn address_of(&self, node_id: &str) -> Option<String> {
        let list = self
            .inner
            .store
            .run("list nodes", async |db| db.list_nodes(&self.inner.settings.cluster).await)
            .await
            .ok()?;
        list.nodes.into_iter().find(|node| node.node_id == node_id).map(|node| node.address)
    }

    /// Refreshes this node's registry row every renew interval, so that others rank it as a
    /// live candidate and a duplicate start is refused.
    pub(super) async fn refresh_registry(self, shutdown: CancellationToken, id_lost: CancellationToken) {
        let settings = &self.inner.settings;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(settings.timings.renew_interval) => {}
            }
            metrics::loop_iteration("registry");
            let role = self.view().role;
            let started = self.inner.clock.now();
            match self
                .inner
                .ha_store
                .run("refresh node", async |db| {
                    db.refresh_node(&settings.cluster, &settings.node_id, &self.inner.incarnation, role.as_str()).await
                })
                .await
            {
                Ok(true) => metrics::refresh(self.inner.clock.now() - started),
                Ok(false) => {
                    error!(node_id = %settings.node_id, "this node's registry row was taken over by another process, or removed by an operator; stopping");
                    id_lost.cancel();
                    self.inner.wake.notify_one();
                    return;
                }
                Err(error) => {
                    metrics::store_error("refresh node");
                    warn!(%error, "could not refresh this node's registry row");
                }
            }
        }
    }

    /// Every coordinator of the cluster as the registry shows it now, and the lease's term
    /// (0 without one): what `ListHaStates` and the status page list. Every node answers,
    /// followers included: this is about HA itself, like [`Ha::view`]. A `disabled` node has
    /// no registry; it is the whole cluster.
    pub async fn listing(&self) -> Result<(Vec<ListedNode>, u64), HaError> {
        let settings = &self.inner.settings;
        let view = self.view();
        if view.mode == HaMode::Disabled {
            let me = ListedNode {
                node_id: settings.node_id.clone(),
                address: settings.address.clone(),
                mode: Some(view.mode),
                role: view.role,
                priority: view.priority,
                last_seen_ms_ago: 0,
                alive: true,
                holds_lease: false,
            };
            return Ok((vec![me], 0));
        }
        let cluster = &settings.cluster;
        let list = self.inner.store.run("list nodes", async |db| db.list_nodes(cluster).await).await?;
        let lease = self.inner.store.run("read lease", async |db| db.read_lease(cluster).await).await?;
        let ttl_ms = settings.timings.lease_ttl.as_millis() as i64;
        let live_holder = lease.live_holder().map(|holder| holder.incarnation.clone());
        let nodes = list
            .nodes
            .into_iter()
            .map(|node| {
                let last_seen_ms_ago = (list.store_now_ms - node.last_seen_ms).max(0);
                let alive = node.incarnation.is_some() && last_seen_ms_ago < ttl_ms;
                let holds_lease = node.incarnation.is_some() && node.incarnation == live_holder;
                ListedNode {
                    role: HaRole::listed(holds_lease, alive, HaRole::from_stored(&node.role)),
                    mode: node.mode.parse().ok(),
                    node_id: node.node_id,
                    address: node.address,
                    priority: node.priority,
                    last_seen_ms_ago,
                    alive,
                    holds_lease,
                }
            })
            .collect();
        Ok((nodes, lease.term))
    }

    /// Removes `node_id` from the registry when it is gone: stopped cleanly, or lost (its row
    /// not refreshed for one lease TTL, and no live lease). Answers how it was listed.
    pub async fn remove_node(&self, node_id: &str) -> Result<(HaRole, i64), HaError> {
        let cluster = &self.inner.settings.cluster;
        let ttl = self.inner.settings.timings.lease_ttl;
        let (nodes, _) = self.listing().await?;
        let node = nodes
            .into_iter()
            .find(|node| node.node_id == node_id)
            .ok_or_else(|| HaError::UnknownNode { node_id: node_id.to_owned() })?;
        let (role, last_seen_ms_ago) = (node.role, node.last_seen_ms_ago);
        let live = HaError::NodeLive { node_id: node_id.to_owned(), last_seen_ms_ago, holds_lease: node.holds_lease };
        if !matches!(role, HaRole::Stopped | HaRole::Lost) {
            return Err(live);
        }
        // The statement decides again, so a node that renews meanwhile keeps its row.
        if !self.inner.store.run("remove node", async |db| db.remove_node(cluster, node_id, ttl).await).await? {
            return Err(live);
        }
        info!(node_id, role = %role, last_seen_ms_ago, "coordinator removed from the registry");
        Ok((role, last_seen_ms_ago))
    }

    /// This node's rank among the live candidates of the registry.
    pub(super) async fn rank(&self, lease: &LeaseView) -> usize {
        let settings = &self.inner.settings;
        let list = match self.inner.ha_store.run("list nodes", async |db| db.list_nodes(&settings.cluster).await).await
        {
            Ok(list) => list,
            Err(error) => {
                metrics::store_error("list nodes");
                warn!(%error, "could not read the registry to rank candidates; trying as rank 0");
                return 0;
            }
        };
        let me = Candidate { node_id: &settings.node_id, priority: self.control().priority };
        let expired_holder = lease.holder.as_ref().map(|holder| holder.node_id.as_str());
        rank(
            me,
            live_candidates(registry_entries(&list), list.store_now_ms, settings.timings.lease_ttl, expired_holder),
        )
    }
}

/// The registry rows as the election's pure functions read them.
pub(super) fn registry_entries(list: &NodeList) -> impl Iterator<Item = RegistryEntry<'_>> {
    list.nodes.iter().map(|node| RegistryEntry {
        node_id: &node.node_id,
        mode: &node.mode,
        priority: node.priority,
        running: node.incarnation.is_some(),
        last_seen_ms: node.last_seen_ms,
    })
}
