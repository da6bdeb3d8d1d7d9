//! Bucket pools on the leader: creating and deleting pools, and running an assignment pass.
//! The ledger decides (who is live, which revokes settled, what moves); this file writes the
//! decisions in term-guarded transactions and publishes them as changes, so that the
//! broadcast verdict and every agent's acknowledgement cover bucket ownership as they cover
//! the schema.

use std::collections::BTreeMap;

use super::*;
use leasehold_core::buckets::MoveReason;

/// Every owned bucket of every pool, for a snapshot: an agent that resyncs learns from it
/// what it owns, and what is being revoked from it.
pub(super) fn snapshot(state: &Ledger<MetadataChange>) -> Vec<v1::BucketChange> {
    state
        .pools()
        .iter()
        .map(|(name, pool)| v1::BucketChange {
            pool: name.clone(),
            buckets: pool
                .slots
                .iter()
                .enumerate()
                .filter_map(|(bucket, slot)| {
                    let owner = slot.owner.as_ref()?;
                    Some(v1::BucketOwnership {
                        bucket: bucket as u32,
                        node_id: owner.node_id.clone(),
                        incarnation: owner.incarnation.clone(),
                        epoch: slot.epoch,
                        revoked: slot.revoke.is_some(),
                    })
                })
                .collect(),
        })
        .collect()
}

/// A pool as it stands, read under one lock.
#[derive(Debug, Clone)]
pub struct PoolView {
    /// Every bucket.
    pub slots: Vec<Slot>,
    /// The live members.
    pub live: Vec<NodeKey>,
    /// The newest published version.
    pub version: u64,
    /// Being deleted.
    pub deleting: bool,
}

/// What one pass wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PassReport {
    /// The version its change was published at (0 when nothing changed).
    pub version: u64,
    /// Revokes that settled, whose buckets now have no owner.
    pub released: usize,
    /// Revokes published, by reason.
    pub revoked: BTreeMap<&'static str, usize>,
    /// Grants published, by reason.
    pub granted: BTreeMap<&'static str, usize>,
    /// The live members the pass balanced over.
    pub members: usize,
    /// Revokes still waiting for their old owner after the pass.
    pub unsettled: usize,
    /// How long each handoff the pass finished took, from its revoke to its grant.
    pub handoffs: Vec<Duration>,
}

impl MetadataLeader {
    /// Creates pool `name` of `bucket_count` buckets (a term-guarded write). Its buckets are
    /// granted by the next pass.
    pub async fn create_pool(&self, name: &str, bucket_count: u32) -> Result<(), MetadataError> {
        let _serial = self.publications.lock().await;
        match self.state().pools().get(name) {
            Some(pool) if pool.deleting => return Err(MetadataError::PoolDeleting { pool: name.to_owned() }),
            Some(_) => return Err(MetadataError::PoolExists { pool: name.to_owned() }),
            None => {}
        }
        // An earlier pool of this name left its bucket rows: its epochs are carried on, so that
        // a fencing token never goes back.
        let cluster = &self.identity.cluster;
        let base_epoch = self
            .store
            .run("list assignments", async |db| db.list_assignments(cluster).await)
            .await?
            .iter()
            .filter(|row| row.pool == name)
            .map(|row| row.epoch)
            .max()
            .unwrap_or(0);
        let mut tx = self.begin_guarded().await?;
        if !tx.run(async |db| db.create_pool(cluster, name, bucket_count).await).await? {
            return Err(MetadataError::PoolExists { pool: name.to_owned() });
        }
        tx.commit().await?;
        self.state().create_pool(name, bucket_count, base_epoch);
        info!(pool = name, bucket_count, base_epoch, "bucket pool created");
        Ok(())
    }

    /// Deletes pool `name`: every bucket of it is revoked in the same change, so no data node
    /// owns one once it has applied it.
    pub async fn delete_pool(&self, name: &str) -> Result<u64, MetadataError> {
        let mut change = self.begin().await?;
        let revokes: Vec<Handoff> = {
            let state = self.state();
            let Some(pool) = state.pools().get(name) else {
                return Err(MetadataError::NoSuchPool { pool: name.to_owned() });
            };
            pool.slots
                .iter()
                .enumerate()
                .filter(|(_, slot)| slot.revoke.is_none())
                .filter_map(|(bucket, slot)| {
                    Some(Handoff::Revoke {
                        bucket: bucket as u32,
                        from: slot.owner.clone()?,
                        epoch: slot.epoch,
                        reason: MoveReason::Departed,
                    })
                })
                .collect()
        };
        if !change.store().run(async |db| db.mark_pool_deleting(&self.identity.cluster, name).await).await? {
            return Err(MetadataError::NoSuchPool { pool: name.to_owned() });
        }
        let (version, _) = change.publish_buckets(name, revokes, true).await?;
        info!(
            pool = name,
            version,
            "bucket pool being deleted: its buckets are revoked everywhere, and it goes once every revoke has settled"
        );
        Ok(version)
    }

    /// Forgets pool `name` once it is being deleted and every revoke of it has settled; its
    /// bucket rows stay, keeping their epochs.
    async fn finish_deleting(&self, name: &str) -> Result<(), MetadataError> {
        let _serial = self.publications.lock().await;
        if !self.state().finished_deleting(name) {
            return Ok(());
        }
        let mut tx = self.begin_guarded().await?;
        tx.run(async |db| db.delete_pool(&self.identity.cluster, name).await).await?;
        tx.commit().await?;
        self.state().remove_pool(name);
        info!(pool = name, "bucket pool deleted: every bucket was released");
        Ok(())
    }

    /// The pools, by name.
    pub fn pool_names(&self) -> Vec<String> {
        self.state().pools().keys().cloned().collect()
    }

    /// How many buckets each (pool, node) owns now, granted and not being revoked.
    pub fn owned_counts(&self) -> BTreeMap<(String, String), usize> {
        let state = self.state();
        let mut owned = BTreeMap::new();
        for (name, pool) in state.pools() {
            for owner in pool.slots.iter().filter_map(Slot::granted_to) {
                *owned.entry((name.clone(), owner.node_id.clone())).or_default() += 1;
            }
        }
        owned
    }

    /// A pool as it stands now.
    pub fn pool_view(&self, name: &str) -> Option<PoolView> {
        let state = self.state();
        let pool = state.pools().get(name)?;
        Some(PoolView {
            slots: pool.slots.clone(),
            live: state.live_members(name, self.clock.now()),
            version: state.version(),
            deleting: pool.deleting,
        })
    }

    /// Runs one assignment pass over pool `name`: settled revokes are released, and the moves
    /// toward the balance over its live members are written and published in one change.
    pub async fn bucket_pass(&self, name: &str) -> Result<PassReport, MetadataError> {
        let quiet = {
            let state = self.state();
            if !state.pools().contains_key(name) {
                return Err(MetadataError::NoSuchPool { pool: name.to_owned() });
            }
            state.bucket_pass(name, self.clock.now()).is_empty()
        };
        if quiet {
            self.finish_deleting(name).await?;
            return Ok(self.quiet_report(name));
        }
        // Planned again under the serial guard: nothing moves between the plan and its write.
        let change = self.begin().await?;
        let now = self.clock.now();
        let (handoffs, members) = {
            let state = self.state();
            if !state.pools().contains_key(name) {
                return Err(MetadataError::NoSuchPool { pool: name.to_owned() });
            }
            (state.bucket_pass(name, now), state.live_members(name, now).len())
        };
        let mut report = PassReport { members, ..PassReport::default() };
        for handoff in &handoffs {
            match handoff {
                Handoff::Release { .. } => report.released += 1,
                Handoff::Revoke { reason, .. } => *report.revoked.entry(reason.as_str()).or_default() += 1,
                Handoff::Grant { reason, .. } => *report.granted.entry(reason.as_str()).or_default() += 1,
            }
        }
        if !handoffs.is_empty() {
            (report.version, report.handoffs) = change.publish_buckets(name, handoffs, false).await?;
            if !report.revoked.is_empty() {
                crate::failpoint::pause(crate::failpoint::ASSIGN_AFTER_REVOKE).await;
            }
        } else {
            change.commit().await?;
        }
        report.unsettled = self.quiet_report(name).unsettled;
        self.finish_deleting(name).await?;
        Ok(report)
    }

    /// A pass that wrote nothing: the members and the revokes still unsettled.
    fn quiet_report(&self, name: &str) -> PassReport {
        let state = self.state();
        let unsettled =
            state.pools().get(name).map_or(0, |pool| pool.slots.iter().filter(|slot| slot.revoke.is_some()).count());
        PassReport { members: state.live_members(name, self.clock.now()).len(), unsettled, ..PassReport::default() }
    }
}
