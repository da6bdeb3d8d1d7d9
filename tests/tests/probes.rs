//! Metrics and health that tell the truth, against the real binary: what a follower and a
//! leader export and answer, how the coordinator's per-service health follows its role, how
//! an agent's follows its lease, and that no probe hides a node for its role.

use std::time::Duration;

use leasehold::v1::ListDataNodesRequest;
use leasehold::v1::data_nodes_client::DataNodesClient;
use leasehold_tests::process::{ServingStatus, channel};
use leasehold_tests::store::Kind;
use leasehold_tests::{LeaseSettings, Node, TestAgent, TestCluster, TestStore, eventually, phase, serial};
use tokio::time::Instant;
use tonic::Code;

const BIN: &str = env!("CARGO_BIN_EXE_leasehold-test-node");
const ELECTION: Duration = Duration::from_secs(15);

/// The value of the series `series` (its full name and labels) on a scraped page.
fn value(page: &str, series: &str) -> Option<f64> {
    page.lines().find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
}

/// Waits until `node`'s page shows every series of `expected` at its value; answers the page.
async fn metrics_show(node: &Node, what: &str, expected: &[(&str, f64)]) -> String {
    eventually(what, Duration::from_secs(15), || async {
        let page = node.scrape_metrics().await?;
        expected.iter().all(|(series, wanted)| value(&page, series) == Some(*wanted)).then_some(page)
    })
    .await
}

async fn health_is(node: &Node, service: &str, status: ServingStatus) {
    let what = format!("{} reports {service:?} {status:?}", node.node_id);
    eventually(&what, Duration::from_secs(15), || async { (node.health(service).await.ok()? == status).then_some(()) })
        .await;
}

/// Series every node exports from its first scrape: the build, the process, and (for
/// `leasehold_ha_*`) where it stands.
fn assert_build_and_process_metrics(page: &str) {
    let build = page.lines().find(|line| line.starts_with("leasehold_build_info{")).unwrap_or_else(|| panic!("{page}"));
    assert!(build.contains("version=\"") && build.contains("commit=\"") && build.ends_with(" 1"), "{build}");
    for name in ["process_cpu_seconds_total", "process_resident_memory_bytes", "process_open_fds"] {
        assert!(page.contains(&format!("# TYPE {name} ")), "{name} missing:\n{page}");
        assert!(value(page, name).is_some_and(|v| v >= 0.0), "{name}:\n{page}");
    }
    assert!(value(page, "process_resident_memory_bytes").unwrap() > 1e6, "{page}");
    assert!(value(page, "process_open_fds").unwrap() >= 3.0, "{page}");
}

/// A follower (hot-standby) and a leader: the follower exports is_leader 0 and the leader's
/// term, every counter at zero before it moves, status labels by gRPC code name, real
/// histograms; it is live and ready; its health says SERVING for the server, `Cluster` and
/// its reads, NOT_SERVING for the leader-only services, until it leads, when all serve.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_tells_its_role_and_term_and_serves_what_it_can_until_it_leads() {
    let _serial = serial().await;
    let mut cluster = TestCluster::new(BIN, TestStore::sqlite());
    cluster.start("c1", &["--priority", "10"], &[]).await;
    let (leader, term) = cluster.leader(ELECTION).await;
    assert_eq!(leader, "c1");
    cluster.start("c2", &["--ha-mode", "hot-standby"], &[]).await;
    let (c1, c2) = (cluster.node("c1"), cluster.node("c2"));

    phase("the follower: is_leader 0, the leader's term, counters at zero");
    let term_value = term as f64;
    let page = metrics_show(
        c2,
        "c2 shows the leader's term as a follower",
        &[("leasehold_ha_is_leader", 0.0), ("leasehold_ha_term", term_value)],
    )
    .await;
    for series in [
        "leasehold_ha_renewals_total{result=\"ok\"}",
        "leasehold_ha_acquire_attempts_total{result=\"won\"}",
        "leasehold_datanodes_heartbeats_total{result=\"granted\"}",
        "leasehold_broadcast_verdicts_total{verdict=\"proceed\"}",
        "leasehold_ddl_procedures_total{kind=\"create_table\",outcome=\"succeeded\"}",
        "leasehold_ddl_procedures_resumed_total",
        "leasehold_datanodes_evicted_total",
        "leasehold_grpc_requests_total{method=\"CreateTable\",code=\"OK\"}",
        "leasehold_grpc_requests_total{method=\"Heartbeat\",code=\"OK\"}",
    ] {
        assert_eq!(value(&page, series), Some(0.0), "{series} is not at 0 on a follower:\n{page}");
    }
    assert_build_and_process_metrics(&page);
    assert!(!page.contains("leasehold_agent_"), "a coordinator exports no agent metrics:\n{page}");

    phase("status labels are gRPC code names");
    let refused = DataNodesClient::new(channel(&c2.grpc)).list_data_nodes(ListDataNodesRequest {}).await.unwrap_err();
    assert_eq!(refused.code(), Code::Unavailable, "{refused:?}");
    let page = metrics_show(
        c2,
        "c2 counts the refusal",
        &[("leasehold_grpc_requests_total{method=\"ListDataNodes\",code=\"UNAVAILABLE\"}", 1.0)],
    )
    .await;
    assert!(!page.contains("code=\"Unavailable\"") && !page.contains("code=\"Ok\""), "{page}");

    phase("the leader: is_leader 1 and histograms with buckets");
    metrics_show(c1, "c1 shows it leads", &[("leasehold_ha_is_leader", 1.0), ("leasehold_ha_term", term_value)]).await;
    let page = eventually("c1 renews", Duration::from_secs(15), || async {
        let page = c1.scrape_metrics().await?;
        (value(&page, "leasehold_ha_renewals_total{result=\"ok\"}")? >= 1.0).then_some(page)
    })
    .await;
    let renew = "leasehold_ha_renew_duration_seconds";
    assert!(page.contains(&format!("# TYPE {renew} histogram")), "{page}");
    assert!(page.contains(&format!("{renew}_bucket{{le=\"0.001\"}}")), "{page}");
    assert!(page.contains(&format!("{renew}_bucket{{le=\"+Inf\"}}")), "{page}");
    assert!(!page.contains(&format!("{renew}{{quantile=")), "a summary:\n{page}");

    phase("both are live and ready, whatever their role");
    for node in [c1, c2] {
        assert_eq!(node.probe("/healthz").await, Some(200), "{}", node.node_id);
        assert_eq!(node.probe("/readyz").await, Some(200), "{}", node.node_id);
        assert_eq!(node.health("").await.unwrap(), ServingStatus::Serving, "{}", node.node_id);
        assert_eq!(node.health("leasehold.v1.Cluster").await.unwrap(), ServingStatus::Serving);
    }

    phase("per-service health: the leader serves all, the hot follower its reads");
    for service in ["leasehold.v1.DataNodes", "leasehold.v1.Resources", "leasehold.v1.Catalog"] {
        health_is(c1, service, ServingStatus::Serving).await;
    }
    for service in ["leasehold.v1.Catalog", "leasehold.v1.Procedures", "leasehold.v1.Assignments"] {
        health_is(c2, service, ServingStatus::Serving).await;
    }
    for service in ["leasehold.v1.DataNodes", "leasehold.v1.Resources"] {
        health_is(c2, service, ServingStatus::NotServing).await;
    }

    phase("SIGKILL the leader: the follower takes over and its health and metrics follow");
    cluster.node_mut("c1").kill();
    let (leader, new_term, _) = cluster.leader_above(term, ELECTION).await;
    assert_eq!(leader, "c2");
    let c2 = cluster.node("c2");
    for service in ["leasehold.v1.DataNodes", "leasehold.v1.Resources"] {
        health_is(c2, service, ServingStatus::Serving).await;
    }
    metrics_show(
        c2,
        "c2 shows it leads in the new term",
        &[
            ("leasehold_ha_is_leader", 1.0),
            ("leasehold_ha_term", new_term as f64),
            ("leasehold_ha_transitions_total{role=\"leader\",reason=\"acquired\"}", 1.0),
        ],
    )
    .await;
    assert_eq!(c2.probe("/readyz").await, Some(200));
}

/// An agent exports the same HA gauges (never leading; the term it follows), its counters at
/// zero and a heartbeat histogram; its `leasehold.v1.Agent` health is NOT_SERVING while it is
/// fenced and SERVING again once it has resynced, while `/readyz` stays ready (its state was
/// loaded; the fence shows in the health service, not by hiding it); cut off from every
/// coordinator it warns, naming them, at most once per 10 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agents_health_follows_its_lease_and_it_warns_while_it_reaches_no_coordinator() {
    let _serial = serial().await;
    let mut cluster = TestCluster::new(BIN, TestStore::sqlite());
    cluster.timings.lease = Some(LeaseSettings::default());
    cluster.start("c1", &[], &[]).await;
    let (_, term) = cluster.leader(ELECTION).await;
    let agent = TestAgent::start_with_metrics(&mut cluster, "dn1", &[]).await;
    let node = &agent.node;

    phase("leased: SERVING, ready, the gauges and counters");
    health_is(node, "leasehold.v1.Agent", ServingStatus::Serving).await;
    assert_eq!(node.health("").await.unwrap(), ServingStatus::Serving);
    assert_eq!(node.probe("/readyz").await, Some(200));
    let page = metrics_show(
        node,
        "dn1 follows the leader's term",
        &[
            ("leasehold_ha_is_leader", 0.0),
            ("leasehold_ha_term", term as f64),
            ("leasehold_agent_lease_valid", 1.0),
            ("leasehold_agent_fences_total", 0.0),
            ("leasehold_agent_pushes_total{result=\"refused\"}", 0.0),
            ("leasehold_agent_data_drops_total{why=\"resync\"}", 0.0),
        ],
    )
    .await;
    let heartbeat = "leasehold_agent_heartbeat_duration_seconds";
    assert!(page.contains(&format!("{heartbeat}_bucket{{le=\"0.0005\"}}")), "{page}");
    assert!(!page.contains("leasehold_keeper_") && !page.contains("leasehold_ha_renewals_total"), "{page}");
    assert_build_and_process_metrics(&page);

    phase("partitioned: fenced, NOT_SERVING, still live and ready, and a warning");
    let partitioned = Instant::now();
    agent.partition();
    health_is(node, "leasehold.v1.Agent", ServingStatus::NotServing).await;
    assert_eq!(node.health("").await.unwrap(), ServingStatus::Serving, "the process is alive");
    assert_eq!(node.probe("/healthz").await, Some(200));
    assert_eq!(node.probe("/readyz").await, Some(200), "a fence does not hide the agent");
    metrics_show(
        node,
        "dn1 counts its fence",
        &[("leasehold_agent_lease_valid", 0.0), ("leasehold_agent_fences_total", 1.0)],
    )
    .await;
    let warnings = node.wait_events(UNREACHABLE, 1, Duration::from_secs(10)).await;
    let endpoints = warnings[0]["endpoints"].as_str().expect("the endpoints");
    for proxy in &agent.heartbeat_proxies {
        assert!(endpoints.contains(&proxy.address().to_string()), "{endpoints}");
    }
    assert!(warnings[0]["error"].as_str().is_some_and(|error| !error.is_empty()), "{}", warnings[0]);
    // An answer that slipped through before the cut (a stream's last one) counts as reaching a
    // coordinator, and the next failure warns again at once.
    let reached_during_partition = node.events("reached a coordinator again").len();

    phase("healed: SERVING again after its resync");
    agent.heal();
    let partition = partitioned.elapsed();
    health_is(node, "leasehold.v1.Agent", ServingStatus::Serving).await;
    metrics_show(node, "dn1 serves again", &[("leasehold_agent_lease_valid", 1.0)]).await;
    node.wait_events("reached a coordinator again", reached_during_partition + 1, Duration::from_secs(10)).await;
    let page = node.scrape_metrics().await.expect("dn1 serves metrics");
    let failed = value(&page, "leasehold_agent_heartbeats_total{result=\"failed\"}").unwrap_or(0.0) as usize;
    // Heartbeats failed once a second until the fence and beyond: one warning for the first
    // (and after each time a coordinator was reached), then at most one per 10 s, never one per
    // heartbeat.
    let warned = node.events(UNREACHABLE).len();
    let allowed = 1 + reached_during_partition + partition.as_secs() as usize / 10;
    assert!(
        failed >= 2 && warned < failed && warned <= allowed,
        "{warned} warnings, {failed} failed heartbeats in {partition:?}"
    );
}

const UNREACHABLE: &str = "cannot reach any coordinator; still trying (the lease runs out at its fence if this lasts)";

/// PostgreSQL answers the migrations' `IF NOT EXISTS` with a NOTICE at every start; it is not
/// logged at INFO, unless the log level asks for it (which shows the check can fail).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_notices_stay_out_of_the_info_log() {
    let Some(store) = TestStore::of(Kind::Postgres) else { return };
    let _serial = serial().await;
    let mut cluster = TestCluster::new(BIN, store);
    let skipping = |node: &Node| node.output().lines().filter(|line| line.contains("already exists, skipping")).count();

    cluster.start("c1", &[], &[]).await;
    cluster.leader(ELECTION).await;
    assert_eq!(skipping(cluster.node("c1")), 0, "{}", cluster.node("c1").output());

    let loud = cluster.start("c2", &["--log-level", "info,sqlx::postgres::notice=info"], &[]).await;
    assert!(skipping(loud) > 0, "the notice shows when asked for:\n{}", loud.output());
}
