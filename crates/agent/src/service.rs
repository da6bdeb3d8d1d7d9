//! `leasehold.v1.Agent`: validate, call the agent, map the answer.

use leasehold::status::{ServiceError, invalid_argument, reason, status_of};
use leasehold::v1::agent_server::Agent as AgentRpc;
use leasehold::v1::{
    ApplyInvalidationRequest, ApplyInvalidationResponse, GetLeaseStateRequest, GetOwnershipRequest,
    GetOwnershipResponse, LeaseState, OwnedBucket, OwnershipEvent, ResolveTableRequest, ResolveTableResponse,
    ownership_event,
};
use leasehold_core::ddl::MAX_NAME_LEN;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Request, Response, Status};

use crate::agent::{Agent, AgentEvent, OwnershipError, PushError, ResolveError};
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

impl ServiceError for PushError {
    fn code(&self) -> Code {
        match self {
            PushError::Apply(ApplyError::CannotApply { .. }) => Code::Aborted,
            _ => Code::FailedPrecondition,
        }
    }

    fn reason(&self) -> Option<&'static str> {
        Some(match self {
            PushError::Fenced => reason::FENCED,
            PushError::NotMyLeader { .. } => reason::NOT_MY_LEADER,
            PushError::WrongIncarnation { .. } => reason::NOT_REGISTERED,
            PushError::Apply(ApplyError::Gap { .. } | ApplyError::Orphaned { .. }) => reason::VERSION_GAP,
            PushError::Apply(ApplyError::CannotApply { .. }) => reason::CANNOT_APPLY,
        })
    }
}

impl ServiceError for ResolveError {
    fn code(&self) -> Code {
        match self {
            ResolveError::Fenced => Code::FailedPrecondition,
            ResolveError::NotFound { .. } => Code::NotFound,
        }
    }

    fn reason(&self) -> Option<&'static str> {
        Some(match self {
            ResolveError::Fenced => reason::FENCED,
            ResolveError::NotFound { .. } => reason::NOT_FOUND,
        })
    }

    fn metadata(&self) -> Vec<(&'static str, String)> {
        match self {
            ResolveError::NotFound { version, .. } => vec![("version", version.to_string())],
            ResolveError::Fenced => Vec::new(),
        }
    }
}

impl ServiceError for OwnershipError {
    fn code(&self) -> Code {
        match self {
            OwnershipError::Fenced => Code::FailedPrecondition,
            OwnershipError::NotOwner { .. } => Code::NotFound,
        }
    }

    fn reason(&self) -> Option<&'static str> {
        Some(match self {
            OwnershipError::Fenced => reason::FENCED,
            OwnershipError::NotOwner { .. } => reason::NOT_FOUND,
        })
    }
}

fn check_name(field: &'static str, value: &str) -> Result<(), Status> {
    if value.is_empty() || value.len() > MAX_NAME_LEN {
        return Err(invalid_argument(field, format!("{field} must be 1 to {MAX_NAME_LEN} characters")));
    }
    Ok(())
}

type OwnershipStream = std::pin::Pin<Box<dyn tokio_stream::Stream<Item = Result<OwnershipEvent, Status>> + Send>>;

/// The stream event for `event`, when it concerns `pool`.
fn ownership_event(pool: &str, event: AgentEvent) -> Option<OwnershipEvent> {
    let (kind, event_pool, bucket, epoch) = match event {
        AgentEvent::Granted { pool, bucket, epoch } => (ownership_event::Kind::Granted, pool, bucket, epoch),
        AgentEvent::Revoked { pool, bucket, epoch } => (ownership_event::Kind::Revoked, pool, bucket, epoch),
        AgentEvent::Fenced => (ownership_event::Kind::Fenced, pool.to_owned(), 0, 0),
        AgentEvent::Applied { .. } | AgentEvent::Unfenced { .. } => return None,
    };
    (event_pool == pool).then_some(OwnershipEvent { kind: kind as i32, pool: event_pool, bucket, epoch })
}

#[tonic::async_trait]
impl AgentRpc for AgentService {
    type WatchOwnershipStream = OwnershipStream;

    async fn watch_ownership(
        &self,
        request: Request<GetOwnershipRequest>,
    ) -> Result<Response<Self::WatchOwnershipStream>, Status> {
        let pool = request.into_inner().pool;
        check_name("pool", &pool)?;
        // Subscribed before the current ownership is read: nothing falls between.
        let mut events = self.agent.subscribe();
        let current = match self.agent.owned(&pool) {
            Ok(owned) => owned.buckets,
            Err(_) => Vec::new(),
        };
        let (sender, receiver) = mpsc::channel(64);
        tokio::spawn(async move {
            for (bucket, epoch) in current {
                let event = AgentEvent::Granted { pool: pool.clone(), bucket, epoch };
                if sender.send(Ok(ownership_event(&pool, event).expect("this pool"))).await.is_err() {
                    return;
                }
            }
            loop {
                tokio::select! {
                    received = events.recv() => match received {
                        Ok(event) => {
                            if let Some(event) = ownership_event(&pool, event)
                                && sender.send(Ok(event)).await.is_err()
                            {
                                return;
                            }
                        }
                        // A watcher too slow to keep up learns that it missed events.
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(missed)) => {
                            let lagged = Status::data_loss(format!("{missed} ownership events were missed; watch again"));
                            let _ = sender.send(Err(lagged)).await;
                            return;
                        }
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                    },
                    _ = sender.closed() => return,
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(receiver)) as OwnershipStream))
    }

    async fn apply_invalidation(
        &self,
        request: Request<ApplyInvalidationRequest>,
    ) -> Result<Response<ApplyInvalidationResponse>, Status> {
        let request = request.into_inner();
        if request.changes.len() > MAX_CHANGES_PER_PUSH {
            return Err(invalid_argument("changes", "too many changes in one push"));
        }
        let result = self.agent.apply_push(&request);
        metrics::push(if result.is_ok() { "applied" } else { "refused" });
        result
            .map(|applied_version| Response::new(ApplyInvalidationResponse { applied_version }))
            .map_err(|error| status_of(&error))
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
        self.agent
            .with_table(&request.database, &request.table, |resolved| {
                Response::new(ResolveTableResponse {
                    database: resolved.schema.database.clone(),
                    table: resolved.schema.name.clone(),
                    schema: Some(leasehold::catalog::table_message(resolved.schema, resolved.schema.ttl)),
                    version: resolved.version,
                    valid_for_ms: self.agent.answered_until(resolved.valid_until).as_millis() as i64,
                })
            })
            .map_err(|error| status_of(&error))
    }

    async fn get_ownership(
        &self,
        request: Request<GetOwnershipRequest>,
    ) -> Result<Response<GetOwnershipResponse>, Status> {
        let request = request.into_inner();
        check_name("pool", &request.pool)?;
        let owned = self.agent.owned(&request.pool).map_err(|error| status_of(&error))?;
        let valid_for_ms = self.agent.answered_until(owned.valid_until).as_millis() as i64;
        Ok(Response::new(GetOwnershipResponse {
            pool: request.pool,
            buckets: owned
                .buckets
                .into_iter()
                .map(|(bucket, epoch)| OwnedBucket { bucket, epoch, valid_for_ms })
                .collect(),
            version: owned.version,
        }))
    }
}
