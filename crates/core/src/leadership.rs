//! The leader's choices (DESIGN §2): when to renew, what a renewal's outcome means, and
//! when to step down.
//!
//! The leader holds leadership locally until the hold of its last successful renewal
//! ([`HaTimings::hold_until`]). A renewal that fails is retried with a doubling pause, up to
//! half the renew interval, until the hold ends; a renewal that finds the term gone, or one
//! still unanswered when the hold ends, steps down at once.

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
    /// Hold until `hold_until` and renew again at `renew_at`; a failure after that retries
    /// from [`first_retry_pause`] again.
    Hold {
        /// The new end of the local hold.
        hold_until: MonoTime,
        /// When to renew next.
        renew_at: MonoTime,
    },
    /// Try again at `at`; a failure after that waits `next_pause`.
    Retry {
        /// When to try again.
        at: MonoTime,
        /// The pause after the next failure.
        next_pause: Duration,
    },
    /// Stop leading.
    StepDown(StepDown),
}

/// The pause before the first retry of a failed renewal.
pub fn first_retry_pause(timings: &HaTimings) -> Duration {
    (timings.renew_interval / 8).max(Duration::from_millis(20))
}

/// Whether the leader must step down at `now`: its hold has ended.
pub fn hold_ended(hold_until: MonoTime, now: MonoTime) -> Option<StepDown> {
    (now >= hold_until).then_some(StepDown::HoldExpired)
}

/// The leader's choice after a renewal sent at `sent` ended as `renewal` at `now`, when a
/// failure would wait `retry_pause`.
pub fn after_renewal(
    renewal: Renewal,
    sent: MonoTime,
    now: MonoTime,
    retry_pause: Duration,
    timings: &HaTimings,
) -> LeadStep {
    match renewal {
        Renewal::Renewed => {
            LeadStep::Hold { hold_until: timings.hold_until(sent), renew_at: sent + timings.renew_interval }
        }
        Renewal::Lost => LeadStep::StepDown(StepDown::LeaseLost),
        Renewal::Unanswered => LeadStep::StepDown(StepDown::HoldExpired),
        Renewal::Failed => {
            LeadStep::Retry { at: now + retry_pause, next_pause: (retry_pause * 2).min(timings.renew_interval / 2) }
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
            after_renewal(Renewal::Renewed, at(1000), at(1300), Duration::from_millis(40), &timings),
            LeadStep::Hold { hold_until: timings.hold_until(at(1000)), renew_at: at(1000) + timings.renew_interval }
        );
    }

    #[test]
    fn a_failed_renewal_is_retried_with_a_doubling_pause_up_to_half_the_interval() {
        let timings = timings();
        let half = timings.renew_interval / 2;
        let first = first_retry_pause(&timings);
        assert_eq!(
            after_renewal(Renewal::Failed, at(1000), at(1100), first, &timings),
            LeadStep::Retry { at: at(1100) + first, next_pause: (first * 2).min(half) }
        );
        assert_eq!(
            after_renewal(Renewal::Failed, at(1000), at(1100), half, &timings),
            LeadStep::Retry { at: at(1100) + half, next_pause: half }
        );
    }

    #[test]
    fn a_lost_term_or_an_unanswered_renewal_steps_down() {
        let timings = timings();
        let pause = Duration::from_millis(40);
        assert_eq!(
            after_renewal(Renewal::Lost, at(0), at(1), pause, &timings),
            LeadStep::StepDown(StepDown::LeaseLost)
        );
        assert_eq!(
            after_renewal(Renewal::Unanswered, at(0), at(1), pause, &timings),
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
