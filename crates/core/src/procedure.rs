//! The steps of a persisted DDL procedure, and what follows each (DESIGN §5).
//!
//! A procedure's step is written in the same transaction as the change that starts it, so a
//! new leader finds every unfinished procedure at the step whose change has committed, and
//! [`resume_from`] says how to go on: broadcasts are simply repeated (a version that was
//! published stays published), irreversible work is idempotent, and only a procedure whose
//! prepare never reached `Proceed` can still roll back.

use std::fmt;
use std::str::FromStr;

/// The step a procedure has reached; the change that began it has committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Step {
    /// The reversible change is committed; its broadcast's verdict is pending.
    Prepared,
    /// The verdict was `Proceed`; data is being deleted on the data nodes.
    DroppingData,
    /// The final change is committed; its broadcast is pending.
    Committing,
    /// The verdict was `Fail`; the undoing change is committed; its broadcast is pending.
    RollingBack,
    /// Finished.
    Done,
}

/// How a procedure ended, or that it has not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    /// Not finished.
    Running,
    /// Committed and settled everywhere: the DDL returned OK.
    Succeeded,
    /// Undone and settled everywhere: the DDL returned ABORTED.
    RolledBack,
    /// Refused before anything was written, or gave up (a bug, or the store).
    Failed,
}

macro_rules! names {
    ($type:ty { $($variant:ident => $name:literal),* $(,)? }) => {
        impl $type {
            /// The name stored in the procedure table.
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $name),* }
            }
        }

        impl FromStr for $type {
            type Err = String;

            fn from_str(name: &str) -> Result<Self, String> {
                match name {
                    $($name => Ok(Self::$variant),)*
                    other => Err(format!("unknown {} {other:?}", stringify!($type))),
                }
            }
        }

        impl fmt::Display for $type {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

names!(Step { Prepared => "prepared", DroppingData => "dropping_data", Committing => "committing", RollingBack => "rolling_back", Done => "done" });
names!(State { Running => "running", Succeeded => "succeeded", RolledBack => "rolled_back", Failed => "failed" });

/// What a procedure does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Broadcast the prepare (again) and decide on its verdict.
    AwaitPrepare,
    /// Commit the undoing change (the prepare's verdict was `Fail`).
    RollBack,
    /// Delete the data on the data nodes.
    DropData,
    /// Commit the final change.
    Commit,
    /// Broadcast the committed final (or undoing) change until it is settled, then finish.
    AwaitSettled,
    /// Nothing: it is finished.
    Finished,
}

/// What follows the prepare's verdict: `proceeded` is true for `Proceed`, false for `Fail`.
pub fn after_prepare(proceeded: bool, drops_data: bool, has_commit: bool) -> Next {
    match (proceeded, drops_data, has_commit) {
        (false, _, _) => Next::RollBack,
        (true, true, _) => Next::DropData,
        (true, false, true) => Next::Commit,
        (true, false, false) => Next::AwaitSettled,
    }
}

/// What a new leader does with a procedure it finds at `step`.
pub fn resume_from(step: Step) -> Next {
    match step {
        Step::Prepared => Next::AwaitPrepare,
        Step::DroppingData => Next::DropData,
        Step::Committing | Step::RollingBack => Next::AwaitSettled,
        Step::Done => Next::Finished,
    }
}

/// The version the first broadcast of a procedure driven from `step` waits for: `broadcasting`
/// when a broadcast over budget left it known; else the prepare's own change (whose version is
/// the procedure's `id`) for a procedure still at its prepare; else `newest`, the newest
/// version there is, because a later step's change is one the store does not tie to the row,
/// and every version up to the newest includes it. So a resumed procedure reports the newest
/// version at its resumption, at which its change is settled.
pub fn first_wait(step: Step, id: u64, broadcasting: Option<u64>, newest: u64) -> u64 {
    match (broadcasting, step) {
        (Some(version), _) => version,
        (None, Step::Prepared) => id,
        (None, _) => newest,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_resumed_procedure_waits_for_its_prepare_or_the_newest_version() {
        assert_eq!(first_wait(Step::Prepared, 7, None, 12), 7);
        assert_eq!(first_wait(Step::Committing, 7, None, 12), 12);
        assert_eq!(first_wait(Step::DroppingData, 7, None, 12), 12);
        assert_eq!(first_wait(Step::Committing, 7, Some(9), 12), 9, "a broadcast over budget left its version");
    }

    #[test]
    fn names_round_trip() {
        for step in [Step::Prepared, Step::DroppingData, Step::Committing, Step::RollingBack, Step::Done] {
            assert_eq!(step.as_str().parse::<Step>(), Ok(step));
        }
        for state in [State::Running, State::Succeeded, State::RolledBack, State::Failed] {
            assert_eq!(state.as_str().parse::<State>(), Ok(state));
        }
        assert!("nonsense".parse::<Step>().is_err());
    }

    #[test]
    fn the_prepare_verdict_decides_the_way() {
        assert_eq!(after_prepare(false, true, true), Next::RollBack);
        assert_eq!(after_prepare(true, true, true), Next::DropData);
        assert_eq!(after_prepare(true, false, true), Next::Commit);
        assert_eq!(after_prepare(true, false, false), Next::AwaitSettled);
    }

    #[test]
    fn a_new_leader_repeats_broadcasts_and_never_rolls_back_past_proceed() {
        assert_eq!(resume_from(Step::Prepared), Next::AwaitPrepare);
        assert_eq!(resume_from(Step::DroppingData), Next::DropData);
        assert_eq!(resume_from(Step::Committing), Next::AwaitSettled);
        assert_eq!(resume_from(Step::RollingBack), Next::AwaitSettled);
        assert_eq!(resume_from(Step::Done), Next::Finished);
    }
}
