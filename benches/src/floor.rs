//! The gRPC floor: a plain unary call (`GetHaState`) on the coordinator, which does no work of
//! its own, so its cost is HTTP/2, gRPC and the runtime. Every heartbeat figure is read
//! against it.

use std::time::{Duration, Instant};

use leasehold::v1::GetHaStateRequest;
use leasehold::v1::cluster_client::ClusterClient;
use tonic::Status;
use tonic::transport::{Channel, Endpoint};

use crate::Samples;

/// One `GetHaState` round trip on `client`; how long it took.
pub async fn call(client: &mut ClusterClient<Channel>) -> Result<Duration, Status> {
    let at = Instant::now();
    client.get_ha_state(GetHaStateRequest {}).await?;
    Ok(at.elapsed())
}

/// `count` round trips to `address` on a connection of their own, `pause` apart: the baseline
/// of a latency ratio, measured beside the load.
pub async fn probe(address: &str, count: usize, pause: Duration) -> Samples {
    let channel = Endpoint::from_shared(format!("http://{address}")).expect("address").connect_lazy();
    let mut client = ClusterClient::new(channel);
    let mut samples = Samples::default();
    for _ in 0..count {
        samples.push(call(&mut client).await.expect("a probe"));
        tokio::time::sleep(pause).await;
    }
    samples
}
