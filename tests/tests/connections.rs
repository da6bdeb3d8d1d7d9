//! Client connections across a coordinator's pause, against the real binary: a process frozen
//! by SIGSTOP (or a long GC-like stall) must not drop, once it runs again, the HTTP/2
//! connection of a client whose calls timed out meanwhile.

use std::time::Duration;

use leasehold::v1::GetHaStateRequest;
use leasehold::v1::cluster_client::ClusterClient;
use leasehold_tests::{TestCluster, TestStore, phase, serial};
use tonic::transport::Endpoint;

const BIN: &str = env!("CARGO_BIN_EXE_leasehold-test-node");

/// More calls than h2's default limit of 20 remotely reset streams waiting to be accepted.
const CALLS_DURING_PAUSE: usize = 100;
/// Each call's deadline; the client cancels (resets) its stream when it passes.
const CALL_DEADLINE: Duration = Duration::from_millis(50);

/// Regression: a resumed coordinator read the resets of the calls that timed out during its
/// pause before accepting their streams, counted more than h2's default of 20 and answered
/// GOAWAY `ENHANCE_YOUR_CALM` (too_many_resets), failing the client's next call and
/// dropping its connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_that_timed_out_during_a_pause_do_not_cost_the_client_its_connection() {
    let _serial = serial().await;
    let mut cluster = TestCluster::new(BIN, TestStore::sqlite());
    phase("start one coordinator and connect one channel to it");
    cluster.start("c1", &[], &[]).await;
    let address = cluster.node("c1").grpc.clone();
    let channel = Endpoint::from_shared(format!("http://{address}"))
        .expect("address")
        .connect_timeout(Duration::from_secs(2))
        .connect()
        .await
        .expect("the coordinator accepts a connection");
    let mut client = ClusterClient::new(channel);
    client.get_ha_state(GetHaStateRequest {}).await.expect("the coordinator answers before the pause");

    phase(&format!("SIGSTOP it; {CALLS_DURING_PAUSE} calls on the channel time out after {CALL_DEADLINE:?}"));
    cluster.node("c1").pause();
    let calls = (0..CALLS_DURING_PAUSE).map(|_| {
        let mut client = client.clone();
        tokio::spawn(
            async move { tokio::time::timeout(CALL_DEADLINE, client.get_ha_state(GetHaStateRequest {})).await },
        )
    });
    for call in calls {
        let outcome = call.await.expect("the call task");
        assert!(outcome.is_err(), "a frozen coordinator answered: {outcome:?}");
    }

    phase("SIGCONT: the same channel's next call must succeed");
    cluster.node("c1").resume();
    let answer = tokio::time::timeout(Duration::from_secs(10), client.get_ha_state(GetHaStateRequest {}))
        .await
        .expect("the resumed coordinator answers within 10 s");
    answer.expect("the resumed coordinator keeps the client's connection");
}
