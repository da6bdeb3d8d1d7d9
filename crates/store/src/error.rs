//! What can go wrong in the store, as values callers can match.

use std::time::Duration;

/// A store failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store URL cannot be used (`store.url`).
    #[error("store.url: {0}")]
    InvalidUrl(String),
    /// `store.password-file` cannot be read or used. Never quotes the file's content.
    #[error("store.password-file {}: {reason}", path.display())]
    PasswordFile {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        reason: String,
    },
    /// The store could not be reached at start.
    #[error("cannot reach the {backend} store at {url}: {reason}")]
    Connect {
        /// Which backend.
        backend: &'static str,
        /// The URL with any password replaced by `***`.
        url: String,
        /// Why, as the driver said it, with the password scrubbed out.
        reason: String,
    },
    /// A store call did not finish within its timeout; its connection was closed.
    #[error("store call `{op}` timed out after {after:?}")]
    Timeout {
        /// Which call.
        op: &'static str,
        /// The timeout.
        after: Duration,
    },
    /// The database refused or failed a statement.
    #[error("store call `{op}` failed: {source}")]
    Database {
        /// Which call.
        op: &'static str,
        /// The driver's error.
        source: sqlx::Error,
    },
    /// A term-guarded write found the lease no longer ours: another leader took over, or the
    /// lease expired on the store's clock. Nothing was written.
    #[error("the store refused a write for term {term}: the lease is no longer held by this leader")]
    StaleTerm {
        /// The term the write was made for.
        term: u64,
    },
    /// A migration failed; the store is left at the last one that succeeded.
    #[error("migration {id} failed: {source}")]
    Migration {
        /// The migration.
        id: &'static str,
        /// The driver's error.
        source: sqlx::Error,
    },
    /// A row the store relies on is missing or malformed.
    #[error("the store is inconsistent: {0}")]
    Inconsistent(String),
}

impl StoreError {
    /// Whether trying again later may succeed (the store was slow or unreachable).
    pub fn is_transient(&self) -> bool {
        matches!(self, StoreError::Timeout { .. } | StoreError::Database { .. } | StoreError::Connect { .. })
    }

    /// Fills in the call name of an error made by `?` on a driver error.
    pub(crate) fn in_op(self, op: &'static str) -> Self {
        match self {
            StoreError::Database { op: "", source } => StoreError::Database { op, source },
            other => other,
        }
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(source: sqlx::Error) -> Self {
        StoreError::Database { op: "", source }
    }
}
