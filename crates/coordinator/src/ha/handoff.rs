//! The handoff notice: a leader that released its lease on purpose tells the top-ranked live
//! candidate, which re-reads the lease at once instead of at its next poll.
//!
//! The notice only wakes a follower; it grants nothing. The follower reads the lease row and
//! acquires it through the same conditional update as after any poll, so the store alone still
//! decides who holds each term (docs/PROTOCOL.md, "The handoff notice").

use leasehold::v1::LeaseReleasedRequest;
use leasehold::v1::cluster_client::ClusterClient;
use tonic::transport::{Channel, Endpoint};

use super::registry::registry_entries;
use super::*;

/// The notice a leaving leader prepared while its release committed.
pub(super) enum Notice {
    /// The successor, and a connection to it that is already open.
    Ready { successor: String, client: ClusterClient<Channel> },
    /// The registry shows no live candidate.
    NoSuccessor,
    /// The registry could not be read or the successor not reached.
    Failed(String),
}

impl Ha {
    /// Finds the live candidate ranked first (by the election's own ranking) and opens a
    /// connection to it, without telling it anything yet: this runs while the release commits,
    /// so that only the notice itself is left once it has. Only that one candidate: a
    /// lower-ranked one woken early would acquire before the one priority prefers. Bounded by
    /// one poll interval, after which every follower would have read the lease anyway.
    pub(super) async fn prepare_notice(&self) -> Notice {
        let settings = &self.inner.settings;
        let prepare = async {
            let list =
                match self.inner.ha_store.run("list nodes", async |db| db.list_nodes(&settings.cluster).await).await {
                    Ok(list) => list,
                    Err(error) => {
                        metrics::store_error("list nodes");
                        return Notice::Failed(format!("could not read the registry: {error}"));
                    }
                };
            let next =
                successor(registry_entries(&list), list.store_now_ms, settings.timings.lease_ttl, &settings.node_id);
            let Some(next) = next else { return Notice::NoSuccessor };
            let successor = next.node_id.to_owned();
            let address = list.nodes.iter().find(|node| node.node_id == successor).map(|node| node.address.as_str());
            let endpoint = match Endpoint::from_shared(format!("http://{}", address.unwrap_or_default())) {
                Ok(endpoint) => endpoint.tcp_nodelay(true),
                Err(error) => return Notice::Failed(format!("{successor}: {error}")),
            };
            match endpoint.connect().await {
                Ok(channel) => Notice::Ready { successor, client: ClusterClient::new(channel) },
                Err(error) => Notice::Failed(format!("{successor}: {error}")),
            }
        };
        tokio::time::timeout(settings.timings.poll_interval, prepare)
            .await
            .unwrap_or_else(|_| Notice::Failed("finding and reaching the successor timed out".into()))
    }

    /// Tells the successor `notice` found that this node released `term`. Called only once
    /// the release has committed and this node no longer acts as leader. Best effort, bounded
    /// by one poll interval.
    pub(super) async fn tell_successor(&self, term: u64, notice: Notice) {
        let (successor, mut client) = match notice {
            Notice::Ready { successor, client } => (successor, client),
            Notice::NoSuccessor => {
                metrics::release_notice("no_successor");
                info!(term, "no live candidate to hand the lease over to");
                return;
            }
            Notice::Failed(error) => {
                metrics::release_notice("failed");
                warn!(term, %error, "could not prepare the notice to a successor; followers notice the release at their next poll");
                return;
            }
        };
        let request = LeaseReleasedRequest { term, from_node_id: self.inner.settings.node_id.clone() };
        match tokio::time::timeout(self.inner.settings.timings.poll_interval, client.lease_released(request)).await {
            Ok(Ok(answer)) => {
                metrics::release_notice("sent");
                info!(term, successor = %successor, woken = answer.into_inner().woken, "told the successor that the lease is free");
            }
            Ok(Err(status)) => {
                metrics::release_notice("failed");
                warn!(term, successor = %successor, error = %status, "could not tell the successor that the lease is free; it notices at its next poll");
            }
            Err(_) => {
                metrics::release_notice("failed");
                warn!(term, successor = %successor, "telling the successor that the lease is free timed out; it notices at its next poll");
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
