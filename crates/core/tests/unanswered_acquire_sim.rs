//! A simulation of the coordinator lease row under acquires whose answers are lost, checking
//! the adoption rule of [`UnansweredAcquires`].
//!
//! One follower ("me") sends acquires one at a time, as the election loop does: it reads the
//! row, sends a conditional acquire against that version, and then either gets an answer or
//! times out. A statement that timed out stays in flight at the store and may execute at any
//! later moment, or never. Other coordinators send acquires of their own, which also execute
//! late. The row's lease expires `TTL` after the acquire that wrote it executed.
//!
//! Properties, after every read of the row by "me":
//! - **Safe anchor:** when [`UnansweredAcquires::judge`] adopts, the row really was written by
//!   one of my acquires, at the row's term, and the anchor is no later than that statement's
//!   send, so the hold anchored there ends before the store's lease does (claim 2 of
//!   docs/PROTOCOL.md).
//! - **Adoption:** when the row holds a live lease written by one of my timed-out acquires
//!   whose hold from its send has not ended, it is adopted.

mod sim;

use std::time::Duration;

use leasehold_core::MonoTime;
use leasehold_core::election::{RowSeen, UnansweredAcquires};
use proptest::prelude::*;
use sim::Rng;

const TTL_MS: u64 = 1_000;
const HOLD: Duration = Duration::from_millis(800);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Who {
    Me,
    Other,
}

#[derive(Debug, Clone, Copy)]
struct Statement {
    by: Who,
    version: i64,
    term: u64,
    sent_ms: u64,
    executed: bool,
    won: bool,
}

#[derive(Debug, Clone, Copy)]
struct Row {
    term: u64,
    version: i64,
    holder: Option<Who>,
    expires_ms: u64,
    /// The statement that wrote the current term.
    written_by: Option<usize>,
}

fn at(ms: u64) -> MonoTime {
    MonoTime::ZERO + Duration::from_millis(ms)
}

/// Runs one schedule; returns how many adoptions it saw.
fn run(seed: u64, steps: usize) -> usize {
    let mut rng = Rng(seed | 1);
    let mut row = Row { term: 0, version: 0, holder: None, expires_ms: 0, written_by: None };
    let mut statements: Vec<Statement> = Vec::new();
    let mut unanswered = UnansweredAcquires::default();
    // What I recorded, as (statement, version), mirrored to know when adoption is due.
    let mut recorded: Vec<(usize, i64)> = Vec::new();
    let mut waiting: Option<usize> = None;
    let mut adoptions = 0;
    let mut now_ms = 0;

    for _ in 0..steps {
        now_ms += rng.below(120);
        match rng.below(6) {
            // I send an acquire against the row as I read it (only while I am not waiting).
            0 if waiting.is_none() => {
                statements.push(Statement {
                    by: Who::Me,
                    version: row.version,
                    term: row.term,
                    sent_ms: now_ms,
                    executed: false,
                    won: false,
                });
                waiting = Some(statements.len() - 1);
            }
            // Another coordinator sends one.
            1 => statements.push(Statement {
                by: Who::Other,
                version: row.version,
                term: row.term,
                sent_ms: now_ms,
                executed: false,
                won: false,
            }),
            // A statement in flight executes, if the row is still at its version and expired.
            2 => {
                let pending: Vec<usize> = (0..statements.len()).filter(|&i| !statements[i].executed).collect();
                if pending.is_empty() {
                    continue;
                }
                let index = pending[rng.below(pending.len() as u64) as usize];
                let statement = &mut statements[index];
                statement.executed = true;
                if statement.version == row.version && row.expires_ms <= now_ms {
                    statement.won = true;
                    row = Row {
                        term: statement.term + 1,
                        version: row.version + 1,
                        holder: Some(statement.by),
                        expires_ms: now_ms + TTL_MS,
                        written_by: Some(index),
                    };
                }
            }
            // My call times out: its outcome is unknown.
            3 => {
                if let Some(index) = waiting.take() {
                    let statement = statements[index];
                    unanswered.record(statement.version, statement.term, at(statement.sent_ms));
                    recorded.push((index, statement.version));
                }
            }
            // My call is answered once it executed: a loss changes nothing; a win means I
            // lead (and here, step down and let the lease go at once).
            4 => {
                if let Some(index) = waiting.filter(|&index| statements[index].executed) {
                    waiting = None;
                    if statements[index].won {
                        let version = statements[index].version;
                        unanswered.answered_win(version);
                        recorded.retain(|&(_, recorded_version)| recorded_version > version);
                        if row.written_by == Some(index) {
                            row.expires_ms = now_ms;
                        }
                    }
                }
            }
            // I read the row and judge my unanswered acquires.
            _ if waiting.is_none() => {
                let live_mine = row.holder == Some(Who::Me) && row.expires_ms > now_ms;
                let seen = RowSeen { term: row.term, version: row.version, held_by_me: live_mine };
                let writer = row.written_by.map(|index| statements[index]);
                // Due when my timed-out acquire wrote the live row and the hold from the
                // earliest recorded send against the same row has not ended.
                let earliest = recorded
                    .iter()
                    .filter(|&&(_, version)| version + 1 == row.version)
                    .map(|&(index, _)| statements[index].sent_ms)
                    .min();
                let writer_recorded = recorded.iter().any(|&(index, _)| Some(index) == row.written_by);
                let should_adopt =
                    live_mine && writer_recorded && earliest.is_some_and(|sent| at(sent) + HOLD > at(now_ms));
                match unanswered.judge(seen, at(now_ms), HOLD) {
                    Some(anchor) => {
                        adoptions += 1;
                        let writer = writer.expect("adopted a row no acquire wrote");
                        assert_eq!(writer.by, Who::Me, "adopted another node's term {}", row.term);
                        assert_eq!(writer.term + 1, row.term);
                        assert!(
                            anchor <= at(writer.sent_ms),
                            "anchor {anchor:?} after the winning send at {} ms",
                            writer.sent_ms
                        );
                        assert!(anchor + HOLD > at(now_ms), "adopted a hold that had ended");
                        // The hold ends before the store's lease does.
                        assert!(anchor + HOLD < at(row.expires_ms));
                        // I lead now, and here step down and let the lease go at once.
                        row.expires_ms = now_ms;
                    }
                    None => {
                        assert!(!should_adopt, "a live win of a timed-out acquire of mine was not adopted: {row:?}")
                    }
                }
                // The rule forgets what the row moved past; so does the mirror.
                recorded.retain(|&(_, version)| version >= row.version);
            }
            _ => {}
        }
    }
    adoptions
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2_000, ..ProptestConfig::default() })]

    #[test]
    fn adoption_is_safe_and_happens(seed in any::<u64>()) {
        run(seed, 400);
    }
}

#[test]
fn schedules_do_adopt() {
    let adoptions: usize = (0..200).map(|seed| run(seed, 400)).sum();
    assert!(adoptions > 20, "only {adoptions} adoptions in 200 schedules: the simulation exercises nothing");
}
