//! Leasehold's pure decisions: no I/O, no async runtime, no wall clock.
//!
//! Everything here takes time as a value ([`MonoTime`]) or through the small [`Clock`]
//! trait, so tests drive time by hand and never sleep.
//!
//! # Layout
//! - [`clock`]: the suspend-aware monotonic clock (`CLOCK_BOOTTIME`) and a manual clock.
//! - [`mode`]: the HA modes and roles, and what each mode may do.
//! - [`timing`]: the HA timing settings, the leader's local hold, and their validation.
//! - [`election`]: candidate ranking, the priority back-off, and the follower's choice.
//! - [`leadership`]: the leader's renewal and step-down choices.
//! - [`node_claim`]: whether a starting node may take its node id from the registry.
//! - [`name`]: validation of node ids and cluster names.
//! - [`lease_timing`]: `T_fence`, `T_proceed` and the lease budget.
//! - [`agent_lease`]: the agent's lease: anchored at send, apply before renew, fence.
//! - [`contact`]: the leader's contacts and the stale bound `S(n, V)` of every publication.
//! - [`ledger`]: the leader's per-term state: grants, publications, registry, broadcast rounds.
//! - [`verdict`]: Proceed, Wait or Fail for one version.
//! - [`propagation`]: rounds, backoff and budget of a broadcast.
//! - [`catalog`]: databases, tables and views with their states; what a reader may see.
//! - [`ddl`]: validating and planning DDL in two phases.
//! - [`procedure`]: the steps of a persisted DDL procedure and how to resume one.
//! - [`buckets`]: balanced, minimal-move bucket plans and the two-step fenced handoff.
//! - [`keeper`]: the resource keeper: which dead workers to restart, give up on or add.

pub mod agent_lease;
pub mod buckets;
pub mod catalog;
pub mod clock;
pub mod contact;
pub mod ddl;
pub mod election;
pub mod keeper;
pub mod leadership;
pub mod lease_timing;
pub mod ledger;
pub mod mode;
pub mod name;
pub mod node_claim;
pub mod procedure;
pub mod propagation;
pub mod timing;
pub mod verdict;

pub use clock::{BootClock, Clock, ManualClock, MonoTime};
pub use mode::{HaMode, HaRole};
pub use timing::{HaTimings, TimingError};
