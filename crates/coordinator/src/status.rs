//! The one place where errors become gRPC statuses with a stable `ErrorInfo` reason.

use leasehold::status::{LEADER_METADATA_KEY, error_status, reason};
use leasehold_core::mode::ModeChangeError;
use tonic::{Code, Status};

use crate::ha::HaError;
use crate::metadata_leader::MetadataError;
use crate::procedure_runner::DdlFailure;
use crate::propagator::BroadcastError;
use leasehold_core::ddl::DdlError;

/// A follower's answer to a call only the leader (or a hot node) serves: `UNAVAILABLE`, the
/// reason `NOT_LEADER`, and the leader's address in trailing metadata when it is known.
pub fn not_leader(leader: Option<String>, message: impl Into<String>) -> Status {
    let mut status =
        error_status(Code::Unavailable, reason::NOT_LEADER, message, leader.clone().map(|address| ("leader", address)));
    with_leader(&mut status, leader);
    status
}

/// A request field that is missing, unknown or out of range.
pub fn invalid_argument(field: &'static str, message: impl Into<String>) -> Status {
    error_status(Code::InvalidArgument, reason::INVALID_ARGUMENT, message, [("field", field.to_owned())])
}

fn with_leader(status: &mut Status, leader: Option<String>) {
    if let Some(value) = leader.and_then(|address| address.parse().ok()) {
        status.metadata_mut().insert(LEADER_METADATA_KEY, value);
    }
}

impl From<HaError> for Status {
    fn from(error: HaError) -> Status {
        let message = error.to_string();
        match error {
            HaError::NotLeader { leader } => not_leader(leader, message),
            HaError::StaleTerm { term, leader } => {
                let mut status =
                    error_status(Code::Unavailable, reason::STALE_TERM, message, [("term", term.to_string())]);
                with_leader(&mut status, leader);
                status
            }
            HaError::ModeChange(ModeChangeError::Fixed { .. }) => {
                error_status(Code::FailedPrecondition, reason::MODE_FIXED, message, [])
            }
            HaError::ModeChange(ModeChangeError::LiveLeader { leader }) => {
                error_status(Code::FailedPrecondition, reason::LIVE_LEADER, message, [("leader", leader)])
            }
            HaError::Store(_) => error_status(Code::Unavailable, reason::STORE_UNAVAILABLE, message, []),
            HaError::DuplicateNodeId { .. } | HaError::LiveLeaderAtStart { .. } | HaError::NodeIdLost { .. } => {
                Status::internal(message)
            }
        }
    }
}

impl From<MetadataError> for Status {
    fn from(error: MetadataError) -> Status {
        let message = error.to_string();
        match error {
            MetadataError::TermEnded { .. } => not_leader(None, message),
            MetadataError::NotRegistered { .. } => {
                error_status(Code::FailedPrecondition, reason::NOT_REGISTERED, message, [])
            }
            MetadataError::IncarnationRetired { .. } => {
                error_status(Code::FailedPrecondition, reason::INCARNATION_RETIRED, message, [])
            }
            MetadataError::StaleTerm { term } => {
                error_status(Code::Unavailable, reason::STALE_TERM, message, [("term", term.to_string())])
            }
            MetadataError::Store(_) => error_status(Code::Unavailable, reason::STORE_UNAVAILABLE, message, []),
            MetadataError::Corrupt { .. } => Status::internal(message),
            MetadataError::Orphaned(_) => Status::internal(message),
        }
    }
}

impl From<BroadcastError> for Status {
    fn from(error: BroadcastError) -> Status {
        let message = error.to_string();
        match error {
            BroadcastError::Failed { refused, .. } => {
                error_status(Code::Aborted, reason::BROADCAST_FAILED, message, [("nodes", refused.join(","))])
            }
            BroadcastError::OverBudget { pending, .. } => {
                error_status(Code::DeadlineExceeded, reason::BROADCAST_BUDGET, message, [("nodes", pending.join(","))])
            }
            BroadcastError::Leader(error) => error.into(),
        }
    }
}

/// A refused DDL request.
pub fn ddl_error(error: DdlError) -> Status {
    let message = error.to_string();
    {
        match error {
            DdlError::Invalid { field, .. } => {
                error_status(Code::InvalidArgument, reason::INVALID_ARGUMENT, message, [("field", field)])
            }
            DdlError::NotFound { .. } => error_status(Code::NotFound, reason::NOT_FOUND, message, []),
            DdlError::AlreadyExists { .. } => error_status(Code::AlreadyExists, reason::ALREADY_EXISTS, message, []),
            DdlError::Busy { .. } => error_status(Code::FailedPrecondition, reason::OBJECT_BUSY, message, []),
        }
    }
}

impl From<DdlFailure> for Status {
    fn from(failure: DdlFailure) -> Status {
        let message = failure.to_string();
        match failure {
            DdlFailure::Refused(error) => ddl_error(error),
            DdlFailure::Aborted { procedure_id, nodes, .. } => error_status(
                Code::Aborted,
                reason::BROADCAST_FAILED,
                message,
                [("nodes", nodes.join(",")), ("procedure", procedure_id.to_string())],
            ),
            DdlFailure::Leader(error) => error.into(),
            DdlFailure::Broadcast(error) => error.into(),
            DdlFailure::RequestIdReused { request_id, procedure_id } => error_status(
                Code::InvalidArgument,
                reason::REQUEST_ID_REUSED,
                message,
                [
                    ("field", "request_id".to_owned()),
                    ("request_id", request_id),
                    ("procedure", procedure_id.to_string()),
                ],
            ),
            DdlFailure::Starting => error_status(Code::Unavailable, reason::LEADER_STARTING, message, []),
            DdlFailure::Failed { procedure_id, .. } => error_status(
                Code::Internal,
                reason::PROCEDURE_FAILED,
                message,
                [("procedure", procedure_id.to_string())],
            ),
        }
    }
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
}
