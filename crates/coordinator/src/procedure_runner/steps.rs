//! Carrying a procedure through its steps: each step's change, its broadcast, and the
//! publications a retried broadcast must keep waiting on.

use super::*;

/// Keeps the publication snapshot of every version a procedure broadcast until the procedure
/// stops here. A retried broadcast then waits on the stale bounds of the first publication:
/// taken again, they would move with every heartbeat whose answer is lost, and a node that
/// keeps sending heartbeats but never hears back would never be settled.
pub(super) struct Publications<'a> {
    leader: &'a MetadataLeader,
    held: BTreeSet<u64>,
}

impl<'a> Publications<'a> {
    pub(super) fn new(leader: &'a MetadataLeader) -> Self {
        Self { leader, held: BTreeSet::new() }
    }

    fn hold(&mut self, version: u64) {
        if self.held.insert(version) {
            self.leader.watch(version);
        }
    }
}

impl Drop for Publications<'_> {
    fn drop(&mut self) {
        for version in &self.held {
            self.leader.forget(*version);
        }
    }
}

impl ProcedureRunner {
    pub(super) async fn drive_steps(
        &self,
        leader: &MetadataLeader,
        mut running: Running,
        publications: &mut Publications<'_>,
    ) -> Result<DdlOutcome, DdlFailure> {
        let id = running.id;
        let plan = &running.plan;
        let mut next = resume_from(running.step);
        let mut fenced = Vec::new();
        let mut rolled_back_because = std::mem::take(&mut running.error);
        // The version the next broadcast waits for: each step's own change, from here on.
        let mut version = first_wait(running.step, id, running.broadcasting, leader.version());
        let mut refused = Vec::new();
        loop {
            match next {
                Next::AwaitPrepare => {
                    failpoint::pause(failpoint::DDL_AFTER_PREPARE).await;
                    publications.hold(version);
                    match self.propagator.broadcast(leader, version, Mode::Reversible).await {
                        Ok(outcome) => {
                            fenced.extend(outcome.fenced);
                            next = after_prepare(true, plan.drop_data.is_some(), plan.commit.is_some());
                        }
                        Err(BroadcastError::Failed { refused: nodes, .. }) => {
                            rolled_back_because = format!("{} cannot apply the prepare", nodes.join(", "));
                            refused = nodes;
                            next = after_prepare(false, false, false);
                        }
                        Err(error) => return Err(error.into()),
                    }
                }
                Next::RollBack => {
                    let change = begin_step(leader, id, Step::RollingBack, &rolled_back_because).await?;
                    version = change.publish_catalog(&plan.rollback).await?;
                    running.step = Step::RollingBack;
                    warn!(procedure = id, target = %plan.target, reason = %rolled_back_because, "DDL rolling back");
                    failpoint::pause(failpoint::DDL_AFTER_ROLLBACK).await;
                    next = Next::AwaitSettled;
                }
                Next::DropData => {
                    let target = plan.drop_data.as_ref().expect("a drop step has a target");
                    if running.step != Step::DroppingData {
                        failpoint::pause(failpoint::DDL_BEFORE_DROP_DATA).await;
                        // The order to drop travels like any change: pushed, and carried by
                        // heartbeat answers to agents that pushes do not reach.
                        let change = begin_step(leader, id, Step::DroppingData, "").await?;
                        version = change.publish_drop_data(target, id).await?;
                        running.step = Step::DroppingData;
                        failpoint::pause(failpoint::DDL_AFTER_DROP_ORDER).await;
                    }
                    publications.hold(version);
                    let outcome = self.propagator.broadcast(leader, version, Mode::Forward).await?;
                    fenced.extend(outcome.fenced);
                    next = if plan.commit.is_some() { Next::Commit } else { Next::AwaitSettled };
                }
                Next::Commit => {
                    let commit = plan.commit.as_ref().expect("a commit step has a change");
                    if failpoint::armed(failpoint::COMMIT_GUARD_REFUSED) {
                        return Err(leader.guard_refused().into());
                    }
                    let change = begin_step(leader, id, Step::Committing, "").await?;
                    version = change.publish_catalog(commit).await?;
                    running.step = Step::Committing;
                    failpoint::pause(failpoint::DDL_AFTER_COMMIT).await;
                    next = Next::AwaitSettled;
                }
                Next::AwaitSettled => {
                    publications.hold(version);
                    let outcome = self.propagator.broadcast(leader, version, Mode::Forward).await?;
                    fenced.extend(outcome.fenced);
                    let rolled_back = running.step == Step::RollingBack;
                    let state = if rolled_back { State::RolledBack } else { State::Succeeded };
                    let mut change = leader.begin().await?;
                    let reason = if rolled_back { rolled_back_because.as_str() } else { "" };
                    change
                        .store()
                        .run(async |db| {
                            db.finish_procedure(leader.cluster(), id, Step::Done, state, reason, version).await
                        })
                        .await?;
                    change.commit().await?;
                    info!(procedure = id, kind = %plan.kind, target = %plan.target, %state, version, "DDL settled everywhere");
                    fenced.sort();
                    fenced.dedup();
                    return if rolled_back {
                        let reason = if rolled_back_because.is_empty() {
                            "a data node could not apply the prepare".to_owned()
                        } else {
                            rolled_back_because
                        };
                        Err(DdlFailure::Aborted { procedure_id: id, reason, nodes: refused })
                    } else {
                        Ok(DdlOutcome { procedure_id: id, version, fenced })
                    };
                }
                Next::Finished => {
                    let row = leader
                        .store()
                        .run("read procedure", async |db| db.get_procedure(leader.cluster(), id).await)
                        .await?;
                    return Ok(DdlOutcome { procedure_id: id, version: answer_version(row.as_ref(), leader), fenced });
                }
            }
        }
    }
}

/// Opens the change that moves procedure `id` to `step` (still running, with `error` as its
/// recorded reason): the step is written in the transaction of the change that begins it.
async fn begin_step<'a>(
    leader: &'a MetadataLeader,
    id: u64,
    step: Step,
    error: &str,
) -> Result<crate::metadata_leader::ChangeTx<'a>, DdlFailure> {
    let mut change = leader.begin().await?;
    change.store().run(async |db| db.update_procedure(leader.cluster(), id, step, State::Running, error).await).await?;
    Ok(change)
}
