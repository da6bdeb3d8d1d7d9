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
        if self.state().pools().contains_key(name) {
            return Err(MetadataError::PoolExists { pool: name.to_owned() });
        }
        let mut tx = self.begin_guarded().await?;
        if !tx.create_pool(&self.identity.cluster, name, bucket_count).await? {
            return Err(MetadataError::PoolExists { pool: name.to_owned() });
        }
        tx.commit().await?;
        self.state().create_pool(name, bucket_count);
        info!(pool = name, bucket_count, "bucket pool created");
        Ok(())
    }

    /// Deletes pool `name`: every bucket of it is revoked in the same change, so no data node
    /// owns one once it has applied it.
    pub async fn delete_pool(&self, name: &str) -> Result<u64, MetadataError> {
        if !self.state().pools().contains_key(name) {
            return Err(MetadataError::NoSuchPool { pool: name.to_owned() });
        }
        let mut change = self.begin().await?;
        if !change.store().delete_pool(&self.identity.cluster, name).await? {
            return Err(MetadataError::NoSuchPool { pool: name.to_owned() });
        }
        let version = change.publish_pool_deleted(name).await?;
        info!(pool = name, version, "bucket pool deleted; its buckets are revoked everywhere");
        Ok(version)
    }

    /// The pools, by name.
    pub fn pool_names(&self) -> Vec<String> {
        self.state().pools().keys().cloned().collect()
    }

    /// A pool's slots and live members now, with the version they are at.
    pub fn pool_view(&self, name: &str) -> Option<(Vec<Slot>, Vec<NodeKey>, u64)> {
        let state = self.state();
        let pool = state.pools().get(name)?;
        Some((pool.slots.clone(), state.live_members(name, self.clock.now()), state.version()))
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
                Handoff::Revoke { reason, .. } => *report.revoked.entry(reason_label(*reason)).or_default() += 1,
                Handoff::Grant { reason, .. } => *report.granted.entry(reason_label(*reason)).or_default() += 1,
            }
        }
        if !handoffs.is_empty() {
            (report.version, report.handoffs) = change.publish_buckets(name, handoffs).await?;
            if !report.revoked.is_empty() {
                crate::failpoint::pause(crate::failpoint::ASSIGN_AFTER_REVOKE).await;
            }
        } else {
            change.commit().await?;
        }
        report.unsettled = self.quiet_report(name).unsettled;
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

fn reason_label(reason: MoveReason) -> &'static str {
    reason.as_str()
}
