//! The README runs as written. Every block it tags `dev` is typed, in order, beside a real
//! `leasehold dev` on the ports the README names: `leasehold …` lines run the binary under test
//! through `sh` (so the README's quoting is the shell's), grpcurl lines go through a reflection
//! client (no proto files, as grpcurl works), and a tagged file block is written before the
//! commands after it. A command that exits non-zero, or a call answered with an error, fails
//! the test with the README line, the command and what it printed.

use std::path::{Path, PathBuf};
use std::time::Duration;

use leasehold::v1::agent_client::AgentClient;
use leasehold::v1::data_nodes_client::DataNodesClient;
use leasehold::v1::{DataNodeLeaseStatus, ListDataNodesRequest, ResolveTableRequest};
use leasehold_tests::grpcurl::Grpcurl;
use leasehold_tests::process::channel;
use leasehold_tests::readme::{Step, blocks, dev_steps};
use leasehold_tests::{Deadline, Node, TestStore, eventually, phase, serial};

const BIN: &str = env!("CARGO_BIN_EXE_leasehold-test-node");

/// The addresses `leasehold dev` listens on by default, which the README's commands name.
const COORDINATOR: &str = "127.0.0.1:7400";
const METRICS: &str = "127.0.0.1:7490";
const AGENTS: [(&str, &str); 3] = [("dn1", "127.0.0.1:7501"), ("dn2", "127.0.0.1:7502"), ("dn3", "127.0.0.1:7503")];

/// How long one README command may take (a barrier over live agents takes milliseconds).
const STEP_TIMEOUT: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_runs_as_written_against_dev() {
    let _serial = serial().await;
    let readme_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md");
    let readme = std::fs::read_to_string(&readme_path).expect("reading README.md");
    let steps = dev_steps(&readme).unwrap_or_else(|error| panic!("{error}"));
    let commands: Vec<&str> = steps
        .iter()
        .filter_map(|step| match step {
            Step::Command { text, .. } => Some(text.as_str()),
            Step::File { .. } => None,
        })
        .collect();
    assert!(commands.iter().any(|text| text.starts_with("grpcurl ")), "the README tags no grpcurl line for dev");
    assert!(commands.iter().any(|text| text.starts_with("leasehold ")), "the README tags no leasehold line for dev");

    // dev's ports are fixed: another run of this test (another checkout on this machine) waits.
    let _ports = lock_dev_ports().await;
    for address in [COORDINATOR, METRICS].into_iter().chain(AGENTS.map(|(_, address)| address)) {
        if let Err(error) = std::net::TcpListener::bind(address) {
            panic!("{address} is taken ({error}); the README test runs `leasehold dev` on the ports the README names");
        }
    }

    phase("dev starts on its documented ports");
    let store = TestStore::sqlite();
    let data_dir = PathBuf::from(store.url.trim_start_matches("sqlite://").trim_end_matches("/leasehold.db"));
    // Commands run in a directory of their own, with `leasehold` on the PATH as a user has it.
    let work = data_dir.join("work");
    let bin = data_dir.join("bin");
    std::fs::create_dir_all(&work).expect("a working directory");
    std::fs::create_dir_all(&bin).expect("a bin directory");
    std::os::unix::fs::symlink(BIN, bin.join("leasehold")).expect("leasehold on the PATH");
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
    let args: Vec<String> =
        ["--log-format", "json", "dev", "--data-dir", &data_dir.display().to_string()].map(str::to_owned).to_vec();
    let mut dev = Node::spawn(BIN, "dev-coordinator", &args, &[]);
    dev.wait_serving(Duration::from_secs(20)).await;
    assert_eq!(dev.grpc, COORDINATOR);
    let banner = dev.output();
    assert!(banner.contains(&format!("{BIN} ctl --endpoints {COORDINATOR} datanodes list")), "{banner}");
    assert!(!banner.contains("cargo run"), "dev's commands name the binary that runs, not cargo:\n{banner}");

    phase("dev is ready: three live agents that serve the sample table");
    wait_until_ready().await;

    for step in &steps {
        match step {
            Step::File { line, name, content } => {
                phase(&format!("README line {line}: the file {name}"));
                std::fs::write(work.join(name), content).expect("writing a README file");
            }
            Step::Command { line, text } => {
                phase(&format!("README line {line}: {text}"));
                match run(text, &work, &path).await {
                    Ok(output) => eprintln!("{output}"),
                    Err(error) => panic!("README line {line} failed:\n{text}\n{error}"),
                }
            }
        }
    }

    phase("the commands dev prints under \"Try:\" run as printed");
    let printed: Vec<&str> = banner
        .lines()
        .filter(|line| !line.starts_with('{'))
        .skip_while(|line| *line != "Try:")
        .skip(1)
        .take_while(|line| !line.is_empty())
        .map(str::trim)
        .collect();
    assert!(printed.len() >= 10, "dev printed too few commands to try: {printed:?}");
    for text in printed {
        phase(text);
        if let Err(error) = run(text, &work, &path).await {
            panic!("dev's printed command failed:\n{text}\n{error}");
        }
    }

    phase("a command that fails, or a call answered with an error, fails the step");
    let missing = r#"grpcurl -plaintext -d '{"database": "demo", "table": "missing"}' 127.0.0.1:7501 leasehold.v1.Agent/ResolveTable"#;
    let error = run(missing, &work, &path).await.expect_err("an error answer fails");
    assert!(error.contains("NotFound"), "{error}");
    let error = run("leasehold ctl table get demo missing", &work, &path).await.expect_err("a failing ctl fails");
    assert!(error.contains("exit status: 4"), "{error}");

    phase("dev stops cleanly on SIGTERM: its agents stop and deregister first");
    dev.terminate();
    let status = dev.wait_exit(Duration::from_secs(40)).await.expect("dev exits after SIGTERM");
    assert!(status.success(), "dev exited with {status}:\n{}", dev.output());
    for (node_id, address) in AGENTS {
        eventually(&format!("{node_id}'s process is gone"), Duration::from_secs(15), || async move {
            tokio::net::TcpStream::connect(address).await.is_err().then_some(())
        })
        .await;
    }
}

/// Waits until the coordinator leads with dev's three agents live and each agent resolves the
/// sample table `demo.metrics`: what the README's commands take for granted.
async fn wait_until_ready() {
    eventually("dev's agents are live and serve demo.metrics", Duration::from_secs(60), || async {
        let nodes = DataNodesClient::new(channel(COORDINATOR))
            .list_data_nodes(ListDataNodesRequest {})
            .await
            .ok()?
            .into_inner()
            .nodes;
        for (node_id, address) in AGENTS {
            nodes.iter().find(|node| {
                node.node_id == node_id && node.registered && node.status == DataNodeLeaseStatus::Live as i32
            })?;
            let request = ResolveTableRequest { database: "demo".into(), table: "metrics".into() };
            AgentClient::new(channel(address)).resolve_table(request).await.ok()?;
        }
        Some(())
    })
    .await;
}

/// Runs one README command in `work`: a grpcurl line through the reflection client, anything
/// else through `sh -c` with `path` as its PATH. What it printed, or why it failed.
async fn run(text: &str, work: &Path, path: &str) -> Result<String, String> {
    // The shell drops a backslash before a newline; so does this split.
    let words = shlex::split(&text.replace("\\\n", "")).ok_or("unbalanced quotes")?;
    if words.first().map(String::as_str) == Some("grpcurl") {
        let grpcurl = Grpcurl::parse(&words)?;
        return tokio::time::timeout(STEP_TIMEOUT, grpcurl.run())
            .await
            .map_err(|_| format!("no answer within {STEP_TIMEOUT:?}"))?;
    }
    let mut command = tokio::process::Command::new("sh");
    command.arg("-c").arg(text).current_dir(work).env("PATH", path).kill_on_drop(true);
    // The README's commands see what a user's shell has, not this test's settings.
    for (key, _) in std::env::vars() {
        if key.starts_with("LEASEHOLD_") || key == "RUST_LOG" {
            command.env_remove(key);
        }
    }
    let output = tokio::time::timeout(STEP_TIMEOUT, command.output())
        .await
        .map_err(|_| format!("still running after {STEP_TIMEOUT:?}"))?
        .map_err(|error| format!("could not start sh: {error}"))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    if output.status.success() {
        Ok(format!("{stdout}{stderr}"))
    } else {
        Err(format!("exited with {}\nstdout:\n{stdout}\nstderr:\n{stderr}", output.status))
    }
}

/// Holds a lock on dev's ports for this machine, waiting (bounded) while another run holds it.
async fn lock_dev_ports() -> std::fs::File {
    let path = std::env::temp_dir().join("leasehold-dev-ports.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .unwrap_or_else(|error| panic!("opening {}: {error}", path.display()));
    let deadline = Deadline::new("another run of the README test to free dev's ports", Duration::from_secs(600));
    loop {
        match file.try_lock() {
            Ok(()) => return file,
            Err(std::fs::TryLockError::WouldBlock) => deadline.tick().await,
            Err(std::fs::TryLockError::Error(error)) => panic!("locking {}: {error}", path.display()),
        }
    }
}

/// A shell block that talks to dev's addresses is meant to be typed beside dev, so it must be
/// tagged and run above; the untagged ones are set-up commands and examples for other hosts.
#[test]
fn every_shell_block_that_talks_to_dev_is_tagged_to_run() {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md")).unwrap();
    let dev_addresses = [COORDINATOR, "127.0.0.1:750"];
    for block in blocks(&readme).iter().filter(|block| block.is_shell() && !block.is_dev()) {
        // ctl's default endpoint is dev's coordinator, unless the block points it elsewhere.
        let sets_endpoints = block.body.iter().any(|(_, text)| text.contains("LEASEHOLD_ENDPOINTS="));
        for (line, text) in &block.body {
            let defaults_to_dev = text.starts_with("leasehold ctl")
                && !sets_endpoints
                && !text.contains("--endpoints")
                && !text.contains("--agent");
            let talks_to_dev = defaults_to_dev || dev_addresses.iter().any(|address| text.contains(address));
            assert!(!talks_to_dev, "README line {line} talks to dev but its block is not tagged `dev`: {text}");
        }
    }
}
