//! Runs DDL as persisted procedures (DESIGN §5; the argument is in docs/PROTOCOL.md).
//!
//! A procedure's first change and its row commit in one term-guarded transaction, and every
//! later step is written in the transaction of the change that begins it, so the store always
//! says how far a procedure got. The runner drives it on a task of its own (a caller that goes
//! away does not stop it); a new leader resumes every running procedure from its step.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use leasehold::status::ServiceError;
use leasehold::v1::{self, StoredPlan};
use leasehold_core::ddl::{self, DataTarget, DdlError, DdlKind, DdlPlan, DdlRequest, LockSet};
use leasehold_core::procedure::{Next, State, Step, after_prepare, resume_from};
use leasehold_store::{ProcedureRow, StoreError};
use prost::Message;
use tracing::{info, warn};

use crate::failpoint;
use crate::metadata_leader::{MetadataError, MetadataLeader};
use crate::metrics;
use crate::propagator::{BroadcastError, Mode, Propagator};

/// The longest request id a client may give.
pub const MAX_REQUEST_ID_LEN: usize = 128;

/// A DDL that returned OK.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DdlOutcome {
    /// The procedure.
    pub procedure_id: u64,
    /// The version that made it final.
    pub version: u64,
    /// Data nodes waited out until they had provably fenced.
    pub fenced: Vec<String>,
}

/// A DDL that did not return OK.
#[derive(Debug, thiserror::Error)]
pub enum DdlFailure {
    /// Refused before anything was written.
    #[error(transparent)]
    Refused(#[from] DdlError),
    /// Rolled back: a data node could not apply the prepare. Nothing changed.
    #[error("procedure {procedure_id} was rolled back: {reason}")]
    Aborted {
        /// The procedure.
        procedure_id: u64,
        /// Why.
        reason: String,
        /// The data nodes that refused.
        nodes: Vec<String>,
    },
    /// This coordinator stopped leading (retry with the same request id at the new leader), or
    /// the store failed.
    #[error(transparent)]
    Leader(#[from] MetadataError),
    /// A broadcast ran past its budget.
    #[error(transparent)]
    Broadcast(BroadcastError),
    /// The request id was used before for another request; nothing was changed.
    #[error(
        "request id {request_id:?} was used for another request (procedure {procedure_id}); use a new id for a new request"
    )]
    RequestIdReused {
        /// The request id.
        request_id: String,
        /// The procedure that holds it.
        procedure_id: u64,
    },
    /// The leader is still resuming the procedures an earlier leader left running.
    #[error("the leader is still resuming the procedures its predecessor left running; retry shortly")]
    Starting,
    /// The procedure failed for good.
    #[error("procedure {procedure_id} failed: {reason}")]
    Failed {
        /// The procedure.
        procedure_id: u64,
        /// Why.
        reason: String,
    },
}

impl From<BroadcastError> for DdlFailure {
    fn from(error: BroadcastError) -> Self {
        match error {
            BroadcastError::Leader(error) => DdlFailure::Leader(error),
            other => DdlFailure::Broadcast(other),
        }
    }
}

impl From<StoreError> for DdlFailure {
    fn from(error: StoreError) -> Self {
        DdlFailure::Leader(error.into())
    }
}

/// The digest a request id is bound to. The request's debug form is canonical within a build
/// (maps are sorted, lists keep their order); a retry that spans an upgrade which changed that
/// form is refused as a reuse, never applied as another request: the safe direction.
fn request_digest(request: &DdlRequest) -> Vec<u8> {
    use sha2::Digest;
    sha2::Sha256::digest(format!("{request:?}").as_bytes()).to_vec()
}

/// The version a finished procedure answers with: the one its row holds, or the newest
/// published one for procedures finished before that was recorded.
fn answer_version(row: Option<&ProcedureRow>, leader: &MetadataLeader) -> u64 {
    row.map(|row| row.result_version).filter(|version| *version > 0).unwrap_or_else(|| leader.version())
}

/// Refuses `existing` as the outcome of a request with `digest` when it was made for another.
fn same_request(existing: &ProcedureRow, digest: &[u8]) -> Result<(), DdlFailure> {
    let stored = StoredPlan::decode(existing.request.as_slice()).map(|plan| plan.request_digest).unwrap_or_default();
    if stored.is_empty() || stored == digest {
        return Ok(());
    }
    Err(DdlFailure::RequestIdReused {
        request_id: existing.request_id.clone().unwrap_or_default(),
        procedure_id: existing.id,
    })
}

fn stored_plan(plan: &DdlPlan, locks: &LockSet, request_digest: Vec<u8>) -> StoredPlan {
    let change = |change| Some(leasehold::catalog::change_message(change));
    StoredPlan {
        kind: plan.kind.as_str().to_owned(),
        target: plan.target.clone(),
        prepare: change(&plan.prepare),
        commit: plan.commit.as_ref().and_then(change),
        rollback: change(&plan.rollback),
        drop_data: plan.drop_data.as_ref().map(|target| {
            let (database, table, column, created_version) = target.parts();
            v1::DataTargetMessage {
                database: database.to_owned(),
                table: table.to_owned(),
                column: column.to_owned(),
                created_version,
            }
        }),
        lock_database: locks.database.clone(),
        lock_database_exclusive: locks.database_exclusive,
        lock_object: locks.object.clone().unwrap_or_default(),
        request_digest,
    }
}

fn plan_of(stored: &StoredPlan) -> Option<(DdlPlan, LockSet)> {
    let change = |message: &Option<v1::CatalogChange>| message.as_ref().and_then(leasehold::catalog::change_of);
    let kind = DdlKind::from_stored(&stored.kind)?;
    let drop_data = stored
        .drop_data
        .as_ref()
        .map(|target| DataTarget::from_parts(&target.database, &target.table, &target.column, target.created_version));
    let plan = DdlPlan {
        kind,
        target: stored.target.clone(),
        prepare: change(&stored.prepare)?,
        drop_data,
        commit: change(&stored.commit),
        rollback: change(&stored.rollback)?,
    };
    let locks = LockSet {
        database: stored.lock_database.clone(),
        database_exclusive: stored.lock_database_exclusive,
        object: (!stored.lock_object.is_empty()).then(|| stored.lock_object.clone()),
    };
    Some((plan, locks))
}

/// Runs and resumes DDL procedures.
#[derive(Debug)]
pub struct ProcedureRunner {
    propagator: Arc<Propagator>,
    /// How long a retried request waits for the first one's outcome.
    wait_limit: Duration,
}

#[derive(Debug)]
struct Running {
    id: u64,
    plan: DdlPlan,
    step: Step,
    /// Why it rolls back, once it does (kept in the procedure row's error).
    error: String,
    /// The version the step broadcasts, when an earlier try of it ran over budget: the
    /// retry waits on that version's publication, not on a newer one.
    broadcasting: Option<u64>,
}

/// A procedure found running, holding its locks again, ready to be driven.
#[derive(Debug)]
pub struct Resumed {
    running: Running,
    held: crate::locks::Held,
}

/// Keeps the publication snapshot of every version a procedure broadcast until the procedure
/// stops here. A retried broadcast then waits on the stale bounds of the first publication:
/// taken again, they would move with every heartbeat whose answer is lost, and a node that
/// keeps sending heartbeats but never hears back would never be settled.
struct Publications<'a> {
    leader: &'a MetadataLeader,
    held: BTreeSet<u64>,
}

impl<'a> Publications<'a> {
    fn new(leader: &'a MetadataLeader) -> Self {
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
    /// A runner that broadcasts through `propagator`.
    pub fn new(propagator: Arc<Propagator>, wait_limit: Duration) -> Self {
        Self { propagator, wait_limit }
    }

    /// Runs `request` to its end. With a `request_id` that ran before, returns that run's
    /// outcome (waiting for it if it is still running) and applies nothing twice.
    pub async fn run(
        self: &Arc<Self>,
        leader: Arc<MetadataLeader>,
        request: DdlRequest,
        request_id: Option<String>,
    ) -> Result<DdlOutcome, DdlFailure> {
        ddl::validate(&request)?;
        if !leader.accepts_ddl() {
            return Err(DdlFailure::Starting);
        }
        // On a task of its own from the start: a caller that goes away must not stop a
        // procedure halfway through writing its first step.
        let runner = self.clone();
        tokio::spawn(async move { runner.begin_and_drive(leader, request, request_id).await }).await.unwrap_or_else(
            |error| Err(DdlFailure::Failed { procedure_id: 0, reason: format!("the procedure task ended: {error}") }),
        )
    }

    async fn begin_and_drive(
        self: &Arc<Self>,
        leader: Arc<MetadataLeader>,
        request: DdlRequest,
        request_id: Option<String>,
    ) -> Result<DdlOutcome, DdlFailure> {
        let digest = request_digest(&request);
        if let Some(request_id) = &request_id
            && let Some(existing) = leader.store().procedure_by_request(leader.cluster(), request_id).await?
        {
            same_request(&existing, &digest)?;
            return self.outcome_of(&leader, existing).await;
        }
        let locks = ddl::locks(&request);
        let held = leader.locks().acquire(&locks).await;
        // A call with the same request id may have run while this one waited for the locks:
        // its outcome is ours, and planning again would answer for a catalog it changed.
        if let Some(request_id) = &request_id
            && let Some(existing) = leader.store().procedure_by_request(leader.cluster(), request_id).await?
        {
            drop(held);
            same_request(&existing, &digest)?;
            return self.outcome_of(&leader, existing).await;
        }
        let (plan, _) = leader.with_catalog(|catalog| ddl::plan(catalog, &request));
        let plan = plan?;
        let mut change = leader.begin().await?;
        let id = change.version();
        let row = ProcedureRow {
            id,
            kind: plan.kind.as_str().to_owned(),
            target: plan.target.clone(),
            step: Step::Prepared.as_str().to_owned(),
            state: State::Running.as_str().to_owned(),
            error: String::new(),
            request_id: request_id.clone(),
            request: stored_plan(&plan, &locks, digest.clone()).encode_to_vec(),
            term: leader.term(),
            created_at_ms: 0,
            updated_at_ms: 0,
            result_version: 0,
        };
        if let Err(error) = change.store().insert_procedure(leader.cluster(), &row).await {
            drop(change);
            drop(held);
            // Another call with the same request id got there first: its outcome is ours.
            if let Some(request_id) = &request_id
                && let Some(existing) = leader.store().procedure_by_request(leader.cluster(), request_id).await?
            {
                same_request(&existing, &digest)?;
                return self.outcome_of(&leader, existing).await;
            }
            return Err(error.into());
        }
        change.publish_catalog(&plan.prepare).await?;
        info!(procedure = id, kind = %plan.kind, target = %plan.target, request_id = ?request_id, "DDL prepared");
        let running = Running { id, plan, step: Step::Prepared, error: String::new(), broadcasting: None };
        let result = self.drive(&leader, running).await;
        drop(held);
        result
    }

    /// Takes the locks of every procedure an earlier leader (or an earlier state of this
    /// term) left running, oldest first, before `leader` is installed: a new DDL accepted
    /// before they hold their locks again could be planned against what one of them is
    /// halfway through changing (a drop database ahead of a resumed create table in it would
    /// leave a table row with no database). Procedures that ran at once held their locks at
    /// once, so none waits here on another.
    pub async fn claim_running(&self, leader: &MetadataLeader) -> Result<Vec<Resumed>, StoreError> {
        let running = leader.store().list_procedures(leader.cluster(), Some(State::Running.as_str()), 10_000).await?;
        if !running.is_empty() {
            failpoint::pause(failpoint::DDL_BEFORE_RESUME).await;
        }
        let mut claimed = Vec::with_capacity(running.len());
        for row in running.into_iter().rev() {
            let Some((plan, locks)) = StoredPlan::decode(row.request.as_slice()).ok().as_ref().and_then(plan_of) else {
                warn!(procedure = row.id, "a running procedure has an unreadable plan; leaving it");
                continue;
            };
            let Ok(step) = row.step.parse::<Step>() else {
                warn!(procedure = row.id, step = %row.step, "a running procedure is at an unknown step; leaving it");
                continue;
            };
            let held = leader.locks().acquire(&locks).await;
            claimed.push(Resumed {
                running: Running { id: row.id, plan, step, error: row.error, broadcasting: None },
                held,
            });
        }
        Ok(claimed)
    }

    /// Drives every claimed procedure on a task of its own, and opens `leader` to new DDL.
    pub fn resume(self: Arc<Self>, leader: Arc<MetadataLeader>, claimed: Vec<Resumed>) {
        let count = claimed.len();
        for Resumed { running, held } in claimed {
            let (id, kind, target, step) = (running.id, running.plan.kind, running.plan.target.clone(), running.step);
            info!(procedure = id, %kind, %target, %step, "resuming a procedure left by the previous leader");
            metrics::procedure_resumed();
            let runner = self.clone();
            let leader = leader.clone();
            tokio::spawn(async move {
                let result = runner.drive(&leader, running).await;
                drop(held);
                if let Err(error) = result {
                    warn!(procedure = id, %error, "resumed procedure did not finish here");
                }
            });
        }
        leader.mark_resumed();
        info!(term = leader.term(), resumed = count, "accepting DDL");
    }

    /// Carries a procedure from its step to its end, and counts how it ended. A step that
    /// fails on the store is tried again from the step the store holds, for as long as this
    /// state leads; a state given up (or a term that ended) leaves it to the next one.
    async fn drive(&self, leader: &MetadataLeader, running: Running) -> Result<DdlOutcome, DdlFailure> {
        let kind = running.plan.kind;
        let started = std::time::Instant::now();
        let (id, plan) = (running.id, running.plan.clone());
        let mut pause = Duration::from_millis(100);
        let mut publications = Publications::new(leader);
        let mut attempt = self.drive_steps(leader, running, &mut publications).await;
        let result = loop {
            // The error says whether a retry may succeed. A refused guard is retried too:
            // while the term lasts it means only that the store's clock ran ahead, and the
            // renewal it asked for makes the next try pass; a term that really ended cancels
            // the token and the next leader resumes.
            let retryable = attempt.as_ref().is_err_and(|failure| failure.is_retryable());
            if !retryable || leader.token().is_cancelled() {
                break attempt;
            }
            if let Err(error) = &attempt {
                warn!(procedure = id, %error, retry_in_ms = pause.as_millis() as u64, "a procedure step failed; trying again from the step the store holds");
            }
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = leader.token().cancelled() => break attempt,
            }
            pause = (pause * 2).min(Duration::from_secs(5));
            // A write whose answer was lost may have committed: go on from the stored step.
            let row = match leader.store().get_procedure(leader.cluster(), id).await {
                Ok(Some(row)) => row,
                Ok(None) => {
                    break Err(DdlFailure::Failed { procedure_id: id, reason: "the procedure disappeared".into() });
                }
                Err(error) => {
                    attempt = Err(error.into());
                    continue;
                }
            };
            if row.state != State::Running.as_str() {
                break self.outcome_of(leader, row).await;
            }
            let Ok(step) = row.step.parse::<Step>() else {
                break Err(DdlFailure::Failed { procedure_id: id, reason: format!("unknown step {:?}", row.step) });
            };
            // A broadcast over budget wrote nothing: the stored step is the one it was for.
            let broadcasting = match &attempt {
                Err(DdlFailure::Broadcast(BroadcastError::OverBudget { version, .. })) => Some(*version),
                _ => None,
            };
            let running = Running { id, plan: plan.clone(), step, error: row.error, broadcasting };
            attempt = self.drive_steps(leader, running, &mut publications).await;
        };
        // A step that would orphan an object can never be carried out: the procedure fails
        // for good rather than stay running with nobody to drive it.
        let result = match result {
            Err(DdlFailure::Leader(MetadataError::Orphaned(orphaned))) => {
                Err(self.fail(leader, id, orphaned.to_string()).await)
            }
            other => other,
        };
        let outcome = match &result {
            Ok(_) => "succeeded",
            Err(DdlFailure::Aborted { .. }) => "rolled_back",
            Err(DdlFailure::Leader(_) | DdlFailure::Broadcast(_)) => "interrupted",
            Err(_) => "failed",
        };
        metrics::procedure(kind.as_str(), outcome, started.elapsed());
        result
    }

    /// Records that procedure `id` failed for good, and answers so.
    async fn fail(&self, leader: &MetadataLeader, id: u64, reason: String) -> DdlFailure {
        warn!(procedure = id, %reason, "DDL failed for good");
        let recorded = async {
            let mut change = leader.begin().await?;
            change
                .store()
                .update_procedure(leader.cluster(), id, Step::Done.as_str(), State::Failed.as_str(), &reason)
                .await?;
            change.commit().await
        };
        match recorded.await {
            Ok(_) => DdlFailure::Failed { procedure_id: id, reason },
            Err(error) => DdlFailure::Leader(error),
        }
    }

    async fn drive_steps(
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
        // The version the next broadcast waits for: each step's own change. The prepare's
        // version is the procedure's id; a step resumed from the store waits for the newest.
        let mut version = match running.broadcasting {
            Some(version) => version,
            None if running.step == Step::Prepared => id,
            None => leader.version(),
        };
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
                    let mut change = leader.begin().await?;
                    change
                        .store()
                        .update_procedure(
                            leader.cluster(),
                            id,
                            Step::RollingBack.as_str(),
                            State::Running.as_str(),
                            &rolled_back_because,
                        )
                        .await?;
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
                        let mut change = leader.begin().await?;
                        change
                            .store()
                            .update_procedure(
                                leader.cluster(),
                                id,
                                Step::DroppingData.as_str(),
                                State::Running.as_str(),
                                "",
                            )
                            .await?;
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
                    let mut change = leader.begin().await?;
                    change
                        .store()
                        .update_procedure(leader.cluster(), id, Step::Committing.as_str(), State::Running.as_str(), "")
                        .await?;
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
                        .finish_procedure(leader.cluster(), id, Step::Done.as_str(), state.as_str(), reason, version)
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
                    let row = leader.store().get_procedure(leader.cluster(), id).await?;
                    return Ok(DdlOutcome { procedure_id: id, version: answer_version(row.as_ref(), leader), fenced });
                }
            }
        }
    }

    /// The outcome of a procedure that already exists, waiting while it runs.
    async fn outcome_of(&self, leader: &MetadataLeader, row: ProcedureRow) -> Result<DdlOutcome, DdlFailure> {
        let id = row.id;
        let deadline = leader.now() + self.wait_limit;
        if row.state == State::Running.as_str() {
            info!(procedure = id, request_id = ?row.request_id, "a retried DDL waits for the outcome of its procedure");
        }
        let mut row = row;
        loop {
            match row.state.parse::<State>() {
                Ok(State::Succeeded) => {
                    let version = answer_version(Some(&row), leader);
                    // The row was read in this term; an answer from a node whose term ended
                    // since would speak for a leader that no longer is one.
                    leader.check_term()?;
                    return Ok(DdlOutcome { procedure_id: id, version, fenced: Vec::new() });
                }
                Ok(State::RolledBack) => {
                    return Err(DdlFailure::Aborted { procedure_id: id, reason: row.error, nodes: Vec::new() });
                }
                Ok(State::Failed) | Err(_) => return Err(DdlFailure::Failed { procedure_id: id, reason: row.error }),
                Ok(State::Running) => {}
            }
            if leader.now() >= deadline {
                return Err(DdlFailure::Failed {
                    procedure_id: id,
                    reason: "still running; ask Procedures.GetProcedure".into(),
                });
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                _ = leader.token().cancelled() => return Err(DdlFailure::Leader(MetadataError::TermEnded { term: leader.term() })),
            }
            row = match leader.store().get_procedure(leader.cluster(), id).await? {
                Some(row) => row,
                None => {
                    return Err(DdlFailure::Failed { procedure_id: id, reason: "the procedure disappeared".into() });
                }
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use leasehold_core::catalog::{CatalogChange, ObjectState, Table};
    use std::collections::BTreeMap;

    #[test]
    fn stored_plans_round_trip() {
        let table = Table {
            database: "db".into(),
            name: "t".into(),
            columns: vec![],
            ttl: None,
            properties: BTreeMap::new(),
            comment: String::new(),
            state: ObjectState::Dropping,
            version: 0,
            created_version: 0,
            drop_ordered_version: 0,
        };
        let plan = DdlPlan {
            kind: DdlKind::DropColumn,
            target: "db.t".into(),
            prepare: CatalogChange::PutTable(table.clone()),
            drop_data: Some(DataTarget::from_parts("db", "t", "c", 7)),
            commit: Some(CatalogChange::PutTable(Table { state: ObjectState::Visible, ..table.clone() })),
            rollback: CatalogChange::PutTable(table),
        };
        let locks = LockSet { database: "db".into(), database_exclusive: false, object: Some("table:t".into()) };
        let decoded = StoredPlan::decode(stored_plan(&plan, &locks, vec![7]).encode_to_vec().as_slice()).unwrap();
        assert_eq!(plan_of(&decoded), Some((plan, locks)));
    }
}
