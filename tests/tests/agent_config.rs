//! The agent's configuration against the real binary: a TOML file like the coordinator's,
//! `LEASEHOLD_AGENT_*` variables over it, a malformed variable that stops the start, and
//! `--print-config` with every default written out.

use std::process::ExitStatus;
use std::time::Duration;

use leasehold::v1::data_nodes_client::DataNodesClient;
use leasehold::v1::{DataNodeLeaseStatus, ListDataNodesRequest};
use leasehold_tests::process::channel;
use leasehold_tests::{Node, Scratch, TestCluster, TestStore, eventually, phase, serial};

const BIN: &str = env!("CARGO_BIN_EXE_leasehold-test-node");
const START: Duration = Duration::from_secs(20);
/// A command that only reads its configuration ends at once; this is a generous bound.
const EXIT: Duration = Duration::from_secs(10);

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|arg| (*arg).to_owned()).collect()
}

/// Runs a command that must end by itself, and answers its exit and its output.
async fn run_to_exit(args: &[&str], env: &[(&str, &str)]) -> (ExitStatus, String) {
    let env: Vec<(String, String)> = env.iter().map(|(key, value)| ((*key).to_owned(), (*value).to_owned())).collect();
    let mut node = Node::spawn(BIN, "none", &strings(args), &env);
    let status = node.wait_exit(EXIT).await;
    let output = node.output();
    let status = status.unwrap_or_else(|| panic!("{args:?} still runs after {EXIT:?}:\n{output}"));
    (status, output)
}

/// An agent given nothing but `--config FILE` takes its node id, listen address, coordinators,
/// metrics address and log format from the file, registers, and holds a lease; a
/// `LEASEHOLD_AGENT_*` variable wins over the file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_started_from_a_file_uses_the_files_values() {
    let _serial = serial().await;
    let scratch = Scratch::new();
    let mut cluster = TestCluster::new(BIN, TestStore::sqlite());
    cluster.start("c1", &[], &[]).await;
    let coordinator = cluster.node("c1").grpc.clone();

    phase("an agent from the file alone");
    // JSON logs come from the file's [log] table: without them the harness could not read
    // the "agent serving" event. Port 0 shows the file's listen address over the default 7500.
    let file = scratch.write(
        "agent.toml",
        &format!(
            "[agent]\nnode-id = \"dn-file\"\nlisten = \"127.0.0.1:0\"\ncoordinators = [\"{coordinator}\"]\n\
             metrics-listen = \"\"\nheartbeat-interval = \"700ms\"\nheartbeat-timeout = \"300ms\"\n\n\
             [log]\nformat = \"json\"\nlevel = \"info\"\n"
        ),
    );
    let mut from_file = Node::spawn(BIN, "dn-file", &strings(&["agent", "--config", &file]), &[]);
    from_file.wait_serving(START).await;
    let serving = from_file.events("agent serving").into_iter().next().expect("the serving event");
    assert_ne!(from_file.grpc, "127.0.0.1:7500", "the file's listen address, not the default");
    assert!(from_file.grpc.starts_with("127.0.0.1:"), "{serving}");
    assert_eq!(serving["coordinators"], coordinator.as_str(), "{serving}");
    assert_eq!(serving["metrics"], "off", "the file turned metrics off: {serving}");
    assert_eq!(serving["advertised"], from_file.grpc.as_str(), "{serving}");

    phase("a variable over the same file");
    let env = [("LEASEHOLD_AGENT_NODE_ID".to_owned(), "dn-env".to_owned())];
    let mut from_env = Node::spawn(BIN, "dn-env", &strings(&["agent", "--config", &file]), &env);
    from_env.wait_serving(START).await;

    phase("the leader sees both, live, at the addresses they bound");
    let expected = [("dn-env".to_owned(), from_env.grpc.clone()), ("dn-file".to_owned(), from_file.grpc.clone())];
    eventually("both agents hold a lease", START, || async {
        let nodes = DataNodesClient::new(channel(&coordinator))
            .list_data_nodes(ListDataNodesRequest {})
            .await
            .ok()?
            .into_inner()
            .nodes;
        let mut live: Vec<(String, String)> = nodes
            .into_iter()
            .filter(|node| node.registered && node.status == DataNodeLeaseStatus::Live as i32)
            .map(|node| (node.node_id, node.address))
            .collect();
        live.sort();
        (live == expected).then_some(())
    })
    .await;
}

/// `LEASEHOLD_AGENT_HEARTBEAT_INTERVAL=bogus` stops the start with the variable, its value and
/// the form expected, and the exit code of the coordinator's configuration errors; so does a
/// variable that names no setting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_agent_variable_stops_the_start_and_names_itself() {
    let agent = ["agent", "--node-id", "dn1", "--listen", "127.0.0.1:0", "--metrics-listen", ""];

    phase("a malformed value");
    let (status, output) = run_to_exit(&agent, &[("LEASEHOLD_AGENT_HEARTBEAT_INTERVAL", "bogus")]).await;
    assert!(!status.success(), "{output}");
    assert!(output.contains("LEASEHOLD_AGENT_HEARTBEAT_INTERVAL=\"bogus\""), "{output}");
    assert!(output.contains("1s, 500ms or 1m"), "the expected form: {output}");
    assert!(!output.contains("agent serving"), "{output}");

    phase("the coordinator's configuration errors end the same way");
    let coordinator = ["coordinator", "--listen", "127.0.0.1:0", "--print-config"];
    let (coordinator_status, coordinator_output) =
        run_to_exit(&coordinator, &[("LEASEHOLD_HA__LEASE_TTL", "bogus")]).await;
    assert!(coordinator_output.contains("HA.LEASE-TTL"), "{coordinator_output}");
    assert_eq!(status.code(), coordinator_status.code(), "{output}\n{coordinator_output}");

    phase("a variable that names no setting");
    let (status, output) = run_to_exit(&agent, &[("LEASEHOLD_AGENT_HEARTBEAT_INTERVALL", "1s")]).await;
    assert_eq!(status.code(), coordinator_status.code(), "{output}");
    assert!(output.contains("LEASEHOLD_AGENT_HEARTBEAT_INTERVALL: no such setting"), "{output}");
}

/// `--print-config` prints every effective value, the defaulted ones too, and exits 0
/// without starting: the agent's heartbeat timings and addresses, the coordinator's node id
/// and renew interval derived from its listen port and lease TTL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn print_config_shows_the_defaulted_values_and_exits() {
    phase("the agent");
    let (status, output) = run_to_exit(&["agent", "--print-config"], &[("LEASEHOLD_AGENT_NODE_ID", "dn7")]).await;
    assert!(status.success(), "{output}");
    for line in [
        "[agent]",
        "node-id = \"dn7\"",
        "listen = \"127.0.0.1:7500\"",
        "coordinators = [\"127.0.0.1:7400\"]",
        "metrics-listen = \"127.0.0.1:7590\"",
        "heartbeat-interval = \"1s\"",
        "heartbeat-timeout = \"500ms\"",
        "[log]",
        "format = \"text\"",
    ] {
        assert!(output.lines().any(|printed| printed == line), "{line:?} in:\n{output}");
    }
    assert!(!output.contains("agent serving"), "{output}");

    phase("the coordinator");
    let (status, output) = run_to_exit(&["coordinator", "--listen", "127.0.0.1:7411", "--print-config"], &[]).await;
    assert!(status.success(), "{output}");
    for line in ["node-id = \"coordinator-7411\"", "renew-interval = \"2s\"", "store-timeout = \"500ms\""] {
        assert!(output.lines().any(|printed| printed == line), "{line:?} in:\n{output}");
    }
}
