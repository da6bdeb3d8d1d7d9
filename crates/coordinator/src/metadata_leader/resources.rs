//! The resource keeper's store writes (DESIGN §7): groups, resources, restart attempts and
//! cleanup. Each is term-guarded, so a deposed leader (resumed from a pause, say) can neither
//! ask for a start nor count an attempt; the ledger tells which resources are live.

use std::collections::BTreeMap;

use leasehold_core::keeper::ResourceState;
use leasehold_store::{GroupRow, ResourceRow};

use super::*;

impl MetadataLeader {
    /// The resources carried by a live registered data node now.
    pub fn live_resources(&self) -> BTreeSet<String> {
        self.state().live_resources(self.clock.now())
    }

    /// Every group and every resource, as stored.
    pub async fn resources(&self) -> Result<(Vec<GroupRow>, Vec<ResourceRow>), MetadataError> {
        let cluster = &self.identity.cluster;
        Ok(self
            .store
            .run("list resources", async |db| Ok((db.list_groups(cluster).await?, db.list_resources(cluster).await?)))
            .await?)
    }

    /// The store's clock (ms): the keeper's attempts are timed on it.
    pub async fn store_now_ms(&self) -> Result<i64, MetadataError> {
        Ok(self.store.run("read clock", async |db| db.now_ms().await).await?)
    }

    /// Resource `id` as stored, if it exists.
    pub async fn resource(&self, id: &str) -> Result<Option<ResourceRow>, MetadataError> {
        let cluster = &self.identity.cluster;
        Ok(self.store.run("get resource", async |db| db.get_resource(cluster, id).await).await?)
    }

    /// Creates a group.
    pub async fn create_group(&self, group: &GroupRow) -> Result<(), MetadataError> {
        let cluster = &self.identity.cluster;
        let mut tx = self.begin_guarded().await?;
        let created = tx.run(async |db| db.create_group(cluster, group).await).await?;
        if !created {
            return Err(MetadataError::GroupExists { group: group.name.clone() });
        }
        tx.commit().await?;
        info!(group = %group.name, container = %group.container, min_members = group.min_members, "resource group created");
        Ok(())
    }

    /// Deletes an empty group.
    pub async fn delete_group(&self, name: &str) -> Result<(), MetadataError> {
        let cluster = &self.identity.cluster;
        let mut tx = self.begin_guarded().await?;
        let (groups, resources) =
            tx.run(async |db| Ok((db.list_groups(cluster).await?, db.list_resources(cluster).await?))).await?;
        if !groups.iter().any(|group| group.name == name) {
            return Err(MetadataError::NoSuchGroup { group: name.to_owned() });
        }
        let members = resources.iter().filter(|resource| resource.group == name).count();
        if members > 0 {
            return Err(MetadataError::GroupNotEmpty { group: name.to_owned(), resources: members });
        }
        tx.run(async |db| db.delete_group(cluster, name).await).await?;
        tx.commit().await?;
        info!(group = name, "resource group deleted");
        Ok(())
    }

    /// Creates resource `id` in `group` (with the group's container) and asks for its first
    /// start; answers the row as stored.
    pub async fn create_resource(
        &self,
        id: &str,
        group: &str,
        properties: &BTreeMap<String, String>,
    ) -> Result<ResourceRow, MetadataError> {
        let cluster = &self.identity.cluster;
        let attempt_id = leasehold_store::new_incarnation();
        let mut tx = self.begin_guarded().await?;
        let groups = tx.run(async |db| db.list_groups(cluster).await).await?;
        let Some(group_row) = groups.iter().find(|row| row.name == group) else {
            return Err(MetadataError::NoSuchGroup { group: group.to_owned() });
        };
        let container = group_row.container.clone();
        let created = tx
            .run(async |db| db.create_resource(cluster, id, group, &container, properties, &attempt_id).await)
            .await?;
        if !created {
            return Err(MetadataError::ResourceExists { resource: id.to_owned() });
        }
        let row = tx.run(async |db| db.get_resource(cluster, id).await).await?;
        tx.commit().await?;
        info!(resource = id, group, %container, attempt = %attempt_id, "resource created; its container starts it");
        row.ok_or_else(|| MetadataError::NoSuchResource { resource: id.to_owned() })
    }

    /// Records restart attempt number `attempts` of `id` as its latest start, before the
    /// container is asked to start it; answers the new attempt id, or `None` when the
    /// resource is no longer active.
    pub async fn record_attempt(&self, id: &str, attempts: u32) -> Result<Option<String>, MetadataError> {
        let cluster = &self.identity.cluster;
        let attempt_id = leasehold_store::new_incarnation();
        let mut tx = self.begin_guarded().await?;
        let recorded = tx.run(async |db| db.record_attempt(cluster, id, attempts, &attempt_id).await).await?;
        tx.commit().await?;
        Ok(recorded.then_some(attempt_id))
    }

    /// Starts `id`'s attempt count from 0 again.
    pub async fn reset_attempts(&self, id: &str) -> Result<(), MetadataError> {
        let cluster = &self.identity.cluster;
        let mut tx = self.begin_guarded().await?;
        tx.run(async |db| db.reset_attempts(cluster, id).await).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Marks `id` as being cleaned up: from now on its data node may not register. Answers the
    /// row as marked.
    pub async fn mark_cleaning(&self, id: &str) -> Result<ResourceRow, MetadataError> {
        let cluster = &self.identity.cluster;
        let mut tx = self.begin_guarded().await?;
        if !tx.run(async |db| db.mark_cleaning(cluster, id).await).await? {
            return Err(MetadataError::NoSuchResource { resource: id.to_owned() });
        }
        let row = tx.run(async |db| db.get_resource(cluster, id).await).await?;
        tx.commit().await?;
        row.ok_or_else(|| MetadataError::NoSuchResource { resource: id.to_owned() })
    }

    /// Ends the cleanup of `id` (its process stopped, or run elsewhere): deregisters every
    /// incarnation that runs as it (each counts, as any deregistered node, until it has
    /// fenced; its buckets are revoked) and deletes its row.
    pub async fn finish_cleanup(&self, id: &str) -> Result<(), MetadataError> {
        {
            let _serial = self.publications.lock().await;
            let keys = self.state().nodes_of_resource(id);
            if !keys.is_empty() {
                let removed = self.retire(&keys, false, Departure::Lost).await?;
                info!(resource = id, nodes = ?removed.iter().map(|key| key.to_string()).collect::<Vec<_>>(), "deregistered the data node of a resource being cleaned up");
            }
        }
        let cluster = &self.identity.cluster;
        let mut tx = self.begin_guarded().await?;
        let row = tx.run(async |db| db.get_resource(cluster, id).await).await?;
        if row.is_some_and(|row| row.state == ResourceState::Cleaning) {
            tx.run(async |db| db.delete_resource(cluster, id).await).await?;
        }
        tx.commit().await?;
        Ok(())
    }
}
