//! Failpoints for fault-injection tests, compiled in only with the `failpoints` feature.
//! `LEASEHOLD_FAILPOINTS="agent::cannot-apply=return"` makes the agent refuse every change.

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
    Ok(())
}
