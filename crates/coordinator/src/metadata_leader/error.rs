//! Why the leader refused or failed a data-node call.

use leasehold_store::StoreError;

/// Why the leader refused or failed a data-node call.
#[derive(Debug, thiserror::Error)]
pub enum MetadataError {
    /// This term is over.
    #[error("this coordinator stopped leading term {term}")]
    TermEnded {
        /// The term.
        term: u64,
    },
    /// The heartbeat's incarnation is not registered.
    #[error("data node {node_id} incarnation {incarnation} is not registered with the leader; register again")]
    NotRegistered {
        /// The node.
        node_id: String,
        /// Its incarnation.
        incarnation: String,
    },
    /// The incarnation was put to rest (deregistered, evicted or replaced) and may not come
    /// back: the agent starts a new one.
    #[error("data node {node_id} incarnation {incarnation} was retired; start a new incarnation")]
    IncarnationRetired {
        /// The node.
        node_id: String,
        /// Its incarnation.
        incarnation: String,
    },
    /// The store refused the write: the term is no longer ours.
    #[error("the store refused the write: term {term} was taken over")]
    StaleTerm {
        /// The term.
        term: u64,
    },
    /// The store failed.
    #[error(transparent)]
    Store(StoreError),
    /// A change would put an object into a database that is not there; nothing was written.
    #[error(transparent)]
    Orphaned(leasehold_core::catalog::Orphaned),
    /// A pool of that name exists already; nothing changed.
    #[error("pool {pool} already exists")]
    PoolExists {
        /// The pool.
        pool: String,
    },
    /// A pool of that name is still being deleted (its buckets are being released).
    #[error("pool {pool} is being deleted; create it again once its buckets are released")]
    PoolDeleting {
        /// The pool.
        pool: String,
    },
    /// No pool has that name.
    #[error("no pool {pool}")]
    NoSuchPool {
        /// The pool.
        pool: String,
    },
    /// A stored change could not be decoded.
    #[error("stored change at version {version} is unreadable: {reason}")]
    Corrupt {
        /// Its version.
        version: u64,
        /// Why.
        reason: String,
    },
}

impl From<StoreError> for MetadataError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::StaleTerm { term } => MetadataError::StaleTerm { term },
            other => MetadataError::Store(other),
        }
    }
}
