//! The assigner: keeps every pool's buckets assigned while a leader holds its term (DESIGN
//! §6). The decisions are the ledger's (`Ledger::bucket_pass`); this loop only decides when
//! to ask. A pass runs at once when a data node registers or is put to rest, after every
//! acknowledgement while a revoke waits for its old owner, and at least every
//! `min(assign.interval, 250 ms)`, which is how members going offline and revokes settling by
//! time (an owner that provably fenced) are noticed. A pass that moves nothing writes nothing;
//! one that moves buckets is pushed to the agents at once (a broadcast in forward mode, in
//! the background), so that revokes are acknowledged and grants owned within one round
//! trip rather than at the next heartbeat.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::{info, warn};

use crate::metadata_leader::{MetadataError, MetadataLeader};
use crate::metrics;
use crate::propagator::{Mode, Propagator};

/// The longest a change that depends on time alone (offline, fenced) waits for a pass.
const TICK: Duration = Duration::from_millis(250);

/// Runs assignment passes over every pool until `leader`'s term (or state) ends.
pub(crate) async fn assign_buckets(
    leader: Arc<MetadataLeader>,
    propagator: Arc<Propagator>,
    interval: Duration,
    configured: Arc<Vec<(String, u32)>>,
) {
    create_configured(&leader, &configured).await;
    let tick = interval.min(TICK);
    // The (pool, node) gauges set so far: a node that owns nothing any more is set to 0.
    let mut reported: BTreeSet<(String, String)> = BTreeSet::new();
    loop {
        // Armed before the pass, so that nothing that happens during it is missed.
        let membership = leader.membership_changed();
        let acknowledged = leader.acknowledged();
        tokio::pin!(membership, acknowledged);
        membership.as_mut().enable();
        acknowledged.as_mut().enable();
        metrics::loop_iteration("assign");
        let mut unsettled = 0;
        for pool in leader.pool_names() {
            let started = Instant::now();
            match leader.bucket_pass(&pool).await {
                Ok(report) => {
                    metrics::bucket_pass(&pool, &report, started.elapsed());
                    unsettled += report.unsettled;
                    if report.version != 0 {
                        let (leader, propagator, version) = (leader.clone(), propagator.clone(), report.version);
                        tokio::spawn(async move {
                            // Its verdict matters to nobody: the passes judge each revoke by
                            // its old owner alone.
                            let _ = propagator.broadcast(&leader, version, Mode::Forward).await;
                        });
                        info!(
                            %pool,
                            version = report.version,
                            members = report.members,
                            released = report.released,
                            revoked = ?report.revoked,
                            granted = ?report.granted,
                            unsettled = report.unsettled,
                            "bucket pass: moves written"
                        );
                    }
                }
                // Deleted while the pass ran.
                Err(MetadataError::NoSuchPool { .. }) => {}
                Err(MetadataError::TermEnded { .. }) => return,
                Err(error) => warn!(%pool, %error, "bucket pass failed; trying again"),
            }
        }
        report_owned(&leader, &mut reported);
        tokio::select! {
            _ = leader.token().cancelled() => return,
            _ = &mut membership => {}
            _ = &mut acknowledged, if unsettled > 0 => {}
            _ = tokio::time::sleep(tick) => {}
        }
    }
}

/// Sets the buckets-owned gauge of every (pool, node), and 0 for those that own none now.
fn report_owned(leader: &MetadataLeader, reported: &mut BTreeSet<(String, String)>) {
    let owned = leader.owned_counts();
    for key in reported.iter().filter(|key| !owned.contains_key(*key)) {
        metrics::buckets_owned(&key.0, &key.1, 0);
    }
    for ((pool, node), count) in &owned {
        metrics::buckets_owned(pool, node, *count);
    }
    *reported = owned.into_keys().collect();
}

/// Creates every pool of `assign.pools` the store lacks (one being deleted is left to finish).
async fn create_configured(leader: &MetadataLeader, configured: &[(String, u32)]) {
    for (name, bucket_count) in configured {
        match leader.create_pool(name, *bucket_count).await {
            Ok(()) => info!(pool = %name, bucket_count, "bucket pool created from the configuration"),
            Err(MetadataError::PoolExists { .. }) => {}
            Err(error) => {
                warn!(pool = %name, %error, "could not create a configured bucket pool; it is tried again by the next leader")
            }
        }
    }
}
