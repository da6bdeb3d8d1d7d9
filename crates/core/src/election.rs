//! Who should take an expired lease first.
//!
//! After an expiry, every live candidate ranks itself among the others (priority first, higher
//! wins; then node id, smaller wins) and the candidate ranked `k` waits `k · ha.priority-step`
//! past the expiry before it tries. The acquire itself is a conditional update, so ranking is
//! only about *who* wins, never about safety: two candidates with the same rank still produce
//! exactly one winner per term.

use std::time::Duration;

/// A live candidate as the registry shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Candidate<'a> {
    /// Its stable node id.
    pub node_id: &'a str,
    /// Its priority: higher wins.
    pub priority: i32,
}

impl Candidate<'_> {
    /// Whether `self` is ranked ahead of `other`.
    pub fn outranks(&self, other: &Candidate<'_>) -> bool {
        (std::cmp::Reverse(self.priority), self.node_id) < (std::cmp::Reverse(other.priority), other.node_id)
    }
}

/// The rank of `me` among `others` (0 is first). `others` may include `me`; it is skipped.
pub fn rank<'a>(me: Candidate<'_>, others: impl IntoIterator<Item = Candidate<'a>>) -> usize {
    others.into_iter().filter(|other| other.node_id != me.node_id && other.outranks(&me)).count()
}

/// How long a candidate of `rank` waits before it tries to acquire a lease that expired
/// `expired_for` ago.
///
/// The wait is counted from the expiry, so candidates that noticed it at different moments
/// still try in rank order. An expiry older than one `poll_interval` was not watched by anyone
/// (a cold start, or a lease left to lapse long ago): then the wait counts from now.
pub fn acquire_delay(expired_for: Duration, rank: usize, step: Duration, poll_interval: Duration) -> Duration {
    let after_expiry = step * rank as u32;
    if expired_for > poll_interval { after_expiry } else { after_expiry.saturating_sub(expired_for) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn candidate(node_id: &str, priority: i32) -> Candidate<'_> {
        Candidate { node_id, priority }
    }

    #[test]
    fn higher_priority_ranks_first_then_smaller_node_id() {
        let all = [candidate("c1", 1), candidate("c2", 10), candidate("c3", 1), candidate("c0", 1)];
        assert_eq!(rank(candidate("c2", 10), all), 0);
        assert_eq!(rank(candidate("c0", 1), all), 1);
        assert_eq!(rank(candidate("c1", 1), all), 2);
        assert_eq!(rank(candidate("c3", 1), all), 3);
    }

    #[test]
    fn a_lone_candidate_is_first() {
        assert_eq!(rank(candidate("c1", 0), [candidate("c1", 0)]), 0);
        assert_eq!(rank(candidate("c1", 0), []), 0);
    }

    #[test]
    fn delay_counts_from_a_watched_expiry() {
        let step = Duration::from_millis(200);
        let poll = Duration::from_millis(200);
        assert_eq!(acquire_delay(Duration::from_millis(50), 0, step, poll), Duration::ZERO);
        assert_eq!(acquire_delay(Duration::from_millis(50), 2, step, poll), Duration::from_millis(350));
        assert_eq!(acquire_delay(Duration::from_millis(150), 1, step, poll), Duration::from_millis(50));
    }

    #[test]
    fn delay_counts_from_now_after_an_unwatched_expiry() {
        let step = Duration::from_millis(200);
        let poll = Duration::from_millis(200);
        assert_eq!(acquire_delay(Duration::from_secs(3600), 2, step, poll), Duration::from_millis(400));
        assert_eq!(acquire_delay(Duration::from_secs(3600), 0, step, poll), Duration::ZERO);
    }
}
