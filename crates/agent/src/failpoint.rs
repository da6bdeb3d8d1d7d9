//! Failpoints for fault-injection tests, compiled in only with the `failpoints` feature.
//! `LEASEHOLD_FAILPOINTS="agent::cannot-apply=return"` makes the agent refuse every change;
//! the binary reads the variable once for the whole process (the `fail` registry is global).

/// The agent's host refuses every change.
pub const CANNOT_APPLY: &str = "agent::cannot-apply";

pub use leasehold::failpoint::armed;
