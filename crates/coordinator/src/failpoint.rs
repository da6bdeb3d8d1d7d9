//! Failpoints for fault-injection tests, compiled in only with the `failpoints` feature.
//!
//! A test sets `LEASEHOLD_FAILPOINTS="name=actions;name=actions"` (the `fail` crate's action
//! syntax) in the environment of the process it starts. Without the feature, every function
//! here does nothing and costs nothing.

/// Where a leader may be held: after its local leadership check, before its guarded write.
pub const BEFORE_GUARDED_WRITE: &str = "ha::before-guarded-write";
/// Where a leader may be held: inside its guarded write, holding the lease row's lock.
pub const INSIDE_GUARDED_WRITE: &str = "ha::inside-guarded-write";

/// Where a DDL may be held: its prepare committed, before its broadcast.
pub const DDL_AFTER_PREPARE: &str = "ddl::after-prepare";
/// Where a DDL may be held: its prepare proceeded, before the data is dropped.
pub const DDL_BEFORE_DROP_DATA: &str = "ddl::before-drop-data";
/// Where a DDL may be held: its order to drop data committed, before its broadcast.
pub const DDL_AFTER_DROP_ORDER: &str = "ddl::after-drop-order";
/// Where a DDL may be held: its rollback committed, before its broadcast.
pub const DDL_AFTER_ROLLBACK: &str = "ddl::after-rollback";
/// Where a DDL may be held: its commit committed, before its broadcast.
pub const DDL_AFTER_COMMIT: &str = "ddl::after-commit";

/// Where a new leader may be held: it found procedures to resume and has not taken their locks.
pub const DDL_BEFORE_RESUME: &str = "ddl::before-resume";

/// Where the store refuses the write guard of a new term's load (`1*return`: once), as it
/// does when its clock runs ahead of the leader's.
pub const LOAD_GUARD_REFUSED: &str = "store::load-guard-refused";

/// Where the store refuses the write guard of a procedure's commit step (`1*return`: once).
pub const COMMIT_GUARD_REFUSED: &str = "store::commit-guard-refused";

/// Where a broadcast's budget may be cut to `return(MS)` milliseconds, so that it runs over
/// and its procedure retries it.
pub const BROADCAST_BUDGET_CUT: &str = "broadcast::budget-cut";

/// Where a change's commit succeeds but its answer is lost (`return`, or `1*return` once).
pub const COMMIT_ANSWER_LOST: &str = "store::commit-answer-lost";

/// Where opening a change's transaction fails, as a store outage would.
pub const BEGIN_FAILS: &str = "store::begin-fails";

/// Whether the failpoint `name` fires now.
#[cfg(feature = "failpoints")]
pub fn armed(name: &'static str) -> bool {
    fail::eval(name, |_| ()).is_some()
}

/// Whether the failpoint `name` fires now.
#[cfg(not(feature = "failpoints"))]
pub fn armed(_name: &'static str) -> bool {
    false
}

/// Reads `LEASEHOLD_FAILPOINTS` and configures each failpoint it names.
#[cfg(feature = "failpoints")]
pub fn init_from_env() -> Result<(), String> {
    let Ok(spec) = std::env::var("LEASEHOLD_FAILPOINTS") else {
        return Ok(());
    };
    for entry in spec.split(';').map(str::trim).filter(|entry| !entry.is_empty()) {
        let (name, actions) =
            entry.split_once('=').ok_or_else(|| format!("failpoint {entry:?} is not name=actions"))?;
        fail::cfg(name.trim(), actions.trim())?;
        tracing::warn!(failpoint = name.trim(), actions = actions.trim(), "failpoint armed");
    }
    Ok(())
}

/// Reads `LEASEHOLD_FAILPOINTS` and configures each failpoint it names.
#[cfg(not(feature = "failpoints"))]
pub fn init_from_env() -> Result<(), String> {
    if std::env::var_os("LEASEHOLD_FAILPOINTS").is_some() {
        tracing::warn!("LEASEHOLD_FAILPOINTS is set, but this build has no failpoints; ignoring it");
    }
    Ok(())
}

/// The milliseconds a `return(MS)` action at `name` gives, when it fires now.
#[cfg(feature = "failpoints")]
pub fn millis(name: &'static str) -> Option<u64> {
    fail::eval(name, |argument| argument.and_then(|value| value.trim().parse::<u64>().ok())).flatten()
}

/// The milliseconds a `return(MS)` action at `name` gives, when it fires now.
#[cfg(not(feature = "failpoints"))]
pub fn millis(_name: &'static str) -> Option<u64> {
    None
}

/// Pauses for the number of milliseconds a `return(MS)` action gives, without blocking the
/// runtime's thread (the `fail` crate's own `sleep` would).
pub async fn pause(name: &'static str) {
    if let Some(millis) = millis(name) {
        tracing::warn!(failpoint = name, pause_ms = millis, "failpoint reached: pausing");
        tokio::time::sleep(std::time::Duration::from_millis(millis)).await;
        tracing::warn!(failpoint = name, "failpoint released");
    }
}
