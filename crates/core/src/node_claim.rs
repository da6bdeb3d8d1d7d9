//! Whether a starting coordinator may take its node id from the registry.
//!
//! Node ids are stable across restarts, so a restart finds its own row from before. A row
//! whose process stopped cleanly, or that has not been refreshed for a whole liveness window,
//! is free. A row refreshed within the window may belong to a crashed process or to a live
//! duplicate: the starting node watches it until the window ends. If the row moves on, another
//! live process owns the id and the start is refused.

use std::time::Duration;

/// A node's row in the registry, as far as claiming it goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegisteredNode {
    /// The incarnation that owns the row; `None` after a clean stop.
    pub incarnation: Option<String>,
    /// When the owner last refreshed the row, on the store's clock (ms).
    pub last_seen_ms: i64,
}

/// What a starting node does about its registry row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimDecision {
    /// No row yet: insert one.
    Register,
    /// The row is free: take it over (conditional on it being unchanged).
    TakeOver,
    /// Another incarnation refreshed the row recently: watch it until `stale_at_ms` (store
    /// clock); if it changes meanwhile, the id is in use.
    Watch {
        /// When the row counts as abandoned if nothing refreshes it.
        stale_at_ms: i64,
    },
}

/// Decides what a node with `my_incarnation` does about `existing`.
pub fn judge_claim(
    existing: Option<&RegisteredNode>,
    my_incarnation: &str,
    store_now_ms: i64,
    liveness_window: Duration,
) -> ClaimDecision {
    let Some(row) = existing else {
        return ClaimDecision::Register;
    };
    let window_ms = liveness_window.as_millis() as i64;
    match &row.incarnation {
        None => ClaimDecision::TakeOver,
        Some(owner) if owner == my_incarnation => ClaimDecision::TakeOver,
        Some(_) if store_now_ms - row.last_seen_ms >= window_ms => ClaimDecision::TakeOver,
        Some(_) => ClaimDecision::Watch { stale_at_ms: row.last_seen_ms + window_ms },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WINDOW: Duration = Duration::from_secs(6);

    fn row(incarnation: Option<&str>, last_seen_ms: i64) -> RegisteredNode {
        RegisteredNode { incarnation: incarnation.map(str::to_owned), last_seen_ms }
    }

    #[test]
    fn a_new_id_registers() {
        assert_eq!(judge_claim(None, "me", 1000, WINDOW), ClaimDecision::Register);
    }

    #[test]
    fn a_cleanly_stopped_or_abandoned_row_is_taken_over() {
        assert_eq!(judge_claim(Some(&row(None, 900)), "me", 1000, WINDOW), ClaimDecision::TakeOver);
        assert_eq!(judge_claim(Some(&row(Some("old"), 1000)), "me", 7000, WINDOW), ClaimDecision::TakeOver);
        assert_eq!(judge_claim(Some(&row(Some("me"), 1000)), "me", 1001, WINDOW), ClaimDecision::TakeOver);
    }

    #[test]
    fn a_recently_refreshed_row_is_watched_until_the_window_ends() {
        assert_eq!(
            judge_claim(Some(&row(Some("other"), 1000)), "me", 3000, WINDOW),
            ClaimDecision::Watch { stale_at_ms: 7000 }
        );
    }
}
