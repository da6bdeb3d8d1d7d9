//! The cluster harness: real `leasehold` processes on loopback, a real store, signals, and
//! invariant checks.
//!
//! # Layout
//! - [`store`]: a fresh store per test (a SQLite file, or a cluster of its own in the
//!   PostgreSQL / MySQL database the CI exports).
//! - [`process`]: one coordinator process: start, wait until it serves, signal it, read its
//!   JSON logs.
//! - [`cluster`]: several coordinators on one store, and questions about their leader.
//! - [`ctl`]: `leasehold ctl` run as a process, answering JSON or a table.
//! - [`readme`]: the README's blocks tagged to run against `leasehold dev`.
//! - [`grpcurl`]: the README's grpcurl lines, answered through the server's reflection.
//! - [`agents`]: data-node agents wired through chaos proxies.
//! - [`browser`]: headless Chromium, for the pages the nodes serve.
//! - [`observer`]: polls every node's HA state and checks that no term ever had two leaders.
//! - [`nemesis`]: a seeded schedule of faults over a whole cluster, a recorded workload, and
//!   the checkers of every promise over its history.
//! - [`ownership`]: samples every agent's bucket ownership and checks no bucket had two owners.
//! - [`poll`]: waiting for a condition with a deadline, never a bare sleep.
//! - [`requests`]: the catalog requests the tests send.

pub mod agents;
pub mod browser;
pub mod cluster;
pub mod ctl;
pub mod flood;
pub mod grpcurl;
pub mod lab;
pub mod nemesis;
pub mod observer;
pub mod ownership;
pub mod poll;
pub mod process;
pub mod readme;
pub mod requests;
pub mod scratch;
pub mod store;

pub use agents::TestAgent;
pub use cluster::{LeaseSettings, TestCluster, Timings};
pub use lab::AgentLab;
pub use observer::LeaderObserver;
pub use poll::{Deadline, eventually, never};
pub use process::Node;
pub use scratch::Scratch;
pub use store::TestStore;

/// Process-cluster tests run one at a time: they measure failover times, and several
/// clusters at once on a 2-core machine would measure the machine instead.
pub async fn serial() -> tokio::sync::MutexGuard<'static, ()> {
    static LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    LOCK.lock().await
}

/// Logs a test phase, so that a failure's output says how far the test got.
pub fn phase(message: &str) {
    eprintln!("[{:>8.3}s] --- {message}", start_instant().elapsed().as_secs_f64());
}

fn start_instant() -> std::time::Instant {
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    *START.get_or_init(std::time::Instant::now)
}
