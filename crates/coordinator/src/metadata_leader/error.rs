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
    /// An operator named a data node that is not registered.
    #[error("no data node {node_id} is registered")]
    UnknownNode {
        /// The node.
        node_id: String,
    },
    /// An operator asked to remove a data node the leader cannot yet tell has fenced.
    #[error(
        "data node {node_id} is live (heard from {silent_ms} ms ago, and it may hold a lease); stop it, or wait until it has fenced"
    )]
    NodeLive {
        /// The node.
        node_id: String,
        /// Since its last heartbeat.
        silent_ms: u64,
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
    /// A batch of registrations failed as a whole (the store failed, or refused the term's
    /// guard): every registration of the batch gets the one cause, and none was applied.
    #[error(transparent)]
    Batch(std::sync::Arc<MetadataError>),
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
    /// No resource group has that name.
    #[error("no resource group {group}")]
    NoSuchGroup {
        /// The group.
        group: String,
    },
    /// A resource group of that name exists already; nothing changed.
    #[error("resource group {group} already exists")]
    GroupExists {
        /// The group.
        group: String,
    },
    /// The group still has resources; delete them first.
    #[error("resource group {group} still has {resources} resources; delete them first")]
    GroupNotEmpty {
        /// The group.
        group: String,
        /// How many.
        resources: usize,
    },
    /// No resource has that id.
    #[error("no resource {resource}")]
    NoSuchResource {
        /// The resource.
        resource: String,
    },
    /// A resource of that id exists already; nothing changed.
    #[error("resource {resource} already exists")]
    ResourceExists {
        /// The resource.
        resource: String,
    },
    /// The resource is being cleaned up: its data node may not register.
    #[error("resource {resource} is being cleaned up; its data node may not register")]
    ResourceCleaning {
        /// The resource.
        resource: String,
    },
    /// A data node presented a start attempt that a later one replaced: it must exit.
    #[error("resource {resource}: attempt {attempt} was superseded by attempt {latest}; this process must exit")]
    SupersededAttempt {
        /// The resource.
        resource: String,
        /// The attempt presented.
        attempt: String,
        /// The latest attempt.
        latest: String,
    },
    /// No container of that name is configured on the leader.
    #[error("no container {container} is configured (see [containers.NAME])")]
    UnknownContainer {
        /// The container.
        container: String,
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
