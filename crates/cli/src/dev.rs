//! `leasehold dev`: a coordinator on embedded SQLite whose resource keeper runs a few
//! data-node agents as a `local` group (separate processes, restarted when they die), and what
//! to try next.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use leasehold::v1::resources_client::ResourcesClient;
use leasehold::v1::{
    CreateGroupRequest, CreateResourceRequest, DeleteResourceRequest, GetResourceRequest, ResourceGroup,
};
use leasehold_coordinator::CoordinatorConfig;
use leasehold_coordinator::config::{AutoRestartConfig, ContainerConfig, ContainerKind, ResourcesConfig};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::args::DevArgs;
use crate::serve;

/// The group dev's agents form, and the container that runs them.
const DEV_GROUP: &str = "dev-agents";
const DEV_CONTAINER: &str = "dev-agents";
/// How long dev waits for its agents to be stopped and removed on Ctrl-C: longer than their
/// stop grace.
const STOP_WAIT: Duration = Duration::from_secs(30);

/// Runs the development cluster until Ctrl-C.
pub async fn run(args: DevArgs) -> anyhow::Result<()> {
    let store = format!("sqlite://{}/leasehold.db", args.data_dir.display());
    let executable = std::env::current_exe()?.display().to_string();
    let agent_command = [
        executable.as_str(),
        "agent",
        "--node-id",
        "{resource_id}",
        "--resource-id",
        "{resource_id}",
        "--attempt-id",
        "{attempt_id}",
        "--coordinators",
        "{coordinators}",
        "--listen",
        "{prop:listen}",
        "--metrics-listen",
        "",
        "--pool",
        SAMPLE_POOL,
    ];
    let container = ContainerConfig {
        kind: ContainerKind::Local,
        node: Some("dev-coordinator".into()),
        command: agent_command.iter().map(|part| (*part).to_owned()).collect(),
        environment: BTreeMap::new(),
        working_directory: None,
        log_directory: args.data_dir.join("agents"),
        // A stopping agent waits out the validity of the reads it answered (at most the
        // fence) before it deregisters as released; killed sooner, it would leave a tombstone
        // that the next run waits out.
        stop_grace: CoordinatorConfig::default().metadata.lease_fence + Duration::from_secs(5),
    };
    let config = CoordinatorConfig {
        node_id: Some("dev-coordinator".into()),
        listen: args.listen.clone(),
        metrics_listen: args.metrics_listen.clone(),
        store: leasehold_coordinator::config::StoreConfig { url: store.clone(), ..Default::default() },
        resources: ResourcesConfig {
            auto_restart: AutoRestartConfig {
                enabled: true,
                max_retries: 5,
                grace_period: Duration::from_secs(3),
                interval: Duration::from_secs(1),
            },
        },
        containers: [(DEV_CONTAINER.to_owned(), container.clone())].into_iter().collect(),
        ..CoordinatorConfig::default()
    };
    config.validate()?;
    let listeners = serve::listeners(&config).await?;
    let grpc = listeners.grpc.local_addr()?;
    let metrics = match &listeners.metrics {
        Some((listener, _)) => listener.local_addr()?.to_string(),
        None => "off".to_owned(),
    };
    // On Ctrl-C the agents are stopped (they deregister) while the coordinator still answers.
    let signal = serve::shutdown_on_signals();
    let coordinator_stop = CancellationToken::new();

    let mut agents = Vec::new();
    for index in 1..=args.agents {
        let free_ports = args.listen.ends_with(":0");
        let port = if free_ports { free_port(grpc.ip()).await? } else { 7500 + index };
        agents.push((format!("dn{index}"), format!("{}:{port}", grpc.ip())));
    }

    let agent_lines: String =
        agents.iter().map(|(node_id, address)| format!("\n  agent        {address}  (data node {node_id})")).collect();
    let first_agent = agents.first().map_or_else(|| "127.0.0.1:7501".to_owned(), |(_, address)| address.clone());
    let logs = container.log_directory.display();
    // The commands name this very binary, as it can be typed here: `cargo run` would rebuild,
    // and a bare `leasehold` may be another build or nothing at all.
    let bin = shell_command(&std::env::current_exe()?);
    println!(
        "\nLeasehold dev cluster\n\
         \n  coordinator  {grpc}  (node dev-coordinator, HA mode auto){agent_lines}\
         \n  metrics      http://{metrics}/metrics\
         \n  status page  http://{metrics}/\
         \n  store        {store}\
         \n\nTry:\
         \n  grpcurl -plaintext {grpc} list\
         \n  grpcurl -plaintext {grpc} leasehold.v1.Cluster/GetLeader\
         \n  grpcurl -plaintext {grpc} leasehold.v1.DataNodes/ListDataNodes\
         \n  grpcurl -plaintext {first_agent} leasehold.v1.Agent/GetLeaseState\
         \n  grpcurl -plaintext -d '{{\"database\": \"demo\", \"table\": \"metrics\"}}' {first_agent} leasehold.v1.Agent/ResolveTable\
         \n  {bin} ctl --endpoints {grpc} table get demo metrics\
         \n  {bin} ctl --endpoints {grpc} table alter demo metrics --add-column mem:DOUBLE:FIELD\
         \n  {bin} ctl --endpoints {grpc} procedure list\
         \n  {bin} ctl --endpoints {grpc} datanodes list\
         \n  {bin} ctl --endpoints {grpc} datanodes barrier\
         \n  {bin} ctl agent lease --agent {first_agent}\
         \n  {bin} ctl --endpoints {grpc} buckets show {SAMPLE_POOL}\
         \n  grpcurl -plaintext -d '{{\"pool\": \"{SAMPLE_POOL}\"}}' {first_agent} leasehold.v1.Agent/GetOwnership\
         \n\nWatch buckets move: the agents share pool `{SAMPLE_POOL}` ({SAMPLE_BUCKETS} buckets). Start one more member,\
         \n  {bin} agent --node-id dn8 --listen 127.0.0.1:7508 --metrics-listen '' --coordinators {grpc} --pool {SAMPLE_POOL}\
         \nand `buckets show {SAMPLE_POOL}` gives it its share within about a second, taken from the others; kill it\
         \nwith `kill -9` and its buckets move back only once it has provably fenced.\
         \n\nWatch one fence: start a fourth agent in another terminal,\
         \n  {bin} agent --node-id dn9 --listen 127.0.0.1:7509 --metrics-listen '' --coordinators {grpc}\
         \nfreeze it with Ctrl-Z for 20 s, and meanwhile run `datanodes barrier`: it returns once dn9\
         \nhas provably fenced (about 16 s after its last heartbeat). Resume it with `fg`: its lease ran\
         \nout while it was frozen, so it fences (it logs `fenced: ...` and drops its cache) and its next\
         \nheartbeat, at once, resyncs it; `ctl agent lease --agent 127.0.0.1:7509` then shows NORMAL and\
         \nFENCES 1.\
         \n\nWatch a restart: the agents are resources of group `{DEV_GROUP}`, run by the resource keeper\
         \n(their logs are in {logs}). Find dn1's pid (`process.pid`),\
         \n  grpcurl -plaintext -d '{{\"id\": \"dn1\"}}' {grpc} leasehold.v1.Resources/GetResource\
         \nkill it with `kill -9 PID`,\
         \nand `ctl resources list` shows it an orphan once it is provably offline (about 16 s), then, a\
         \n3 s grace period later, running again under the same id with attempts 1.\
         \n\nCtrl-C stops everything (the agents are stopped and deregister, the lease is released).\n",
    );
    let client = leasehold::Client::new([grpc.to_string()], leasehold::ClientOptions::default())?;
    tokio::spawn(create_sample(grpc.to_string()));
    tokio::spawn(start_agents(client.clone(), agents.clone()));
    tokio::spawn({
        let coordinator_stop = coordinator_stop.clone();
        async move {
            signal.cancelled().await;
            stop_agents(&client, &agents).await;
            coordinator_stop.cancel();
        }
    });
    leasehold_coordinator::run(config, listeners, coordinator_stop).await?;
    Ok(())
}

/// How to type `exe` in a shell started where this process runs: its bare name when `PATH`
/// finds this very file by that name, its path relative to the working directory when it lies
/// under it (`target/release/leasehold` after `cargo run`), else its absolute path.
fn shell_command(exe: &Path) -> String {
    let name = exe.file_name().map(|name| name.to_string_lossy().into_owned()).unwrap_or_default();
    let same_file = |candidate: &Path| candidate.canonicalize().ok() == exe.canonicalize().ok();
    let on_path = std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|directory| same_file(&directory.join(&name))));
    let cwd = std::env::current_dir().unwrap_or_default();
    shown_command(exe, &cwd, on_path.then_some(name.as_str()))
}

/// The pure part of [`shell_command`]: `bare_name` when the `PATH` finds the binary by it.
fn shown_command(exe: &Path, cwd: &Path, bare_name: Option<&str>) -> String {
    let shown = match bare_name {
        Some(name) => name.to_owned(),
        None => match exe.strip_prefix(cwd) {
            // Relative paths need a slash, or the shell would search the PATH for them.
            Ok(relative) if relative.parent().is_some_and(|parent| !parent.as_os_str().is_empty()) => {
                relative.display().to_string()
            }
            Ok(relative) => format!("./{}", relative.display()),
            Err(_) => exe.display().to_string(),
        },
    };
    shell_quoted(&shown)
}

/// `word` as one shell word: unchanged when it holds only characters the shell leaves alone,
/// else in single quotes.
fn shell_quoted(word: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "_-./+:@%,=".contains(c);
    if !word.is_empty() && word.chars().all(plain) {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// A port that was free a moment ago, for an agent started in another process.
async fn free_port(ip: std::net::IpAddr) -> std::io::Result<u16> {
    Ok(TcpListener::bind((ip, 0)).await?.local_addr()?.port())
}

/// Creates dev's group and one resource per agent; the keeper's container starts them. Rows
/// an earlier run left (it was killed, say) are cleaned up first, so every agent starts now.
async fn start_agents(client: leasehold::Client, agents: Vec<(String, String)>) {
    let group = ResourceGroup {
        name: DEV_GROUP.into(),
        container: DEV_CONTAINER.into(),
        min_members: 0,
        properties: Default::default(),
    };
    let created = client
        .call_leader(|channel| {
            let request = CreateGroupRequest { group: Some(group.clone()) };
            async move { ResourcesClient::new(channel).create_group(request).await }
        })
        .await;
    match created {
        Ok(_) | Err(leasehold::ClientError::Status(_)) => {}
        Err(error) => tracing::warn!(%error, "could not create the agents' resource group"),
    }
    if tokio::time::timeout(STOP_WAIT, remove(&client, &agents)).await.is_err() {
        tracing::warn!("rows an earlier run left were not all cleaned up in time; creating the agents anyway");
    }
    for (id, address) in &agents {
        let request = CreateResourceRequest {
            id: id.clone(),
            group: DEV_GROUP.into(),
            properties: [("listen".to_owned(), address.clone())].into_iter().collect(),
        };
        let created = client
            .call_leader(|channel| {
                let request = request.clone();
                async move { ResourcesClient::new(channel).create_resource(request).await }
            })
            .await;
        match created {
            Ok(_) => tracing::info!(resource = %id, %address, "dev agent created; the resource keeper starts it"),
            Err(error) => tracing::warn!(resource = %id, %error, "could not create a dev agent"),
        }
    }
}

/// Stops dev's agents: each is deleted, its process stopped (it gives its buckets up and
/// deregisters), and its row removed, before the coordinator stops.
async fn stop_agents(client: &leasehold::Client, agents: &[(String, String)]) {
    if tokio::time::timeout(STOP_WAIT, remove(client, agents)).await.is_err() {
        tracing::warn!("the dev agents were not all stopped in time; the next run cleans them up");
    }
}

/// Deletes the resources `agents` and waits until they are gone.
async fn remove(client: &leasehold::Client, agents: &[(String, String)]) {
    for (id, _) in agents {
        let request = DeleteResourceRequest { id: id.clone() };
        let _ = client
            .call_leader(|channel| {
                let request = request.clone();
                async move { ResourcesClient::new(channel).delete_resource(request).await }
            })
            .await;
    }
    for (id, _) in agents {
        loop {
            let request = GetResourceRequest { id: id.clone() };
            let answer = client
                .call_leader(|channel| {
                    let request = request.clone();
                    async move { ResourcesClient::new(channel).get_resource(request).await }
                })
                .await;
            match answer {
                Err(leasehold::ClientError::Status(status)) if status.code() == tonic::Code::NotFound => break,
                Err(error) => {
                    tracing::warn!(resource = %id, %error, "could not check on a dev agent being removed");
                    return;
                }
                Ok(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_banner_names_the_binary_as_the_shell_finds_it() {
        let exe = Path::new("/src/leasehold/target/release/leasehold");
        assert_eq!(shown_command(exe, Path::new("/src/leasehold"), Some("leasehold")), "leasehold");
        assert_eq!(shown_command(exe, Path::new("/src/leasehold"), None), "target/release/leasehold");
        assert_eq!(shown_command(exe, Path::new("/src/leasehold/target/release"), None), "./leasehold");
        assert_eq!(shown_command(exe, Path::new("/home/me"), None), "/src/leasehold/target/release/leasehold");
        let spaced = Path::new("/opt/my tools/leasehold");
        assert_eq!(shown_command(spaced, Path::new("/home/me"), None), "'/opt/my tools/leasehold'");
        assert_eq!(shell_quoted("it's"), r"'it'\''s'");
    }
}
