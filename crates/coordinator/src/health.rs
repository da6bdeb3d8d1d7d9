//! What the gRPC health service says about each of a coordinator's services: a pure rule
//! from the node's role and mode ([`statuses`]), and the task that keeps the health service
//! in step with it ([`report`]).
//!
//! The server as a whole (`""`) is SERVING while the process runs: liveness is the process
//! alone. A service reports NOT_SERVING only where every call of it would be refused here:
//! the leader-only services on a node that does not lead; the read services too on a
//! follower whose mode serves no reads. A leader reports every service SERVING for as long
//! as it leads, also while its store is unreachable inside its hold, so that no probe hides
//! it from its clients.

use leasehold::serving::{HealthReporter, ServingStatus};
use leasehold::v1::assignments_server::AssignmentsServer;
use leasehold::v1::catalog_server::CatalogServer;
use leasehold::v1::cluster_server::ClusterServer;
use leasehold::v1::data_nodes_server::DataNodesServer;
use leasehold::v1::procedures_server::ProceduresServer;
use leasehold::v1::resources_server::ResourcesServer;
use leasehold_core::{HaMode, HaRole};
use tokio_util::sync::CancellationToken;

use crate::assignments_service::AssignmentsService;
use crate::catalog_service::{CatalogService, ProceduresService};
use crate::cluster_service::ClusterService;
use crate::datanodes_service::DataNodesService;
use crate::ha::Ha;
use crate::resources_service::ResourcesService;

use tonic::server::NamedService;

/// `leasehold.v1.Cluster`: every node answers it (who leads, HA states).
pub const CLUSTER: &str = <ClusterServer<ClusterService> as NamedService>::NAME;
/// `leasehold.v1.Catalog`: DDL on the leader, reads on hot followers too.
pub const CATALOG: &str = <CatalogServer<CatalogService> as NamedService>::NAME;
/// `leasehold.v1.Procedures`: reads, on the leader and hot followers.
pub const PROCEDURES: &str = <ProceduresServer<ProceduresService> as NamedService>::NAME;
/// `leasehold.v1.Assignments`: changes on the leader, `GetAssignment` on hot followers too.
pub const ASSIGNMENTS: &str = <AssignmentsServer<AssignmentsService> as NamedService>::NAME;
/// `leasehold.v1.DataNodes`: the leader's alone (registrations, heartbeats, barriers).
pub const DATA_NODES: &str = <DataNodesServer<DataNodesService> as NamedService>::NAME;
/// `leasehold.v1.Resources`: the leader's alone.
pub const RESOURCES: &str = <ResourcesServer<ResourcesService> as NamedService>::NAME;

/// Whether each coordinator service serves on a node in `role` and `mode`.
pub fn statuses(role: HaRole, mode: HaMode) -> [(&'static str, ServingStatus); 6] {
    let serving = |yes: bool| if yes { ServingStatus::Serving } else { ServingStatus::NotServing };
    let running = role != HaRole::Stopped;
    let leads = matches!(role, HaRole::Leader | HaRole::Standalone);
    let reads = leads || (running && mode.serves_reads_as_follower());
    [
        (CLUSTER, serving(running)),
        (CATALOG, serving(reads)),
        (PROCEDURES, serving(reads)),
        (ASSIGNMENTS, serving(reads)),
        (DATA_NODES, serving(leads)),
        (RESOURCES, serving(leads)),
    ]
}

/// Keeps `health` in step with `ha`'s role and mode until `shutdown`.
pub async fn report(ha: Ha, health: HealthReporter, shutdown: CancellationToken) {
    let mut view = ha.subscribe();
    loop {
        let (role, mode) = {
            let view = view.borrow_and_update();
            (view.role, view.mode)
        };
        for (service, status) in statuses(role, mode) {
            health.set_service_status(service, status).await;
        }
        tokio::select! {
            _ = shutdown.cancelled() => break,
            changed = view.changed() => if changed.is_err() { break },
        }
    }
    for (service, _) in statuses(HaRole::Stopped, ha.view().mode) {
        health.set_service_status(service, ServingStatus::NotServing).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn serving(role: HaRole, mode: HaMode) -> Vec<&'static str> {
        statuses(role, mode)
            .into_iter()
            .filter(|(_, status)| *status == ServingStatus::Serving)
            .map(|(service, _)| service)
            .collect()
    }

    const ALL: [&str; 6] = [CLUSTER, CATALOG, PROCEDURES, ASSIGNMENTS, DATA_NODES, RESOURCES];

    #[test]
    fn a_leader_serves_everything_whatever_its_mode() {
        for mode in [HaMode::Auto, HaMode::Master, HaMode::Standby, HaMode::HotStandby] {
            assert_eq!(serving(HaRole::Leader, mode), ALL, "{mode}");
        }
        assert_eq!(serving(HaRole::Standalone, HaMode::Disabled), ALL);
    }

    #[test]
    fn a_follower_serves_only_the_cluster_service() {
        for mode in [HaMode::Auto, HaMode::Master, HaMode::Standby] {
            assert_eq!(serving(HaRole::Follower, mode), [CLUSTER], "{mode}");
            assert_eq!(serving(HaRole::Starting, mode), [CLUSTER], "{mode}");
        }
    }

    #[test]
    fn a_hot_follower_keeps_serving_its_reads() {
        for mode in [HaMode::HotStandby, HaMode::HotBackup] {
            assert_eq!(serving(HaRole::Follower, mode), [CLUSTER, CATALOG, PROCEDURES, ASSIGNMENTS], "{mode}");
        }
    }

    #[test]
    fn a_stopped_node_serves_nothing() {
        assert!(serving(HaRole::Stopped, HaMode::Auto).is_empty());
        assert!(serving(HaRole::Stopped, HaMode::HotBackup).is_empty());
    }

    #[test]
    fn the_names_are_the_services_grpc_names() {
        assert_eq!(
            ALL.map(|name| name.strip_prefix("leasehold.v1.").unwrap_or("?")),
            ["Cluster", "Catalog", "Procedures", "Assignments", "DataNodes", "Resources"]
        );
    }
}
