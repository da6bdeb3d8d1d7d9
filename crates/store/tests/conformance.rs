//! One conformance suite, stamped out for every backend.
//!
//! SQLite always runs (a fresh file per test). PostgreSQL and MySQL run when
//! `LEASEHOLD_TEST_POSTGRES_URL` / `LEASEHOLD_TEST_MYSQL_URL` are set; otherwise each test
//! says that it was skipped, and under `CI=true` a missing backend fails the test.
//! Every test works in a cluster of its own, so tests share a database safely.

use std::sync::Arc;
use std::time::Duration;

use leasehold_core::ddl::DdlKind;
use leasehold_core::keeper::ResourceState;
use leasehold_core::procedure::{State, Step};
use leasehold_store::{
    AssignmentRow, GroupRow, LeaseHolder, LeaseView, MigrationSet, NodeRegistration, ProcedureRow, ResourceRow, Store,
    StoreError, StoreOptions, Stored, StoredObject, TermGuard, WriteGuard, new_incarnation,
};
use tokio::sync::Barrier;
use tokio::time::Instant;

struct Harness {
    url: String,
    store: Store,
    cluster: String,
    sqlite_file: Option<std::path::PathBuf>,
}

impl Drop for Harness {
    fn drop(&mut self) {
        if let Some(file) = &self.sqlite_file {
            for suffix in ["", "-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("{}{suffix}", file.display()));
            }
        }
    }
}

fn options(url: &str) -> StoreOptions {
    StoreOptions { call_timeout: Duration::from_secs(5), ..StoreOptions::new(url) }
}

impl Harness {
    async fn open(backend: &str) -> Option<Harness> {
        let (url, sqlite_file) = match backend {
            "sqlite" => {
                let dir = std::env::temp_dir().join("leasehold-store-conformance");
                let file = dir.join(format!("{}.db", new_incarnation()));
                (format!("sqlite://{}", file.display()), Some(file))
            }
            _ => {
                let variable = format!("LEASEHOLD_TEST_{}_URL", backend.to_ascii_uppercase());
                match std::env::var(&variable) {
                    Ok(url) if !url.is_empty() => (url, None),
                    _ => {
                        if std::env::var("CI").is_ok_and(|value| value == "true") {
                            panic!("{variable} is not set, and CI=true requires the {backend} backend");
                        }
                        eprintln!("skipped: {variable} is not set, so the {backend} store tests did not run");
                        return None;
                    }
                }
            }
        };
        let store = Store::connect(options(&url)).await.expect("connect");
        store.migrate(MigrationSet::All).await.expect("migrate");
        let cluster = format!("t-{}", &new_incarnation()[..12]);
        store.run("create lease row", async |db| db.ensure_lease_row(&cluster).await).await.expect("lease row");
        Some(Harness { url, store, cluster, sqlite_file })
    }

    /// Another coordinator's store handle: its own pool and connections.
    async fn another_store(&self) -> Store {
        Store::connect(options(&self.url)).await.expect("connect again")
    }

    fn holder(&self, node_id: &str) -> LeaseHolder {
        LeaseHolder {
            node_id: node_id.to_owned(),
            incarnation: new_incarnation(),
            address: format!("127.0.0.1:{}", 7400 + node_id.len()),
        }
    }

    fn guard(&self, holder: &LeaseHolder, term: u64) -> TermGuard {
        TermGuard { cluster: self.cluster.clone(), term, incarnation: holder.incarnation.clone() }
    }

    async fn read(&self) -> LeaseView {
        self.store.run("read lease", async |db| db.read_lease(&self.cluster).await).await.expect("read lease")
    }

    async fn acquire(&self, holder: &LeaseHolder, ttl: Duration) -> Option<u64> {
        let view = self.read().await;
        self.store
            .run("acquire lease", async |db| db.try_acquire(&self.cluster, &view, holder, ttl).await)
            .await
            .expect("acquire")
    }

    /// Polls the store's clock until the lease has expired on it.
    async fn until_expired(&self) -> LeaseView {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let view = self.read().await;
            if view.is_expired() {
                return view;
            }
            assert!(Instant::now() < deadline, "lease never expired: {view:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn registration(&self, node_id: &str, incarnation: &str) -> NodeRegistration {
        NodeRegistration {
            cluster: self.cluster.clone(),
            node_id: node_id.to_owned(),
            incarnation: incarnation.to_owned(),
            address: "127.0.0.1:7400".to_owned(),
            mode: "auto".to_owned(),
            priority: 0,
            role: "follower".to_owned(),
        }
    }
}

const LONG: Duration = Duration::from_secs(60);
const SHORT: Duration = Duration::from_millis(300);

async fn acquire_when_free(h: Harness) {
    let fresh = h.read().await;
    assert_eq!(fresh.term, 0);
    assert!(fresh.is_expired() && fresh.holder.is_none());
    let a = h.holder("a");
    assert_eq!(h.acquire(&a, LONG).await, Some(1));
    let view = h.read().await;
    assert_eq!(view.term, 1);
    assert_eq!(view.live_holder(), Some(&a));
    let remaining = view.remaining_ms();
    assert!((59_000..=60_000).contains(&remaining), "remaining {remaining} ms");
}

async fn an_acquire_that_timed_out_does_not_commit_once_the_lock_is_free(h: Harness) {
    use sqlx::Connection;
    let view = h.read().await;
    // Another connection holds the lease row's lock far longer than the session's calls last.
    let mut holder = sqlx::AnyConnection::connect(&h.url).await.expect("a connection of its own");
    let lock = if h.url.starts_with("sqlite") {
        "BEGIN IMMEDIATE".to_owned()
    } else {
        format!("BEGIN; UPDATE ha_lease SET term = term WHERE cluster = '{}'", h.cluster)
    };
    sqlx::raw_sql(sqlx::AssertSqlSafe(lock)).execute(&mut holder).await.expect("taking the lock");
    let mut session = h.store.lease_session(Duration::from_millis(300));
    let a = h.holder("a");
    let gave_up = session.run("acquire lease", async |db| db.try_acquire(&h.cluster, &view, &a, LONG).await).await;
    assert!(matches!(gave_up, Err(StoreError::Timeout { .. })), "{gave_up:?}");
    // Past every lock wait the session allows (MySQL counts whole seconds), then free the lock.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    sqlx::raw_sql("ROLLBACK").execute(&mut holder).await.expect("releasing the lock");
    // The acquire the caller gave up on must not land now: nobody holds the lease.
    let deadline = Instant::now() + Duration::from_secs(1);
    while Instant::now() < deadline {
        let now = h.read().await;
        assert!(now.term == 0 && now.holder.is_none(), "an acquire that timed out committed later: {now:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn no_acquire_while_held(h: Harness) {
    let a = h.holder("a");
    assert_eq!(h.acquire(&a, LONG).await, Some(1));
    let b = h.holder("b");
    assert_eq!(h.acquire(&b, LONG).await, None);
    let view = h.read().await;
    assert_eq!((view.term, view.live_holder()), (1, Some(&a)));
}

async fn takeover_after_expiry_increments_the_term(h: Harness) {
    let a = h.holder("a");
    assert_eq!(h.acquire(&a, SHORT).await, Some(1));
    let expired = h.until_expired().await;
    assert_eq!(expired.live_holder(), None);
    let b = h.holder("b");
    assert_eq!(
        h.store.run("acquire lease", async |db| db.try_acquire(&h.cluster, &expired, &b, LONG).await).await.unwrap(),
        Some(2)
    );
    assert_eq!(h.read().await.live_holder(), Some(&b));
}

async fn an_acquire_against_an_old_version_fails(h: Harness) {
    let seen_by_both = h.read().await;
    let a = h.holder("a");
    let b = h.holder("b");
    assert_eq!(
        h.store
            .run("acquire lease", async |db| db.try_acquire(&h.cluster, &seen_by_both, &a, SHORT).await)
            .await
            .unwrap(),
        Some(1)
    );
    // The lease expires, but b still holds the version it read before a acquired.
    h.until_expired().await;
    assert_eq!(
        h.store
            .run("acquire lease", async |db| db.try_acquire(&h.cluster, &seen_by_both, &b, LONG).await)
            .await
            .unwrap(),
        None
    );
    // A renewal bumps the version too: an acquire prepared before it fails.
    let c = h.holder("c");
    let before_renewal = h.read().await;
    let a_guard = h.guard(&a, 1);
    assert!(
        h.store.run("renew lease", async |db| db.renew(&a_guard, LONG).await).await.unwrap(),
        "term 1 is still a's: nobody took it"
    );
    assert_eq!(
        h.store
            .run("acquire lease", async |db| db.try_acquire(&h.cluster, &before_renewal, &c, LONG).await)
            .await
            .unwrap(),
        None
    );
    assert_eq!(h.read().await.live_holder(), Some(&a));
}

async fn sixteen_concurrent_acquirers_produce_one_winner_per_term(h: Harness) {
    let h = Arc::new(h);
    let mut stores = Vec::new();
    for _ in 0..4 {
        stores.push(h.another_store().await);
    }
    let mut winners_by_term = Vec::new();
    for round in 0..3u64 {
        let barrier = Arc::new(Barrier::new(16));
        let mut tasks = Vec::new();
        for contender in 0..16 {
            let store = stores[contender % stores.len()].clone();
            let barrier = barrier.clone();
            let cluster = h.cluster.clone();
            let holder = h.holder(&format!("n{contender}"));
            tasks.push(tokio::spawn(async move {
                let mut session = store.lease_session(Duration::from_secs(5));
                let view = session.run("read lease", async |db| db.read_lease(&cluster).await).await.expect("read");
                barrier.wait().await;
                // Busy or lock-timeout errors count as losing: they never produce a winner.
                let won = session
                    .run("acquire lease", async |db| db.try_acquire(&cluster, &view, &holder, LONG).await)
                    .await
                    .ok()
                    .flatten();
                (holder, won)
            }));
        }
        let mut winners = Vec::new();
        for task in tasks {
            let (holder, won) = task.await.unwrap();
            if let Some(term) = won {
                winners.push((holder, term));
            }
        }
        assert_eq!(winners.len(), 1, "round {round}: winners {winners:?}");
        let (winner, term) = winners.pop().unwrap();
        assert_eq!(term, round + 1);
        assert_eq!(h.read().await.live_holder(), Some(&winner));
        winners_by_term.push(term);
        assert!(h.store.run("release lease", async |db| db.release(&h.guard(&winner, term)).await).await.unwrap());
    }
    assert_eq!(winners_by_term, vec![1, 2, 3]);
}

async fn a_guarded_write_with_an_old_term_is_rejected_after_a_takeover(h: Harness) {
    let incarnation = new_incarnation();
    assert!(
        h.store
            .run("register node", async |db| db.insert_node(&h.registration("a", &incarnation)).await)
            .await
            .unwrap()
    );
    let a = h.holder("a");
    assert_eq!(h.acquire(&a, SHORT).await, Some(1));
    let a_guard = h.guard(&a, 1);

    let mut tx = h.store.begin_guarded(&WriteGuard::Term(a_guard.clone())).await.expect("the holder may write");
    assert!(
        tx.run(async |db| db.update_node_settings(&h.cluster, "a", &incarnation, "standby", 5).await).await.unwrap()
    );
    tx.commit().await.unwrap();

    let expired = h.until_expired().await;
    // Expired but not yet taken: the guard refuses already, on the store's clock.
    let refused = h.store.begin_guarded(&WriteGuard::Term(a_guard.clone())).await.unwrap_err();
    assert!(matches!(refused, StoreError::StaleTerm { term: 1 }), "{refused}");

    let b = h.holder("b");
    assert_eq!(
        h.store.run("acquire lease", async |db| db.try_acquire(&h.cluster, &expired, &b, LONG).await).await.unwrap(),
        Some(2)
    );
    let refused = h.store.begin_guarded(&WriteGuard::Term(a_guard.clone())).await.unwrap_err();
    assert!(matches!(refused, StoreError::StaleTerm { term: 1 }), "{refused}");
    // The old term cannot renew its way back either.
    assert!(!h.store.run("renew lease", async |db| db.renew(&a_guard, LONG).await).await.unwrap());
    assert!(h.store.begin_guarded(&WriteGuard::Term(h.guard(&b, 2))).await.is_ok());

    let listed = h.store.run("list nodes", async |db| db.list_nodes(&h.cluster).await).await.unwrap();
    assert_eq!((listed.nodes[0].mode.as_str(), listed.nodes[0].priority), ("standby", 5));
}

async fn an_uncommitted_guarded_write_leaves_nothing(h: Harness) {
    let incarnation = new_incarnation();
    assert!(
        h.store
            .run("register node", async |db| db.insert_node(&h.registration("a", &incarnation)).await)
            .await
            .unwrap()
    );
    let a = h.holder("a");
    assert_eq!(h.acquire(&a, LONG).await, Some(1));
    let mut tx = h.store.begin_guarded(&WriteGuard::Term(h.guard(&a, 1))).await.unwrap();
    assert!(
        tx.run(async |db| db.update_node_settings(&h.cluster, "a", &incarnation, "hot-backup", 9).await).await.unwrap()
    );
    drop(tx);
    let listed = h.store.run("list nodes", async |db| db.list_nodes(&h.cluster).await).await.unwrap();
    assert_eq!((listed.nodes[0].mode.as_str(), listed.nodes[0].priority), ("auto", 0));
    // And the pool still works after the abandoned transaction's connection was closed.
    let mut tx = h.store.begin_guarded(&WriteGuard::Term(h.guard(&a, 1))).await.unwrap();
    assert!(
        tx.run(async |db| db.update_node_settings(&h.cluster, "a", &incarnation, "hot-backup", 9).await).await.unwrap()
    );
    tx.commit().await.unwrap();
    let listed = h.store.run("list nodes", async |db| db.list_nodes(&h.cluster).await).await.unwrap();
    assert_eq!((listed.nodes[0].mode.as_str(), listed.nodes[0].priority), ("hot-backup", 9));
}

async fn release_lets_the_next_acquirer_in_at_once(h: Harness) {
    let a = h.holder("a");
    assert_eq!(h.acquire(&a, LONG).await, Some(1));
    assert!(h.store.run("release lease", async |db| db.release(&h.guard(&a, 1)).await).await.unwrap());
    let view = h.read().await;
    assert!(view.is_expired(), "released lease still live: {view:?}");
    let b = h.holder("b");
    assert_eq!(
        h.store.run("acquire lease", async |db| db.try_acquire(&h.cluster, &view, &b, LONG).await).await.unwrap(),
        Some(2)
    );
    // A release by a term that is no longer current changes nothing.
    assert!(!h.store.run("release lease", async |db| db.release(&h.guard(&a, 1)).await).await.unwrap());
    assert_eq!(h.read().await.live_holder(), Some(&b));
}

async fn node_registry_claims_refreshes_and_stops(h: Harness) {
    let first = new_incarnation();
    let registration = h.registration("c1", &first);
    assert!(h.store.run("register node", async |db| db.insert_node(&registration).await).await.unwrap());
    assert!(
        !h.store
            .run("register node", async |db| db.insert_node(&h.registration("c1", &new_incarnation())).await)
            .await
            .unwrap(),
        "the id exists"
    );

    let snapshot = h.store.run("read node", async |db| db.read_node(&h.cluster, "c1").await).await.unwrap();
    let row = snapshot.row.clone().unwrap();
    assert_eq!(row.incarnation.as_deref(), Some(first.as_str()));
    assert!((snapshot.store_now_ms - row.last_seen_ms).abs() < 5_000);

    assert!(
        h.store
            .run("refresh node", async |db| db.refresh_node(&h.cluster, "c1", &first, "leader").await)
            .await
            .unwrap()
    );
    assert!(
        !h.store
            .run("refresh node", async |db| db.refresh_node(&h.cluster, "c1", "someone-else", "leader").await)
            .await
            .unwrap()
    );

    // A takeover must match what was observed.
    let second = new_incarnation();
    let stale = h
        .store
        .run("take over node", async |db| {
            db.take_over_node(&h.registration("c1", &second), Some("wrong"), row.last_seen_ms).await
        })
        .await
        .unwrap();
    assert!(!stale);
    let current = h.store.run("read node", async |db| db.read_node(&h.cluster, "c1").await).await.unwrap().row.unwrap();
    assert!(
        h.store
            .run("take over node", async |db| db
                .take_over_node(&h.registration("c1", &second), current.incarnation.as_deref(), current.last_seen_ms)
                .await)
            .await
            .unwrap()
    );
    assert!(
        !h.store
            .run("refresh node", async |db| db.refresh_node(&h.cluster, "c1", &first, "leader").await)
            .await
            .unwrap(),
        "the old incarnation lost the id"
    );

    assert!(h.store.run("stop node", async |db| db.stop_node(&h.cluster, "c1", &second).await).await.unwrap());
    let stopped = h.store.run("read node", async |db| db.read_node(&h.cluster, "c1").await).await.unwrap().row.unwrap();
    assert_eq!(stopped.incarnation, None);
    let third = new_incarnation();
    assert!(
        h.store
            .run("take over node", async |db| db
                .take_over_node(&h.registration("c1", &third), None, stopped.last_seen_ms)
                .await)
            .await
            .unwrap()
    );

    assert!(
        h.store
            .run("register node", async |db| db.insert_node(&h.registration("c0", &new_incarnation())).await)
            .await
            .unwrap()
    );
    let listed = h.store.run("list nodes", async |db| db.list_nodes(&h.cluster).await).await.unwrap();
    let ids: Vec<_> = listed.nodes.iter().map(|node| node.node_id.as_str()).collect();
    assert_eq!(ids, ["c0", "c1"]);
    assert_eq!(listed.nodes[1].incarnation.as_deref(), Some(third.as_str()));
}

async fn only_a_stopped_or_silent_node_is_removed(h: Harness) {
    let ttl = Duration::from_secs(60);
    let live = new_incarnation();
    assert!(h.store.run("register node", async |db| db.insert_node(&h.registration("c1", &live)).await).await.unwrap());
    let remove = async |node_id: &str, ttl: Duration| {
        h.store.run("remove node", async |db| db.remove_node(&h.cluster, node_id, ttl).await).await.unwrap()
    };
    assert!(!remove("c1", ttl).await, "refreshed just now: live");
    assert!(!remove("c9", ttl).await, "no such row");
    // Silent for longer than a TTL of zero: lost.
    assert!(remove("c1", Duration::ZERO).await);
    let snapshot = h.store.run("read node", async |db| db.read_node(&h.cluster, "c1").await).await.unwrap();
    assert_eq!(snapshot.row, None);

    let stopped = new_incarnation();
    assert!(
        h.store.run("register node", async |db| db.insert_node(&h.registration("c2", &stopped)).await).await.unwrap()
    );
    assert!(h.store.run("stop node", async |db| db.stop_node(&h.cluster, "c2", &stopped).await).await.unwrap());
    assert!(remove("c2", ttl).await, "stopped cleanly: removed within its TTL");
}

async fn store_epoch_is_written_once(h: Harness) {
    let first = h.store.run("store epoch", async |db| db.store_epoch(&h.cluster).await).await.unwrap();
    assert_eq!(first.len(), 16);
    let other = h.another_store().await;
    assert_eq!(other.run("store epoch", async |db| db.store_epoch(&h.cluster).await).await.unwrap(), first);
}

async fn migrations_are_safe_to_run_concurrently_and_again(h: Harness) {
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let store = h.another_store().await;
        tasks.push(tokio::spawn(async move { store.migrate(MigrationSet::All).await }));
    }
    for task in tasks {
        task.await.unwrap().expect("concurrent migrate");
    }
    h.store.migrate(MigrationSet::All).await.expect("migrate again");
}

async fn migrations_wait_out_another_holder_of_the_migration_lock(h: Harness) {
    use sqlx::Connection;
    // The lock the migrations take, held from a connection of another process's making.
    let (lock, unlock) = match h.url.split_once(':').map(|(scheme, _)| scheme) {
        Some("sqlite") => ("BEGIN IMMEDIATE", "COMMIT"),
        Some("postgres" | "postgresql") => {
            ("SELECT pg_advisory_lock(7400190001)", "SELECT pg_advisory_unlock(7400190001)")
        }
        _ => ("SELECT GET_LOCK('leasehold_migrations', 60)", "SELECT RELEASE_LOCK('leasehold_migrations')"),
    };
    let mut holder = sqlx::AnyConnection::connect(&h.url).await.expect("a connection of its own");
    sqlx::raw_sql(lock).execute(&mut holder).await.expect("taking the migration lock");
    // One call waits 300 ms at most (busy timeout, lock timeout); the lock is held far longer.
    let short = Duration::from_millis(300);
    let options = StoreOptions { call_timeout: short, lock_timeout: short, ..StoreOptions::new(h.url.clone()) };
    let store = Store::connect(options).await.expect("connect");
    let migrating = tokio::spawn(async move { store.migrate(MigrationSet::All).await });
    tokio::time::sleep(short * 5).await;
    assert!(!migrating.is_finished(), "migrate gave up while another held the lock: {:?}", migrating.await);
    sqlx::raw_sql(unlock).execute(&mut holder).await.expect("releasing the migration lock");
    migrating.await.unwrap().expect("migrate once the lock was released");
}

async fn the_store_clock_has_millisecond_resolution(h: Harness) {
    let mut readings = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    while readings.len() < 2 {
        let now = h.store.run("read clock", async |db| db.now_ms().await).await.unwrap();
        if readings.last() != Some(&now) {
            readings.push(now);
        }
        assert!(Instant::now() < deadline);
    }
    // Some time after 2020 in milliseconds, and readings a few milliseconds apart, not a second.
    assert!(readings[0] > 1_577_836_800_000, "{readings:?}");
    assert!(readings[1] - readings[0] < 500, "{readings:?}");
}

async fn a_lock_held_by_a_guarded_write_delays_an_acquire_until_commit(h: Harness) {
    let a = h.holder("a");
    assert_eq!(h.acquire(&a, SHORT).await, Some(1));
    let tx = h.store.begin_guarded(&WriteGuard::Term(h.guard(&a, 1))).await.unwrap();
    // The lease expires on the store's clock while a's write still holds the row.
    let expired = h.until_expired().await;
    let other = h.another_store().await;
    let cluster = h.cluster.clone();
    let b = h.holder("b");
    let contender = tokio::spawn(async move {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            // Lock waits end in a timeout error (or SQLite's busy), never in a second holder.
            match other.run("acquire lease", async |db| db.try_acquire(&cluster, &expired, &b, LONG).await).await {
                Ok(won) => return won,
                Err(_) if Instant::now() < deadline => continue,
                Err(error) => panic!("acquire kept failing: {error}"),
            }
        }
    });
    tx.commit().await.expect("the write that locked in time commits");
    assert_eq!(contender.await.unwrap(), Some(2));
}

async fn versions_follow_commit_order_and_old_changes_are_trimmed(h: Harness) {
    h.store.run("create version row", async |db| db.ensure_metadata_rows(&h.cluster).await).await.unwrap();
    h.store.run("create version row", async |db| db.ensure_metadata_rows(&h.cluster).await).await.unwrap();
    assert_eq!(h.store.run("read version", async |db| db.current_version(&h.cluster).await).await.unwrap(), 0);
    let a = h.holder("a");
    assert_eq!(h.acquire(&a, LONG).await, Some(1));
    let guard = WriteGuard::Term(h.guard(&a, 1));
    for expected in 1..=5u64 {
        let mut tx = h.store.begin_guarded(&guard).await.unwrap();
        let version =
            tx.run(async |db| db.append_change(&h.cluster, "barrier", &[expected as u8], 3).await).await.unwrap();
        tx.commit().await.unwrap();
        assert_eq!(version, expected);
    }
    // A change that is not committed consumes no version.
    let mut tx = h.store.begin_guarded(&guard).await.unwrap();
    tx.run(async |db| db.append_change(&h.cluster, "barrier", &[9], 3).await).await.unwrap();
    drop(tx);
    assert_eq!(h.store.run("read version", async |db| db.current_version(&h.cluster).await).await.unwrap(), 5);
    let kept = h.store.run("read changes", async |db| db.changes_since(&h.cluster, 0, 100).await).await.unwrap();
    let versions: Vec<_> = kept.iter().map(|change| change.version).collect();
    assert_eq!(versions, vec![3, 4, 5], "retention keeps the last three");
    assert_eq!(kept[2].payload, vec![5]);
    assert_eq!(kept[2].kind, "barrier");
    assert_eq!(
        h.store.run("read changes", async |db| db.changes_since(&h.cluster, 4, 100).await).await.unwrap().len(),
        1
    );
    assert_eq!(
        h.store.run("read changes", async |db| db.changes_since(&h.cluster, 0, 2).await).await.unwrap().len(),
        2
    );
}

async fn concurrent_writers_get_distinct_consecutive_versions(h: Harness) {
    h.store.run("create version row", async |db| db.ensure_metadata_rows(&h.cluster).await).await.unwrap();
    let a = h.holder("a");
    assert_eq!(h.acquire(&a, LONG).await, Some(1));
    let guard = WriteGuard::Term(h.guard(&a, 1));
    let mut tasks = Vec::new();
    for writer in 0..8u8 {
        let store = h.another_store().await;
        let (guard, cluster) = (guard.clone(), h.cluster.clone());
        tasks.push(tokio::spawn(async move {
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                // Lock waits or SQLite's busy answers are retried; a version is never reused.
                let attempt = async {
                    let mut tx = store.begin_guarded(&guard).await?;
                    let version =
                        tx.run(async |db| db.append_change(&cluster, "barrier", &[writer], 1000).await).await?;
                    tx.commit().await?;
                    Ok::<u64, StoreError>(version)
                };
                match attempt.await {
                    Ok(version) => return version,
                    Err(error) if Instant::now() < deadline => {
                        let _ = error;
                    }
                    Err(error) => panic!("writer {writer} kept failing: {error}"),
                }
            }
        }));
    }
    let mut versions = Vec::new();
    for task in tasks {
        versions.push(task.await.unwrap());
    }
    versions.sort();
    assert_eq!(versions, (1..=8).collect::<Vec<u64>>());
    let logged: Vec<_> = h
        .store
        .run("read changes", async |db| db.changes_since(&h.cluster, 0, 100).await)
        .await
        .unwrap()
        .iter()
        .map(|c| c.version)
        .collect();
    assert_eq!(logged, (1..=8).collect::<Vec<u64>>());
}

async fn a_change_under_an_old_term_is_refused(h: Harness) {
    h.store.run("create version row", async |db| db.ensure_metadata_rows(&h.cluster).await).await.unwrap();
    let a = h.holder("a");
    assert_eq!(h.acquire(&a, SHORT).await, Some(1));
    let expired = h.until_expired().await;
    let b = h.holder("b");
    assert_eq!(
        h.store.run("acquire lease", async |db| db.try_acquire(&h.cluster, &expired, &b, LONG).await).await.unwrap(),
        Some(2)
    );
    let refused = h.store.begin_guarded(&WriteGuard::Term(h.guard(&a, 1))).await.unwrap_err();
    assert!(matches!(refused, StoreError::StaleTerm { term: 1 }), "{refused}");
    assert_eq!(h.store.run("read version", async |db| db.current_version(&h.cluster).await).await.unwrap(), 0);
}

async fn data_nodes_register_replace_and_deregister(h: Harness) {
    let guard = WriteGuard::Standalone;
    let mut tx = h.store.begin_guarded(&guard).await.unwrap();
    tx.run(async |db| db.upsert_data_node(&h.cluster, "dn1", "i1", "127.0.0.1:7501", &["ingest".into()], "").await)
        .await
        .unwrap();
    tx.run(async |db| db.upsert_data_node(&h.cluster, "dn2", "i1", "127.0.0.1:7502", &[], "").await).await.unwrap();
    tx.commit().await.unwrap();
    let mut tx = h.store.begin_guarded(&guard).await.unwrap();
    tx.run(async |db| {
        db.upsert_data_node(&h.cluster, "dn1", "i2", "127.0.0.1:7511", &["ingest".into(), "compaction".into()], "r1")
            .await
    })
    .await
    .unwrap();
    assert!(
        !tx.run(async |db| db.retire_data_node(&h.cluster, "dn2", "other").await).await.unwrap(),
        "only the named incarnation"
    );
    assert!(tx.run(async |db| db.retire_data_node(&h.cluster, "dn2", "i1").await).await.unwrap());
    assert!(!tx.run(async |db| db.retire_data_node(&h.cluster, "dn2", "i1").await).await.unwrap(), "retired once");
    tx.commit().await.unwrap();
    let nodes = h.store.run("list data nodes", async |db| db.list_data_nodes(&h.cluster).await).await.unwrap();
    assert_eq!(nodes.len(), 1);
    assert_eq!(
        (nodes[0].node_id.as_str(), nodes[0].incarnation.as_str(), nodes[0].address.as_str()),
        ("dn1", "i2", "127.0.0.1:7511")
    );
    assert_eq!(nodes[0].pools, ["ingest", "compaction"], "the new incarnation's pools replace the old one's");
    assert_eq!(nodes[0].resource_id, "r1", "and so does its resource");
    let retired =
        h.store.run("list retired data nodes", async |db| db.list_retired_data_nodes(&h.cluster).await).await.unwrap();
    assert_eq!(retired, [("dn2".to_owned(), "i1".to_owned())], "a retired incarnation is remembered");
    // Registering again, under a new incarnation, forgets the retired one.
    let mut tx = h.store.begin_guarded(&guard).await.unwrap();
    tx.run(async |db| db.upsert_data_node(&h.cluster, "dn2", "i2", "127.0.0.1:7502", &[], "").await).await.unwrap();
    tx.commit().await.unwrap();
    assert!(
        h.store
            .run("list retired data nodes", async |db| db.list_retired_data_nodes(&h.cluster).await)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(h.store.run("list data nodes", async |db| db.list_data_nodes(&h.cluster).await).await.unwrap().len(), 2);
}

async fn tombstones_are_kept_once_and_forgotten(h: Harness) {
    let guard = WriteGuard::Standalone;
    let mut tx = h.store.begin_guarded(&guard).await.unwrap();
    tx.run(async |db| db.put_tombstone(&h.cluster, "dn1", "i1").await).await.unwrap();
    tx.run(async |db| db.put_tombstone(&h.cluster, "dn1", "i1").await).await.unwrap();
    tx.run(async |db| db.put_tombstone(&h.cluster, "dn1", "i2").await).await.unwrap();
    tx.commit().await.unwrap();
    let listed = h.store.run("list tombstones", async |db| db.list_tombstones(&h.cluster).await).await.unwrap();
    assert_eq!(listed, [("dn1".to_owned(), "i1".to_owned()), ("dn1".to_owned(), "i2".to_owned())]);
    let mut tx = h.store.begin_guarded(&guard).await.unwrap();
    assert!(tx.run(async |db| db.delete_tombstone(&h.cluster, "dn1", "i1").await).await.unwrap());
    assert!(!tx.run(async |db| db.delete_tombstone(&h.cluster, "dn1", "i1").await).await.unwrap(), "already gone");
    drop(tx);
    assert_eq!(
        h.store.run("list tombstones", async |db| db.list_tombstones(&h.cluster).await).await.unwrap().len(),
        2,
        "an uncommitted delete leaves both"
    );
    assert!(
        h.store
            .run("list released tombstones", async |db| db.list_released_tombstones(&h.cluster).await)
            .await
            .unwrap()
            .is_empty()
    );
    let mut tx = h.store.begin_guarded(&guard).await.unwrap();
    assert!(tx.run(async |db| db.mark_tombstone_released(&h.cluster, "dn1", "i2").await).await.unwrap());
    assert!(!tx.run(async |db| db.mark_tombstone_released(&h.cluster, "dn1", "nope").await).await.unwrap());
    tx.commit().await.unwrap();
    assert_eq!(
        h.store
            .run("list released tombstones", async |db| db.list_released_tombstones(&h.cluster).await)
            .await
            .unwrap(),
        [("dn1".to_owned(), "i2".to_owned())]
    );
    let left = async || h.store.run("list left tombstones", async |db| db.list_left_tombstones(&h.cluster).await).await;
    assert!(left().await.unwrap().is_empty(), "a tombstone is lost unless marked");
    let mut tx = h.store.begin_guarded(&guard).await.unwrap();
    assert!(tx.run(async |db| db.mark_tombstone_left(&h.cluster, "dn1", "i2").await).await.unwrap());
    assert!(!tx.run(async |db| db.mark_tombstone_left(&h.cluster, "dn1", "nope").await).await.unwrap());
    tx.commit().await.unwrap();
    assert_eq!(left().await.unwrap(), [("dn1".to_owned(), "i2".to_owned())]);
}

async fn settings_are_written_and_read_back(h: Harness) {
    assert_eq!(
        h.store.run("read setting", async |db| db.read_setting(&h.cluster, "lease_fence_ms").await).await.unwrap(),
        None
    );
    for value in ["15000", "3000"] {
        let mut tx = h.store.begin_guarded(&WriteGuard::Standalone).await.unwrap();
        tx.run(async |db| db.write_setting(&h.cluster, "lease_fence_ms", value).await).await.unwrap();
        assert_eq!(
            tx.run(async |db| db.read_setting(&h.cluster, "lease_fence_ms").await).await.unwrap().as_deref(),
            Some(value)
        );
        tx.commit().await.unwrap();
        assert_eq!(
            h.store
                .run("read setting", async |db| db.read_setting(&h.cluster, "lease_fence_ms").await)
                .await
                .unwrap()
                .as_deref(),
            Some(value)
        );
    }
}

async fn the_catalog_is_read_with_the_version_it_is_at(h: Harness) {
    h.store.run("create version row", async |db| db.ensure_metadata_rows(&h.cluster).await).await.unwrap();
    let mut tx = h.store.begin_guarded(&WriteGuard::Standalone).await.unwrap();
    let version = tx.run(async |db| db.append_change(&h.cluster, "catalog", &[1], 10).await).await.unwrap();
    let database =
        StoredObject { kind: "database".into(), database: "db".into(), name: String::new(), payload: vec![1], version };
    tx.run(async |db| db.put_object(&h.cluster, &database).await).await.unwrap();
    tx.commit().await.unwrap();
    let (read_version, objects) =
        h.store.run("read versioned catalog", async |db| db.versioned_objects(&h.cluster).await).await.unwrap();
    assert_eq!((read_version, objects.len()), (version, 1));
    // The connection went back to the pool with its read transaction ended: a write follows.
    let mut tx = h.store.begin_guarded(&WriteGuard::Standalone).await.unwrap();
    let next = tx.run(async |db| db.append_change(&h.cluster, "catalog", &[2], 10).await).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(
        h.store.run("read versioned catalog", async |db| db.versioned_objects(&h.cluster).await).await.unwrap().0,
        next
    );
}

async fn catalog_objects_are_put_replaced_and_removed(h: Harness) {
    let object = |kind: &str, database: &str, name: &str, payload: u8, version: u64| StoredObject {
        kind: kind.into(),
        database: database.into(),
        name: name.into(),
        payload: vec![payload],
        version,
    };
    let mut tx = h.store.begin_guarded(&WriteGuard::Standalone).await.unwrap();
    tx.run(async |db| db.put_object(&h.cluster, &object("database", "db", "", 1, 1)).await).await.unwrap();
    tx.run(async |db| db.put_object(&h.cluster, &object("table", "db", "t", 2, 2)).await).await.unwrap();
    tx.run(async |db| db.put_object(&h.cluster, &object("view", "db", "v", 3, 3)).await).await.unwrap();
    tx.run(async |db| db.put_object(&h.cluster, &object("database", "other", "", 4, 4)).await).await.unwrap();
    tx.commit().await.unwrap();
    let mut tx = h.store.begin_guarded(&WriteGuard::Standalone).await.unwrap();
    tx.run(async |db| db.put_object(&h.cluster, &object("table", "db", "t", 9, 5)).await).await.unwrap();
    tx.commit().await.unwrap();
    let listed = h.store.run("list catalog", async |db| db.list_objects(&h.cluster).await).await.unwrap();
    let kinds: Vec<_> = listed.iter().map(|o| (o.kind.as_str(), o.database.as_str(), o.name.as_str())).collect();
    assert_eq!(kinds, [("database", "db", ""), ("database", "other", ""), ("table", "db", "t"), ("view", "db", "v")]);
    assert_eq!((listed[2].payload.clone(), listed[2].version), (vec![9], 5), "replaced");
    let mut tx = h.store.begin_guarded(&WriteGuard::Standalone).await.unwrap();
    tx.run(async |db| db.remove_object(&h.cluster, "view", "db", "v").await).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(h.store.run("list catalog", async |db| db.list_objects(&h.cluster).await).await.unwrap().len(), 3);
    let mut tx = h.store.begin_guarded(&WriteGuard::Standalone).await.unwrap();
    tx.run(async |db| db.remove_database_objects(&h.cluster, "db").await).await.unwrap();
    tx.commit().await.unwrap();
    let left: Vec<_> = h
        .store
        .run("list catalog", async |db| db.list_objects(&h.cluster).await)
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.database)
        .collect();
    assert_eq!(left, ["other"]);
}

/// A running procedure row, as a leader first writes it.
fn procedure(id: u64, request_id: Option<&str>) -> ProcedureRow {
    ProcedureRow {
        id,
        kind: DdlKind::CreateTable.into(),
        target: "db.t".into(),
        step: Step::Prepared.into(),
        state: State::Running.into(),
        error: String::new(),
        request_id: request_id.map(Into::into),
        request: vec![1, 2, 3],
        term: 1,
        created_at_ms: 0,
        updated_at_ms: 0,
        result_version: 0,
    }
}

async fn procedures_move_on_and_request_ids_are_unique(h: Harness) {
    let mut tx = h.store.begin_guarded(&WriteGuard::Standalone).await.unwrap();
    tx.run(async |db| db.insert_procedure(&h.cluster, &procedure(1, Some("r1"))).await).await.unwrap();
    tx.run(async |db| db.insert_procedure(&h.cluster, &procedure(2, None)).await).await.unwrap();
    tx.run(async |db| db.insert_procedure(&h.cluster, &procedure(3, None)).await).await.unwrap();
    tx.commit().await.unwrap();
    let mut tx = h.store.begin_guarded(&WriteGuard::Standalone).await.unwrap();
    assert!(
        tx.run(async |db| db.insert_procedure(&h.cluster, &procedure(4, Some("r1"))).await).await.is_err(),
        "a request id is used once"
    );
    drop(tx);
    let mut tx = h.store.begin_guarded(&WriteGuard::Standalone).await.unwrap();
    assert!(
        tx.run(async |db| db.update_procedure(&h.cluster, 1, Step::Done, State::Succeeded, "").await).await.unwrap()
    );
    assert!(
        !tx.run(async |db| db.update_procedure(&h.cluster, 99, Step::Done, State::Succeeded, "").await).await.unwrap()
    );
    tx.commit().await.unwrap();
    let found = h
        .store
        .run("read procedure", async |db| db.procedure_by_request(&h.cluster, "r1").await)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (found.id, found.step, found.state, found.request.clone()),
        (1, Stored::Known(Step::Done), Stored::Known(State::Succeeded), vec![1, 2, 3])
    );
    assert!(found.updated_at_ms >= found.created_at_ms && found.created_at_ms > 0);
    assert!(
        h.store
            .run("read procedure", async |db| db.procedure_by_request(&h.cluster, "nope").await)
            .await
            .unwrap()
            .is_none()
    );
    let running: Vec<_> = h
        .store
        .run("list procedures", async |db| db.list_procedures(&h.cluster, Some(State::Running), 10).await)
        .await
        .unwrap()
        .into_iter()
        .map(|p| p.id)
        .collect();
    assert_eq!(running, [3, 2], "newest first");
    assert_eq!(
        h.store.run("list procedures", async |db| db.list_procedures(&h.cluster, None, 2).await).await.unwrap().len(),
        2
    );
    assert_eq!(
        h.store
            .run("read procedure", async |db| db.get_procedure(&h.cluster, 2).await)
            .await
            .unwrap()
            .unwrap()
            .request_id,
        None
    );
}

async fn a_procedure_error_longer_than_any_column_is_kept_cut(h: Harness) {
    // An error naming many nodes, with a multi-byte character across the cut.
    let long = format!("{}é{}", "n".repeat(leasehold_store::catalog::MAX_PROCEDURE_ERROR_LEN - 1), "x".repeat(5000));
    let row = ProcedureRow { kind: DdlKind::DropTable.into(), error: long.clone(), ..procedure(1, None) };
    let mut tx = h.store.begin_guarded(&WriteGuard::Standalone).await.unwrap();
    tx.run(async |db| db.insert_procedure(&h.cluster, &row).await)
        .await
        .expect("a long error does not fail the insert");
    assert!(
        tx.run(async |db| db.update_procedure(&h.cluster, 1, Step::Done, State::RolledBack, &long).await)
            .await
            .expect("nor the update")
    );
    tx.commit().await.unwrap();
    let stored =
        h.store.run("read procedure", async |db| db.get_procedure(&h.cluster, 1).await).await.unwrap().unwrap().error;
    assert_eq!(stored, "n".repeat(leasehold_store::catalog::MAX_PROCEDURE_ERROR_LEN - 1), "cut before the character");
}

async fn a_finished_procedure_keeps_the_version_it_finished_at(h: Harness) {
    let row = procedure(4, Some("r"));
    let mut tx = h.store.begin_guarded(&WriteGuard::Standalone).await.unwrap();
    tx.run(async |db| db.insert_procedure(&h.cluster, &row).await).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(
        h.store
            .run("read procedure", async |db| db.get_procedure(&h.cluster, 4).await)
            .await
            .unwrap()
            .unwrap()
            .result_version,
        0,
        "running"
    );
    let mut tx = h.store.begin_guarded(&WriteGuard::Standalone).await.unwrap();
    assert!(
        tx.run(async |db| db.finish_procedure(&h.cluster, 4, Step::Done, State::Succeeded, "", 6).await).await.unwrap()
    );
    tx.commit().await.unwrap();
    let finished = h
        .store
        .run("read procedure", async |db| db.procedure_by_request(&h.cluster, "r").await)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((finished.state, finished.result_version), (Stored::Known(State::Succeeded), 6));
}

/// A newer version may write names this one does not know (a rolling upgrade): each such row
/// reads with its text kept, and every other row still reads.
async fn procedures_with_unknown_names_read_without_hiding_the_others(h: Harness) {
    let rows = [
        procedure(1, None),
        ProcedureRow { step: Stored::Unknown("validating".into()), ..procedure(2, None) },
        ProcedureRow { state: Stored::Unknown("paused".into()), ..procedure(3, None) },
        ProcedureRow { kind: Stored::Unknown("rename_table".into()), ..procedure(4, None) },
    ];
    let mut tx = h.store.begin_guarded(&WriteGuard::Standalone).await.unwrap();
    for row in &rows {
        tx.run(async |db| db.insert_procedure(&h.cluster, row).await).await.unwrap();
    }
    tx.commit().await.unwrap();
    let mut listed =
        h.store.run("list procedures", async |db| db.list_procedures(&h.cluster, None, 10).await).await.unwrap();
    listed.iter_mut().for_each(|row| (row.created_at_ms, row.updated_at_ms) = (0, 0));
    let expected: Vec<_> = rows.iter().rev().cloned().collect();
    assert_eq!(listed, expected, "every row reads, the unknown names as stored");
    let running = h
        .store
        .run("list procedures", async |db| db.list_procedures(&h.cluster, Some(State::Running), 10).await)
        .await
        .unwrap();
    let steps: Vec<_> = running.iter().map(|row| (row.id, row.step.as_str())).collect();
    assert_eq!(steps, [(4, "prepared"), (2, "validating"), (1, "prepared")], "the paused one is not running");
    let paused =
        h.store.run("read procedure", async |db| db.get_procedure(&h.cluster, 3).await).await.unwrap().unwrap();
    assert_eq!(paused.state, Stored::Unknown("paused".into()));
}

fn assignment(pool: &str, bucket: u32, owner: (&str, &str), epoch: u64, revoke_version: Option<u64>) -> AssignmentRow {
    AssignmentRow {
        pool: pool.into(),
        bucket,
        node_id: owner.0.into(),
        incarnation: owner.1.into(),
        epoch,
        revoke_version,
    }
}

async fn pools_are_created_once_listed_and_deleted_with_their_buckets(h: Harness) {
    let mut tx = h.store.begin_guarded(&WriteGuard::Standalone).await.unwrap();
    assert!(tx.run(async |db| db.create_pool(&h.cluster, "ingest", 64).await).await.unwrap());
    assert!(tx.run(async |db| db.create_pool(&h.cluster, "compaction", 65_536).await).await.unwrap());
    assert!(
        !tx.run(async |db| db.create_pool(&h.cluster, "ingest", 8).await).await.unwrap(),
        "a second create changes nothing"
    );
    tx.run(async |db| db.put_assignment(&h.cluster, &assignment("ingest", 3, ("dn1", "i1"), 1, None)).await)
        .await
        .unwrap();
    tx.run(async |db| db.put_assignment(&h.cluster, &assignment("compaction", 0, ("dn2", "i2"), 4, None)).await)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let pools = h.store.run("list pools", async |db| db.list_pools(&h.cluster).await).await.unwrap();
    let listed: Vec<(&str, u32)> = pools.iter().map(|pool| (pool.name.as_str(), pool.bucket_count)).collect();
    assert_eq!(listed, [("compaction", 65_536), ("ingest", 64)]);

    assert!(pools.iter().all(|pool| !pool.deleting));

    let mut tx = h.store.begin_guarded(&WriteGuard::Standalone).await.unwrap();
    assert!(tx.run(async |db| db.mark_pool_deleting(&h.cluster, "ingest").await).await.unwrap());
    assert!(!tx.run(async |db| db.mark_pool_deleting(&h.cluster, "nope").await).await.unwrap());
    tx.commit().await.unwrap();
    let pools = h.store.run("list pools", async |db| db.list_pools(&h.cluster).await).await.unwrap();
    assert!(pools.iter().find(|pool| pool.name == "ingest").unwrap().deleting, "{pools:?}");

    let mut tx = h.store.begin_guarded(&WriteGuard::Standalone).await.unwrap();
    assert!(tx.run(async |db| db.delete_pool(&h.cluster, "ingest").await).await.unwrap());
    assert!(!tx.run(async |db| db.delete_pool(&h.cluster, "ingest").await).await.unwrap(), "already gone");
    tx.commit().await.unwrap();
    let pools = h.store.run("list pools", async |db| db.list_pools(&h.cluster).await).await.unwrap();
    assert_eq!(pools.iter().map(|pool| pool.name.as_str()).collect::<Vec<_>>(), ["compaction"]);
    let left = h.store.run("list assignments", async |db| db.list_assignments(&h.cluster).await).await.unwrap();
    assert_eq!(
        left,
        [assignment("compaction", 0, ("dn2", "i2"), 4, None), assignment("ingest", 3, ("dn1", "i1"), 1, None)],
        "a deleted pool's bucket rows stay, keeping their epochs for a pool created again"
    );
}

async fn a_bucket_is_revoked_released_and_granted_again_keeping_its_epoch(h: Harness) {
    let write = |row: AssignmentRow| {
        let (store, cluster) = (h.store.clone(), h.cluster.clone());
        async move {
            let mut tx = store.begin_guarded(&WriteGuard::Standalone).await.unwrap();
            tx.run(async |db| db.put_assignment(&cluster, &row).await).await.unwrap();
            tx.commit().await.unwrap();
        }
    };
    let mut tx = h.store.begin_guarded(&WriteGuard::Standalone).await.unwrap();
    assert!(tx.run(async |db| db.create_pool(&h.cluster, "p", 4).await).await.unwrap());
    tx.commit().await.unwrap();
    write(assignment("p", 2, ("dn1", "i1"), 1, None)).await;
    write(assignment("p", 2, ("dn1", "i1"), 1, Some(u64::from(u32::MAX) + 7))).await;
    assert_eq!(
        h.store.run("list assignments", async |db| db.list_assignments(&h.cluster).await).await.unwrap(),
        [assignment("p", 2, ("dn1", "i1"), 1, Some(u64::from(u32::MAX) + 7))]
    );
    write(assignment("p", 2, ("", ""), 1, None)).await;
    assert_eq!(
        h.store.run("list assignments", async |db| db.list_assignments(&h.cluster).await).await.unwrap(),
        [assignment("p", 2, ("", ""), 1, None)],
        "released, the epoch stays"
    );
    write(assignment("p", 2, ("dn2", "i2"), 2, None)).await;
    write(assignment("p", 0, ("dn2", "i2"), 1, None)).await;
    assert_eq!(
        h.store.run("list assignments", async |db| db.list_assignments(&h.cluster).await).await.unwrap(),
        [assignment("p", 0, ("dn2", "i2"), 1, None), assignment("p", 2, ("dn2", "i2"), 2, None)],
        "by pool and bucket"
    );
}

async fn a_deposed_leader_cannot_create_a_pool_or_move_a_bucket(h: Harness) {
    let a = h.holder("a");
    assert_eq!(h.acquire(&a, SHORT).await, Some(1));
    let a_guard = WriteGuard::Term(h.guard(&a, 1));
    let mut tx = h.store.begin_guarded(&a_guard).await.unwrap();
    assert!(tx.run(async |db| db.create_pool(&h.cluster, "p", 4).await).await.unwrap());
    tx.run(async |db| db.put_assignment(&h.cluster, &assignment("p", 0, ("dn1", "i1"), 1, None)).await).await.unwrap();
    tx.commit().await.unwrap();
    let expired = h.until_expired().await;
    assert_eq!(
        h.store
            .run("acquire lease", async |db| db.try_acquire(&h.cluster, &expired, &h.holder("b"), LONG).await)
            .await
            .unwrap(),
        Some(2)
    );
    let refused = h.store.begin_guarded(&a_guard).await.unwrap_err();
    assert!(matches!(refused, StoreError::StaleTerm { term: 1 }), "{refused}");
    assert_eq!(
        h.store.run("list assignments", async |db| db.list_assignments(&h.cluster).await).await.unwrap(),
        [assignment("p", 0, ("dn1", "i1"), 1, None)]
    );
}

fn group(name: &str, container: &str, min_members: u32) -> GroupRow {
    GroupRow {
        name: name.to_owned(),
        container: container.to_owned(),
        min_members,
        properties: [("port".to_owned(), "75\n01".to_owned())].into_iter().collect(),
        created_at_ms: 0,
    }
}

async fn resource(h: &Harness, id: &str) -> ResourceRow {
    h.store.run("get resource", async |db| db.get_resource(&h.cluster, id).await).await.unwrap().expect("resource")
}

async fn groups_and_resources_are_created_once_listed_and_deleted(h: Harness) {
    let mut tx = h.store.begin_guarded(&WriteGuard::Standalone).await.unwrap();
    assert!(tx.run(async |db| db.create_group(&h.cluster, &group("ingest", "local", 3)).await).await.unwrap());
    assert!(!tx.run(async |db| db.create_group(&h.cluster, &group("ingest", "other", 1)).await).await.unwrap());
    let properties = [("port".to_owned(), "7501".to_owned())].into_iter().collect();
    assert!(
        tx.run(async |db| db.create_resource(&h.cluster, "dn1", "ingest", "local", &properties, "a1").await)
            .await
            .unwrap()
    );
    assert!(
        !tx.run(async |db| db.create_resource(&h.cluster, "dn1", "ingest", "local", &properties, "a9").await)
            .await
            .unwrap(),
        "a second create changes nothing"
    );
    tx.commit().await.unwrap();
    let groups = h.store.run("list groups", async |db| db.list_groups(&h.cluster).await).await.unwrap();
    assert_eq!(groups.len(), 1);
    assert_eq!((groups[0].container.as_str(), groups[0].min_members), ("local", 3));
    assert_eq!(groups[0].properties, group("x", "y", 0).properties, "properties keep their line breaks");
    let created = resource(&h, "dn1").await;
    assert_eq!((created.attempts, created.attempt_id.as_str(), created.state), (0, "a1", ResourceState::Active));
    assert!(created.start_pending(), "its first start is asked for");
    assert_eq!(created.last_attempt_ms, created.start_time_ms, "creating it is its first start");
    assert_eq!(created.properties, properties);

    let mut tx = h.store.begin_guarded(&WriteGuard::Standalone).await.unwrap();
    assert!(tx.run(async |db| db.mark_cleaning(&h.cluster, "dn1").await).await.unwrap());
    assert!(tx.run(async |db| db.delete_resource(&h.cluster, "dn1").await).await.unwrap());
    assert!(!tx.run(async |db| db.delete_resource(&h.cluster, "dn1").await).await.unwrap(), "gone already");
    assert!(tx.run(async |db| db.delete_group(&h.cluster, "ingest").await).await.unwrap());
    tx.commit().await.unwrap();
    assert!(h.store.run("list resources", async |db| db.list_resources(&h.cluster).await).await.unwrap().is_empty());
    assert!(h.store.run("list groups", async |db| db.list_groups(&h.cluster).await).await.unwrap().is_empty());
}

async fn an_attempt_is_claimed_once_and_a_superseded_one_is_not_recorded(h: Harness) {
    let mut tx = h.store.begin_guarded(&WriteGuard::Standalone).await.unwrap();
    tx.run(async |db| db.create_resource(&h.cluster, "dn1", "g", "local", &Default::default(), "a1").await)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let claim = |attempt: &'static str| {
        let (store, cluster) = (h.store.clone(), h.cluster.clone());
        async move { store.run("claim start", async |db| db.claim_start(&cluster, "dn1", attempt).await).await.unwrap() }
    };
    assert!(claim("a1").await);
    assert!(!claim("a1").await, "one attempt is started once");
    assert!(!resource(&h, "dn1").await.start_pending());
    let process = [("pid".to_owned(), "42".to_owned())].into_iter().collect();
    assert!(
        h.store
            .run("record start", async |db| db.record_start(&h.cluster, "dn1", "a1", &process, "").await)
            .await
            .unwrap()
    );
    let first = resource(&h, "dn1").await;

    // The leader records attempt 1 (a2); a1's late outcome is not recorded any more.
    let mut tx = h.store.begin_guarded(&WriteGuard::Standalone).await.unwrap();
    assert!(tx.run(async |db| db.record_attempt(&h.cluster, "dn1", 1, "a2").await).await.unwrap());
    tx.commit().await.unwrap();
    assert!(
        !h.store
            .run("record start", async |db| db.record_start(&h.cluster, "dn1", "a1", &Default::default(), "late").await)
            .await
            .unwrap()
    );
    assert!(!claim("a1").await, "a superseded attempt is never started");
    let restarted = resource(&h, "dn1").await;
    assert_eq!((restarted.attempts, restarted.attempt_id.as_str()), (1, "a2"));
    assert!(restarted.start_pending());
    assert_eq!(restarted.start_time_ms, first.start_time_ms, "a restart keeps the start time");
    assert!(restarted.last_attempt_ms >= first.last_attempt_ms);
    assert_eq!(restarted.process, process, "the old process is known until the new one is recorded");

    let mut tx = h.store.begin_guarded(&WriteGuard::Standalone).await.unwrap();
    assert!(tx.run(async |db| db.reset_attempts(&h.cluster, "dn1").await).await.unwrap());
    tx.commit().await.unwrap();
    assert_eq!(resource(&h, "dn1").await.attempts, 0);

    // Cleaning: no attempt is recorded or claimed any more; the stop is.
    let mut tx = h.store.begin_guarded(&WriteGuard::Standalone).await.unwrap();
    assert!(tx.run(async |db| db.mark_cleaning(&h.cluster, "dn1").await).await.unwrap());
    assert!(!tx.run(async |db| db.record_attempt(&h.cluster, "dn1", 2, "a3").await).await.unwrap());
    tx.commit().await.unwrap();
    assert!(!claim("a2").await);
    assert!(h.store.run("record stop", async |db| db.record_stop(&h.cluster, "dn1", true, "").await).await.unwrap());
    let cleaning = resource(&h, "dn1").await;
    assert_eq!((cleaning.state, cleaning.stopped), (ResourceState::Cleaning, true));
}

async fn a_deposed_leader_cannot_count_an_attempt(h: Harness) {
    let a = h.holder("a");
    assert_eq!(h.acquire(&a, SHORT).await, Some(1));
    let a_guard = WriteGuard::Term(h.guard(&a, 1));
    let mut tx = h.store.begin_guarded(&a_guard).await.unwrap();
    tx.run(async |db| db.create_resource(&h.cluster, "dn1", "g", "local", &Default::default(), "a1").await)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let expired = h.until_expired().await;
    h.store
        .run("acquire lease", async |db| db.try_acquire(&h.cluster, &expired, &h.holder("b"), LONG).await)
        .await
        .unwrap();
    let refused = h.store.begin_guarded(&a_guard).await.unwrap_err();
    assert!(matches!(refused, StoreError::StaleTerm { term: 1 }), "{refused}");
    assert_eq!(resource(&h, "dn1").await.attempts, 0);
}

macro_rules! conformance {
    ($backend:ident: $($test:ident),* $(,)?) => {
        mod $backend {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    if let Some(harness) = super::Harness::open(stringify!($backend)).await {
                        super::$test(harness).await;
                    }
                }
            )*
        }
    };
}

macro_rules! every_backend {
    ($($test:ident),* $(,)?) => {
        conformance!(sqlite: $($test),*);
        conformance!(postgres: $($test),*);
        conformance!(mysql: $($test),*);
    };
}

every_backend!(
    pools_are_created_once_listed_and_deleted_with_their_buckets,
    groups_and_resources_are_created_once_listed_and_deleted,
    an_attempt_is_claimed_once_and_a_superseded_one_is_not_recorded,
    a_deposed_leader_cannot_count_an_attempt,
    a_bucket_is_revoked_released_and_granted_again_keeping_its_epoch,
    a_deposed_leader_cannot_create_a_pool_or_move_a_bucket,
    a_finished_procedure_keeps_the_version_it_finished_at,
    the_catalog_is_read_with_the_version_it_is_at,
    acquire_when_free,
    an_acquire_that_timed_out_does_not_commit_once_the_lock_is_free,
    no_acquire_while_held,
    takeover_after_expiry_increments_the_term,
    an_acquire_against_an_old_version_fails,
    sixteen_concurrent_acquirers_produce_one_winner_per_term,
    a_guarded_write_with_an_old_term_is_rejected_after_a_takeover,
    an_uncommitted_guarded_write_leaves_nothing,
    release_lets_the_next_acquirer_in_at_once,
    node_registry_claims_refreshes_and_stops,
    only_a_stopped_or_silent_node_is_removed,
    store_epoch_is_written_once,
    migrations_are_safe_to_run_concurrently_and_again,
    migrations_wait_out_another_holder_of_the_migration_lock,
    the_store_clock_has_millisecond_resolution,
    a_lock_held_by_a_guarded_write_delays_an_acquire_until_commit,
    versions_follow_commit_order_and_old_changes_are_trimmed,
    concurrent_writers_get_distinct_consecutive_versions,
    a_change_under_an_old_term_is_refused,
    data_nodes_register_replace_and_deregister,
    tombstones_are_kept_once_and_forgotten,
    settings_are_written_and_read_back,
    catalog_objects_are_put_replaced_and_removed,
    procedures_move_on_and_request_ids_are_unique,
    a_procedure_error_longer_than_any_column_is_kept_cut,
    procedures_with_unknown_names_read_without_hiding_the_others,
);
