//! The registry's store writes: registering, deregistering and evicting incarnations, and
//! forgetting tombstones that have provably fenced. Each is term-guarded and serialized with
//! the publications; the ledger decides, the store records.

use leasehold_core::keeper::ResourceState;
use leasehold_store::ResourceRow;

use super::*;

/// One data node's registration.
#[derive(Debug, Clone, Copy)]
pub struct Registration<'a> {
    /// The stable node id.
    pub node_id: &'a str,
    /// This process's incarnation.
    pub incarnation: &'a str,
    /// Where pushes reach it.
    pub address: &'a str,
    /// The bucket pools it joins.
    pub pools: &'a [String],
    /// The resource it runs as (empty for none).
    pub resource_id: &'a str,
    /// The start attempt that launched it (empty when started by hand or elsewhere).
    pub attempt_id: &'a str,
}

/// Whether a data node may register as `resource_id` presenting `attempt_id`.
fn check_resource(resource_id: &str, attempt_id: &str, row: Option<&ResourceRow>) -> Result<(), MetadataError> {
    let Some(row) = row else {
        return Err(MetadataError::NoSuchResource { resource: resource_id.to_owned() });
    };
    if row.state == ResourceState::Cleaning {
        return Err(MetadataError::ResourceCleaning { resource: resource_id.to_owned() });
    }
    if !attempt_id.is_empty() && attempt_id != row.attempt_id {
        return Err(MetadataError::SupersededAttempt {
            resource: resource_id.to_owned(),
            attempt: attempt_id.to_owned(),
            latest: row.attempt_id.clone(),
        });
    }
    Ok(())
}

impl MetadataLeader {
    /// Registers a data node's incarnation (a term-guarded write); an earlier incarnation
    /// becomes a tombstone that still counts for broadcasts.
    /// A retired incarnation is refused: a registration delayed past its own deregistration
    /// (or an evicted agent coming back) must not revive it. A node that runs as a resource is
    /// refused while the resource is being cleaned up, and when it presents a start attempt a
    /// later one replaced (checked in the same transaction, so no cleanup or restart can slip
    /// in between).
    pub async fn register(&self, node: &Registration<'_>) -> Result<(), MetadataError> {
        let Registration { node_id, incarnation, address, pools, resource_id, attempt_id } = *node;
        let _serial = self.publications.lock().await;
        let cluster = &self.identity.cluster;
        let earlier = self.state().check_registration(node_id, incarnation).map_err(|_| {
            MetadataError::IncarnationRetired { node_id: node_id.to_owned(), incarnation: incarnation.to_owned() }
        })?;
        let mut tx = self.begin_guarded().await?;
        if !resource_id.is_empty() {
            let resource = tx.run(async |db| db.get_resource(cluster, resource_id).await).await?;
            check_resource(resource_id, attempt_id, resource.as_ref())?;
        }
        tx.run(async |db| {
            db.upsert_data_node(cluster, node_id, incarnation, address, pools, resource_id).await?;
            if let Some(earlier) = &earlier {
                db.put_tombstone(cluster, node_id, earlier).await?;
            }
            Ok(())
        })
        .await?;
        tx.commit().await?;
        let mut state = self.state();
        let replaced = state.register(node_id, incarnation, address, earlier, self.clock.now());
        let key = NodeKey::new(node_id, incarnation);
        state.set_pools(&key, pools.to_vec());
        state.set_resource(&key, resource_id);
        metrics::data_nodes_registered(state.registered_count());
        drop(state);
        match replaced {
            Some(previous) => {
                info!(node_id, incarnation, replaced = %previous, %address, resource = resource_id, "data node re-registered; the old incarnation counts until it has fenced")
            }
            None => info!(node_id, incarnation, %address, ?pools, resource = resource_id, "data node registered"),
        }
        self.membership_changed.notify_one();
        Ok(())
    }

    /// Removes `node_id` at `incarnation`; it still counts for broadcasts until it has fenced.
    /// With `buckets_released` (the agent gave every bucket up), its buckets may move at once.
    pub async fn deregister(
        &self,
        node_id: &str,
        incarnation: &str,
        buckets_released: bool,
    ) -> Result<bool, MetadataError> {
        let _serial = self.publications.lock().await;
        let key = NodeKey::new(node_id, incarnation);
        let removed = self.retire(std::slice::from_ref(&key), buckets_released).await?;
        info!(
            node_id,
            incarnation,
            removed = !removed.is_empty(),
            buckets_released,
            "data node deregistered; it counts until it has fenced"
        );
        Ok(!removed.is_empty())
    }

    /// Evicts every registered incarnation not heard from for `datanodes.evict-after` (never
    /// less than `T_proceed`, so each has provably fenced); returns how many.
    pub async fn evict_silent(&self) -> Result<usize, MetadataError> {
        let _serial = self.publications.lock().await;
        let evict_after = self.settings.evict_after.max(self.proceed_after);
        let silent = self.state().silent(self.clock.now(), evict_after);
        if silent.is_empty() {
            return Ok(0);
        }
        let evicted = self.retire(&silent, false).await?;
        for key in &evicted {
            warn!(node = %key, silent_for_s = evict_after.as_secs(), "data node evicted: silent past datanodes.evict-after; it is told to start a new incarnation if it comes back");
        }
        metrics::data_nodes_evicted(evicted.len());
        Ok(evicted.len())
    }

    /// Removes the registrations of `keys` and keeps them as tombstones, in the store and
    /// here, in one guarded transaction; returns the ones that were registered. Call it under
    /// the publication lock.
    /// With `buckets_released`, each gave every bucket up: the tombstone records it, so that
    /// every leader settles its revokes at once.
    pub(super) async fn retire(&self, keys: &[NodeKey], buckets_released: bool) -> Result<Vec<NodeKey>, MetadataError> {
        let cluster = &self.identity.cluster;
        let mut tx = self.begin_guarded().await?;
        let removed = tx
            .run(async |db| {
                let mut removed = Vec::new();
                for key in keys {
                    if db.retire_data_node(cluster, &key.node_id, &key.incarnation).await? {
                        db.put_tombstone(cluster, &key.node_id, &key.incarnation).await?;
                        if buckets_released {
                            db.mark_tombstone_released(cluster, &key.node_id, &key.incarnation).await?;
                        }
                        removed.push(key.clone());
                    }
                }
                Ok(removed)
            })
            .await?;
        tx.commit().await?;
        let mut state = self.state();
        if buckets_released {
            removed.iter().for_each(|key| state.drained(key));
        }
        state.retire(keys, &removed, self.clock.now());
        metrics::data_nodes_registered(state.registered_count());
        drop(state);
        self.membership_changed.notify_one();
        Ok(removed)
    }

    /// Deletes the store rows of tombstones that have provably fenced; returns how many.
    pub async fn sweep_tombstones(&self) -> Result<usize, MetadataError> {
        let _serial = self.publications.lock().await;
        let settled = self.state().settle_tombstones(self.clock.now());
        if settled.is_empty() {
            return Ok(0);
        }
        let cluster = &self.identity.cluster;
        let mut tx = self.begin_guarded().await?;
        tx.run(async |db| {
            for key in &settled {
                db.delete_tombstone(cluster, &key.node_id, &key.incarnation).await?;
            }
            Ok(())
        })
        .await?;
        tx.commit().await?;
        self.state().tombstones_deleted(&settled);
        info!(tombstones = settled.len(), "settled tombstones forgotten");
        Ok(settled.len())
    }
}
