//! `leasehold dev`: a coordinator on embedded SQLite, and what to try next.

use leasehold_coordinator::CoordinatorConfig;

use crate::args::DevArgs;
use crate::serve;

/// Runs the development cluster until Ctrl-C.
pub async fn run(args: DevArgs) -> anyhow::Result<()> {
    let store = format!("sqlite://{}/leasehold.db", args.data_dir.display());
    let config = CoordinatorConfig {
        node_id: Some("dev-coordinator".into()),
        listen: args.listen.clone(),
        metrics_listen: args.metrics_listen.clone(),
        store: leasehold_coordinator::config::StoreConfig {
            url: store.clone(),
            ..Default::default()
        },
        ..CoordinatorConfig::default()
    };
    config.validate()?;
    let listeners = serve::listeners(&config).await?;
    let grpc = listeners.grpc.local_addr()?;
    let metrics = match &listeners.metrics {
        Some((listener, _)) => listener.local_addr()?.to_string(),
        None => "off".to_owned(),
    };
    println!(
        "\nLeasehold dev cluster\n\
         \n  coordinator  {grpc}  (node dev-coordinator, HA mode auto)\
         \n  metrics      http://{metrics}/metrics\
         \n  store        {store}\
         \n\nTry:\
         \n  grpcurl -plaintext {grpc} list\
         \n  grpcurl -plaintext {grpc} describe leasehold.v1.Cluster\
         \n  grpcurl -plaintext {grpc} leasehold.v1.Cluster/GetLeader\
         \n  grpcurl -plaintext {grpc} leasehold.v1.Cluster/ListHaStates\
         \n  grpcurl -plaintext {grpc} grpc.health.v1.Health/Check\
         \n  cargo run --release -- ctl --endpoints {grpc} ha leader\
         \n  cargo run --release -- ctl --endpoints {grpc} ha states\
         \n\nCtrl-C stops it (the lease is released on the way out).\n",
    );
    let shutdown = serve::shutdown_on_signals();
    leasehold_coordinator::run(config, listeners, shutdown).await?;
    Ok(())
}
