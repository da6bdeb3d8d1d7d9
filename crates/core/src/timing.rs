//! The HA timing settings and the leader's local hold.
//!
//! The store's clock decides *who* holds the lease; how long the leader believes it holds it is
//! measured on its own monotonic clock, from the instant it *sent* the renewal. The store set the
//! expiry at `store_now + ttl` when it executed the renewal, which is after the send, so the
//! lease on the store lasts at least `ttl` of store time from the send. With both clocks within
//! `ρ` of real time, `ttl · (1−ρ)/(1+ρ)` of local time is never longer than that, and `ha.margin`
//! absorbs scheduling jitter. See `docs/PROTOCOL.md`.

use std::time::Duration;

use crate::clock::MonoTime;

/// The timing settings of the HA loop.
#[derive(Debug, Clone, PartialEq)]
pub struct HaTimings {
    /// `ha.lease-ttl`: how long an acquire or renewal keeps the lease on the store's clock.
    pub lease_ttl: Duration,
    /// `ha.renew-interval`: how often the leader renews (by default [`default_renew_interval`]).
    pub renew_interval: Duration,
    /// `ha.margin`: subtracted from the leader's local hold.
    pub margin: Duration,
    /// `ha.priority-step`: the extra wait per rank after an expiry.
    pub priority_step: Duration,
    /// `ha.store-timeout`: the limit on every store call of the HA loop (by default
    /// [`default_store_timeout`]).
    pub store_timeout: Duration,
    /// `ha.poll-interval`: how often a follower re-reads the lease row.
    pub poll_interval: Duration,
    /// `metadata.clock-drift` (`ρ`): the allowed clock-rate error of any clock.
    pub clock_drift: f64,
}

impl Default for HaTimings {
    fn default() -> Self {
        let lease_ttl = Duration::from_secs(6);
        Self {
            lease_ttl,
            renew_interval: default_renew_interval(lease_ttl),
            margin: Duration::from_millis(100),
            priority_step: Duration::from_millis(200),
            store_timeout: default_store_timeout(lease_ttl),
            poll_interval: Duration::from_millis(200),
            clock_drift: 0.01,
        }
    }
}

/// A timing setting that cannot work, naming the key to change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {message}")]
pub struct TimingError {
    /// The configuration key to change.
    pub key: &'static str,
    /// What is wrong, with the numbers.
    pub message: String,
}

impl TimingError {
    pub(crate) fn new(key: &'static str, message: impl Into<String>) -> Self {
        Self { key, message: message.into() }
    }
}

/// A duration as people write it in configuration: `880ms`, `1.167s`.
pub fn human(duration: Duration) -> String {
    if duration < Duration::from_secs(1) {
        format!("{}ms", duration.as_millis())
    } else {
        let seconds = format!("{:.3}", duration.as_secs_f64());
        format!("{}s", seconds.trim_end_matches('0').trim_end_matches('.'))
    }
}

/// The renew interval when none is configured: a third of the TTL.
///
/// A shorter interval buys no safety (the retries below do that) and costs failover time: a
/// crashed leader leaves on average `ttl − interval/2` of lease behind it.
pub fn default_renew_interval(lease_ttl: Duration) -> Duration {
    lease_ttl / 3
}

/// The store timeout when none is configured: an eighth of the TTL, at most 500 ms, so that a
/// renewal and two failed retries fit in the hold at any TTL (see [`HaTimings::validate`]).
pub fn default_store_timeout(lease_ttl: Duration) -> Duration {
    (lease_ttl / 8).min(Duration::from_millis(500))
}

const MIN_LEASE_TTL: Duration = Duration::from_millis(100);
const MAX_LEASE_TTL: Duration = Duration::from_secs(3600);
const MAX_CLOCK_DRIFT: f64 = 0.1;

/// The longest `duration` of one clock may last on another when each drifts by up to `rho`:
/// `duration · (1+ρ)/(1−ρ)`.
pub fn stretched_by_drift(duration: Duration, rho: f64) -> Duration {
    duration.mul_f64((1.0 + rho) / (1.0 - rho))
}

/// The shortest `duration` of one clock may last on another when each drifts by up to `rho`:
/// `duration · (1−ρ)/(1+ρ)`.
pub fn shrunk_by_drift(duration: Duration, rho: f64) -> Duration {
    duration.mul_f64((1.0 - rho) / (1.0 + rho))
}

impl HaTimings {
    /// How long after sending a successful renewal the leader may act as leader, or `None`
    /// when the margin eats the whole lease.
    pub fn local_hold(&self) -> Option<Duration> {
        shrunk_by_drift(self.lease_ttl, self.clock_drift).checked_sub(self.margin).filter(|hold| !hold.is_zero())
    }

    /// The end of the local hold for a renewal (or acquire) sent at `sent`.
    pub fn hold_until(&self, sent: MonoTime) -> MonoTime {
        sent + self.local_hold().unwrap_or(Duration::ZERO)
    }

    /// How long a lease granted by a leader may outlast that leader's own view of it, measured
    /// on another node's clock: `ttl · (1+ρ)/(1−ρ)`.
    pub fn lease_upper_bound(&self) -> Duration {
        stretched_by_drift(self.lease_ttl, self.clock_drift)
    }

    /// The longest random pause added before retrying a failed renewal: a tenth of the store
    /// timeout, so that leaders of several clusters that saw the same store hiccup do not retry
    /// in step.
    pub fn retry_jitter(&self) -> Duration {
        self.store_timeout / 10
    }

    /// The worst case from a successful renewal's send to the end of the third attempt after
    /// it: the next renewal is sent one interval later, it and its first retry each fail at
    /// the store timeout and are retried at once (plus jitter), and the third attempt takes up
    /// to the store timeout too: `interval + 3 × store-timeout + 2 × jitter`.
    pub fn two_failures_budget(&self) -> Duration {
        self.renew_interval + self.store_timeout * 3 + self.retry_jitter() * 2
    }

    /// Checks every relation the HA loop relies on, naming the key that breaks one.
    pub fn validate(&self) -> Result<(), TimingError> {
        if !(0.0..MAX_CLOCK_DRIFT).contains(&self.clock_drift) || self.clock_drift.is_nan() {
            return Err(TimingError::new(
                "metadata.clock-drift",
                format!("must be at least 0 and below {MAX_CLOCK_DRIFT}, got {}", self.clock_drift),
            ));
        }
        if self.lease_ttl < MIN_LEASE_TTL || self.lease_ttl > MAX_LEASE_TTL {
            return Err(TimingError::new(
                "ha.lease-ttl",
                format!(
                    "must be between {} and {}, got {}",
                    human(MIN_LEASE_TTL),
                    human(MAX_LEASE_TTL),
                    human(self.lease_ttl)
                ),
            ));
        }
        for (key, value) in [
            ("ha.renew-interval", self.renew_interval),
            ("ha.store-timeout", self.store_timeout),
            ("ha.poll-interval", self.poll_interval),
        ] {
            if value.is_zero() {
                return Err(TimingError::new(key, "must be above zero"));
            }
        }
        let Some(hold) = self.local_hold() else {
            return Err(TimingError::new(
                "ha.margin",
                format!(
                    "{} leaves the leader no local hold: ha.lease-ttl ({}) shrunk by the clock drift is {}",
                    human(self.margin),
                    human(self.lease_ttl),
                    human(shrunk_by_drift(self.lease_ttl, self.clock_drift)),
                ),
            ));
        };
        // Two failed renewals in a row must leave room for a third attempt before the hold
        // ends, so that one stalled store call and one failed retry do not step down a leader.
        let needed = self.two_failures_budget();
        if needed > hold {
            return Err(TimingError::new(
                "ha.renew-interval",
                format!(
                    "ha.renew-interval ({}) + 3 × ha.store-timeout ({}) + 2 × retry jitter ({}) = {} must fit in the \
                     leader's local hold of {} (ha.lease-ttl {} shrunk by the clock drift, minus ha.margin), so that \
                     two renewals can fail before the hold ends; shorten the interval or the store timeout, or \
                     lengthen the TTL",
                    human(self.renew_interval),
                    human(self.store_timeout),
                    human(self.retry_jitter()),
                    human(needed),
                    human(hold),
                    human(self.lease_ttl),
                ),
            ));
        }
        if self.poll_interval > self.lease_ttl {
            return Err(TimingError::new(
                "ha.poll-interval",
                format!("{} must not exceed ha.lease-ttl ({})", human(self.poll_interval), human(self.lease_ttl)),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(value: u64) -> Duration {
        Duration::from_millis(value)
    }

    #[test]
    fn defaults_are_valid_and_hold_shrinks_by_drift_and_margin() {
        let timings = HaTimings::default();
        timings.validate().unwrap();
        // 6 s × 0.99 / 1.01 − 100 ms
        let hold = timings.local_hold().unwrap();
        assert_eq!(hold.as_millis(), 5781);
        let sent = MonoTime::from_duration(Duration::from_secs(100));
        assert_eq!(timings.hold_until(sent), sent + hold);
    }

    #[test]
    fn default_timings_leave_room_for_two_failed_renewals_at_every_ttl() {
        // At 2 s the old defaults (666 ms interval, 500 ms timeout) budgeted 1832 ms of 1860.
        for (ttl, interval, timeout, budget, hold) in
            [(6000, 2000, 500, 3600, 5781), (2000, 666, 250, 1466, 1860), (1000, 333, 125, 733, 880)]
        {
            let timings = HaTimings {
                lease_ttl: ms(ttl),
                renew_interval: default_renew_interval(ms(ttl)),
                store_timeout: default_store_timeout(ms(ttl)),
                ..HaTimings::default()
            };
            assert_eq!(timings.renew_interval.as_millis(), interval, "{ttl} ms");
            assert_eq!(timings.store_timeout.as_millis(), timeout, "{ttl} ms");
            assert_eq!(timings.two_failures_budget().as_millis(), budget, "{ttl} ms");
            assert_eq!(timings.local_hold().unwrap().as_millis(), hold, "{ttl} ms");
            timings.validate().unwrap();
        }
    }

    #[test]
    fn the_old_two_second_defaults_are_refused_for_want_of_a_second_retry() {
        let timings =
            HaTimings { lease_ttl: ms(2000), renew_interval: ms(666), store_timeout: ms(500), ..HaTimings::default() };
        let error = timings.validate().unwrap_err();
        assert_eq!(error.key, "ha.renew-interval");
        // 666 + 3 × 500 + 2 × 50
        assert!(error.message.contains("= 2.266s"), "{error}");
        assert!(error.message.contains("1.86s"), "{error}");
    }

    #[test]
    fn one_second_test_timings_are_valid() {
        let timings = HaTimings {
            lease_ttl: ms(1000),
            renew_interval: ms(200),
            store_timeout: ms(200),
            poll_interval: ms(100),
            priority_step: ms(200),
            ..HaTimings::default()
        };
        timings.validate().unwrap();
    }

    #[test]
    fn a_renew_interval_without_room_for_two_retries_is_refused_with_the_numbers() {
        let timings = HaTimings { renew_interval: ms(4300), ..HaTimings::default() };
        let error = timings.validate().unwrap_err();
        assert_eq!(error.key, "ha.renew-interval");
        // 4.3 s + 3 × 500 ms + 2 × 50 ms
        assert!(error.message.contains("5.9s"), "{error}");
        assert!(error.message.contains("5.781s"), "{error}");
    }

    #[test]
    fn a_margin_that_eats_the_lease_is_refused() {
        let timings = HaTimings { margin: ms(7000), ..HaTimings::default() };
        assert_eq!(timings.local_hold(), None);
        assert_eq!(timings.validate().unwrap_err().key, "ha.margin");
    }

    #[test]
    fn out_of_range_values_name_their_key() {
        let cases = [
            (HaTimings { clock_drift: 0.5, ..HaTimings::default() }, "metadata.clock-drift"),
            (HaTimings { clock_drift: f64::NAN, ..HaTimings::default() }, "metadata.clock-drift"),
            (HaTimings { lease_ttl: ms(10), ..HaTimings::default() }, "ha.lease-ttl"),
            (HaTimings { store_timeout: ms(0), ..HaTimings::default() }, "ha.store-timeout"),
            (HaTimings { poll_interval: ms(0), ..HaTimings::default() }, "ha.poll-interval"),
            (HaTimings { poll_interval: ms(7000), ..HaTimings::default() }, "ha.poll-interval"),
        ];
        for (timings, key) in cases {
            assert_eq!(timings.validate().unwrap_err().key, key, "{timings:?}");
        }
    }

    #[test]
    fn durations_print_as_they_are_configured() {
        assert_eq!(human(ms(880)), "880ms");
        assert_eq!(human(ms(1167)), "1.167s");
        assert_eq!(human(ms(6000)), "6s");
    }

    #[test]
    fn upper_bound_grows_by_drift() {
        let timings = HaTimings { lease_ttl: ms(1000), clock_drift: 0.01, ..HaTimings::default() };
        assert_eq!(timings.lease_upper_bound().as_micros(), 1_020_202);
    }
}
