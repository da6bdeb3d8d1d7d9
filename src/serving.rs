//! What every Leasehold server adds next to its own services: the gRPC health service, with
//! each of its services marked serving, and reflection (v1 and v1alpha) of `leasehold.v1` and
//! of health, so that grpcurl and reflection clients work against any server.

use tonic::transport::Server;
use tonic::transport::server::Router;
use tonic_health::ServingStatus;

use crate::v1::FILE_DESCRIPTOR_SET;

/// Why reflection could not be set up (a descriptor set that does not decode).
pub use tonic_reflection::server::Error as ReflectionError;

/// `server` with health and reflection added; `serving` names the services to report as
/// serving (each one's `NamedService::NAME`).
pub async fn with_health_and_reflection(server: &mut Server, serving: &[&str]) -> Result<Router, ReflectionError> {
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
