//! Who should take an expired lease first, and what a follower does after reading the lease.
//!
//! After an expiry, every live candidate ranks itself among the others (priority first, higher
//! wins; then node id, smaller wins) and the candidate ranked `k` waits `k · ha.priority-step`
//! past the expiry before it tries. The acquire itself is a conditional update, so ranking is
//! only about *who* wins, never about safety: two candidates with the same rank still produce
//! exactly one winner per term.

use std::str::FromStr;
use std::time::Duration;

use crate::clock::MonoTime;
use crate::mode::HaMode;

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

/// A coordinator as the registry shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RegistryEntry<'a> {
    /// Its stable node id.
    pub node_id: &'a str,
    /// Its stored mode name.
    pub mode: &'a str,
    /// Its priority.
    pub priority: i32,
    /// Whether a process runs under it (it has an incarnation: it was not stopped).
    pub running: bool,
    /// When it last refreshed its row, on the store's clock (ms).
    pub last_seen_ms: i64,
}

/// The candidates among `entries` that count for ranking at `store_now_ms`: refreshed within
/// one `ttl`, running, in a candidate mode, and not the holder whose lease just expired.
pub fn live_candidates<'a>(
    entries: impl IntoIterator<Item = RegistryEntry<'a>>,
    store_now_ms: i64,
    ttl: Duration,
    expired_holder: Option<&'a str>,
) -> impl Iterator<Item = Candidate<'a>> {
    let window_ms = ttl.as_millis() as i64;
    entries
        .into_iter()
        .filter(move |entry| {
            entry.running
                && store_now_ms - entry.last_seen_ms < window_ms
                && Some(entry.node_id) != expired_holder
                && HaMode::from_str(entry.mode).is_ok_and(HaMode::is_candidate)
        })
        .map(|entry| Candidate { node_id: entry.node_id, priority: entry.priority })
}

/// The candidate that a leader leaving on purpose tells that the lease is free: the live
/// candidate other than `leaving` ranked first by [`rank`]'s order, or `None` when there is
/// none.
///
/// Only that one is told. A told candidate re-reads the lease at once, ranks itself first
/// and acquires without a back-off; telling a lower-ranked candidate would let it acquire
/// before the one priority prefers has even looked.
pub fn successor<'a>(
    entries: impl IntoIterator<Item = RegistryEntry<'a>>,
    store_now_ms: i64,
    ttl: Duration,
    leaving: &'a str,
) -> Option<Candidate<'a>> {
    live_candidates(entries, store_now_ms, ttl, Some(leaving))
        .reduce(|first, other| if other.outranks(&first) { other } else { first })
}

/// The lease row as a follower read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseSeen {
    /// Whether it had expired on the store's clock.
    pub expired: bool,
    /// How far its expiry was from the store's clock, either way.
    pub from_expiry: Duration,
}

/// What a follower's settings say about contending.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FollowerState {
    /// Its mode now.
    pub mode: HaMode,
    /// Take the lease at once, without the priority back-off (a switch to master).
    pub contend_now: bool,
    /// After a demotion it sits out until then, so that a successor takes over.
    pub sit_out_until: Option<MonoTime>,
}

/// What a follower does after reading the lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FollowStep {
    /// Read again after this long (sooner when a setting changes).
    ReadAgainAfter(Duration),
    /// Try to acquire now.
    AcquireNow,
    /// Rank itself among the live candidates and try after [`acquire_delay`] for an expiry
    /// this long ago.
    AcquireAfterBackOff {
        /// How long ago the lease expired.
        expired_for: Duration,
    },
}

/// The follower's choice at `now`, given the lease it read and its settings.
pub fn follow_step(lease: LeaseSeen, state: FollowerState, now: MonoTime, poll_interval: Duration) -> FollowStep {
    if !lease.expired {
        return FollowStep::ReadAgainAfter(lease.from_expiry.min(poll_interval));
    }
    if !state.mode.is_candidate() {
        return FollowStep::ReadAgainAfter(poll_interval);
    }
    if let Some(until) = state.sit_out_until.filter(|until| now < *until) {
        return FollowStep::ReadAgainAfter(now.until(until).min(poll_interval));
    }
    if state.contend_now {
        return FollowStep::AcquireNow;
    }
    FollowStep::AcquireAfterBackOff { expired_for: lease.from_expiry }
}

/// The lease row as a follower read it, for judging its unanswered acquires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RowSeen {
    /// The row's term.
    pub term: u64,
    /// The row's version.
    pub version: i64,
    /// Whether the row names this very process (node id and incarnation) as its holder, with
    /// its lease unexpired on the store's clock.
    pub held_by_me: bool,
}

/// One acquire whose answer never came, or the earliest of several sent against one row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Unanswered {
    version: i64,
    term: u64,
    sent: MonoTime,
}

/// The acquires a follower sent whose outcome it does not know: the call failed or timed out,
/// so the update may have committed, or may still commit later.
///
/// Such an acquire, if it won, leaves the row naming this process as holder of `term + 1`
/// while no one acts as leader; without this the cluster stays leaderless until that lease
/// expires. A win is recognised from the row itself: only an acquire writes a term, and only
/// this process's acquires write its incarnation, so a row at `term + 1` held by this
/// process was written by one of the acquires sent against a row at `term`. Those answered
/// "lost" changed nothing, so it was one of the unanswered ones, and the earliest of their
/// sends is a valid `sent` for claim 2 of docs/PROTOCOL.md: the store executed the winning
/// statement after it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UnansweredAcquires {
    /// At most one per row version (the earliest send), and only versions the row has not
    /// moved past: a handful at most.
    pending: Vec<Unanswered>,
}

impl UnansweredAcquires {
    /// Records an acquire sent at `sent` against the row read at `version` and `term`, whose
    /// answer never came.
    pub fn record(&mut self, version: i64, term: u64, sent: MonoTime) {
        match self.pending.iter_mut().find(|attempt| attempt.version == version) {
            Some(attempt) => attempt.sent = attempt.sent.min(sent),
            None => self.pending.push(Unanswered { version, term, sent }),
        }
    }

    /// Whether any acquire is still unanswered.
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// Judges the unanswered acquires against the row read now. Returns the `sent` to lead
    /// from when one of them won and the hold it gives (`local_hold` from that send) has not
    /// ended at `now`.
    ///
    /// It forgets exactly the acquires the row has moved past, since a conditional update on a
    /// version can never match once the row left it, and nothing else: an acquire sent
    /// against the row as it is now may still commit later, after a win found too late to lead
    /// or even after a term this node led, and must then still anchor its hold.
    pub fn judge(&mut self, row: RowSeen, now: MonoTime, local_hold: Duration) -> Option<MonoTime> {
        let won = row
            .held_by_me
            .then(|| {
                self.pending
                    .iter()
                    .filter(|attempt| attempt.term + 1 == row.term && attempt.version < row.version)
                    .map(|attempt| attempt.sent)
                    .min()
            })
            .flatten();
        self.pending.retain(|attempt| attempt.version >= row.version);
        won.filter(|sent| *sent + local_hold > now)
    }

    /// An acquire sent against the row at `version` was answered with a win: the row has left
    /// that version, so no acquire sent against it can commit any more.
    pub fn answered_win(&mut self, version: i64) {
        self.pending.retain(|attempt| attempt.version > version);
    }
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

    fn entry<'a>(
        node_id: &'a str,
        mode: &'a str,
        priority: i32,
        running: bool,
        last_seen_ms: i64,
    ) -> RegistryEntry<'a> {
        RegistryEntry { node_id, mode, priority, running, last_seen_ms }
    }

    #[test]
    fn only_live_candidates_other_than_the_expired_holder_rank() {
        let entries = [
            entry("a", "auto", 5, true, 9_500),
            entry("b", "hot-backup", 9, true, 9_500),
            entry("c", "standby", 7, true, 2_000),
            entry("d", "auto", 8, false, 9_900),
            entry("e", "hot-standby", 1, true, 9_000),
            entry("old", "auto", 100, true, 9_999),
        ];
        let ids: Vec<_> =
            live_candidates(entries, 10_000, Duration::from_secs(6), Some("old")).map(|c| c.node_id).collect();
        assert_eq!(ids, ["a", "e"]);
    }

    #[test]
    fn the_successor_is_the_live_candidate_ranked_first_and_only_that_one() {
        let entries = [
            entry("leaving", "auto", 50, true, 9_900),
            entry("a", "auto", 5, true, 9_500),
            entry("b1", "hot-standby", 7, true, 9_500),
            entry("b0", "standby", 7, true, 9_600),
            entry("backup", "hot-backup", 90, true, 9_900),
            entry("stale", "auto", 80, true, 1_000),
            entry("stopped", "auto", 70, false, 9_900),
        ];
        let ttl = Duration::from_secs(6);
        let next = successor(entries, 10_000, ttl, "leaving").unwrap();
        assert_eq!(next, candidate("b0", 7));
        let live: Vec<_> = live_candidates(entries, 10_000, ttl, Some("leaving")).collect();
        assert_eq!(rank(next, live.iter().copied()), 0);
        assert!(
            live.iter()
                .filter(|other| other.node_id != next.node_id)
                .all(|other| rank(*other, live.iter().copied()) > 0)
        );
    }

    #[test]
    fn a_leader_alone_has_no_successor() {
        let entries = [entry("leaving", "auto", 0, true, 9_900), entry("backup", "hot-backup", 0, true, 9_900)];
        assert_eq!(successor(entries, 10_000, Duration::from_secs(6), "leaving"), None);
    }

    const POLL: Duration = Duration::from_millis(200);

    fn at(ms: u64) -> MonoTime {
        MonoTime::from_duration(Duration::from_millis(ms))
    }

    fn auto() -> FollowerState {
        FollowerState { mode: HaMode::Auto, contend_now: false, sit_out_until: None }
    }

    fn expired(ms: u64) -> LeaseSeen {
        LeaseSeen { expired: true, from_expiry: Duration::from_millis(ms) }
    }

    #[test]
    fn a_live_lease_is_read_again_at_its_expiry_or_the_poll_interval() {
        let live = |ms| LeaseSeen { expired: false, from_expiry: Duration::from_millis(ms) };
        assert_eq!(follow_step(live(50), auto(), at(0), POLL), FollowStep::ReadAgainAfter(Duration::from_millis(50)));
        assert_eq!(follow_step(live(5000), auto(), at(0), POLL), FollowStep::ReadAgainAfter(POLL));
    }

    #[test]
    fn an_expired_lease_is_contended_after_the_back_off() {
        assert_eq!(
            follow_step(expired(30), auto(), at(0), POLL),
            FollowStep::AcquireAfterBackOff { expired_for: Duration::from_millis(30) }
        );
    }

    #[test]
    fn a_switch_to_master_contends_at_once() {
        let state = FollowerState { mode: HaMode::Master, contend_now: true, sit_out_until: None };
        assert_eq!(follow_step(expired(30), state, at(0), POLL), FollowStep::AcquireNow);
    }

    #[test]
    fn a_hot_backup_only_watches_while_standbys_contend() {
        let backup = FollowerState { mode: HaMode::HotBackup, ..auto() };
        assert_eq!(follow_step(expired(30), backup, at(0), POLL), FollowStep::ReadAgainAfter(POLL));
        for mode in [HaMode::Standby, HaMode::HotStandby] {
            let state = FollowerState { mode, ..auto() };
            assert!(
                matches!(follow_step(expired(30), state, at(0), POLL), FollowStep::AcquireAfterBackOff { .. }),
                "{mode:?}"
            );
        }
    }

    #[test]
    fn a_demoted_node_sits_out_until_its_time_is_up() {
        let state = FollowerState { sit_out_until: Some(at(1000)), ..auto() };
        assert_eq!(
            follow_step(expired(0), state, at(900), POLL),
            FollowStep::ReadAgainAfter(Duration::from_millis(100))
        );
        assert_eq!(
            follow_step(expired(0), state, at(1000), POLL),
            FollowStep::AcquireAfterBackOff { expired_for: Duration::ZERO }
        );
    }

    const HOLD: Duration = Duration::from_millis(3000);

    fn row(term: u64, version: i64, held_by_me: bool) -> RowSeen {
        RowSeen { term, version, held_by_me }
    }

    #[test]
    fn an_unanswered_acquire_that_won_is_adopted_from_its_send() {
        let mut unanswered = UnansweredAcquires::default();
        unanswered.record(7, 3, at(100));
        assert_eq!(unanswered.judge(row(4, 8, true), at(400), HOLD), Some(at(100)));
        assert!(unanswered.is_empty(), "the adopted acquire is settled");
    }

    #[test]
    fn the_earliest_send_against_the_same_row_anchors_the_hold() {
        let mut unanswered = UnansweredAcquires::default();
        unanswered.record(7, 3, at(100));
        assert_eq!(unanswered.judge(row(3, 7, false), at(300), HOLD), None, "the row has not moved: still pending");
        unanswered.record(7, 3, at(500));
        assert_eq!(unanswered.judge(row(4, 8, true), at(700), HOLD), Some(at(100)));
    }

    #[test]
    fn a_row_held_by_me_at_another_term_is_not_adopted() {
        let mut unanswered = UnansweredAcquires::default();
        unanswered.record(7, 3, at(100));
        // The row names this process at the term it read (a renewal of an earlier term of
        // its own committed late): no acquire of this process wrote it.
        assert_eq!(unanswered.judge(row(3, 8, true), at(300), HOLD), None);
        assert!(unanswered.is_empty(), "the row moved past version 7: that acquire can never match");
    }

    #[test]
    fn a_row_held_by_another_node_forgets_the_acquires_it_moved_past() {
        let mut unanswered = UnansweredAcquires::default();
        unanswered.record(7, 3, at(100));
        unanswered.record(9, 4, at(900));
        assert_eq!(unanswered.judge(row(5, 9, false), at(1000), HOLD), None);
        // Version 7 is decided; version 9 could still commit.
        assert_eq!(unanswered.judge(row(5, 10, true), at(1100), HOLD), Some(at(900)));
    }

    #[test]
    fn a_win_whose_hold_has_already_ended_is_not_led() {
        let mut unanswered = UnansweredAcquires::default();
        unanswered.record(7, 3, at(100));
        assert_eq!(unanswered.judge(row(4, 8, true), at(100) + HOLD, HOLD), None);
        assert!(unanswered.is_empty());
    }

    #[test]
    fn an_acquire_against_the_row_a_lapsed_win_left_still_anchors_its_own_win() {
        let mut unanswered = UnansweredAcquires::default();
        unanswered.record(11, 11, at(15_692));
        unanswered.record(12, 12, at(17_211));
        // The first one won, but too long ago to lead; the second is still in flight.
        assert_eq!(unanswered.judge(row(12, 12, true), at(19_000), HOLD), None);
        unanswered.record(12, 12, at(19_100));
        // The second one commits late: the hold counts from its own send, not the retry's.
        assert_eq!(unanswered.judge(row(13, 13, true), at(19_500), HOLD), Some(at(17_211)));
    }

    #[test]
    fn an_answered_win_settles_the_acquires_sent_against_the_same_row() {
        let mut unanswered = UnansweredAcquires::default();
        unanswered.record(7, 3, at(100));
        unanswered.answered_win(7);
        assert!(unanswered.is_empty());
    }

    #[test]
    fn nothing_unanswered_adopts_nothing() {
        let mut unanswered = UnansweredAcquires::default();
        assert_eq!(unanswered.judge(row(4, 8, true), at(100), HOLD), None);
    }
}
