//! Failpoints for fault-injection tests, compiled in only with the `failpoints` feature.
//! `LEASEHOLD_FAILPOINTS="agent::cannot-apply=return"` makes the agent refuse every change;
//! the binary reads the variable once for the whole process (the `fail` registry is global).

/// The agent's host refuses every change.
pub const CANNOT_APPLY: &str = "agent::cannot-apply";

/// Whether the failpoint `name` is armed (with any `return` action).
#[cfg(feature = "failpoints")]
pub fn armed(name: &'static str) -> bool {
    fail::eval(name, |_| ()).is_some()
}

/// Whether the failpoint `name` is armed.
#[cfg(not(feature = "failpoints"))]
pub fn armed(_name: &'static str) -> bool {
    false
}
