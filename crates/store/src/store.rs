//! The store handle: a connection pool, the backend's statements, and a timeout on every call.
//! The calls themselves are written once, on [`Db`].

use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::pool::PoolConnection;
use sqlx::{Any, AnyConnection, AnyPool, AssertSqlSafe, Connection};
use tokio::time::{Instant, timeout_at};

use crate::backend::{Backend, Statements};
use crate::db::{Db, Unguarded};
use crate::error::StoreError;
use crate::migrate::{self, MigrationSet};
use crate::secret::{self, redact_url};

/// How to reach the store and how long to wait for it.
#[derive(Clone)]
pub struct StoreOptions {
    /// `sqlite://PATH`, `postgres://…` or `mysql://…`.
    pub url: String,
    /// A file holding the password, which then stays out of `url`: it is read at connect
    /// and set on the connect options only.
    pub password_file: Option<PathBuf>,
    /// The limit on one store call (connection checkout included).
    pub call_timeout: Duration,
    /// How long a statement waits for a row lock before it fails (PostgreSQL `lock_timeout`,
    /// InnoDB `innodb_lock_wait_timeout`; SQLite's `busy_timeout` is at least the call timeout).
    pub lock_timeout: Duration,
    /// How long the server lets a session sit idle inside a transaction before it ends it, so
    /// that a paused process cannot hold a lock forever (PostgreSQL
    /// `idle_in_transaction_session_timeout`, MariaDB `idle_transaction_timeout`, MySQL
    /// `wait_timeout`). SQLite has no server to enforce it.
    pub idle_transaction_timeout: Duration,
    /// The most connections the pool opens.
    pub max_connections: u32,
}

impl StoreOptions {
    /// Options for `url` with the defaults for everything else.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            password_file: None,
            call_timeout: Duration::from_secs(2),
            lock_timeout: Duration::from_secs(1),
            idle_transaction_timeout: Duration::from_secs(5),
            max_connections: 8,
        }
    }
}

// Written out so that `{:?}` shows the URL redacted.
impl std::fmt::Debug for StoreOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreOptions")
            .field("url", &redact_url(&self.url))
            .field("password_file", &self.password_file)
            .field("call_timeout", &self.call_timeout)
            .field("lock_timeout", &self.lock_timeout)
            .field("idle_transaction_timeout", &self.idle_transaction_timeout)
            .field("max_connections", &self.max_connections)
            .finish()
    }
}

/// A connected store. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
    call_timeout: Duration,
}

struct Inner {
    pool: AnyPool,
    backend: Backend,
    sql: Statements,
    options: StoreOptions,
    connect_options: AnyConnectOptions,
    redacted_url: String,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("backend", &self.inner.backend).field("url", &self.inner.redacted_url).finish()
    }
}

/// Checks `url` and turns it into connect options, creating a SQLite file's directory.
fn parse_url(url: &str) -> Result<(Backend, AnyConnectOptions), StoreError> {
    let backend = Backend::of_url(url).ok_or_else(|| {
        StoreError::InvalidUrl(format!(
            "{} has no known scheme; expected sqlite://PATH, postgres://USER@HOST/DB or mysql://USER@HOST/DB",
            redact_url(url)
        ))
    })?;
    let url = match backend {
        Backend::Sqlite => sqlite_url(url)?,
        // The driver knows MariaDB as mysql.
        Backend::MySql if url.to_ascii_lowercase().starts_with("mariadb:") => {
            format!("mysql:{}", &url[8..])
        }
        _ => url.to_owned(),
    };
    secret::check_server_url(&url, backend)?;
    let options = AnyConnectOptions::from_str(&url)
        .map_err(|error| StoreError::InvalidUrl(format!("{}: {error}", redact_url(&url))))?;
    Ok((backend, options))
}

/// A SQLite URL that creates its file when missing, after creating its directory.
fn sqlite_url(url: &str) -> Result<String, StoreError> {
    let rest = url.trim_start_matches("sqlite://").trim_start_matches("sqlite:");
    let (path, params) = rest.split_once('?').unwrap_or((rest, ""));
    if path.is_empty() || path == ":memory:" {
        return Err(StoreError::InvalidUrl(format!(
            "{url} names no file; coordinators share the store through a file, as in sqlite://leasehold-data/leasehold.db"
        )));
    }
    if let Some(dir) = std::path::Path::new(path).parent().filter(|dir| !dir.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|error| StoreError::InvalidUrl(format!("cannot create directory {}: {error}", dir.display())))?;
    }
    let params = if params.split('&').any(|pair| pair.starts_with("mode=")) {
        params.to_owned()
    } else if params.is_empty() {
        "mode=rwc".to_owned()
    } else {
        format!("{params}&mode=rwc")
    };
    Ok(format!("sqlite://{path}?{params}"))
}

/// Session settings every connection gets before its first use (DESIGN §2–3): lock and
/// idle-transaction timeouts, durability at commit, and a UTC session clock for MySQL.
async fn prepare_session(
    conn: &mut AnyConnection,
    backend: Backend,
    options: &StoreOptions,
) -> Result<(), sqlx::Error> {
    let lock_ms = options.lock_timeout.as_millis().max(1);
    let idle_ms = options.idle_transaction_timeout.as_millis().max(1);
    let statements: Vec<String> = match backend {
        // A busy SQLite file makes a write wait for the lock, for as long as the call itself
        // may take: failing at once with SQLITE_BUSY would turn load into spurious errors.
        Backend::Sqlite => vec![
            format!("PRAGMA busy_timeout = {}", lock_ms.max(options.call_timeout.as_millis())),
            "PRAGMA journal_mode = WAL".to_owned(),
            "PRAGMA synchronous = FULL".to_owned(),
        ],
        Backend::Postgres => vec![
            format!("SET lock_timeout = {lock_ms}"),
            format!("SET idle_in_transaction_session_timeout = {idle_ms}"),
            // A statement the client gave up on must not keep running for long.
            format!("SET statement_timeout = {}", (options.call_timeout.as_millis() * 2).max(1)),
            "SET synchronous_commit = on".to_owned(),
        ],
        Backend::MySql => vec![
            "SET SESSION time_zone = '+00:00'".to_owned(),
            format!("SET SESSION innodb_lock_wait_timeout = {}", lock_ms.div_ceil(1000)),
        ],
    };
    for statement in statements {
        sqlx::raw_sql(AssertSqlSafe(statement)).execute(&mut *conn).await?;
    }
    if backend == Backend::MySql {
        // MariaDB ends a session idle inside a transaction; MySQL has no such setting, so
        // there the session's idle timeout has to do.
        let idle_secs = idle_ms.div_ceil(1000);
        let mariadb = format!("SET SESSION idle_transaction_timeout = {idle_secs}");
        if sqlx::raw_sql(AssertSqlSafe(mariadb)).execute(&mut *conn).await.is_err() {
            let mysql = format!("SET SESSION wait_timeout = {}", idle_secs.max(2));
            sqlx::raw_sql(AssertSqlSafe(mysql)).execute(&mut *conn).await?;
        }
    }
    Ok(())
}

/// A pool connection checked out for one call, with the call's deadline.
pub(crate) struct Checkout {
    pub conn: PoolConnection<Any>,
    pub deadline: Instant,
    op: &'static str,
    call_timeout: Duration,
}

impl Checkout {
    /// Turns the bounded result of the call into the call's result. A connection whose
    /// statement was cancelled or failed mid-flight is closed, never handed to the next caller.
    pub fn finish<T>(
        mut self,
        result: Result<Result<T, StoreError>, tokio::time::error::Elapsed>,
    ) -> Result<T, StoreError> {
        match result {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => {
                self.conn.close_on_drop();
                Err(error.in_op(self.op))
            }
            Err(_) => {
                self.conn.close_on_drop();
                Err(StoreError::Timeout { op: self.op, after: self.call_timeout })
            }
        }
    }
}

impl Store {
    /// Opens the pool and checks that the store answers within the call timeout. Nothing is
    /// written; call [`Store::migrate`] next.
    pub async fn connect(options: StoreOptions) -> Result<Store, StoreError> {
        sqlx::any::install_default_drivers();
        let (backend, mut connect_options) = parse_url(&options.url)?;
        if let Some(path) = &options.password_file {
            if let Some(conflict) = secret::password_file_conflict(&options.url) {
                return Err(StoreError::PasswordFile { path: path.clone(), reason: conflict });
            }
            let password = secret::read_password_file(path)?;
            secret::set_password(&mut connect_options.database_url, &password, path)?;
        }
        let redacted_url = redact_url(&options.url);
        let session_options = options.clone();
        let pool = AnyPoolOptions::new()
            .max_connections(options.max_connections.max(2))
            .min_connections(0)
            .acquire_timeout(options.call_timeout)
            .idle_timeout(Duration::from_secs(60))
            .after_connect(move |conn, _meta| {
                let options = session_options.clone();
                Box::pin(async move { prepare_session(conn, backend, &options).await })
            })
            .connect_lazy_with(connect_options.clone());
        let call_timeout = options.call_timeout;
        let store = Store {
            call_timeout,
            inner: Arc::new(Inner {
                pool,
                backend,
                sql: Statements::new(backend),
                options,
                connect_options,
                redacted_url,
            }),
        };
        store.run("select 1", async |db| db.select_one().await).await.map_err(|error| StoreError::Connect {
            backend: backend.as_str(),
            url: store.inner.redacted_url.clone(),
            reason: secret::scrub(
                &match error {
                    StoreError::Database { source, .. } => source.to_string(),
                    StoreError::Timeout { after, .. } => format!("no answer within {after:?}"),
                    other => other.to_string(),
                },
                &store.inner.connect_options.database_url,
            ),
        })?;
        Ok(store)
    }

    /// Which backend this store is.
    pub fn backend(&self) -> Backend {
        self.inner.backend
    }

    /// The store URL with any password replaced by `***`.
    pub fn redacted_url(&self) -> &str {
        &self.inner.redacted_url
    }

    /// The limit on each call made through this handle.
    pub fn call_timeout(&self) -> Duration {
        self.call_timeout
    }

    /// The same store and pool, with another limit on each call (the HA loop's is shorter).
    pub fn with_call_timeout(&self, call_timeout: Duration) -> Store {
        Store { inner: self.inner.clone(), call_timeout }
    }

    pub(crate) fn sql(&self) -> &Statements {
        &self.inner.sql
    }

    /// Closes every pooled connection.
    pub async fn close(&self) {
        self.inner.pool.close().await;
    }

    /// Applies the embedded migrations of `set` that this store has not seen, under a lock so
    /// that coordinators starting together apply each exactly once.
    pub async fn migrate(&self, set: MigrationSet) -> Result<(), StoreError> {
        // Migrations may wait for another coordinator's migrations: allow more than one call.
        let deadline = Instant::now() + self.call_timeout.max(Duration::from_secs(30));
        let mut checkout = self.checkout_until("migrate", deadline).await?;
        let result = timeout_at(deadline, migrate::run(&mut checkout.conn, self.inner.backend, set)).await;
        checkout.finish(result)
    }

    /// Runs `call` on a pool connection under the call timeout (the checkout included); `op`
    /// names the call in its errors. A connection whose statement was cancelled or failed
    /// mid-flight is closed, never handed to the next caller.
    pub async fn run<T>(
        &self,
        op: &'static str,
        call: impl AsyncFnOnce(&mut Db<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut checkout = self.checkout(op).await?;
        let mut db = Db::new(&mut checkout.conn, &self.inner.sql, self.inner.backend, Unguarded);
        let result = timeout_at(checkout.deadline, call(&mut db)).await;
        checkout.finish(result)
    }

    pub(crate) async fn checkout(&self, op: &'static str) -> Result<Checkout, StoreError> {
        self.checkout_until(op, Instant::now() + self.call_timeout).await
    }

    async fn checkout_until(&self, op: &'static str, deadline: Instant) -> Result<Checkout, StoreError> {
        let call_timeout = deadline.saturating_duration_since(Instant::now());
        match timeout_at(deadline, self.inner.pool.acquire()).await {
            Ok(Ok(conn)) => Ok(Checkout { conn, deadline, op, call_timeout }),
            Ok(Err(sqlx::Error::PoolTimedOut)) | Err(_) => Err(StoreError::Timeout { op, after: call_timeout }),
            Ok(Err(source)) => Err(StoreError::Database { op, source }),
        }
    }

    /// A new connection outside the pool, set up like every pooled one.
    pub(crate) async fn connect_one(&self) -> Result<AnyConnection, sqlx::Error> {
        let mut conn = AnyConnection::connect_with(&self.inner.connect_options).await?;
        prepare_session(&mut conn, self.inner.backend, &self.inner.options).await?;
        Ok(conn)
    }

    /// Durability settings that the store cannot set per session; a warning for each one that
    /// lets a commit be lost.
    pub async fn durability_warnings(&self) -> Result<Vec<String>, StoreError> {
        let (query, expected, what) = match self.inner.backend {
            Backend::Sqlite => return Ok(Vec::new()),
            Backend::Postgres => ("SHOW fsync", "on", "PostgreSQL fsync is off: a crash can lose committed leases"),
            Backend::MySql => (
                "SELECT CAST(@@innodb_flush_log_at_trx_commit AS CHAR)",
                "1",
                "innodb_flush_log_at_trx_commit is not 1: a crash can lose committed leases",
            ),
        };
        let value = self.run("check durability", async |db| db.read_text(query).await).await?;
        Ok(if value.trim() == expected { Vec::new() } else { vec![what.to_owned()] })
    }
}

/// `bytes` random bytes as lowercase hex.
pub(crate) fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).expect("the operating system's random source failed");
    buf.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// A fresh process incarnation: 128 random bits, new at every start.
pub fn new_incarnation() -> String {
    random_hex(16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_urls_create_their_file() {
        let url = sqlite_url("sqlite://target/store-url-test/x.db").unwrap();
        assert_eq!(url, "sqlite://target/store-url-test/x.db?mode=rwc");
        let url = sqlite_url("sqlite://target/store-url-test/x.db?cache=shared").unwrap();
        assert_eq!(url, "sqlite://target/store-url-test/x.db?cache=shared&mode=rwc");
        let url = sqlite_url("sqlite://target/store-url-test/x.db?mode=ro").unwrap();
        assert_eq!(url, "sqlite://target/store-url-test/x.db?mode=ro");
    }

    #[test]
    fn unusable_urls_are_refused_without_their_password() {
        let error = parse_url("redis://user:secret@host").unwrap_err().to_string();
        assert!(error.starts_with("store.url:"), "{error}");
        assert!(!error.contains("secret"), "{error}");
        assert!(parse_url("sqlite://").is_err());
        assert!(parse_url("sqlite::memory:").is_err());
        let error = parse_url("postgres://user:secret@host:notaport/db").unwrap_err().to_string();
        assert!(!error.contains("secret"), "{error}");
    }

    #[test]
    fn debug_output_hides_the_password() {
        let shown = format!("{:?}", StoreOptions::new("postgres://u:secret@h/db"));
        assert!(shown.contains("postgres://u:***@h/db"), "{shown}");
        assert!(!shown.contains("secret"), "{shown}");
    }

    #[test]
    fn incarnations_are_fresh() {
        let a = new_incarnation();
        assert_eq!(a.len(), 32);
        assert_ne!(a, new_incarnation());
    }
}
