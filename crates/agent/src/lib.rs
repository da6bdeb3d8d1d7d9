//! The Leasehold data-node agent: it holds a short metadata lease from the coordinator
//! leader and serves its schema cache only while that lease is valid.
//!
//! Embed it in a data-node process ([`Agent::start`]), or run it as a sidecar
//! (`leasehold agent`) and talk to it over gRPC (`leasehold.v1.Agent`).
//!
//! # Layout
//! - [`agent`]: the runtime: heartbeat, apply-before-renew, self-fencing, pushes, and the
//!   lock-free read path [`Agent::with_table`] (borrowing) and [`Agent::resolve_table`]
//!   (owning).
//! - [`cache`]: the schema cache as an immutable value, and how changes apply to it.
//! - [`link`]: the connection to the coordinators: deadlines, rotation, redirects;
//!   [`unreachable`]: the rate-limited warning while no coordinator answers.
//! - [`service`]: `leasehold.v1.Agent`, a thin translation onto [`Agent`].
//! - [`server`]: `run(config, listeners, ready, shutdown)` for the sidecar, and the health
//!   of `leasehold.v1.Agent`, which follows the lease.
//! - [`config`]: the agent's settings.

pub mod agent;
pub mod cache;
pub mod config;
pub mod failpoint;
pub mod link;
pub mod metrics;
pub mod server;
pub mod service;
pub mod unreachable;

pub use agent::{
    Agent, AgentEvent, AgentHost, Owned, Ownership, OwnershipError, ResolveError, ResolvedTable, TableRef,
};
pub use config::AgentConfig;
