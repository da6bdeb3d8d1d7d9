//! Waiting for conditions: poll with a deadline.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

const POLL: Duration = Duration::from_millis(20);

/// Polls `check` until it returns `Some`, and returns that; panics naming `what` when
/// `timeout` passes first.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    within(what, timeout, check).await.unwrap_or_else(|error| panic!("{error}"))
}

/// Polls `check` until it returns `Some`, and returns that; an error naming `what` when
/// `timeout` passes first (for checkers that report rather than panic).
pub async fn within<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> Result<T, String>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return Ok(value);
        }
        if Instant::now() >= deadline {
            return Err(format!("timed out after {timeout:?} waiting for: {what}"));
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Polls `check` for `period` and panics naming `what` if it ever returns true: for things
/// that must not happen (a hot-backup taking the lease, say).
pub async fn never<F, Fut>(what: &str, period: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + period;
    while Instant::now() < deadline {
        assert!(!check().await, "it happened: {what}");
        tokio::time::sleep(POLL).await;
    }
}

/// A deadline for hand-written polling loops, where the condition needs mutable state.
#[derive(Debug)]
pub struct Deadline {
    at: Instant,
    timeout: Duration,
    what: String,
}

impl Deadline {
    /// A deadline `timeout` from now for waiting on `what`.
    pub fn new(what: &str, timeout: Duration) -> Deadline {
        Deadline { at: Instant::now() + timeout, timeout, what: what.to_owned() }
    }

    /// Waits one poll interval; panics naming what was awaited once the deadline has passed.
    pub async fn tick(&self) {
        assert!(Instant::now() < self.at, "timed out after {:?} waiting for: {}", self.timeout, self.what);
        tokio::time::sleep(POLL).await;
    }
}
