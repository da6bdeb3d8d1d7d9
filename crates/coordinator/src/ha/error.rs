//! Why the HA container refused or failed something.

use leasehold_core::mode::ModeChangeError;
use leasehold_store::StoreError;

/// Why the HA container refused or failed something.
#[derive(Debug, thiserror::Error)]
pub enum HaError {
    /// This node does not lead; `leader` is the leader it knows.
    #[error("this coordinator is not the leader{}", leader_suffix(.leader))]
    NotLeader {
        /// The known leader's address.
        leader: Option<String>,
    },
    /// The store refused a write because the lease moved on.
    #[error("the store refused the write: term {term} is no longer this node's (another leader took over)")]
    StaleTerm {
        /// The term the write was made for.
        term: u64,
        /// The known leader's address.
        leader: Option<String>,
    },
    /// A mode change that cannot be made.
    #[error(transparent)]
    ModeChange(#[from] ModeChangeError),
    /// The store failed.
    #[error(transparent)]
    Store(StoreError),
    /// Another live process uses this node id.
    #[error(
        "node id {node_id:?} is in use by another live coordinator (incarnation {incarnation}, at {address}); \
         give each coordinator its own --node-id"
    )]
    DuplicateNodeId {
        /// The id.
        node_id: String,
        /// The other process's incarnation.
        incarnation: String,
        /// The other process's address.
        address: String,
    },
    /// `master` mode found a live leader at start.
    #[error(
        "ha.mode is master, but {node_id} at {address} holds a live lease (term {term}, {remaining_ms} ms left); \
         refusing to start"
    )]
    LiveLeaderAtStart {
        /// The leader.
        node_id: String,
        /// Its address.
        address: String,
        /// Its term.
        term: u64,
        /// Its lease's remaining time.
        remaining_ms: i64,
    },
    /// An operator asked to remove a coordinator that is live.
    #[error("coordinator {node_id:?} is live (it renewed its registry row {last_seen_ms_ago} ms ago{holding}); stop it before removing it", holding = if *.holds_lease { ", and holds the lease" } else { "" })]
    NodeLive {
        /// The id.
        node_id: String,
        /// Since it last renewed its row, on the store's clock.
        last_seen_ms_ago: i64,
        /// Whether it holds the live lease.
        holds_lease: bool,
    },
    /// An operator named a coordinator the registry does not hold.
    #[error("no coordinator {node_id:?} in the registry")]
    UnknownNode {
        /// The id.
        node_id: String,
    },
    /// Another process took over this node id while this one ran.
    #[error("node id {node_id:?} was taken over by another process; this coordinator stops")]
    NodeIdLost {
        /// The id.
        node_id: String,
    },
}

fn leader_suffix(leader: &Option<String>) -> String {
    leader.as_ref().map(|address| format!("; the leader is at {address}")).unwrap_or_default()
}

impl From<StoreError> for HaError {
    fn from(error: StoreError) -> Self {
        HaError::Store(error)
    }
}
