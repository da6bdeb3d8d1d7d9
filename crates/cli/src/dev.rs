//! `leasehold dev`: a coordinator on embedded SQLite and a few data-node agents in one
//! process, and what to try next.

use std::sync::Arc;

use leasehold_agent::{Agent, AgentConfig};
use leasehold_coordinator::CoordinatorConfig;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::args::DevArgs;
use crate::serve;

/// Runs the development cluster until Ctrl-C.
pub async fn run(args: DevArgs) -> anyhow::Result<()> {
    let store = format!("sqlite://{}/leasehold.db", args.data_dir.display());
    let config = CoordinatorConfig {
        node_id: Some("dev-coordinator".into()),
        listen: args.listen.clone(),
        metrics_listen: args.metrics_listen.clone(),
        store: leasehold_coordinator::config::StoreConfig { url: store.clone(), ..Default::default() },
        ..CoordinatorConfig::default()
    };
    config.validate()?;
    let listeners = serve::listeners(&config).await?;
    let grpc = listeners.grpc.local_addr()?;
    let metrics = match &listeners.metrics {
        Some((listener, _)) => listener.local_addr()?.to_string(),
        None => "off".to_owned(),
    };
    // On Ctrl-C the agents deregister first, while the coordinator still answers.
    let signal = serve::shutdown_on_signals();
    let agents_stop = CancellationToken::new();
    let coordinator_stop = CancellationToken::new();

    let mut agents = Vec::new();
    for index in 1..=args.agents {
        let free_ports = args.listen.ends_with(":0");
        let port = if free_ports { 0 } else { 7500 + index };
        let listener = TcpListener::bind((grpc.ip(), port)).await?;
        let address = listener.local_addr()?.to_string();
        let mut agent_config = AgentConfig::new(format!("dn{index}"), vec![grpc.to_string()], address.clone());
        agent_config.pools = vec![SAMPLE_POOL.to_owned()];
        agent_config.validate().map_err(|error| anyhow::anyhow!("agent dn{index}: {error}"))?;
        agent_config.heartbeat_interval = config.metadata.heartbeat_interval;
        agent_config.heartbeat_timeout = config.metadata.heartbeat_timeout;
        let (agent, heartbeats) =
            Agent::start(agent_config, Arc::new(leasehold_agent::agent::AcceptAll), agents_stop.clone());
        let server = tokio::spawn(leasehold_agent::server::serve(agent, listener, None, agents_stop.clone()));
        agents.push((format!("dn{index}"), address, heartbeats, server));
    }

    let agent_lines: String = agents
        .iter()
        .map(|(node_id, address, _, _)| format!("\n  agent        {address}  (data node {node_id})"))
        .collect();
    let first_agent = agents.first().map_or_else(|| "127.0.0.1:7501".to_owned(), |(_, address, _, _)| address.clone());
    println!(
        "\nLeasehold dev cluster\n\
         \n  coordinator  {grpc}  (node dev-coordinator, HA mode auto){agent_lines}\
         \n  metrics      http://{metrics}/metrics\
         \n  store        {store}\
         \n\nTry:\
         \n  grpcurl -plaintext {grpc} list\
         \n  grpcurl -plaintext {grpc} leasehold.v1.Cluster/GetLeader\
         \n  grpcurl -plaintext {grpc} leasehold.v1.DataNodes/ListDataNodes\
         \n  grpcurl -plaintext {first_agent} leasehold.v1.Agent/GetLeaseState\
         \n  grpcurl -plaintext -d '{{\"database\": \"demo\", \"table\": \"metrics\"}}' {first_agent} leasehold.v1.Agent/ResolveTable\
         \n  cargo run --release -- ctl --endpoints {grpc} table get demo metrics\
         \n  cargo run --release -- ctl --endpoints {grpc} table alter demo metrics --add-column mem:DOUBLE:FIELD\
         \n  cargo run --release -- ctl --endpoints {grpc} procedure list\
         \n  cargo run --release -- ctl --endpoints {grpc} datanodes list\
         \n  cargo run --release -- ctl --endpoints {grpc} datanodes barrier\
         \n  cargo run --release -- ctl agent lease --agent {first_agent}\
         \n  cargo run --release -- ctl --endpoints {grpc} buckets show {SAMPLE_POOL}\
         \n  grpcurl -plaintext -d '{{\"pool\": \"{SAMPLE_POOL}\"}}' {first_agent} leasehold.v1.Agent/GetOwnership\
         \n\nWatch buckets move: the agents share pool `{SAMPLE_POOL}` ({SAMPLE_BUCKETS} buckets). Start one more member,\
         \n  cargo run --release -- agent --node-id dn8 --listen 127.0.0.1:7508 --metrics-listen '' --coordinators {grpc} --pool {SAMPLE_POOL}\
         \nand `buckets show {SAMPLE_POOL}` gives it its share within about a second, taken from the others; kill it\
         \nwith `kill -9` and its buckets move back only once it has provably fenced.\
         \n\nWatch one fence: start a fourth agent in another terminal,\
         \n  cargo run --release -- agent --node-id dn9 --listen 127.0.0.1:7509 --metrics-listen '' --coordinators {grpc}\
         \nfreeze it with Ctrl-Z for 20 s, and meanwhile run `datanodes barrier`: it returns once dn9\
         \nhas provably fenced (about 16 s after its last heartbeat). Resume it with `fg`: its first\
         \nread is refused (`ctl agent lease --agent 127.0.0.1:7509` says FENCED), then it resyncs.\
         \n\nCtrl-C stops everything (the lease is released, the agents deregister).\n",
    );
    tokio::spawn(create_sample(grpc.to_string()));
    tokio::spawn({
        let coordinator_stop = coordinator_stop.clone();
        async move {
            signal.cancelled().await;
            agents_stop.cancel();
            for (_, _, heartbeats, server) in agents {
                let _ = heartbeats.await;
                let _ = server.await;
            }
            coordinator_stop.cancel();
        }
    });
    leasehold_coordinator::run(config, listeners, coordinator_stop).await?;
    Ok(())
}

/// The bucket pool dev's agents join, and its size.
const SAMPLE_POOL: &str = "demo";
const SAMPLE_BUCKETS: u32 = 12;

/// Creates the sample database `demo`, table `demo.metrics` and bucket pool `demo`, once
/// (request ids make a restart find them instead of creating them again; the pool is kept).
async fn create_sample(coordinator: String) {
    use leasehold::v1::catalog_client::CatalogClient;
    use leasehold::v1::{ColumnCategory, ColumnDefinition, CreateDatabaseRequest, CreateTableRequest, DataType};

    let Ok(client) = leasehold::Client::new([coordinator], leasehold::ClientOptions::default()) else { return };
    let database = CreateDatabaseRequest {
        name: "demo".into(),
        ttl_ms: 7 * 24 * 3600 * 1000,
        properties: Default::default(),
        request_id: "dev-sample-database".into(),
    };
    let column = |name: &str, data_type: DataType, category: ColumnCategory| ColumnDefinition {
        name: name.into(),
        data_type: data_type as i32,
        category: category as i32,
        comment: String::new(),
    };
    let table = CreateTableRequest {
        database: "demo".into(),
        name: "metrics".into(),
        columns: vec![
            column("time", DataType::Timestamp, ColumnCategory::Time),
            column("host", DataType::Text, ColumnCategory::Tag),
            column("cpu", DataType::Double, ColumnCategory::Field),
        ],
        ttl_ms: 0,
        properties: Default::default(),
        comment: "a sample table: try ResolveTable on an agent".into(),
        request_id: "dev-sample-table".into(),
    };
    let created = async {
        client
            .call_leader(|channel| {
                let request = database.clone();
                async move { CatalogClient::new(channel).create_database(request).await }
            })
            .await?;
        client
            .call_leader(|channel| {
                let request = table.clone();
                async move { CatalogClient::new(channel).create_table(request).await }
            })
            .await
    };
    match created.await {
        Ok(_) => tracing::info!("sample table demo.metrics is ready"),
        Err(error) => tracing::warn!(%error, "could not create the sample table"),
    }
    let pool = leasehold::v1::CreatePoolRequest { name: SAMPLE_POOL.into(), bucket_count: SAMPLE_BUCKETS };
    let created = client
        .call_leader(|channel| {
            let request = pool.clone();
            async move { leasehold::v1::assignments_client::AssignmentsClient::new(channel).create_pool(request).await }
        })
        .await;
    match created {
        Ok(_) => tracing::info!(pool = SAMPLE_POOL, "sample bucket pool is ready"),
        Err(leasehold::ClientError::Status(status)) if status.code() == tonic::Code::AlreadyExists => {}
        Err(error) => tracing::warn!(%error, "could not create the sample bucket pool"),
    }
}
