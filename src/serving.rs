//! What every Leasehold server adds next to its own services: the gRPC health service, with a
//! status per service that the server keeps true ([`HealthReporter`]), and reflection (v1 and
//! v1alpha) of `leasehold.v1` and of health, so that grpcurl and reflection clients work
//! against any server; the HTTP/2 settings every server shares, through [`builder`]; and the
//! [`Readiness`] that the HTTP `/readyz` probe reports.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tonic::transport::Server;
use tonic::transport::server::Router;
pub use tonic_health::ServingStatus;
pub use tonic_health::server::HealthReporter;

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

/// Whether a node has loaded its state and may be sent traffic: what `/readyz` answers.
/// Liveness (`/healthz`, the gRPC health service `""`) is the process alone; readiness never
/// depends on a node's role. Cheap to clone; every clone shares the flag.
#[derive(Debug, Clone, Default)]
pub struct Readiness(Arc<AtomicBool>);

impl Readiness {
    /// Not ready yet.
    pub fn new() -> Readiness {
        Readiness::default()
    }

    /// Marks the node ready (or not).
    pub fn set(&self, ready: bool) {
        self.0.store(ready, Ordering::Release);
    }

    /// Whether the node is ready now.
    pub fn is_ready(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// `server` with health and reflection added, and the reporter of the health service. The
/// server as a whole (`""`) is SERVING while the process runs; each service in `statuses`
/// starts with its status, which the caller keeps up to date through the reporter.
pub async fn with_health_and_reflection<L: Clone>(
    server: &mut Server<L>,
    statuses: &[(&str, ServingStatus)],
) -> Result<(Router<L>, HealthReporter), ReflectionError> {
    let (health, health_service) = tonic_health::server::health_reporter();
    for (name, status) in statuses {
        health.set_service_status(*name, *status).await;
    }
    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()?;
    Ok((server.add_service(health_service).add_service(reflection_v1).add_service(reflection_v1alpha), health))
}
