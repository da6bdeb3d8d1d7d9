//! What every Leasehold server adds next to its own services: the gRPC health service, with
//! each of its services marked serving, and reflection (v1 and v1alpha) of `leasehold.v1` and
//! of health, so that grpcurl and reflection clients work against any server; and the HTTP/2
//! settings every server shares, through [`builder`].

use tonic::transport::Server;
use tonic::transport::server::Router;
use tonic_health::ServingStatus;

use crate::v1::FILE_DESCRIPTOR_SET;

/// Why reflection could not be set up (a descriptor set that does not decode).
pub use tonic_reflection::server::Error as ReflectionError;

/// How many streams a client reset before the server accepted them may wait in one
/// connection's accept queue before the server answers GOAWAY `ENHANCE_YOUR_CALM`
/// (`too_many_resets`) and drops the connection. h2's default is 20, a defence against
/// rapid-reset floods (CVE-2023-44487). But a server frozen by SIGSTOP, a stalled VM or a long
/// stall reads, once it runs again, the resets of every call whose deadline passed meanwhile
/// before it accepts any of them: at 20, one client with more than 20 timed-out calls (a
/// host multiplexing its reads, a load balancer) loses its connection and every call on it.
/// The queue then holds what one client sent during the stall, at most this many request heads
/// (under a KiB each), so the bound stays a few MiB per connection.
pub const MAX_PENDING_ACCEPT_RESET_STREAMS: usize = 4096;

/// A server builder with the HTTP/2 settings every Leasehold server shares.
pub fn builder() -> Server {
    Server::builder().http2_max_pending_accept_reset_streams(Some(MAX_PENDING_ACCEPT_RESET_STREAMS))
}

/// `server` with health and reflection added; `serving` names the services to report as
/// serving (each one's `NamedService::NAME`).
pub async fn with_health_and_reflection<L: Clone>(
    server: &mut Server<L>,
    serving: &[&str],
) -> Result<Router<L>, ReflectionError> {
    let (health, health_service) = tonic_health::server::health_reporter();
    for name in serving {
        health.set_service_status(*name, ServingStatus::Serving).await;
    }
    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()?;
    Ok(server.add_service(health_service).add_service(reflection_v1).add_service(reflection_v1alpha))
}
