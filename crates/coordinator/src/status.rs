//! The one place where the coordinator's errors say their gRPC code, their stable
//! `ErrorInfo` reason and whether a retry may succeed ([`ServiceError`]); services only use `?`.

use leasehold::status::{ServiceError, reason, status_of};
use leasehold_core::ddl::DdlError;
use leasehold_core::mode::ModeChangeError;
use tonic::{Code, Status};

use crate::ha::HaError;
use crate::metadata_leader::MetadataError;
use crate::procedure_runner::DdlFailure;
use crate::propagator::BroadcastError;

pub use leasehold::status::invalid_argument;

/// Refusals a service makes itself, outside any component's error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The leader has not loaded its state yet.
    #[error("the leader is still loading its state; retry shortly")]
    LeaderStarting,
    /// An HA change sent to a node that does not lead, without the override header.
    #[error("{node_id} is not the leader; to change it anyway, send the header `{header}: true`")]
    NonLeaderChange {
        /// This node.
        node_id: String,
        /// The override header.
        header: &'static str,
    },
    /// No procedure has the id.
    #[error("no procedure {id}")]
    ProcedureNotFound {
        /// The id asked for.
        id: u64,
    },
}

impl ServiceError for Refusal {
    fn code(&self) -> Code {
        match self {
            Refusal::LeaderStarting => Code::Unavailable,
            Refusal::NonLeaderChange { .. } => Code::PermissionDenied,
            Refusal::ProcedureNotFound { .. } => Code::NotFound,
        }
    }

    fn reason(&self) -> Option<&'static str> {
        Some(match self {
            Refusal::LeaderStarting => reason::LEADER_STARTING,
            Refusal::NonLeaderChange { .. } => reason::NON_LEADER_CHANGE,
            Refusal::ProcedureNotFound { .. } => reason::NOT_FOUND,
        })
    }
}

impl ServiceError for HaError {
    fn code(&self) -> Code {
        match self {
            HaError::NotLeader { .. } | HaError::StaleTerm { .. } | HaError::Store(_) => Code::Unavailable,
            HaError::ModeChange(_) | HaError::NodeLive { .. } => Code::FailedPrecondition,
            HaError::UnknownNode { .. } => Code::NotFound,
            HaError::DuplicateNodeId { .. } | HaError::LiveLeaderAtStart { .. } | HaError::NodeIdLost { .. } => {
                Code::Internal
            }
        }
    }

    fn reason(&self) -> Option<&'static str> {
        match self {
            HaError::NotLeader { .. } => Some(reason::NOT_LEADER),
            HaError::StaleTerm { .. } => Some(reason::STALE_TERM),
            HaError::ModeChange(ModeChangeError::Fixed { .. }) => Some(reason::MODE_FIXED),
            HaError::ModeChange(ModeChangeError::LiveLeader { .. }) => Some(reason::LIVE_LEADER),
            HaError::Store(_) => Some(reason::STORE_UNAVAILABLE),
            HaError::NodeLive { .. } => Some(reason::NODE_LIVE),
            HaError::UnknownNode { .. } => Some(reason::NOT_FOUND),
            HaError::DuplicateNodeId { .. } | HaError::LiveLeaderAtStart { .. } | HaError::NodeIdLost { .. } => None,
        }
    }

    fn metadata(&self) -> Vec<(&'static str, String)> {
        match self {
            HaError::NotLeader { leader: Some(leader) } => vec![("leader", leader.clone())],
            HaError::StaleTerm { term, .. } => vec![("term", term.to_string())],
            HaError::ModeChange(ModeChangeError::LiveLeader { leader }) => vec![("leader", leader.clone())],
            HaError::NodeLive { node_id, last_seen_ms_ago, .. } => {
                vec![("node_id", node_id.clone()), ("last_seen_ms_ago", last_seen_ms_ago.to_string())]
            }
            HaError::UnknownNode { node_id } => vec![("node_id", node_id.clone())],
            _ => Vec::new(),
        }
    }

    fn leader(&self) -> Option<String> {
        match self {
            HaError::NotLeader { leader } | HaError::StaleTerm { leader, .. } => leader.clone(),
            _ => None,
        }
    }
}

impl ServiceError for MetadataError {
    fn code(&self) -> Code {
        match self {
            MetadataError::Batch(cause) => cause.code(),
            MetadataError::TermEnded { .. } | MetadataError::StaleTerm { .. } | MetadataError::Store(_) => {
                Code::Unavailable
            }
            MetadataError::NotRegistered { .. } | MetadataError::IncarnationRetired { .. } => Code::FailedPrecondition,
            MetadataError::NodeLive { .. } => Code::FailedPrecondition,
            MetadataError::UnknownNode { .. } => Code::NotFound,
            MetadataError::Corrupt { .. } | MetadataError::Orphaned(_) => Code::Internal,
            MetadataError::PoolExists { .. } => Code::AlreadyExists,
            MetadataError::PoolDeleting { .. } => Code::FailedPrecondition,
            MetadataError::NoSuchPool { .. }
            | MetadataError::NoSuchGroup { .. }
            | MetadataError::NoSuchResource { .. } => Code::NotFound,
            MetadataError::GroupExists { .. } | MetadataError::ResourceExists { .. } => Code::AlreadyExists,
            MetadataError::GroupNotEmpty { .. }
            | MetadataError::ResourceCleaning { .. }
            | MetadataError::SupersededAttempt { .. } => Code::FailedPrecondition,
            MetadataError::UnknownContainer { .. } => Code::InvalidArgument,
        }
    }

    fn reason(&self) -> Option<&'static str> {
        match self {
            MetadataError::Batch(cause) => cause.reason(),
            MetadataError::TermEnded { .. } => Some(reason::NOT_LEADER),
            MetadataError::NotRegistered { .. } => Some(reason::NOT_REGISTERED),
            MetadataError::IncarnationRetired { .. } => Some(reason::INCARNATION_RETIRED),
            MetadataError::NodeLive { .. } => Some(reason::NODE_LIVE),
            MetadataError::UnknownNode { .. } => Some(reason::NOT_FOUND),
            MetadataError::StaleTerm { .. } => Some(reason::STALE_TERM),
            MetadataError::Store(_) => Some(reason::STORE_UNAVAILABLE),
            MetadataError::Corrupt { .. } | MetadataError::Orphaned(_) => None,
            MetadataError::PoolExists { .. } => Some(reason::ALREADY_EXISTS),
            MetadataError::PoolDeleting { .. } => Some(reason::OBJECT_BUSY),
            MetadataError::NoSuchPool { .. }
            | MetadataError::NoSuchGroup { .. }
            | MetadataError::NoSuchResource { .. } => Some(reason::NOT_FOUND),
            MetadataError::GroupExists { .. } | MetadataError::ResourceExists { .. } => Some(reason::ALREADY_EXISTS),
            MetadataError::GroupNotEmpty { .. } => Some(reason::OBJECT_BUSY),
            MetadataError::ResourceCleaning { .. } => Some(reason::RESOURCE_CLEANING),
            MetadataError::SupersededAttempt { .. } => Some(reason::SUPERSEDED_ATTEMPT),
            MetadataError::UnknownContainer { .. } => Some(reason::INVALID_ARGUMENT),
        }
    }

    fn metadata(&self) -> Vec<(&'static str, String)> {
        match self {
            MetadataError::Batch(cause) => cause.metadata(),
            MetadataError::StaleTerm { term } => vec![("term", term.to_string())],
            MetadataError::SupersededAttempt { latest, .. } => vec![("latest_attempt", latest.clone())],
            MetadataError::NodeLive { node_id, silent_ms } => {
                vec![("node_id", node_id.clone()), ("silent_ms", silent_ms.to_string())]
            }
            MetadataError::UnknownNode { node_id } => vec![("node_id", node_id.clone())],
            _ => Vec::new(),
        }
    }
}

impl ServiceError for BroadcastError {
    fn code(&self) -> Code {
        match self {
            BroadcastError::Failed { .. } => Code::Aborted,
            BroadcastError::OverBudget { .. } => Code::DeadlineExceeded,
            BroadcastError::Leader(error) => error.code(),
        }
    }

    fn reason(&self) -> Option<&'static str> {
        match self {
            BroadcastError::Failed { .. } => Some(reason::BROADCAST_FAILED),
            BroadcastError::OverBudget { .. } => Some(reason::BROADCAST_BUDGET),
            BroadcastError::Leader(error) => error.reason(),
        }
    }

    fn metadata(&self) -> Vec<(&'static str, String)> {
        match self {
            BroadcastError::Failed { refused: nodes, .. } | BroadcastError::OverBudget { pending: nodes, .. } => {
                vec![("nodes", nodes.join(","))]
            }
            BroadcastError::Leader(error) => error.metadata(),
        }
    }
}

impl ServiceError for DdlFailure {
    fn code(&self) -> Code {
        match self {
            DdlFailure::Refused(error) => error.code(),
            DdlFailure::Aborted { .. } => Code::Aborted,
            DdlFailure::Leader(error) => error.code(),
            DdlFailure::Broadcast(error) => error.code(),
            DdlFailure::RequestIdReused { .. } => Code::InvalidArgument,
            DdlFailure::Starting => Code::Unavailable,
            DdlFailure::Failed { .. } => Code::Internal,
        }
    }

    fn reason(&self) -> Option<&'static str> {
        match self {
            DdlFailure::Refused(error) => error.reason(),
            DdlFailure::Aborted { .. } => Some(reason::BROADCAST_FAILED),
            DdlFailure::Leader(error) => error.reason(),
            DdlFailure::Broadcast(error) => error.reason(),
            DdlFailure::RequestIdReused { .. } => Some(reason::REQUEST_ID_REUSED),
            DdlFailure::Starting => Some(reason::LEADER_STARTING),
            DdlFailure::Failed { .. } => Some(reason::PROCEDURE_FAILED),
        }
    }

    fn metadata(&self) -> Vec<(&'static str, String)> {
        match self {
            DdlFailure::Refused(error) => error.metadata(),
            DdlFailure::Aborted { procedure_id, nodes, .. } => {
                vec![("nodes", nodes.join(",")), ("procedure", procedure_id.to_string())]
            }
            DdlFailure::Leader(error) => error.metadata(),
            DdlFailure::Broadcast(error) => error.metadata(),
            DdlFailure::RequestIdReused { request_id, procedure_id } => vec![
                ("field", "request_id".to_owned()),
                ("request_id", request_id.clone()),
                ("procedure", procedure_id.to_string()),
            ],
            DdlFailure::Starting => Vec::new(),
            DdlFailure::Failed { procedure_id, .. } => vec![("procedure", procedure_id.to_string())],
        }
    }
}

/// `?` turns each of these into its status.
macro_rules! into_status {
    ($($error:ty),*) => {
        $(
            impl From<$error> for Status {
                fn from(error: $error) -> Status {
                    status_of(&error)
                }
            }
        )*
    };
}

into_status!(Refusal, HaError, MetadataError, BroadcastError, DdlFailure);

/// A refused DDL request (`DdlError` lives in core, so it has no `From` here).
pub fn ddl_error(error: DdlError) -> Status {
    status_of(&error)
}

#[cfg(test)]
mod tests {
    use super::*;
    use leasehold::status::{error_reason, redirect_target};

    #[test]
    fn not_leader_redirects_to_the_known_leader() {
        let status: Status = HaError::NotLeader { leader: Some("127.0.0.1:7401".into()) }.into();
        assert_eq!(status.code(), Code::Unavailable);
        assert_eq!(error_reason(&status).as_deref(), Some(reason::NOT_LEADER));
        assert_eq!(redirect_target(&status).as_deref(), Some("127.0.0.1:7401"));
        let status: Status = HaError::NotLeader { leader: None }.into();
        assert_eq!(redirect_target(&status), None);
    }

    #[test]
    fn a_stale_term_is_retryable_and_says_so() {
        let status: Status = HaError::StaleTerm { term: 4, leader: None }.into();
        assert_eq!(status.code(), Code::Unavailable);
        assert_eq!(error_reason(&status).as_deref(), Some(reason::STALE_TERM));
    }

    #[test]
    fn refused_mode_changes_are_failed_preconditions() {
        let status: Status = HaError::ModeChange(ModeChangeError::LiveLeader { leader: "c1".into() }).into();
        assert_eq!(
            (status.code(), error_reason(&status).as_deref()),
            (Code::FailedPrecondition, Some(reason::LIVE_LEADER))
        );
    }

    #[test]
    fn an_error_says_whether_the_same_request_may_succeed_again() {
        let store =
            || MetadataError::Store(leasehold_store::StoreError::Timeout { op: "commit", after: Default::default() });
        let retryable = [
            DdlFailure::Leader(store()),
            DdlFailure::Leader(MetadataError::StaleTerm { term: 3 }),
            DdlFailure::Leader(MetadataError::TermEnded { term: 3 }),
            DdlFailure::Broadcast(BroadcastError::OverBudget {
                version: 9,
                budget: Default::default(),
                pending: vec![],
            }),
            DdlFailure::Starting,
        ];
        for failure in &retryable {
            assert!(failure.is_retryable(), "{failure}");
        }
        let final_answers = [
            DdlFailure::Refused(DdlError::Busy { what: "table db.t".into() }),
            DdlFailure::Aborted { procedure_id: 1, reason: "refused".into(), nodes: vec!["dn1".into()] },
            DdlFailure::Failed { procedure_id: 1, reason: "orphaned".into() },
            DdlFailure::RequestIdReused { request_id: "r".into(), procedure_id: 1 },
            DdlFailure::Broadcast(BroadcastError::Failed { version: 9, refused: vec!["dn1".into()] }),
        ];
        for failure in &final_answers {
            assert!(!failure.is_retryable(), "{failure}");
        }
    }

    #[test]
    fn a_wrapped_error_keeps_its_code_reason_and_metadata() {
        let status: Status =
            DdlFailure::Refused(DdlError::Invalid { field: "columns[1].name".into(), message: "bad".into() }).into();
        assert_eq!(
            (status.code(), error_reason(&status).as_deref()),
            (Code::InvalidArgument, Some(reason::INVALID_ARGUMENT))
        );
        assert_eq!(status.message(), "columns[1].name: bad");
        let status: Status = DdlFailure::Broadcast(BroadcastError::Leader(MetadataError::StaleTerm { term: 7 })).into();
        assert_eq!((status.code(), error_reason(&status).as_deref()), (Code::Unavailable, Some(reason::STALE_TERM)));
        let status: Status = MetadataError::Corrupt { version: 3, reason: "truncated".into() }.into();
        assert_eq!((status.code(), error_reason(&status)), (Code::Internal, None));
    }
}
