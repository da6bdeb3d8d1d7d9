//! A graceful handoff against the real binary: a leader stopped with SIGTERM releases its
//! lease and tells the top-ranked live candidate, which leads well before any poll would have
//! found the lease free; a lower-ranked candidate is not told.

use std::time::Duration;

use leasehold::v1::ListHaStatesRequest;
use leasehold_tests::{TestCluster, TestStore, eventually, phase, serial};
use tokio::time::Instant;

const BIN: &str = env!("CARGO_BIN_EXE_leasehold-test-node");
const ELECTION: Duration = Duration::from_secs(15);
const WOKEN: &str = "woken by a lease release notice; re-reading the lease";
const TOLD: &str = "told the successor that the lease is free";

#[tokio::test(flavor = "multi_thread")]
async fn a_sigtermed_leader_hands_over_to_the_top_candidate_well_within_one_poll() {
    let _serial = serial().await;
    let mut cluster = TestCluster::new(BIN, TestStore::sqlite());
    // Followers re-read a live lease only every 3 s (or at its expiry, 6 s out), so a
    // successor that leads within a quarter of that was woken, not polling.
    cluster.timings.lease_ttl = Duration::from_secs(6);
    cluster.timings.renew_interval = Duration::from_secs(2);
    cluster.timings.store_timeout = Duration::from_millis(300);
    cluster.timings.poll_interval = Duration::from_secs(3);
    let bound = cluster.timings.poll_interval / 4;

    phase("c1 (priority 1) starts alone and leads");
    cluster.start("c1", &["--priority", "1"], &[]).await;
    let (first, term) = cluster.leader(ELECTION).await;
    assert_eq!(first, "c1");

    // c2 sorts first by node id, so only the priority ranking picks c3.
    phase("c2 (priority 5) and c3 (priority 10) join");
    cluster.start("c2", &["--priority", "5"], &[]).await;
    cluster.start("c3", &["--priority", "10"], &[]).await;
    let leader = cluster.node("c1").client();
    eventually("all three are alive in the registry", Duration::from_secs(20), || {
        let mut leader = leader.clone();
        async move {
            let listed = leader.list_ha_states(ListHaStatesRequest {}).await.ok()?.into_inner();
            (listed.nodes.iter().filter(|node| node.alive).count() == 3).then_some(())
        }
    })
    .await;

    phase("SIGTERM c1: c3 must lead within a quarter of the poll interval");
    let signalled = Instant::now();
    cluster.node("c1").terminate();
    let (second, _, seen) = cluster.leader_above(term, ELECTION).await;
    let took = seen - signalled;
    phase(&format!("c3 leads {} ms after the signal", took.as_millis()));
    assert_eq!(second, "c3", "the top-priority candidate must take over");
    assert!(took < bound, "handoff took {took:?}, not below {bound:?}");

    phase("only c3 was told, by c1");
    let told = cluster.node("c1").wait_events(TOLD, 1, Duration::from_secs(5)).await;
    assert_eq!(told[0]["successor"], "c3", "{told:?}");
    let woken = cluster.node("c3").wait_events(WOKEN, 1, Duration::from_secs(5)).await;
    assert_eq!(woken[0]["from"], "c1", "{woken:?}");
    assert!(cluster.node("c2").events(WOKEN).is_empty(), "the lower-priority candidate was told");
    cluster.node_mut("c1").wait_exit(Duration::from_secs(10)).await;
    cluster.terms_from_logs();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sigtermed_leader_without_a_live_candidate_still_releases_and_tells_nobody() {
    const RELEASED: &str = "released the lease so that a successor can take over at once";
    const NOBODY: &str = "no live candidate to hand the lease over to";
    let _serial = serial().await;
    let mut cluster = TestCluster::new(BIN, TestStore::sqlite());

    phase("c1 starts alone and leads");
    cluster.start("c1", &[], &[]).await;
    let (first, _) = cluster.leader(ELECTION).await;
    assert_eq!(first, "c1");

    // The successor is looked up while the release commits: finding none must neither hold
    // the release back nor send a notice.
    phase("SIGTERM c1: it releases the lease, finds no candidate and exits");
    cluster.node("c1").terminate();
    let exit = cluster.node_mut("c1").wait_exit(Duration::from_secs(10)).await;
    assert!(exit.is_some(), "c1 did not exit within 10 s of SIGTERM");
    let node = cluster.node("c1");
    assert_eq!(node.events(RELEASED).len(), 1, "{}", node.output());
    assert_eq!(node.events(NOBODY).len(), 1, "{}", node.output());
    assert!(node.events(TOLD).is_empty(), "a notice was sent with no candidate alive");
}
