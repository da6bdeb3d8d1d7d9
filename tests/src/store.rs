//! A fresh store for each test.

use std::path::PathBuf;

use leasehold_store::new_incarnation;
use sqlx::{AnyConnection, Connection};

/// Which database a test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A SQLite file of the test's own.
    Sqlite,
    /// `LEASEHOLD_TEST_POSTGRES_URL`.
    Postgres,
    /// `LEASEHOLD_TEST_MYSQL_URL`.
    MySql,
}

/// The store a test's coordinators share.
#[derive(Debug)]
pub struct TestStore {
    /// Which database.
    pub kind: Kind,
    /// The URL the coordinators get.
    pub url: String,
    sqlite_dir: Option<PathBuf>,
}

impl TestStore {
    /// The server's `host:port` and `url` with it replaced by `through`, for a server store
    /// (`None` for SQLite, which has no connection to cut).
    pub fn routed_through(&self, through: std::net::SocketAddr) -> Option<(std::net::SocketAddr, String)> {
        let (scheme, rest) = self.url.split_once("://")?;
        let authority_start = rest.find('@').map_or(0, |at| at + 1);
        let authority_end = rest[authority_start..].find('/').map_or(rest.len(), |slash| authority_start + slash);
        let server = rest[authority_start..authority_end].parse().ok()?;
        let url = format!("{scheme}://{}{through}{}", &rest[..authority_start], &rest[authority_end..]);
        Some((server, url))
    }

    /// A SQLite file in a directory of its own.
    pub fn sqlite() -> TestStore {
        let dir = std::env::temp_dir().join("leasehold-tests").join(new_incarnation());
        std::fs::create_dir_all(&dir).expect("creating the test directory");
        TestStore { kind: Kind::Sqlite, url: format!("sqlite://{}/leasehold.db", dir.display()), sqlite_dir: Some(dir) }
    }

    /// The store of `kind`, or `None` (with a note on stderr) when its URL is not set.
    /// Under `CI=true` a missing backend fails the test instead.
    pub fn of(kind: Kind) -> Option<TestStore> {
        let variable = match kind {
            Kind::Sqlite => return Some(TestStore::sqlite()),
            Kind::Postgres => "LEASEHOLD_TEST_POSTGRES_URL",
            Kind::MySql => "LEASEHOLD_TEST_MYSQL_URL",
        };
        match std::env::var(variable) {
            Ok(url) if !url.is_empty() => Some(TestStore { kind, url, sqlite_dir: None }),
            _ => {
                assert!(
                    std::env::var("CI").as_deref() != Ok("true"),
                    "{variable} is not set, and CI=true requires every backend"
                );
                eprintln!("skipped: {variable} is not set, so this {kind:?} scenario did not run");
                None
            }
        }
    }

    /// A direct connection to the store, for a test to inspect or lock it.
    pub async fn connect(&self) -> AnyConnection {
        sqlx::any::install_default_drivers();
        AnyConnection::connect(&self.url).await.expect("connecting to the test store")
    }
}

impl Drop for TestStore {
    fn drop(&mut self) {
        if let Some(dir) = &self.sqlite_dir
            && !std::thread::panicking()
        {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}
