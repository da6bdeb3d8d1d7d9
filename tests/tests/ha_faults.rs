//! Node HA under faults, against the real binary on every store backend: SIGKILL,
//! SIGTERM, SIGSTOP/SIGCONT, a deposed leader's write, a leader frozen while it holds the
//! lease row's lock, and a store that stops answering. The invariant "one acting leader per
//! term" is checked by polling every node throughout.

use std::time::Duration;

use leasehold::status::{error_reason, reason};
use leasehold::v1::cluster_client::ClusterClient;
use leasehold::v1::{HaRole, ListHaStatesRequest, SetPriorityRequest};
use leasehold_tests::store::Kind;
use leasehold_tests::{LeaderObserver, TestCluster, TestStore, eventually, phase, serial};
use sqlx::{AnyConnection, Connection, Row};
use tokio::time::Instant;
use tonic::Code;
use tonic::transport::Endpoint;

const BIN: &str = env!("CARGO_BIN_EXE_leasehold-test-node");
const ELECTION: Duration = Duration::from_secs(15);

async fn three_coordinators(kind: Kind, env: &[(&str, &str)]) -> Option<TestCluster> {
    let store = TestStore::of(kind)?;
    let mut cluster = TestCluster::new(BIN, store);
    phase(&format!("start three coordinators on {kind:?}"));
    for node_id in ["c1", "c2", "c3"] {
        cluster.start(node_id, &[], env).await;
    }
    Some(cluster)
}

/// A client whose calls may outlast a failover.
fn patient_client(address: &str) -> ClusterClient<tonic::transport::Channel> {
    let channel = Endpoint::from_shared(format!("http://{address}"))
        .expect("address")
        .timeout(Duration::from_secs(60))
        .connect_lazy();
    ClusterClient::new(channel)
}

async fn failover_after_sigkill_and_sigterm(kind: Kind) {
    let _serial = serial().await;
    let Some(mut cluster) = three_coordinators(kind, &[]).await else {
        return;
    };
    let observer = LeaderObserver::start(cluster.endpoints());
    let (first, first_term) = cluster.leader(ELECTION).await;

    phase(&format!("SIGKILL the leader {first} (term {first_term})"));
    let killed_at = Instant::now();
    cluster.node_mut(&first).kill();
    let (second, second_term, seen) = cluster.leader_above(first_term, ELECTION).await;
    let failover = seen - killed_at;
    let timings = cluster.timings.clone();
    let bound = timings.lease_ttl + timings.renew_interval + Duration::from_secs(1);
    eprintln!("failover after SIGKILL on {kind:?}: {failover:?} (bound {bound:?})");
    assert!(failover <= bound, "{second} took over after {failover:?}, more than {bound:?}");

    phase(&format!("SIGTERM the leader {second} (term {second_term})"));
    let stopped_at = Instant::now();
    cluster.node(&second).terminate();
    let (third, third_term, seen) = cluster.leader_above(second_term, ELECTION).await;
    let handover = seen - stopped_at;
    eprintln!("handover after SIGTERM on {kind:?}: {handover:?}");
    assert!(handover <= Duration::from_secs(1), "{third} took over after {handover:?}");
    let status = cluster.node_mut(&second).wait_exit(Duration::from_secs(10)).await.expect("exits after SIGTERM");
    assert!(status.success(), "graceful stop exits 0, got {status}");
    let released = "released the lease so that a successor can take over at once";
    cluster.node(&second).wait_events(released, 1, Duration::from_secs(5)).await;

    phase("check one leader per term");
    assert_eq!(observer.leader_of(third_term, Duration::from_secs(5)).await, third);
    let (_, samples) = observer.check();
    assert!(samples > 50, "the observer sampled only {samples} answers");
    let logged = cluster.terms_from_logs();
    assert_eq!(logged.get(&second_term), Some(&second));
    assert_eq!(logged.get(&third_term), Some(&third));
}

async fn a_paused_leader_reports_follower_after_resuming(kind: Kind) {
    let _serial = serial().await;
    let Some(mut cluster) = three_coordinators(kind, &[]).await else {
        return;
    };
    let observer = LeaderObserver::start(cluster.endpoints());
    let (leader, term) = cluster.leader(ELECTION).await;
    assert_eq!(observer.leader_of(term, Duration::from_secs(5)).await, leader);

    phase(&format!("SIGSTOP the leader {leader} past its lease"));
    cluster.node(&leader).pause();
    let (successor, successor_term, _) = cluster.leader_above(term, ELECTION).await;
    assert_ne!(successor, leader);

    phase("SIGCONT: its first answer must already say follower");
    cluster.node(&leader).resume();
    let node = cluster.node(&leader);
    let state =
        eventually("the resumed node answers", Duration::from_secs(10), || async move { node.state().await.ok() })
            .await;
    assert_eq!(state.role, HaRole::Follower as i32, "the resumed node reported {state:?}");
    node.wait_events("stepped down", 1, Duration::from_secs(10)).await;

    phase("check one leader per term");
    assert_eq!(observer.leader_of(successor_term, Duration::from_secs(5)).await, successor);
    observer.assert_one_leader_per_term();
    cluster.terms_from_logs();
}

async fn a_deposed_leader_is_refused_by_the_store_guard(kind: Kind) {
    let _serial = serial().await;
    // Every node holds a leader's guarded write for 1.5 s after its local leadership check.
    let failpoint = [("LEASEHOLD_FAILPOINTS", "ha::before-guarded-write=return(1500)")];
    let Some(mut cluster) = three_coordinators(kind, &failpoint).await else {
        return;
    };
    let observer = LeaderObserver::start(cluster.endpoints());
    let (leader, term) = cluster.leader(ELECTION).await;

    phase(&format!("ask {leader} for a guarded write; it passes its leadership check and waits"));
    let mut client = patient_client(&cluster.node(&leader).grpc);
    let write = tokio::spawn(async move { client.set_priority(SetPriorityRequest { priority: 42 }).await });
    let node = cluster.node(&leader);
    node.wait_events("failpoint reached: pausing", 1, Duration::from_secs(10)).await;

    phase("freeze it until a successor has taken over, then let it write");
    cluster.node(&leader).pause();
    let (successor, _, _) = cluster.leader_above(term, ELECTION).await;
    cluster.node(&leader).resume();
    let refused = write.await.unwrap().expect_err("a deposed leader's write must fail");
    assert_eq!(refused.code(), Code::Unavailable, "{refused:?}");
    assert_eq!(error_reason(&refused).as_deref(), Some(reason::STALE_TERM), "{refused:?}");

    phase("the store shows nothing of the refused write");
    let listed = cluster
        .node(&successor)
        .client()
        .list_ha_states(ListHaStatesRequest {})
        .await
        .expect("the leader lists the registry")
        .into_inner();
    let row = listed.nodes.iter().find(|node| node.node_id == leader).expect("the old leader's row");
    assert_eq!(row.priority, 0, "the refused priority reached the store");
    observer.assert_one_leader_per_term();
}

async fn a_leader_frozen_holding_the_row_lock_does_not_stall_the_election(kind: Kind) {
    let _serial = serial().await;
    let env = [
        ("LEASEHOLD_FAILPOINTS", "ha::inside-guarded-write=return(2000)"),
        ("LEASEHOLD_STORE__IDLE_TRANSACTION_TIMEOUT", "1s"),
        ("LEASEHOLD_STORE__LOCK_TIMEOUT", "300ms"),
        ("LEASEHOLD_STORE__CALL_TIMEOUT", "30s"),
    ];
    let Some(mut cluster) = three_coordinators(kind, &env).await else {
        return;
    };
    let observer = LeaderObserver::start(cluster.endpoints());
    let (leader, term) = cluster.leader(ELECTION).await;

    phase(&format!("{leader} opens a guarded write, locking the lease row, and is frozen there"));
    let mut client = patient_client(&cluster.node(&leader).grpc);
    let write = tokio::spawn(async move { client.set_priority(SetPriorityRequest { priority: 7 }).await });
    let node = cluster.node(&leader);
    node.wait_events("failpoint reached: pausing", 1, Duration::from_secs(10)).await; // it holds the row lock
    let frozen_at = Instant::now();
    cluster.node(&leader).pause();

    let (successor, _, seen) = cluster.leader_above(term, ELECTION).await;
    let stall = seen - frozen_at;
    let bound = cluster.timings.lease_ttl + Duration::from_secs(1) + Duration::from_millis(1500);
    eprintln!("election with the lease row locked by a frozen leader on {kind:?}: {stall:?} (bound {bound:?})");
    assert!(stall <= bound, "{successor} took over only after {stall:?}");

    cluster.node(&leader).resume();
    let answer = write.await.unwrap();
    assert!(answer.is_err(), "the frozen leader's write must not succeed: {answer:?}");
    observer.assert_one_leader_per_term();
}

async fn an_acquire_whose_answer_was_lost_is_adopted(kind: Kind) {
    let _serial = serial().await;
    // Every node's first winning acquire commits, and its answer is dropped.
    let failpoint = [("LEASEHOLD_FAILPOINTS", "ha::acquire-answer-lost=1*return")];
    let Some(mut cluster) = three_coordinators(kind, &failpoint).await else {
        return;
    };
    let observer = LeaderObserver::start(cluster.endpoints());

    phase("the first acquire wins with its answer lost; its node finds itself in the row and leads that term");
    let (leader, term) = cluster.leader(ELECTION).await;
    // Without adoption the row would name a node acting as no one until the lease expired,
    // and the next acquire would lead term 2.
    assert_eq!(term, 1, "{leader} led term {term}, not the term its lost acquire won");
    let node = cluster.node(&leader);
    let adopted = node
        .wait_events("an acquire whose answer was lost had won: adopted, holding from its earliest send", 1, ELECTION)
        .await;
    assert_eq!(adopted[0]["term"], 1, "{adopted:?}");

    phase("it renews the adopted term like any other, and counts the adoption");
    eventually("the adopted leader renews", ELECTION, || async {
        let body = node.scrape_metrics().await?;
        let renewed = body.lines().any(|line| {
            line.strip_prefix("leasehold_ha_renewals_total{result=\"ok\"} ")
                .is_some_and(|count| count.parse::<f64>().is_ok_and(|count| count >= 1.0))
        });
        let counted = body.lines().any(|line| line == "leasehold_ha_acquire_attempts_total{result=\"adopted\"} 1");
        (renewed && counted).then_some(())
    })
    .await;
    assert_eq!(cluster.leader(ELECTION).await, (leader, 1), "the adopted term ended");
    observer.assert_one_leader_per_term();
}

/// Locks the store the way a stuck store would look to the coordinators, and returns the
/// lease time left on the store's clock at that moment.
async fn lock_the_store(kind: Kind, conn: &mut AnyConnection, cluster: &str) -> Duration {
    let (begin, read) = match kind {
        Kind::Sqlite => (
            "BEGIN IMMEDIATE",
            "SELECT expires_at_ms - CAST(unixepoch('subsec') * 1000 AS INTEGER) FROM ha_lease WHERE cluster = ?",
        ),
        Kind::Postgres => (
            "BEGIN",
            "SELECT expires_at_ms - CAST(floor(extract(epoch FROM clock_timestamp()) * 1000) AS BIGINT) FROM ha_lease WHERE cluster = $1 FOR UPDATE",
        ),
        Kind::MySql => (
            "BEGIN",
            "SELECT expires_at_ms - CAST(FLOOR(UNIX_TIMESTAMP(NOW(6)) * 1000) AS SIGNED) FROM ha_lease WHERE cluster = ? FOR UPDATE",
        ),
    };
    sqlx::raw_sql(begin).execute(&mut *conn).await.expect("begin");
    let row = sqlx::query(read).bind(cluster.to_owned()).fetch_one(&mut *conn).await.expect("read the lease");
    Duration::from_millis(row.try_get::<i64, _>(0).expect("remaining").max(0) as u64)
}

async fn an_unresponsive_store_makes_the_leader_step_down_before_its_lease_expires(kind: Kind) {
    let _serial = serial().await;
    let Some(store) = TestStore::of(kind) else {
        return;
    };
    let mut cluster = TestCluster::new(BIN, store);
    // A wide margin, so that polling over gRPC can see the step-down land before the expiry.
    cluster.timings.lease_ttl = Duration::from_secs(2);
    cluster.timings.renew_interval = Duration::from_millis(400);
    cluster.timings.store_timeout = Duration::from_millis(300);
    cluster.timings.margin = Duration::from_millis(500);
    for node_id in ["c1", "c2"] {
        cluster.start(node_id, &[], &[]).await;
    }
    let observer = LeaderObserver::start(cluster.endpoints());
    let (leader, term) = cluster.leader(ELECTION).await;

    phase("lock the lease row: every renewal now times out");
    let mut conn = cluster.store.connect().await;
    let remaining = lock_the_store(kind, &mut conn, &cluster.cluster).await;
    let locked_at = Instant::now();
    let expiry = locked_at + remaining;

    let node = cluster.node(&leader);
    let stepped_down_at = eventually("the leader steps down", Duration::from_secs(10), || async move {
        match node.state().await {
            Ok(state) if state.role != HaRole::Leader as i32 => Some(Instant::now()),
            _ => None,
        }
    })
    .await;
    eprintln!(
        "store locked on {kind:?}: lease had {remaining:?} left; the leader stepped down after {:?}",
        stepped_down_at - locked_at
    );
    assert!(stepped_down_at < expiry, "the leader still acted {:?} after its lease expired", stepped_down_at - expiry);
    let retries = node.events("lease renewal failed; retrying until the local hold ends").len();
    assert!(retries >= 2, "the leader retried its renewal only {retries} times");

    phase("unlock: the cluster elects again");
    conn.close().await.expect("closing the lock");
    cluster.leader_above(term, ELECTION).await;
    observer.assert_one_leader_per_term();
    cluster.terms_from_logs();
}

macro_rules! on_backends {
    ($scenario:ident: $($backend:ident => $kind:expr),* $(,)?) => {
        mod $scenario {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $backend() {
                    super::$scenario($kind).await;
                }
            )*
        }
    };
}

on_backends!(failover_after_sigkill_and_sigterm: sqlite => Kind::Sqlite, postgres => Kind::Postgres, mysql => Kind::MySql);
on_backends!(a_paused_leader_reports_follower_after_resuming: sqlite => Kind::Sqlite, postgres => Kind::Postgres, mysql => Kind::MySql);
on_backends!(a_deposed_leader_is_refused_by_the_store_guard: sqlite => Kind::Sqlite, postgres => Kind::Postgres, mysql => Kind::MySql);
on_backends!(an_acquire_whose_answer_was_lost_is_adopted: sqlite => Kind::Sqlite, postgres => Kind::Postgres, mysql => Kind::MySql);
// SQLite has no server that could end a frozen process's transaction; see docs/ARCHITECTURE.md.
on_backends!(a_leader_frozen_holding_the_row_lock_does_not_stall_the_election: postgres => Kind::Postgres, mysql => Kind::MySql);
on_backends!(an_unresponsive_store_makes_the_leader_step_down_before_its_lease_expires: sqlite => Kind::Sqlite, postgres => Kind::Postgres, mysql => Kind::MySql);
