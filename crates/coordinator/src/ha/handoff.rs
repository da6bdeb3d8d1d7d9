//! The handoff notice: a leader that released its lease on purpose tells the top-ranked live
//! candidate, which re-reads the lease at once instead of at its next poll.
//!
//! The notice only wakes a follower; it grants nothing. The follower reads the lease row and
//! acquires it through the same conditional update as after any poll, so the store alone still
//! decides who holds each term (docs/PROTOCOL.md, "The handoff notice").

use leasehold::v1::LeaseReleasedRequest;
use leasehold::v1::cluster_client::ClusterClient;
use tonic::transport::Endpoint;

use super::registry::registry_entries;
use super::*;

impl Ha {
    /// Tells the live candidate ranked first (by the election's own ranking) that this node
    /// released `term`. Only that one: a lower-ranked candidate woken early would acquire
    /// before the one priority prefers. Best effort, bounded by one poll interval, after which
    /// every follower would have read the lease anyway.
    pub(super) async fn tell_successor(&self, term: u64) {
        let settings = &self.inner.settings;
        let list = match self.inner.ha_store.run("list nodes", async |db| db.list_nodes(&settings.cluster).await).await
        {
            Ok(list) => list,
            Err(error) => {
                metrics::store_error("list nodes");
                metrics::release_notice("failed");
                warn!(term, %error, "could not read the registry to find a successor; followers notice the release at their next poll");
                return;
            }
        };
        let next = successor(registry_entries(&list), list.store_now_ms, settings.timings.lease_ttl, &settings.node_id);
        let Some(next) = next else {
            metrics::release_notice("no_successor");
            info!(term, "no live candidate to hand the lease over to");
            return;
        };
        let address = list.nodes.iter().find(|node| node.node_id == next.node_id).map(|node| node.address.clone());
        let request = LeaseReleasedRequest { term, from_node_id: settings.node_id.clone() };
        let notice = async {
            let endpoint = Endpoint::from_shared(format!("http://{}", address.unwrap_or_default()))
                .map_err(|error| error.to_string())?
                .tcp_nodelay(true);
            let channel = endpoint.connect().await.map_err(|error| error.to_string())?;
            ClusterClient::new(channel).lease_released(request).await.map_err(|status| status.to_string())
        };
        match tokio::time::timeout(settings.timings.poll_interval, notice).await {
            Ok(Ok(answer)) => {
                metrics::release_notice("sent");
                info!(term, successor = %next.node_id, woken = answer.into_inner().woken, "told the successor that the lease is free");
            }
            Ok(Err(error)) => {
                metrics::release_notice("failed");
                warn!(term, successor = %next.node_id, %error, "could not tell the successor that the lease is free; it notices at its next poll");
            }
            Err(_) => {
                metrics::release_notice("failed");
                warn!(term, successor = %next.node_id, "telling the successor that the lease is free timed out; it notices at its next poll");
            }
        }
    }

    /// A leader released `term`: re-read the lease now rather than at the next poll. Returns
    /// whether this node was woken; a node that cannot lead, leads itself, or already knows a
    /// later term ignores the notice. Waking is all it does: acquiring still takes the store's
    /// conditional update, after the follower's own read of the lease.
    pub fn lease_released(&self, term: u64, from_node_id: &str) -> bool {
        let known = self.view().term;
        let candidate = self.control().mode.is_candidate();
        if term < known || !candidate || self.is_leader_now() {
            metrics::release_notice("ignored");
            info!(term, known_term = known, from = %from_node_id, "ignored a lease release notice");
            return false;
        }
        metrics::release_notice("woken");
        info!(term, from = %from_node_id, "woken by a lease release notice; re-reading the lease");
        self.inner.wake.notify_one();
        true
    }
}
