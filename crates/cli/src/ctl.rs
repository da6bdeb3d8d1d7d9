//! `leasehold ctl`: the admin client, on top of the client SDK.

use anyhow::Context;
use std::process::ExitCode;
use std::time::Duration;

use leasehold::status::{ALLOW_NON_LEADER_HEADER, code_name, error_metadata, error_reason};
use leasehold::v1::agent_client::AgentClient;
use leasehold::v1::cluster_client::ClusterClient;
use leasehold::v1::data_nodes_client::DataNodesClient;
use leasehold::v1::{
    AgentLeaseState, BarrierRequest, DataNodeLeaseStatus, GetHaStateRequest, GetLeaseStateRequest, GetPriorityRequest,
    HaState, LeaderInfo, ListDataNodesRequest, ListHaStatesRequest, RemoveDataNodeRequest, RemoveHaNodeRequest,
    SetHaStateRequest, SetPriorityRequest,
};
use leasehold::{Client, ClientOptions, v1};
use leasehold_coordinator::convert::mode_to_proto;
use serde_json::{Value, json};
use tonic::{Code, Request};

use crate::args::{AgentCommand, CtlArgs, CtlCommand, DataNodesCommand, EndpointCommand, HaCommand, Output, Target};
use crate::output::{Answer, enum_json, table};

/// Calls `$service::$method` with `$request` on the leader (the SDK follows redirects and
/// retries while the cluster fails over) and answers with the response, or returns the error
/// with `$what` as its context.
macro_rules! leader_call {
    ($client:expr, $service:ident, $method:ident, $request:expr, $what:expr) => {{
        let request = $request;
        $client
            .call_leader(|channel| {
                let request = request.clone();
                async move { $service::new(channel).$method(request).await }
            })
            .await
            .with_context(|| $what)?
    }};
}
pub(crate) use leader_call;

/// The exit codes of `ctl`, as `--help` shows them.
pub const EXIT_CODES_HELP: &str = "\
Exit codes:
  0  success
  1  any other failure
  2  usage: a bad flag or argument
  3  unavailable: no endpoint answered (within --dial-timeout), no leader, or --timeout passed
  4  not found
  5  failed precondition (the cluster's state refuses it now)
  6  already exists
  7  invalid argument (the server refused a field)
  8  permission denied or unauthenticated
  9  aborted (a DDL rolled back: a data node could not apply it)

With --output json, an error is printed on stderr as one JSON object:
  {\"code\": \"NOT_FOUND\", \"reason\": \"NOT_FOUND\", \"message\": \"...\", \"metadata\": {...}}";

/// No endpoint accepted a connection within the dial timeout.
#[derive(Debug)]
pub struct Unreachable {
    dial_timeout: Duration,
    failures: Vec<String>,
}

impl std::fmt::Display for Unreachable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "no endpoint accepted a connection within {:?}: {}", self.dial_timeout, self.failures.join("; "))
    }
}

impl std::error::Error for Unreachable {}

/// Connects to every endpoint at once; fails, naming each endpoint and why, when none accepts
/// within `dial_timeout`, so that a wrong address fails in seconds rather than after every
/// retry of the call.
async fn dial_any(endpoints: &[String], dial_timeout: Duration) -> Result<(), Unreachable> {
    let mut dials = tokio::task::JoinSet::new();
    for endpoint in endpoints {
        let endpoint = endpoint.clone();
        dials.spawn(async move {
            match tokio::time::timeout(dial_timeout, tokio::net::TcpStream::connect(&endpoint)).await {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(error)) => Err(format!("{endpoint}: {error}")),
                Err(_) => Err(format!("{endpoint}: no answer")),
            }
        });
    }
    let mut failures = Vec::new();
    while let Some(dialed) = dials.join_next().await {
        match dialed {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(failure)) => failures.push(failure),
            Err(error) => failures.push(error.to_string()),
        }
    }
    failures.sort();
    Err(Unreachable { dial_timeout, failures })
}

/// How `ctl` ends after `error`: its exit code (see [`EXIT_CODES_HELP`]), and the error
/// printed on stderr, as one line, or as one JSON object under `--output json`.
pub fn report(error: &anyhow::Error, output: Output) -> ExitCode {
    let status = error.chain().find_map(|cause| {
        cause
            .downcast_ref::<leasehold::ClientError>()
            .and_then(leasehold::ClientError::status)
            .or_else(|| cause.downcast_ref::<tonic::Status>())
    });
    let unreachable = error.chain().any(|cause| cause.downcast_ref::<Unreachable>().is_some());
    let code = status.map(tonic::Status::code).unwrap_or(if unreachable { Code::Unavailable } else { Code::Unknown });
    match output {
        Output::Table => eprintln!("error: {error:#}"),
        Output::Json => {
            let (reason, metadata) = status.map_or_else(Default::default, |status| {
                (error_reason(status).unwrap_or_default(), error_metadata(status))
            });
            let line = json!({
                "code": code_name(code),
                "reason": reason,
                "message": format!("{error:#}"),
                "metadata": metadata,
            });
            eprintln!("{line}");
        }
    }
    ExitCode::from(exit_code(code))
}

/// The exit code of a failure with gRPC `code`.
fn exit_code(code: Code) -> u8 {
    match code {
        Code::Unavailable | Code::DeadlineExceeded => 3,
        Code::NotFound => 4,
        Code::FailedPrecondition => 5,
        Code::AlreadyExists => 6,
        Code::InvalidArgument | Code::OutOfRange => 7,
        Code::PermissionDenied | Code::Unauthenticated => 8,
        Code::Aborted => 9,
        _ => 1,
    }
}

/// Runs one `ctl` command and prints its answer.
pub async fn run(args: CtlArgs) -> anyhow::Result<()> {
    let options = ClientOptions {
        connect_timeout: args.dial_timeout,
        retry_deadline: args.timeout,
        request_timeout: args.timeout,
        ..ClientOptions::default()
    };
    // An agent command talks to the agent; every other one to the coordinators.
    let dialed = match &args.command {
        CtlCommand::Agent(AgentCommand::Lease { agent }) => std::slice::from_ref(agent),
        _ => args.endpoints.as_slice(),
    };
    dial_any(dialed, args.dial_timeout).await?;
    let client = Client::new(args.endpoints.clone(), options)?;
    let answer = match args.command {
        CtlCommand::Ha(command) => ha(&client, command).await?,
        CtlCommand::DataNodes(command) => datanodes(&client, command).await?,
        CtlCommand::Agent(AgentCommand::Lease { agent }) => agent_lease(&client, &agent).await?,
        CtlCommand::Endpoint(EndpointCommand::Status) => states_of_endpoints(&client, true).await,
        CtlCommand::Endpoint(EndpointCommand::Health) => endpoint_health(&client, args.output).await?,
        CtlCommand::Db(command) => crate::ctl_catalog::db(&client, command).await?,
        CtlCommand::Table(command) => crate::ctl_catalog::table_command(&client, command).await?,
        CtlCommand::View(command) => crate::ctl_catalog::view(&client, command).await?,
        CtlCommand::Procedure(command) => crate::ctl_catalog::procedure(&client, command).await?,
        CtlCommand::Buckets(command) => crate::ctl_buckets::buckets(&client, command, args.output).await?,
        CtlCommand::Resources(command) => crate::ctl_resources::resources(&client, command).await?,
    };
    match args.output {
        // A watch printed as it went.
        _ if answer.json.is_null() && answer.table.is_empty() => {}
        Output::Table => print!("{}", answer.table),
        Output::Json => println!("{}", serde_json::to_string_pretty(&answer.json)?),
    }
    Ok(())
}

async fn ha(client: &Client, command: HaCommand) -> anyhow::Result<Answer> {
    Ok(match command {
        HaCommand::Leader => leader(client).await?,
        HaCommand::State => states_of_endpoints(client, false).await,
        HaCommand::States => registry(client).await?,
        HaCommand::SetState { mode, target } => {
            let endpoint = node(client, &target.node);
            let request = SetHaStateRequest { mode: mode_to_proto(mode) as i32 };
            let response = client
                .call_endpoint(&endpoint, |channel| {
                    let request = with_override(request, &target);
                    async move { ClusterClient::new(channel).set_ha_state(request).await }
                })
                .await
                .with_context(|| format!("set-state on {endpoint}"))?;
            let state = response.state.unwrap_or_default();
            Answer {
                json: json!({ "node": endpoint, "previous_mode": enum_json::<v1::HaMode>(response.previous_mode), "state": state_json(&state) }),
                table: table(
                    &["NODE", "PREVIOUS MODE", "MODE", "ROLE"],
                    vec![vec![
                        state.node_id.clone(),
                        mode_name(response.previous_mode),
                        mode_name(state.mode),
                        role_name(state.role),
                    ]],
                ),
            }
        }
        HaCommand::Remove { node_id } => {
            let response = leader_call!(
                client,
                ClusterClient,
                remove_ha_node,
                RemoveHaNodeRequest { node_id: node_id.clone() },
                format!("removing coordinator {node_id}")
            );
            Answer {
                json: json!({
                    "removed": node_id,
                    "role": enum_json::<v1::HaRole>(response.role),
                    "last_seen_ms_ago": response.last_seen_ms_ago,
                }),
                table: format!(
                    "removed coordinator {node_id} ({}, last seen {} ms ago)\n",
                    role_name(response.role),
                    response.last_seen_ms_ago
                ),
            }
        }
        HaCommand::Priority { node: None } => priorities_of_endpoints(client).await,
        HaCommand::Priority { node: Some(endpoint) } => {
            let response = client
                .call_endpoint(&endpoint, |channel| async move {
                    ClusterClient::new(channel).get_priority(GetPriorityRequest {}).await
                })
                .await
                .with_context(|| format!("priority of {endpoint}"))?;
            Answer {
                json: json!({ "node": endpoint, "priority": response.priority }),
                table: table(&["NODE", "PRIORITY"], vec![vec![endpoint, response.priority.to_string()]]),
            }
        }
        HaCommand::SetPriority { priority, target } => {
            let endpoint = node(client, &target.node);
            let response = client
                .call_endpoint(&endpoint, |channel| {
                    let request = with_override(SetPriorityRequest { priority }, &target);
                    async move { ClusterClient::new(channel).set_priority(request).await }
                })
                .await
                .with_context(|| format!("set-priority on {endpoint}"))?;
            Answer {
                json: json!({ "node": endpoint, "previous_priority": response.previous_priority, "priority": priority }),
                table: table(
                    &["NODE", "PREVIOUS PRIORITY", "PRIORITY"],
                    vec![vec![endpoint, response.previous_priority.to_string(), priority.to_string()]],
                ),
            }
        }
    })
}

async fn datanodes(client: &Client, command: DataNodesCommand) -> anyhow::Result<Answer> {
    Ok(match command {
        DataNodesCommand::List => {
            let response = client
                .call_leader(|channel| async move {
                    DataNodesClient::new(channel).list_data_nodes(ListDataNodesRequest {}).await
                })
                .await
                .context("listing data nodes")?;
            let rows = response
                .nodes
                .iter()
                .map(|node| {
                    vec![
                        node.node_id.clone(),
                        node.incarnation.chars().take(8).collect(),
                        node.address.clone(),
                        if node.registered { "yes".into() } else { format!("tombstone ({})", node.departure) },
                        lease_status_name(node.status).into(),
                        if node.silent_ms < 0 { "-".to_owned() } else { format!("{}ms", node.silent_ms) },
                        node.acked_version.to_string(),
                    ]
                })
                .collect();
            let nodes: Vec<Value> = response
                .nodes
                .iter()
                .map(|node| {
                    json!({
                        "node_id": node.node_id,
                        "incarnation": node.incarnation,
                        "address": node.address,
                        "registered": node.registered,
                        "departure": node.departure,
                        "status": enum_json::<DataNodeLeaseStatus>(node.status),
                        "silent_ms": node.silent_ms,
                        "acked_version": node.acked_version,
                    })
                })
                .collect();
            Answer {
                json: json!({ "version": response.version, "fence_ms": response.fence_ms, "proceed_after_ms": response.proceed_after_ms, "nodes": nodes }),
                table: table(&["NODE", "INCARNATION", "ADDRESS", "REGISTERED", "LEASE", "SILENT", "ACKED"], rows),
            }
        }
        DataNodesCommand::Remove { node_id } => {
            let response = leader_call!(
                client,
                DataNodesClient,
                remove_data_node,
                RemoveDataNodeRequest { node_id: node_id.clone() },
                format!("removing data node {node_id}")
            );
            Answer {
                json: json!({ "removed": node_id, "incarnation": response.incarnation }),
                table: format!(
                    "removed data node {node_id} (incarnation {}); it is listed as a tombstone until it has provably fenced\n",
                    response.incarnation
                ),
            }
        }
        DataNodesCommand::Barrier => {
            let response = client
                .call_leader(|channel| async move { DataNodesClient::new(channel).barrier(BarrierRequest {}).await })
                .await
                .context("barrier")?;
            Answer {
                json: json!({
                    "version": response.version,
                    "acknowledged": response.acknowledged,
                    "fenced": response.fenced,
                    "waited_ms": response.waited_ms,
                }),
                table: table(
                    &["VERSION", "ACKNOWLEDGED", "FENCED", "WAITED"],
                    vec![vec![
                        response.version.to_string(),
                        response.acknowledged.len().to_string(),
                        response.fenced.join(","),
                        format!("{}ms", response.waited_ms),
                    ]],
                ),
            }
        }
    })
}

async fn agent_lease(client: &Client, agent: &str) -> anyhow::Result<Answer> {
    let state = client
        .call_endpoint(agent, |channel| async move {
            AgentClient::new(channel).get_lease_state(GetLeaseStateRequest {}).await
        })
        .await
        .with_context(|| format!("lease state of {agent}"))?;
    let name = match AgentLeaseState::try_from(state.state) {
        Ok(AgentLeaseState::Normal) => "NORMAL",
        Ok(AgentLeaseState::Fenced) => "FENCED",
        Ok(AgentLeaseState::Resyncing) => "RESYNCING",
        _ => "UNKNOWN",
    };
    Ok(Answer {
        json: json!({
            "node_id": state.node_id,
            "incarnation": state.incarnation,
            "state": enum_json::<AgentLeaseState>(state.state),
            "lease_remaining_ms": state.lease_remaining_ms,
            "fence_ms": state.fence_ms,
            "store_epoch": state.store_epoch,
            "applied_version": state.applied_version,
            "term": state.term,
            "leader": state.leader_node_id,
            "fences": state.fences,
        }),
        table: table(
            &["NODE", "STATE", "LEASE LEFT", "VERSION", "LEADER", "TERM", "FENCES"],
            vec![vec![
                state.node_id.clone(),
                name.into(),
                format!("{}ms", state.lease_remaining_ms),
                state.applied_version.to_string(),
                state.leader_node_id.clone(),
                state.term.to_string(),
                state.fences.to_string(),
            ]],
        ),
    })
}

fn lease_status_name(value: i32) -> &'static str {
    match DataNodeLeaseStatus::try_from(value) {
        Ok(DataNodeLeaseStatus::Live) => "live",
        Ok(DataNodeLeaseStatus::FencedByNow) => "fenced-by-now",
        Ok(DataNodeLeaseStatus::Unknown) => "unknown",
        Ok(DataNodeLeaseStatus::NeverGranted) => "never-granted",
        _ => "unspecified",
    }
}

fn node(client: &Client, node: &Option<String>) -> String {
    node.clone().unwrap_or_else(|| client.endpoints()[0].clone())
}

fn with_override<T>(message: T, target: &Target) -> Request<T> {
    let mut request = Request::new(message);
    if target.allow_non_leader {
        request.metadata_mut().insert(ALLOW_NON_LEADER_HEADER, "true".parse().expect("a valid header value"));
    }
    request
}

async fn leader(client: &Client) -> anyhow::Result<Answer> {
    let leader: LeaderInfo = client.leader().await.context("finding the leader")?;
    Ok(Answer {
        json: json!({
            "node_id": leader.node_id,
            "address": leader.address,
            "term": leader.term,
            "lease_expires_at_ms": leader.lease_expires_at_ms,
            "lease_remaining_ms": leader.lease_remaining_ms,
        }),
        table: table(
            &["LEADER", "ADDRESS", "TERM", "LEASE LEFT"],
            vec![vec![
                leader.node_id.clone(),
                leader.address.clone(),
                leader.term.to_string(),
                format!("{}ms", leader.lease_remaining_ms),
            ]],
        ),
    })
}

/// Every endpoint's gRPC health (service `""`: the process serves), printed at once; an error
/// (exit 3) when one is not healthy.
async fn endpoint_health(client: &Client, output: Output) -> anyhow::Result<Answer> {
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_client::HealthClient;
    let mut rows = Vec::new();
    let mut answers = Vec::new();
    let mut unhealthy = Vec::new();
    let checks = ask_each(client, |channel| async move {
        HealthClient::new(channel).check(HealthCheckRequest { service: String::new() }).await
    });
    for (endpoint, checked, took_ms) in checks.await {
        let checked = checked.map(|answer| answer.status().as_str_name().to_owned());
        let healthy = checked.as_deref() == Ok("SERVING");
        if !healthy {
            unhealthy.push(endpoint.clone());
        }
        let status = checked.unwrap_or_else(|error| format!("unreachable ({error})"));
        rows.push(vec![endpoint.clone(), healthy.to_string(), status.clone(), format!("{took_ms:.1}ms")]);
        answers.push(json!({ "endpoint": endpoint, "healthy": healthy, "status": status, "took_ms": took_ms }));
    }
    match output {
        Output::Table => print!("{}", table(&["ENDPOINT", "HEALTHY", "STATUS", "TOOK"], rows)),
        Output::Json => println!("{}", serde_json::to_string_pretty(&Value::Array(answers))?),
    }
    if !unhealthy.is_empty() {
        let status = tonic::Status::unavailable(format!("not healthy: {}", unhealthy.join(", ")));
        return Err(anyhow::Error::new(status));
    }
    // Printed already, as a watch is.
    Ok(Answer { json: Value::Null, table: String::new() })
}

/// Asks every endpoint with `ask` (given a channel to it), one after another: each endpoint's
/// answer (or why it gave none, as `CODE: message`), and how long it took in milliseconds.
async fn ask_each<T, F, Fut>(client: &Client, mut ask: F) -> Vec<(String, Result<T, String>, f64)>
where
    F: FnMut(tonic::transport::Channel) -> Fut,
    Fut: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
{
    let mut answers = Vec::new();
    for endpoint in client.endpoints() {
        let started = std::time::Instant::now();
        let answer = match client.channel(endpoint) {
            Ok(channel) => ask(channel)
                .await
                .map(tonic::Response::into_inner)
                .map_err(|status| format!("{}: {}", code_name(status.code()), status.message())),
            Err(error) => Err(error.to_string()),
        };
        answers.push((endpoint.clone(), answer, started.elapsed().as_secs_f64() * 1000.0));
    }
    answers
}

/// Every endpoint's priority (a row says why one did not answer).
async fn priorities_of_endpoints(client: &Client) -> Answer {
    let mut rows = Vec::new();
    let mut answers = Vec::new();
    for (endpoint, asked, _) in
        ask_each(client, |channel| async move { ClusterClient::new(channel).get_priority(GetPriorityRequest {}).await })
            .await
    {
        match asked {
            Ok(answer) => {
                rows.push(vec![endpoint.clone(), answer.priority.to_string()]);
                answers.push(json!({ "node": endpoint, "priority": answer.priority }));
            }
            Err(error) => {
                rows.push(vec![endpoint.clone(), format!("unreachable ({error})")]);
                answers.push(json!({ "node": endpoint, "error": error }));
            }
        }
    }
    Answer { json: Value::Array(answers), table: table(&["NODE", "PRIORITY"], rows) }
}

/// Every endpoint's HA state (`ha state`), and with `timed` how long each took to answer
/// (`endpoint status`).
async fn states_of_endpoints(client: &Client, timed: bool) -> Answer {
    let mut rows = Vec::new();
    let mut states = Vec::new();
    for (endpoint, asked, took_ms) in
        ask_each(client, |channel| async move { ClusterClient::new(channel).get_ha_state(GetHaStateRequest {}).await })
            .await
    {
        let mut row = match asked {
            Ok(state) => {
                let mut answer = json!({ "endpoint": endpoint, "state": state_json(&state) });
                if timed {
                    answer["took_ms"] = json!(took_ms);
                }
                states.push(answer);
                vec![
                    endpoint.clone(),
                    state.node_id.clone(),
                    mode_name(state.mode),
                    role_name(state.role),
                    state.priority.to_string(),
                    state.term.to_string(),
                    state.leader_node_id.clone(),
                    state.version.clone(),
                    state.store_backend.clone(),
                ]
            }
            Err(error) => {
                let mut row = vec!["-".to_owned(); 9];
                row[0] = endpoint.clone();
                row[3] = format!("unreachable ({error})");
                states.push(json!({ "endpoint": endpoint, "error": error }));
                row
            }
        };
        if timed {
            row.push(format!("{took_ms:.1}ms"));
        }
        rows.push(row);
    }
    let mut header = vec!["ENDPOINT", "NODE", "MODE", "ROLE", "PRIORITY", "TERM", "LEADER", "VERSION", "STORE"];
    if timed {
        header.push("TOOK");
    }
    Answer { json: Value::Array(states), table: table(&header, rows) }
}

async fn registry(client: &Client) -> anyhow::Result<Answer> {
    let response = client
        .call_leader(|channel| async move { ClusterClient::new(channel).list_ha_states(ListHaStatesRequest {}).await })
        .await
        .context("listing HA states")?;
    let rows = response
        .nodes
        .iter()
        .map(|node| {
            vec![
                node.node_id.clone(),
                node.address.clone(),
                mode_name(node.mode),
                role_name(node.role),
                node.priority.to_string(),
                if node.alive { "yes".into() } else { "no".into() },
                format!("{}ms", node.last_seen_ms_ago),
            ]
        })
        .collect();
    let nodes: Vec<Value> = response
        .nodes
        .iter()
        .map(|node| {
            json!({
                "node_id": node.node_id,
                "address": node.address,
                "mode": enum_json::<v1::HaMode>(node.mode),
                "role": enum_json::<v1::HaRole>(node.role),
                "priority": node.priority,
                "alive": node.alive,
                "holds_lease": node.holds_lease,
                "last_seen_ms_ago": node.last_seen_ms_ago,
            })
        })
        .collect();
    Ok(Answer {
        json: json!({ "term": response.term, "nodes": nodes }),
        table: table(&["NODE", "ADDRESS", "MODE", "ROLE", "PRIORITY", "ALIVE", "LAST SEEN"], rows),
    })
}

fn state_json(state: &HaState) -> Value {
    json!({
        "node_id": state.node_id,
        "address": state.address,
        "mode": enum_json::<v1::HaMode>(state.mode),
        "role": enum_json::<v1::HaRole>(state.role),
        "priority": state.priority,
        "term": state.term,
        "leader_node_id": state.leader_node_id,
        "version": state.version,
        "store_backend": state.store_backend,
    })
}

fn mode_name(value: i32) -> String {
    leasehold_coordinator::convert::mode_from_proto(value).map_or_else(|| "unknown".into(), |mode| mode.to_string())
}

fn role_name(value: i32) -> String {
    match leasehold::v1::HaRole::try_from(value) {
        Ok(leasehold::v1::HaRole::Starting) => "starting",
        Ok(leasehold::v1::HaRole::Leader) => "leader",
        Ok(leasehold::v1::HaRole::Follower) => "follower",
        Ok(leasehold::v1::HaRole::Standalone) => "standalone",
        Ok(leasehold::v1::HaRole::Stopped) => "stopped",
        Ok(leasehold::v1::HaRole::Lost) => "lost",
        _ => "unknown",
    }
    .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_failure_has_its_documented_exit_code() {
        for (code, exit) in [
            (Code::Unavailable, 3),
            (Code::DeadlineExceeded, 3),
            (Code::NotFound, 4),
            (Code::FailedPrecondition, 5),
            (Code::AlreadyExists, 6),
            (Code::InvalidArgument, 7),
            (Code::PermissionDenied, 8),
            (Code::Aborted, 9),
            (Code::Internal, 1),
        ] {
            assert_eq!(exit_code(code), exit, "{code:?}");
            assert!(EXIT_CODES_HELP.contains(&format!("  {exit}  ")), "{exit} is documented");
        }
    }

    #[test]
    fn names_of_unknown_enum_values_say_unknown() {
        assert_eq!(mode_name(99), "unknown");
        assert_eq!(role_name(99), "unknown");
        assert_eq!(role_name(2), "leader");
        assert_eq!(mode_name(4), "hot-standby");
    }
}
