//! How a DDL ends badly, and what each way means for the caller.

use super::*;

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
