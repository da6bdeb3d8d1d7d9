//! What servers and clients agree on about errors: the `google.rpc.ErrorInfo` domain, the
//! stable reasons, and the metadata keys that carry redirects and overrides.

use std::collections::HashMap;

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

/// The `ErrorInfo.domain` of every Leasehold error.
pub const ERROR_DOMAIN: &str = "leasehold.io";

/// Trailing metadata on a follower's `UNAVAILABLE` answer: the leader's `HOST:PORT`.
pub const LEADER_METADATA_KEY: &str = "leasehold-leader";

/// Request header that allows changing the HA state or priority of a node that is not the leader.
pub const ALLOW_NON_LEADER_HEADER: &str = "leasehold-allow-non-leader";

/// The stable, machine-readable reasons in `ErrorInfo.reason`.
pub mod reason {
    /// This node cannot serve the call; `leasehold-leader` names the leader.
    pub const NOT_LEADER: &str = "NOT_LEADER";
    /// No leader is known right now; retry with backoff.
    pub const LEADER_UNKNOWN: &str = "LEADER_UNKNOWN";
    /// The store refused a write because another leader took over.
    pub const STALE_TERM: &str = "STALE_TERM";
    /// Changing a non-leader needs the `leasehold-allow-non-leader: true` header.
    pub const NON_LEADER_CHANGE: &str = "NON_LEADER_CHANGE";
    /// A request field is missing, unknown or out of range (metadata `field`).
    pub const INVALID_ARGUMENT: &str = "INVALID_ARGUMENT";
    /// The mode cannot change at run time.
    pub const MODE_FIXED: &str = "MODE_FIXED";
    /// MASTER was asked for while another node holds a live lease.
    pub const LIVE_LEADER: &str = "LIVE_LEADER";
    /// The store did not answer in time.
    pub const STORE_UNAVAILABLE: &str = "STORE_UNAVAILABLE";
    /// The leader is still loading its state after taking over; retry shortly.
    pub const LEADER_STARTING: &str = "LEADER_STARTING";
    /// A data node's incarnation is not registered with the leader; register again.
    pub const NOT_REGISTERED: &str = "NOT_REGISTERED";
    /// The data node's incarnation was retired (deregistered, evicted or replaced): start a
    /// new one.
    pub const INCARNATION_RETIRED: &str = "INCARNATION_RETIRED";
    /// A data-node agent has no valid lease: it serves nothing until it resyncs.
    pub const FENCED: &str = "FENCED";
    /// The pusher is not the leader the agent follows.
    pub const NOT_MY_LEADER: &str = "NOT_MY_LEADER";
    /// The pushed changes do not follow the agent's version (or its store epoch).
    pub const VERSION_GAP: &str = "VERSION_GAP";
    /// The agent's host refused a change.
    pub const CANNOT_APPLY: &str = "CANNOT_APPLY";
    /// A broadcast failed: an agent cannot apply the change (metadata `nodes`).
    pub const BROADCAST_FAILED: &str = "BROADCAST_FAILED";
    /// A broadcast ran past its budget: a bug, since the verdict settles within T_proceed.
    pub const BROADCAST_BUDGET: &str = "BROADCAST_BUDGET";
    /// The object asked for does not exist.
    pub const NOT_FOUND: &str = "NOT_FOUND";
    /// The object to create exists already.
    pub const ALREADY_EXISTS: &str = "ALREADY_EXISTS";
    /// Another DDL is changing the object; retry when it is done.
    pub const OBJECT_BUSY: &str = "OBJECT_BUSY";
    /// A DDL procedure failed for good (see Procedures.GetProcedure).
    pub const PROCEDURE_FAILED: &str = "PROCEDURE_FAILED";
    /// A DDL's request id was used before for another request: nothing was changed.
    pub const REQUEST_ID_REUSED: &str = "REQUEST_ID_REUSED";
    /// A data node presented a start attempt of its resource that a later attempt replaced:
    /// it must exit, so that two processes never serve one node id.
    pub const SUPERSEDED_ATTEMPT: &str = "SUPERSEDED_ATTEMPT";
    /// The resource is being cleaned up: its data node may not register.
    pub const RESOURCE_CLEANING: &str = "RESOURCE_CLEANING";
    /// The coordinator is at its limit of calls in flight and shed this one: retry with
    /// backoff. Lease renewals are never shed.
    pub const OVERLOADED: &str = "OVERLOADED";
    /// The coordinator or data node is live: it cannot be removed (stop it first).
    pub const NODE_LIVE: &str = "NODE_LIVE";
}

/// Builds a status whose details carry an `ErrorInfo` with our domain and `reason`.
pub fn error_status(
    code: Code,
    reason: &str,
    message: impl Into<String>,
    metadata: impl IntoIterator<Item = (&'static str, String)>,
) -> Status {
    let metadata: HashMap<String, String> = metadata.into_iter().map(|(key, value)| (key.to_owned(), value)).collect();
    Status::with_error_details(code, message, ErrorDetails::with_error_info(reason, ERROR_DOMAIN, metadata))
}

/// What an error says about itself on the wire. Every error a Leasehold service returns
/// implements it, and [`status_of`] is the one mapping from an error to a `Status`: its code,
/// its stable `ErrorInfo` reason and metadata, and the leader to retry at.
pub trait ServiceError: std::fmt::Display {
    /// The gRPC code.
    fn code(&self) -> Code;
    /// The stable `ErrorInfo` reason; `None` for an internal error, which has none.
    fn reason(&self) -> Option<&'static str>;
    /// The `ErrorInfo` metadata, such as the field a request got wrong.
    fn metadata(&self) -> Vec<(&'static str, String)> {
        Vec::new()
    }
    /// The leader a client should send the request to instead, when it is known.
    fn leader(&self) -> Option<String> {
        None
    }
    /// Whether sending the same request again (with the same request id) may succeed: the
    /// service was unavailable, or ran out of time, and nothing was refused for good.
    fn is_retryable(&self) -> bool {
        matches!(self.code(), Code::Unavailable | Code::DeadlineExceeded)
    }
}

/// The status `error` answers with; the leader's address, when known, also goes into the
/// trailing metadata that clients follow.
pub fn status_of(error: &(impl ServiceError + ?Sized)) -> Status {
    let message = error.to_string();
    let mut status = match error.reason() {
        Some(reason) => error_status(error.code(), reason, message, error.metadata()),
        None => Status::new(error.code(), message),
    };
    if let Some(value) = error.leader().and_then(|address| address.parse().ok()) {
        status.metadata_mut().insert(LEADER_METADATA_KEY, value);
    }
    status
}

/// A request field that is missing, unknown or out of range.
pub fn invalid_argument(field: &'static str, message: impl Into<String>) -> Status {
    error_status(Code::InvalidArgument, reason::INVALID_ARGUMENT, message, [("field", field.to_owned())])
}

impl ServiceError for leasehold_core::ddl::DdlError {
    fn code(&self) -> Code {
        use leasehold_core::ddl::DdlError;
        match self {
            DdlError::Invalid { .. } => Code::InvalidArgument,
            DdlError::NotFound { .. } => Code::NotFound,
            DdlError::AlreadyExists { .. } => Code::AlreadyExists,
            DdlError::Busy { .. } => Code::FailedPrecondition,
        }
    }

    fn reason(&self) -> Option<&'static str> {
        use leasehold_core::ddl::DdlError;
        Some(match self {
            DdlError::Invalid { .. } => reason::INVALID_ARGUMENT,
            DdlError::NotFound { .. } => reason::NOT_FOUND,
            DdlError::AlreadyExists { .. } => reason::ALREADY_EXISTS,
            DdlError::Busy { .. } => reason::OBJECT_BUSY,
        })
    }

    fn metadata(&self) -> Vec<(&'static str, String)> {
        match self {
            leasehold_core::ddl::DdlError::Invalid { field, .. } => vec![("field", field.clone())],
            _ => Vec::new(),
        }
    }
}

/// The Leasehold reason of `status`, when it carries one.
pub fn error_reason(status: &Status) -> Option<String> {
    status.get_details_error_info().filter(|info| info.domain == ERROR_DOMAIN).map(|info| info.reason)
}

/// The `ErrorInfo` metadata of a Leasehold error (empty when it carries none).
pub fn error_metadata(status: &Status) -> HashMap<String, String> {
    status
        .get_details_error_info()
        .filter(|info| info.domain == ERROR_DOMAIN)
        .map(|info| info.metadata)
        .unwrap_or_default()
}

/// A gRPC code's name as the protocol spells it: `OK`, `UNAVAILABLE`, `NOT_FOUND`.
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

/// The leader a follower named in its answer, when it knows one.
pub fn redirect_target(status: &Status) -> Option<String> {
    status
        .metadata()
        .get(LEADER_METADATA_KEY)
        .and_then(|value| value.to_str().ok())
        .filter(|value| !value.is_empty())
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reason_round_trips_through_status_details() {
        let status = error_status(
            Code::Unavailable,
            reason::NOT_LEADER,
            "not the leader",
            [("leader", "127.0.0.1:7400".to_owned())],
        );
        assert_eq!(error_reason(&status).as_deref(), Some(reason::NOT_LEADER));
        assert_eq!(status.code(), Code::Unavailable);
    }

    #[test]
    fn redirect_target_reads_trailing_metadata() {
        let mut status = Status::unavailable("follower");
        assert_eq!(redirect_target(&status), None);
        status.metadata_mut().insert(LEADER_METADATA_KEY, "10.0.0.1:7400".parse().unwrap());
        assert_eq!(redirect_target(&status).as_deref(), Some("10.0.0.1:7400"));
    }
}
