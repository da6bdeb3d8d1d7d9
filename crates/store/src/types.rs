//! The few types the store's modules share, at the bottom of their imports: what a write is
//! guarded by, and the lease row as read. Nothing here imports another module of the store.

/// What a metadata write is guarded by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteGuard {
    /// The writer's term: the write commits only while that term holds the unexpired lease.
    Term(TermGuard),
    /// A stand-alone coordinator (`ha.mode = disabled`): there is no lease to check.
    Standalone,
}

/// The term a leader writes under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TermGuard {
    /// The cluster whose lease row guards the write.
    pub cluster: String,
    /// The term the writer acquired.
    pub term: u64,
    /// The writer process's incarnation.
    pub incarnation: String,
}

/// Who holds (or wants) the lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseHolder {
    /// The holder's stable node id.
    pub node_id: String,
    /// The holder process's incarnation: random, new at every start.
    pub incarnation: String,
    /// The holder's gRPC endpoint, for discovery.
    pub address: String,
}

/// The lease row as read, with the store's clock at the moment of the read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseView {
    /// The fencing token of the last acquire (0: never acquired).
    pub term: u64,
    /// The last holder; it holds the lease only while it is unexpired.
    pub holder: Option<LeaseHolder>,
    /// The expiry on the store's clock (ms since the Unix epoch).
    pub expires_at_ms: i64,
    /// Optimistic-concurrency counter, +1 on every write of the row.
    pub version: i64,
    /// The store's clock when the row was read (ms since the Unix epoch).
    pub store_now_ms: i64,
}

impl LeaseView {
    /// Milliseconds the lease had left when read; negative once expired.
    pub fn remaining_ms(&self) -> i64 {
        self.expires_at_ms - self.store_now_ms
    }

    /// Whether the lease had expired when read.
    pub fn is_expired(&self) -> bool {
        self.remaining_ms() <= 0
    }

    /// The holder of an unexpired lease.
    pub fn live_holder(&self) -> Option<&LeaseHolder> {
        self.holder.as_ref().filter(|_| !self.is_expired())
    }
}
