//! The leader's choices (DESIGN §2): when to renew, what a renewal's outcome means, and
//! when to step down.
//!
//! The leader holds leadership locally until the hold of its last successful renewal
//! ([`HaTimings::hold_until`]). A renewal that fails is retried at once, after a random pause
//! of at most [`HaTimings::retry_jitter`]; so is the next failure, and validation guarantees that
//! both fit in the hold ([`HaTimings::two_failures_budget`]). Later failures wait a doubling
//! pause (so that a store that refuses at once is not hammered), up to half the renew interval,
//! until the hold ends. A renewal that finds the term gone, or one still unanswered when the
//! hold ends, steps down at once.

use std::time::Duration;

use crate::clock::MonoTime;
use crate::timing::HaTimings;

/// Why a leader stopped leading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepDown {
    /// The node is shutting down.
    Shutdown,
    /// An operator demoted it (a mode that does not lead).
    Demoted,
    /// The local hold ended without a successful renewal.
    HoldExpired,
    /// The store no longer shows this term.
    LeaseLost,
    /// Another process took this node id.
    NodeIdLost,
}

impl StepDown {
    /// Every reason, for metrics that are exported before anything happened.
    pub const ALL: [StepDown; 5] =
        [StepDown::Shutdown, StepDown::Demoted, StepDown::HoldExpired, StepDown::LeaseLost, StepDown::NodeIdLost];

    /// The reason, as logged.
    pub fn reason(self) -> &'static str {
        match self {
            StepDown::Shutdown => "shutdown",
            StepDown::Demoted => "demoted",
            StepDown::HoldExpired => "local hold ended without a successful renewal",
            StepDown::LeaseLost => "lease lost: the store no longer shows this term",
            StepDown::NodeIdLost => "node id taken over",
        }
    }

    /// The reason, as a metric label.
    pub fn label(self) -> &'static str {
        match self {
            StepDown::Shutdown => "shutdown",
            StepDown::Demoted => "demoted",
            StepDown::HoldExpired => "hold_expired",
            StepDown::LeaseLost => "lease_lost",
            StepDown::NodeIdLost => "node_id_lost",
        }
    }

    /// Whether the lease is released on the way out, so that a successor takes over at once
    /// (leaving on purpose), rather than left to expire.
    pub fn releases_lease(self) -> bool {
        matches!(self, StepDown::Shutdown | StepDown::Demoted)
    }

    /// Until when a node that stepped down at `now` sits out of the election: a demoted
    /// node waits one lease TTL, so that a successor takes over instead of it.
    pub fn sit_out_until(self, now: MonoTime, timings: &HaTimings) -> Option<MonoTime> {
        (self == StepDown::Demoted).then(|| now + timings.lease_ttl)
    }
}

/// How a renewal sent at some instant ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Renewal {
    /// The store extended this term's lease.
    Renewed,
    /// The store shows another term.
    Lost,
    /// The call failed (a timeout, a dropped connection).
    Failed,
    /// The hold ended before the store answered.
    Unanswered,
}

/// What the leader does after a renewal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeadStep {
    /// Hold until `hold_until` and renew again at `renew_at`; the count of failures in a row
    /// starts again from zero.
    Hold {
        /// The new end of the local hold.
        hold_until: MonoTime,
        /// When to renew next.
        renew_at: MonoTime,
    },
    /// Try again at `at`, after `failures` failed attempts in a row.
    Retry {
        /// When to try again.
        at: MonoTime,
        /// The failed attempts in a row so far, this one included.
        failures: u32,
    },
    /// Stop leading.
    StepDown(StepDown),
}

/// How many failed renewals in a row are retried at once (plus jitter); validation sizes the
/// hold for exactly these.
pub const IMMEDIATE_RETRIES: u32 = 2;

/// The pause before the first backed-off retry, after [`IMMEDIATE_RETRIES`] failures.
pub fn first_retry_pause(timings: &HaTimings) -> Duration {
    (timings.renew_interval / 8).max(Duration::from_millis(20))
}

/// The pause, before jitter, after the `failures`-th failed renewal in a row: none for the
/// first [`IMMEDIATE_RETRIES`], then doubling from [`first_retry_pause`] up to half the renew
/// interval.
pub fn retry_pause(failures: u32, timings: &HaTimings) -> Duration {
    if failures <= IMMEDIATE_RETRIES {
        return Duration::ZERO;
    }
    let doublings = (failures - IMMEDIATE_RETRIES - 1).min(16);
    (first_retry_pause(timings) * 2u32.pow(doublings)).min(timings.renew_interval / 2)
}

/// Whether the leader must step down at `now`: its hold has ended.
pub fn hold_ended(hold_until: MonoTime, now: MonoTime) -> Option<StepDown> {
    (now >= hold_until).then_some(StepDown::HoldExpired)
}

/// The leader's choice after a renewal sent at `sent` ended as `renewal` at `now`, after
/// `failures` failed attempts in a row before it. `jitter` is a random draw from
/// `0..=timings.retry_jitter()` (clamped to it), added to any retry.
pub fn after_renewal(
    renewal: Renewal,
    sent: MonoTime,
    now: MonoTime,
    failures: u32,
    jitter: Duration,
    timings: &HaTimings,
) -> LeadStep {
    match renewal {
        Renewal::Renewed => {
            LeadStep::Hold { hold_until: timings.hold_until(sent), renew_at: sent + timings.renew_interval }
        }
        Renewal::Lost => LeadStep::StepDown(StepDown::LeaseLost),
        Renewal::Unanswered => LeadStep::StepDown(StepDown::HoldExpired),
        Renewal::Failed => {
            let failures = failures.saturating_add(1);
            let pause = retry_pause(failures, timings) + jitter.min(timings.retry_jitter());
            LeadStep::Retry { at: now + pause, failures }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: u64) -> MonoTime {
        MonoTime::from_duration(Duration::from_millis(ms))
    }

    fn timings() -> HaTimings {
        HaTimings::default()
    }

    #[test]
    fn a_renewal_extends_the_hold_from_its_send_time() {
        let timings = timings();
        assert_eq!(
            after_renewal(Renewal::Renewed, at(1000), at(1300), 2, Duration::from_millis(7), &timings),
            LeadStep::Hold { hold_until: timings.hold_until(at(1000)), renew_at: at(1000) + timings.renew_interval }
        );
    }

    #[test]
    fn the_first_two_failures_are_retried_at_once_plus_jitter() {
        let timings = timings();
        let jitter = Duration::from_millis(13);
        assert_eq!(
            after_renewal(Renewal::Failed, at(2000), at(2500), 0, jitter, &timings),
            LeadStep::Retry { at: at(2513), failures: 1 }
        );
        assert_eq!(
            after_renewal(Renewal::Failed, at(2513), at(3013), 1, Duration::ZERO, &timings),
            LeadStep::Retry { at: at(3013), failures: 2 }
        );
    }

    #[test]
    fn jitter_is_clamped_to_a_tenth_of_the_store_timeout() {
        let timings = timings();
        assert_eq!(timings.retry_jitter(), Duration::from_millis(50));
        assert_eq!(
            after_renewal(Renewal::Failed, at(0), at(10), 0, Duration::from_secs(9), &timings),
            LeadStep::Retry { at: at(60), failures: 1 }
        );
    }

    #[test]
    fn later_failures_back_off_doubling_up_to_half_the_interval() {
        // Default interval 2 s: the backed-off pauses start at 250 ms and stop at 1 s.
        let timings = timings();
        let pauses: Vec<u128> = (1..=7).map(|failures| retry_pause(failures, &timings).as_millis()).collect();
        assert_eq!(pauses, [0, 0, 250, 500, 1000, 1000, 1000]);
        assert_eq!(retry_pause(u32::MAX, &timings), Duration::from_secs(1));
        assert_eq!(
            after_renewal(Renewal::Failed, at(0), at(100), 3, Duration::from_millis(5), &timings),
            LeadStep::Retry { at: at(605), failures: 4 }
        );
    }

    #[test]
    fn two_failures_at_the_store_timeout_still_renew_before_the_hold_ends() {
        // The worst case validation sizes the hold for, walked through the decisions: the
        // next renewal and its first retry both time out, with the largest jitter each time.
        let timings = HaTimings {
            lease_ttl: Duration::from_secs(2),
            renew_interval: crate::timing::default_renew_interval(Duration::from_secs(2)),
            store_timeout: crate::timing::default_store_timeout(Duration::from_secs(2)),
            ..HaTimings::default()
        };
        let last_success = at(10_000);
        let hold_until = timings.hold_until(last_success);
        let jitter = timings.retry_jitter();
        let mut sent = last_success + timings.renew_interval;
        let mut failures = 0;
        for _ in 0..2 {
            let now = sent + timings.store_timeout;
            assert_eq!(hold_ended(hold_until, now), None);
            match after_renewal(Renewal::Failed, sent, now, failures, jitter, &timings) {
                LeadStep::Retry { at, failures: count } => (sent, failures) = (at, count),
                other => panic!("expected a retry, got {other:?}"),
            }
        }
        assert!(sent + timings.store_timeout <= hold_until, "the third attempt ends after the hold");
        assert_eq!(
            after_renewal(Renewal::Renewed, sent, sent + timings.store_timeout, failures, jitter, &timings),
            LeadStep::Hold { hold_until: timings.hold_until(sent), renew_at: sent + timings.renew_interval }
        );
    }

    #[test]
    fn a_lost_term_or_an_unanswered_renewal_steps_down() {
        let timings = timings();
        let jitter = Duration::from_millis(40);
        assert_eq!(
            after_renewal(Renewal::Lost, at(0), at(1), 0, jitter, &timings),
            LeadStep::StepDown(StepDown::LeaseLost)
        );
        assert_eq!(
            after_renewal(Renewal::Unanswered, at(0), at(1), 1, jitter, &timings),
            LeadStep::StepDown(StepDown::HoldExpired)
        );
    }

    #[test]
    fn the_hold_ends_at_its_instant_not_after() {
        assert_eq!(hold_ended(at(500), at(499)), None);
        assert_eq!(hold_ended(at(500), at(500)), Some(StepDown::HoldExpired));
    }

    #[test]
    fn only_leaving_on_purpose_releases_the_lease_and_only_a_demotion_sits_out() {
        let timings = timings();
        let releases: Vec<StepDown> =
            [StepDown::Shutdown, StepDown::Demoted, StepDown::HoldExpired, StepDown::LeaseLost, StepDown::NodeIdLost]
                .into_iter()
                .filter(|reason| reason.releases_lease())
                .collect();
        assert_eq!(releases, [StepDown::Shutdown, StepDown::Demoted]);
        assert_eq!(StepDown::Demoted.sit_out_until(at(100), &timings), Some(at(100) + timings.lease_ttl));
        assert_eq!(StepDown::LeaseLost.sit_out_until(at(100), &timings), None);
    }
}
