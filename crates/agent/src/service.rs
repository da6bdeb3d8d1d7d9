//! `leasehold.v1.Agent`: validate, call the agent, map the answer.

use leasehold::status::{error_status, reason};
use leasehold::v1::agent_server::Agent as AgentRpc;
use leasehold::v1::{
    ApplyInvalidationRequest, ApplyInvalidationResponse, GetLeaseStateRequest, LeaseState, ResolveTableRequest,
    ResolveTableResponse,
};
use leasehold_core::ddl::MAX_NAME_LEN;
use tonic::{Code, Request, Response, Status};

use crate::agent::{Agent, PushError, ResolveError};
use crate::cache::ApplyError;
use crate::metrics;

/// The longest database or table name a read may ask for.
/// The most changes one push may carry.
const MAX_CHANGES_PER_PUSH: usize = 100_000;

/// The `Agent` service.
#[derive(Debug, Clone)]
pub struct AgentService {
    agent: Agent,
}

impl AgentService {
    /// The service over `agent`.
    pub fn new(agent: Agent) -> Self {
        Self { agent }
    }
}

/// The status a fenced agent answers with.
pub fn fenced_status(message: impl Into<String>) -> Status {
    error_status(Code::FailedPrecondition, reason::FENCED, message, [])
}

fn push_status(error: PushError) -> Status {
    let message = error.to_string();
    match error {
        PushError::Fenced => fenced_status(message),
        PushError::NotMyLeader { .. } => error_status(Code::FailedPrecondition, reason::NOT_MY_LEADER, message, []),
        PushError::WrongIncarnation { .. } => {
            error_status(Code::FailedPrecondition, reason::NOT_REGISTERED, message, [])
        }
        PushError::Apply(ApplyError::Gap { .. } | ApplyError::Orphaned { .. }) => {
            error_status(Code::FailedPrecondition, reason::VERSION_GAP, message, [])
        }
        PushError::Apply(ApplyError::CannotApply { .. }) => {
            error_status(Code::Aborted, reason::CANNOT_APPLY, message, [])
        }
    }
}

fn check_name(field: &'static str, value: &str) -> Result<(), Status> {
    if value.is_empty() || value.len() > MAX_NAME_LEN {
        return Err(error_status(
            Code::InvalidArgument,
            reason::INVALID_ARGUMENT,
            format!("{field} must be 1 to {MAX_NAME_LEN} characters"),
            [("field", field.to_owned())],
        ));
    }
    Ok(())
}

#[tonic::async_trait]
impl AgentRpc for AgentService {
    async fn apply_invalidation(
        &self,
        request: Request<ApplyInvalidationRequest>,
    ) -> Result<Response<ApplyInvalidationResponse>, Status> {
        let request = request.into_inner();
        if request.changes.len() > MAX_CHANGES_PER_PUSH {
            return Err(error_status(
                Code::InvalidArgument,
                reason::INVALID_ARGUMENT,
                "too many changes in one push",
                [("field", "changes".to_owned())],
            ));
        }
        let result = self.agent.apply_push(&request);
        metrics::push(if result.is_ok() { "applied" } else { "refused" });
        result.map(|applied_version| Response::new(ApplyInvalidationResponse { applied_version })).map_err(push_status)
    }

    async fn get_lease_state(&self, _request: Request<GetLeaseStateRequest>) -> Result<Response<LeaseState>, Status> {
        Ok(Response::new(self.agent.lease_state()))
    }

    async fn resolve_table(
        &self,
        request: Request<ResolveTableRequest>,
    ) -> Result<Response<ResolveTableResponse>, Status> {
        let request = request.into_inner();
        check_name("database", &request.database)?;
        check_name("table", &request.table)?;
        match self.agent.resolve_table(&request.database, &request.table) {
            Ok(resolved) => Ok(Response::new(ResolveTableResponse {
                database: resolved.schema.database.clone(),
                table: resolved.schema.name.clone(),
                schema: Some(leasehold::catalog::table_message(&resolved.schema, resolved.schema.ttl)),
                version: resolved.version,
                valid_for_ms: self.agent.valid_for(resolved.valid_until).as_millis() as i64,
            })),
            Err(ResolveError::Fenced) => Err(fenced_status("fenced: this data node holds no valid metadata lease")),
            Err(error @ ResolveError::NotFound { version, .. }) => Err(error_status(
                Code::NotFound,
                reason::NOT_FOUND,
                error.to_string(),
                [("version", version.to_string())],
            )),
        }
    }
}
