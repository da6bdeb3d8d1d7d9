//! What can go wrong in the store, as values callers can match.

use std::time::Duration;

/// A store failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store URL cannot be used (`store.url`).
    #[error("store.url: {0}")]
    InvalidUrl(String),
    /// The store could not be reached at start.
    #[error("cannot reach the {backend} store at {url}: {reason}")]
    Connect {
        /// Which backend.
        backend: &'static str,
        /// The URL with any password replaced by `***`.
        url: String,
        /// Why, as the driver said it.
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

/// `url` with the password (in the authority or a `password=` parameter) replaced by `***`,
/// so that it can be logged.
pub fn redact_url(url: &str) -> String {
    let mut redacted = url.to_owned();
    if let Some(scheme_end) = redacted.find("://") {
        let authority_start = scheme_end + 3;
        let authority_end =
            redacted[authority_start..].find(['/', '?']).map_or(redacted.len(), |offset| authority_start + offset);
        if let Some(at) = redacted[authority_start..authority_end].rfind('@') {
            let userinfo = &redacted[authority_start..authority_start + at];
            if let Some(colon) = userinfo.find(':') {
                let password_start = authority_start + colon + 1;
                redacted.replace_range(password_start..authority_start + at, "***");
            }
        }
    }
    if let Some(query_start) = redacted.find('?') {
        let (base, query) = redacted.split_at(query_start + 1);
        let query: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((key, _)) if key.eq_ignore_ascii_case("password") => format!("{key}=***"),
                _ => pair.to_owned(),
            })
            .collect();
        redacted = format!("{base}{}", query.join("&"));
    }
    redacted
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_reach_the_logs() {
        assert_eq!(redact_url("postgres://user:secret@db:5432/x"), "postgres://user:***@db:5432/x");
        assert_eq!(redact_url("mysql://root:p%40ss@h/db?ssl-mode=required"), "mysql://root:***@h/db?ssl-mode=required");
        assert_eq!(redact_url("postgres://h/db?user=u&password=secret"), "postgres://h/db?user=u&password=***");
        assert_eq!(redact_url("postgres://user@h/db"), "postgres://user@h/db");
        assert_eq!(redact_url("sqlite://data/x.db?mode=rwc"), "sqlite://data/x.db?mode=rwc");
    }
}
