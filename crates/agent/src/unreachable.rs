//! The warning an agent logs while it cannot reach any coordinator: the first failure at
//! once, then at most once per [`WARN_EVERY`] for as long as it lasts, naming the endpoints
//! and the last error; and one line when a coordinator answers again. Each heartbeat's own
//! failure stays at DEBUG.

use std::time::Duration;

use leasehold_core::MonoTime;
use tracing::{info, warn};

/// The least time between two warnings of one outage.
pub const WARN_EVERY: Duration = Duration::from_secs(10);

/// When a recurring warning is due: the first time, then once `every` has passed since the
/// last one. Counts the failures in between, so that each warning says how many it covers.
#[derive(Debug, Clone)]
pub struct Throttle {
    every: Duration,
    last: Option<MonoTime>,
    failures: u64,
}

impl Throttle {
    /// A throttle that lets one warning through per `every`.
    pub fn new(every: Duration) -> Throttle {
        Throttle { every, last: None, failures: 0 }
    }

    /// A failure at `now`: `Some(failures since the last warning, this one included)` when a
    /// warning is due.
    pub fn failed(&mut self, now: MonoTime) -> Option<u64> {
        self.failures += 1;
        let due = self.last.is_none_or(|last| now - last >= self.every);
        due.then(|| {
            self.last = Some(now);
            std::mem::take(&mut self.failures)
        })
    }

    /// A success: `true` when a warning was given since the last success (the outage was
    /// reported, so its end is worth a line too).
    pub fn succeeded(&mut self) -> bool {
        self.failures = 0;
        self.last.take().is_some()
    }
}

/// The agent's "cannot reach any coordinator" warning.
#[derive(Debug)]
pub struct UnreachableWarning {
    endpoints: String,
    throttle: Throttle,
}

impl UnreachableWarning {
    /// For an agent configured with `endpoints`.
    pub fn new(endpoints: &[String]) -> UnreachableWarning {
        UnreachableWarning { endpoints: endpoints.join(","), throttle: Throttle::new(WARN_EVERY) }
    }

    /// No coordinator answered at `now`, with `error`.
    pub fn failed(&mut self, now: MonoTime, error: &dyn std::fmt::Display) {
        if let Some(failures) = self.throttle.failed(now) {
            warn!(
                endpoints = %self.endpoints,
                %error,
                failures,
                "cannot reach any coordinator; still trying (the lease runs out at its fence if this lasts)"
            );
        }
    }

    /// A coordinator answered.
    pub fn reached(&mut self) {
        if self.throttle.succeeded() {
            info!(endpoints = %self.endpoints, "reached a coordinator again");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: u64) -> MonoTime {
        MonoTime::from_duration(Duration::from_secs(seconds))
    }

    #[test]
    fn the_first_failure_warns_then_once_per_period() {
        let mut throttle = Throttle::new(Duration::from_secs(10));
        assert_eq!(throttle.failed(at(100)), Some(1));
        for second in 101..110 {
            assert_eq!(throttle.failed(at(second)), None, "{second}");
        }
        assert_eq!(throttle.failed(at(110)), Some(10), "ten failures since the first warning");
        assert_eq!(throttle.failed(at(111)), None);
    }

    #[test]
    fn a_success_ends_the_outage_and_the_next_failure_warns_at_once() {
        let mut throttle = Throttle::new(Duration::from_secs(10));
        assert!(!throttle.succeeded(), "nothing was reported");
        assert_eq!(throttle.failed(at(5)), Some(1));
        assert_eq!(throttle.failed(at(6)), None);
        assert!(throttle.succeeded(), "the reported outage ended");
        assert!(!throttle.succeeded());
        assert_eq!(throttle.failed(at(7)), Some(1), "a new outage is reported at once");
    }
}
