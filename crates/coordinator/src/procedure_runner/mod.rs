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
use leasehold_core::procedure::{Next, State, Step, after_prepare, first_wait, resume_from};
use leasehold_store::{ProcedureRow, StoreError};
use prost::Message;
use tracing::{info, warn};

use crate::failpoint;
use crate::metadata_leader::{MetadataError, MetadataLeader};
use crate::metrics;
use crate::propagator::{BroadcastError, Mode, Propagator};

mod failure;
mod steps;
mod stored;

pub use failure::DdlFailure;
use steps::Publications;
use stored::{answer_version, request_digest, resumable, same_request, stored_plan};

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

impl ProcedureRunner {
    /// A runner that broadcasts through `propagator`.
    pub fn new(propagator: Arc<Propagator>, wait_limit: Duration) -> Self {
        Self { propagator, wait_limit }
    }

    /// The propagator the procedures broadcast through.
    pub fn propagator(&self) -> &Arc<Propagator> {
        &self.propagator
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
            && let Some(existing) = leader
                .store()
                .run("read procedure", async |db| db.procedure_by_request(leader.cluster(), request_id).await)
                .await?
        {
            same_request(&existing, &digest)?;
            return self.outcome_of(&leader, existing).await;
        }
        let locks = ddl::locks(&request);
        let held = leader.locks().acquire(&locks).await;
        // A call with the same request id may have run while this one waited for the locks:
        // its outcome is ours, and planning again would answer for a catalog it changed.
        if let Some(request_id) = &request_id
            && let Some(existing) = leader
                .store()
                .run("read procedure", async |db| db.procedure_by_request(leader.cluster(), request_id).await)
                .await?
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
            kind: plan.kind.into(),
            target: plan.target.clone(),
            step: Step::Prepared.into(),
            state: State::Running.into(),
            error: String::new(),
            request_id: request_id.clone(),
            request: stored_plan(&plan, &locks, digest.clone()).encode_to_vec(),
            term: leader.term(),
            created_at_ms: 0,
            updated_at_ms: 0,
            result_version: 0,
        };
        if let Err(error) = change.store().run(async |db| db.insert_procedure(leader.cluster(), &row).await).await {
            drop(change);
            drop(held);
            // Another call with the same request id got there first: its outcome is ours.
            if let Some(request_id) = &request_id
                && let Some(existing) = leader
                    .store()
                    .run("read procedure", async |db| db.procedure_by_request(leader.cluster(), request_id).await)
                    .await?
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
        let running = leader
            .store()
            .run("list procedures", async |db| db.list_procedures(leader.cluster(), Some(State::Running), 10_000).await)
            .await?;
        if !running.is_empty() {
            failpoint::pause(failpoint::DDL_BEFORE_RESUME).await;
        }
        let mut claimed = Vec::with_capacity(running.len());
        for row in running.into_iter().rev() {
            // One procedure this version cannot read (a newer one may have written it) is left
            // for a leader that can; it must not keep the others from resuming.
            let (plan, locks, step) = match resumable(&row) {
                Ok(resumable) => resumable,
                Err(reason) => {
                    warn!(procedure = row.id, %reason, "a running procedure cannot be resumed here; leaving it");
                    continue;
                }
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
            let row = match leader
                .store()
                .run("read procedure", async |db| db.get_procedure(leader.cluster(), id).await)
                .await
            {
                Ok(Some(row)) => row,
                Ok(None) => {
                    break Err(DdlFailure::Failed { procedure_id: id, reason: "the procedure disappeared".into() });
                }
                Err(error) => {
                    attempt = Err(error.into());
                    continue;
                }
            };
            if row.state != State::Running {
                break self.outcome_of(leader, row).await;
            }
            let step = match row.step.known() {
                Ok(step) => step,
                Err(unknown) => break Err(DdlFailure::Failed { procedure_id: id, reason: unknown.to_string() }),
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
                .run(async |db| db.update_procedure(leader.cluster(), id, Step::Done, State::Failed, &reason).await)
                .await?;
            change.commit().await
        };
        match recorded.await {
            Ok(_) => DdlFailure::Failed { procedure_id: id, reason },
            Err(error) => DdlFailure::Leader(error),
        }
    }

    /// The outcome of a procedure that already exists, waiting while it runs.
    async fn outcome_of(&self, leader: &MetadataLeader, row: ProcedureRow) -> Result<DdlOutcome, DdlFailure> {
        let id = row.id;
        let deadline = leader.now() + self.wait_limit;
        if row.state == State::Running {
            info!(procedure = id, request_id = ?row.request_id, "a retried DDL waits for the outcome of its procedure");
        }
        let mut row = row;
        loop {
            match row.state.known() {
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
                Ok(State::Failed) => return Err(DdlFailure::Failed { procedure_id: id, reason: row.error }),
                Err(unknown) => return Err(DdlFailure::Failed { procedure_id: id, reason: unknown.to_string() }),
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
            row = match leader
                .store()
                .run("read procedure", async |db| db.get_procedure(leader.cluster(), id).await)
                .await?
            {
                Some(row) => row,
                None => {
                    return Err(DdlFailure::Failed { procedure_id: id, reason: "the procedure disappeared".into() });
                }
            };
        }
    }
}
