//! The failpoint helpers both servers use for fault-injection tests, compiled in only with the
//! `failpoints` feature; each server names its own failpoints.
//!
//! A test sets `LEASEHOLD_FAILPOINTS="name=actions;name=actions"` (the `fail` crate's action
//! syntax) in the environment of the process it starts; the process reads it once, for the
//! whole process (the `fail` registry is global). Without the feature, every function here
//! does nothing and costs nothing.

/// Whether the failpoint `name` fires now (with any `return` action).
#[cfg(feature = "failpoints")]
pub fn armed(name: &'static str) -> bool {
    fail::eval(name, |_| ()).is_some()
}

/// Whether the failpoint `name` fires now.
#[cfg(not(feature = "failpoints"))]
pub fn armed(_name: &'static str) -> bool {
    false
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
