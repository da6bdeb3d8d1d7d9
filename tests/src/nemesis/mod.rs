//! The nemesis: a cluster of real processes (three coordinators, a few agents) on one store,
//! every agent↔coordinator link and every coordinator↔store link through a chaos proxy, a
//! seeded schedule of faults, a workload recorded as a history, and checkers run over it.
//!
//! # Layout
//! - [`schedule`]: the faults of a seed (pure, replayable).
//! - [`workload`]: DDL clients with a model of their database, readers on every agent, barriers.
//! - [`history`]: operations with invoke and complete times on one clock, and their outcomes.
//! - [`check`]: the checkers over a history.
//!
//! A run: start the cluster, start the workload, inject the schedule, heal everything, let the
//! workload finish, then check liveness (a leader, every agent NORMAL, a fresh DDL, no procedure
//! left running) and safety (one leader per term, no stale read after a DDL or barrier returned,
//! DDL answers consistent and in real-time order, every acknowledged DDL in the final catalog
//! once, no bucket owned twice).

pub mod check;
pub mod history;
pub mod schedule;
pub mod workload;

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use leasehold::v1::assignments_client::AssignmentsClient;
use leasehold::v1::catalog_client::CatalogClient;
use leasehold::v1::procedures_client::ProceduresClient;
use leasehold::v1::{
    AgentLeaseState, CreatePoolRequest, GetSnapshotRequest, GetTableRequest, ListDatabasesRequest,
    ListProceduresRequest, ListTablesRequest, ObjectState, catalog_change,
};
use leasehold::{Client, ClientOptions};
use leasehold_chaos::{Fault as ProxyFault, Proxy};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use self::history::{History, Op, Outcome};
use self::schedule::{Around, Direction, Fault, Shape, Step};
use self::workload::{AgentAddresses, ClientResult, Namespace, TableModel};
use crate::observer::LeaderObserver;
use crate::ownership::{self, OwnershipChecker};
use crate::store::Kind;
use crate::{AgentLab, TestAgent, phase};

/// The pool whose buckets the agents share.
const POOL: &str = "work";
/// How many DDL clients, each on a database of its own.
const DDL_CLIENTS: usize = 2;
/// How long the heal phase may take for each of its checks.
const HEAL_BOUND: Duration = Duration::from_secs(30);

/// What to run.
#[derive(Debug, Clone)]
pub struct Config {
    /// The `leasehold` binary (built with failpoints).
    pub binary: String,
    /// The store the coordinators share.
    pub store: Kind,
    /// The seed of the schedule and of the workload's choices.
    pub seed: u64,
    /// How long faults are injected; the heal phase follows.
    pub length: Duration,
    /// How many agents.
    pub agents: usize,
}

/// What a run did and found.
#[derive(Debug)]
pub struct Report {
    /// What ran.
    pub config: Config,
    /// The faults injected.
    pub schedule: Vec<Step>,
    /// Every operation, faults included.
    pub ops: Vec<Op>,
    /// What the checkers found; empty when every promise held.
    pub violations: Vec<String>,
    /// How many ownership samples the bucket check looked at.
    pub ownership_samples: usize,
    /// How many terms had a leader.
    pub terms: usize,
    /// How long the run took, heal and checks included.
    pub took: Duration,
    /// When a promise was broken: every process's output (replaced ones included), by name.
    pub outputs: Vec<(String, String)>,
}

impl Report {
    /// Faults by kind.
    pub fn faults_by_kind(&self) -> BTreeMap<&'static str, usize> {
        let mut counts = BTreeMap::new();
        for step in &self.schedule {
            *counts.entry(step.fault.name()).or_default() += 1;
        }
        counts
    }

    /// Operations (faults aside) by kind and outcome.
    pub fn operations_by_outcome(&self) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        for op in self.ops.iter().filter(|op| op.process != "nemesis") {
            let kind = if op.is_ddl() { "ddl" } else { op.kind.as_str() };
            *counts.entry(format!("{kind} {}", op.outcome.label())).or_default() += 1;
        }
        counts
    }

    /// A summary for people: what ran, faults by kind, operations by outcome, violations.
    pub fn summary(&self) -> String {
        let mut text = format!(
            "nemesis seed {} on {:?}: {} s of faults, {:.1} s in all, {} terms, {} ownership samples\n",
            self.config.seed,
            self.config.store,
            self.config.length.as_secs(),
            self.took.as_secs_f64(),
            self.terms,
            self.ownership_samples
        );
        text += "faults:";
        for (kind, count) in self.faults_by_kind() {
            text += &format!(" {kind}={count}");
        }
        text += "\noperations:";
        for (kind, count) in self.operations_by_outcome() {
            text += &format!(" [{kind}]={count}");
        }
        text += &format!("\nviolations: {}\n", self.violations.len());
        for violation in &self.violations {
            text += &format!("  - {violation}\n");
        }
        text
    }

    /// Writes the history as JSON lines: the schedule's faults and every operation, in the
    /// order they completed, then one line with the violations.
    pub fn write_history(&self, path: &std::path::Path) -> std::io::Result<()> {
        let mut file = std::io::BufWriter::new(std::fs::File::create(path)?);
        for op in &self.ops {
            serde_json::to_writer(&mut file, op)?;
            file.write_all(b"\n")?;
        }
        let end = serde_json::json!({
            "seed": self.config.seed,
            "store": format!("{:?}", self.config.store),
            "schedule": self.schedule,
            "violations": self.violations,
        });
        serde_json::to_writer(&mut file, &end)?;
        file.write_all(b"\n")?;
        file.flush()?;
        let stem = path.with_extension("");
        for (index, (name, output)) in self.outputs.iter().enumerate() {
            std::fs::write(format!("{}-{index:02}-{name}.log", stem.display()), output)?;
        }
        Ok(())
    }
}

/// Checks a history written by [`Report::write_history`] again with the checkers that need
/// nothing but the history (stale reads, DDL answers): for a checker that changed since.
/// Returns how many operations it read, and the violations.
pub fn recheck(path: &std::path::Path) -> std::io::Result<(usize, Vec<String>)> {
    let text = std::fs::read_to_string(path)?;
    let ops: Vec<Op> = text.lines().filter_map(|line| serde_json::from_str(line).ok()).collect();
    if ops.is_empty() {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, "no operation in it"));
    }
    let mut violations = check::stale_reads(&ops);
    violations.extend(check::ddl_answers(&ops));
    Ok((ops.len(), violations))
}

/// `poll::within`, worded as a liveness violation.
async fn within<T, F, Fut>(what: &str, timeout: Duration, check: F) -> Result<T, String>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    crate::poll::within(what, timeout, check).await.map_err(|error| format!("liveness after the heal: {error}"))
}

fn proxy_faults(direction: Direction) -> (ProxyFault, ProxyFault) {
    match direction {
        Direction::Both => (ProxyFault::Drop, ProxyFault::Drop),
        Direction::Requests => (ProxyFault::Drop, ProxyFault::Pass),
        Direction::Responses => (ProxyFault::Pass, ProxyFault::Drop),
    }
}

fn node_id(coordinator: usize) -> String {
    format!("c{}", coordinator + 1)
}

fn as_refs(env: &[(String, String)]) -> Vec<(&str, &str)> {
    env.iter().map(|(key, value)| (key.as_str(), value.as_str())).collect()
}

/// The cluster under test and what the faults need to undo themselves.
struct Cluster {
    lab: AgentLab,
    coordinator_env: Vec<(String, String)>,
    agent_env: Vec<(String, String)>,
    addresses: AgentAddresses,
    ownership: OwnershipChecker,
    /// Per term, the coordinators whose logs say they became its leader (logs of processes
    /// since replaced included).
    logged_leaders: BTreeMap<u64, BTreeSet<String>>,
    /// The output of every process replaced during the run, by name.
    retired_output: Vec<(String, String)>,
}

impl Cluster {
    fn agent_proxies(&self, agent: usize) -> impl Iterator<Item = &Proxy> {
        let agent = &self.lab.agents[agent];
        agent.heartbeat_proxies.iter().chain(std::iter::once(&agent.push_proxy))
    }

    fn harvest_logs(&mut self, node: &str) {
        for event in self.lab.cluster.node(node).events("became leader") {
            if let Some(term) = event["term"].as_u64() {
                self.logged_leaders.entry(term).or_default().insert(node.to_owned());
            }
        }
    }

    fn start(&mut self, fault: &Fault) {
        match *fault {
            Fault::KillCoordinator { coordinator } => {
                let node = node_id(coordinator);
                self.lab.cluster.node_mut(&node).kill();
                self.harvest_logs(&node);
                self.retired_output.push((node.clone(), self.lab.cluster.node(&node).output()));
            }
            Fault::PauseCoordinator { coordinator } => self.lab.cluster.node(&node_id(coordinator)).pause(),
            Fault::CutFromStore { coordinator, direction } => {
                let (requests, responses) = proxy_faults(direction);
                if let Some(proxy) = self.lab.store_proxies.get(&node_id(coordinator)) {
                    proxy.set(requests, responses);
                }
            }
            Fault::CutFromAgents { coordinator, direction } => {
                let (requests, responses) = proxy_faults(direction);
                for agent in &self.lab.agents {
                    agent.heartbeat_proxies[coordinator].set(requests, responses);
                }
            }
            Fault::StoreOutage => self.lab.store_proxies.values().for_each(Proxy::blackhole),
            Fault::StoreRestart => {
                self.lab.store_proxies.values().for_each(|proxy| proxy.set(ProxyFault::Reset, ProxyFault::Reset))
            }
            Fault::KillAgent { agent } => {
                let node = &mut self.lab.agents[agent].node;
                node.kill();
                self.retired_output.push((node.node_id.clone(), node.output()));
            }
            Fault::PauseAgent { agent } => self.lab.agents[agent].node.pause(),
            Fault::PartitionAgent { agent, direction } => {
                let (requests, responses) = proxy_faults(direction);
                self.agent_proxies(agent).for_each(|proxy| proxy.set(requests, responses));
            }
            Fault::DelayAgent { agent, delay_ms } => {
                let delay = ProxyFault::Delay(Duration::from_millis(delay_ms));
                self.agent_proxies(agent).for_each(|proxy| proxy.set(delay, delay));
            }
            Fault::ResetAgent { agent } => {
                self.agent_proxies(agent).for_each(|proxy| proxy.set(ProxyFault::Reset, ProxyFault::Pass))
            }
        }
    }

    async fn end(&mut self, fault: &Fault) {
        match *fault {
            Fault::KillCoordinator { coordinator } => {
                let env = self.coordinator_env.clone();
                self.lab.cluster.respawn_in_place(&node_id(coordinator), &as_refs(&env));
            }
            Fault::PauseCoordinator { coordinator } => self.lab.cluster.node(&node_id(coordinator)).resume(),
            Fault::CutFromStore { coordinator, .. } => {
                if let Some(proxy) = self.lab.store_proxies.get(&node_id(coordinator)) {
                    proxy.heal();
                }
            }
            Fault::CutFromAgents { coordinator, .. } => {
                for agent in &self.lab.agents {
                    agent.heartbeat_proxies[coordinator].heal();
                }
            }
            Fault::StoreOutage | Fault::StoreRestart => self.lab.store_proxies.values().for_each(Proxy::heal),
            Fault::KillAgent { agent } => {
                let name = self.lab.agents[agent].node.node_id.clone();
                let env = self.agent_env.clone();
                let restarted = TestAgent::start(&mut self.lab.cluster, &name, &as_refs(&env)).await;
                self.addresses.lock().expect("addresses poisoned")[agent] = restarted.node.grpc.clone();
                self.ownership.watch(&name, &restarted.node.grpc);
                self.lab.agents[agent] = restarted;
            }
            Fault::PauseAgent { agent } => self.lab.agents[agent].node.resume(),
            Fault::PartitionAgent { agent, .. } | Fault::DelayAgent { agent, .. } | Fault::ResetAgent { agent } => {
                self.agent_proxies(agent).for_each(Proxy::heal)
            }
        }
    }
}

/// Runs one schedule and checks it; `None` when the store is not configured here.
pub async fn run(config: &Config) -> Option<Report> {
    let started = Instant::now();
    let binary: &'static str = Box::leak(config.binary.clone().into_boxed_str());
    let lease = crate::LeaseSettings::default();
    // Buckets of a silent member move as soon as the rule allows, so handoffs happen often.
    let offline = format!("{}ms", lease.proceed_after().as_millis() + 1);
    let mut coordinator_env = vec![("LEASEHOLD_ASSIGN__OFFLINE_TIMEOUT".to_owned(), offline)];
    if config.store == Kind::Sqlite {
        // A SQLite file has no link to cut: the store fails from within instead.
        coordinator_env.push((
            "LEASEHOLD_FAILPOINTS".to_owned(),
            "store::begin-fails=2%return;store::commit-answer-lost=1%return".to_owned(),
        ));
    }
    // Hosts refuse a change now and then, so some DDL roll back.
    let agent_env = vec![
        ("LEASEHOLD_AGENT_POOLS".to_owned(), POOL.to_owned()),
        ("LEASEHOLD_FAILPOINTS".to_owned(), "agent::cannot-apply=1%return".to_owned()),
    ];
    let names: Vec<String> = (1..=config.agents).map(|index| format!("dn{index}")).collect();
    let agent_refs = as_refs(&agent_env);
    let agents: Vec<(&str, &[(&str, &str)])> =
        names.iter().map(|name| (name.as_str(), agent_refs.as_slice())).collect();
    let coordinator_refs = as_refs(&coordinator_env);
    let mut lab = if config.store == Kind::Sqlite {
        AgentLab::start(binary, config.store, 3, &coordinator_refs, &agents).await?
    } else {
        AgentLab::start_behind_store_proxies(binary, config.store, 3, &coordinator_refs, &agents).await?
    };
    let endpoints: Vec<String> = lab.cluster.node_addresses();
    let client = Client::new(
        endpoints.clone(),
        ClientOptions {
            request_timeout: Duration::from_secs(20),
            retry_deadline: Duration::from_secs(5),
            ..ClientOptions::default()
        },
    )
    .expect("a client");
    client
        .call_leader(|channel| async move {
            AssignmentsClient::new(channel).create_pool(CreatePoolRequest { name: POOL.into(), bucket_count: 12 }).await
        })
        .await
        .expect("creating the pool");

    let mut ownership = OwnershipChecker::new(POOL);
    for agent in &lab.agents {
        ownership.watch(&agent.node.node_id, &agent.node.grpc);
    }
    let addresses: AgentAddresses =
        Arc::new(Mutex::new(lab.agents.iter().map(|agent| agent.node.grpc.clone()).collect()));
    let observer = LeaderObserver::start(lab.cluster.endpoints());
    let mut cluster = Cluster {
        lab,
        coordinator_env,
        agent_env,
        addresses: addresses.clone(),
        ownership,
        logged_leaders: BTreeMap::new(),
        retired_output: Vec::new(),
    };

    // The workload.
    let history = History::new();
    let stop = CancellationToken::new();
    let give_up = CancellationToken::new();
    let mut clients: JoinSet<ClientResult> = JoinSet::new();
    for index in 1..=DDL_CLIENTS {
        let task =
            workload::ddl_client(index, config.seed, client.clone(), history.clone(), stop.clone(), give_up.clone());
        clients.spawn(task);
    }
    let mut others = JoinSet::new();
    for index in 0..config.agents {
        others.spawn(workload::reader(
            index,
            config.seed,
            DDL_CLIENTS,
            addresses.clone(),
            history.clone(),
            stop.clone(),
        ));
    }
    others.spawn(workload::barriers(client.clone(), history.clone(), stop.clone()));

    // The faults.
    let shape = Shape {
        coordinators: 3,
        agents: config.agents,
        store_links: config.store != Kind::Sqlite,
        length: config.length,
        max_concurrent: 3,
    };
    let timings = &cluster.lab.cluster.timings;
    let around =
        Around { lease_ttl: timings.lease_ttl, fence: lease.fence, heartbeat_timeout: lease.heartbeat_timeout };
    let steps = schedule::schedule(config.seed, &shape, &around);
    phase(&format!("nemesis seed {}: {} faults over {:?}", config.seed, steps.len(), config.length));
    let mut events: Vec<(Duration, bool, usize)> = Vec::new();
    for (index, step) in steps.iter().enumerate() {
        events.push((step.at, true, index));
        events.push((step.at + step.lasts, false, index));
    }
    // At one instant, ends before starts: a target is free again before it is taken.
    events.sort_by_key(|(at, starts, _)| (*at, *starts));
    let faults_start = Instant::now();
    let mut injected_us = vec![0u64; steps.len()];
    for (at, starts, index) in events {
        tokio::time::sleep_until(faults_start + at).await;
        let fault = steps[index].fault;
        if starts {
            injected_us[index] = history.now_us();
            cluster.start(&fault);
        } else {
            cluster.end(&fault).await;
            history.record(Op {
                process: "nemesis".into(),
                kind: fault.name().into(),
                target: serde_json::to_string(&fault).unwrap_or_default(),
                request_id: String::new(),
                invoke_us: injected_us[index],
                complete_us: history.now_us(),
                outcome: Outcome::Injected,
            });
        }
    }

    // The heal: every fault has ended; stop the workload and let every DDL get its answer.
    phase("nemesis: healed; the workload finishes");
    stop.cancel();
    let give_up_later = give_up.clone();
    let deadline = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(90)).await;
        give_up_later.cancel();
    });
    let mut results = Vec::new();
    while let Some(result) = clients.join_next().await {
        results.push(result.expect("a DDL client panicked"));
    }
    deadline.abort();
    while others.join_next().await.is_some() {}
    let mut violations: Vec<String> = results.iter().flat_map(|result| result.violations.clone()).collect();

    phase("nemesis: liveness after the heal");
    violations.extend(liveness(&mut cluster, &client, &history).await.err());

    phase("nemesis: checks");
    let ops = history.ops();
    violations.extend(check::stale_reads(&ops));
    violations.extend(check::ddl_answers(&ops));
    let rows = procedure_rows(&client).await;
    match &rows {
        Ok(rows) => violations.extend(check::procedures(&ops, rows)),
        Err(error) => violations.push(error.clone()),
    }
    for result in &results {
        violations.extend(compare_catalog(&client, result).await);
    }
    let mut leaders = observer.leaders_by_term();
    for node in cluster.lab.cluster.node_ids() {
        cluster.harvest_logs(&node);
    }
    for (term, nodes) in &cluster.logged_leaders {
        leaders.entry(*term).or_default().extend(nodes.iter().cloned());
    }
    violations.extend(check::one_leader_per_term(&leaders));
    let samples = cluster.ownership.stop().await;
    let mut outputs = Vec::new();
    if !violations.is_empty() {
        outputs = std::mem::take(&mut cluster.retired_output);
        for node in cluster.lab.cluster.node_ids() {
            outputs.push((node.clone(), cluster.lab.cluster.node(&node).output()));
        }
        for agent in &cluster.lab.agents {
            outputs.push((agent.node.node_id.clone(), agent.node.output()));
        }
    }
    violations.extend(ownership::check(&samples).err().map(|violation| format!("bucket ownership: {violation}")));
    Some(Report {
        config: config.clone(),
        schedule: steps,
        ops,
        violations,
        ownership_samples: samples.len(),
        terms: leaders.len(),
        took: started.elapsed(),
        outputs,
    })
}

/// After the heal: one leader, every agent NORMAL, a fresh DDL succeeds, no procedure still
/// running, and every agent serves at least the fresh DDL's version.
async fn liveness(cluster: &mut Cluster, client: &Client, history: &History) -> Result<(), String> {
    // A coordinator restarted during the run may still wait for its store, or may have given up
    // (a supervisor would start it again): every one serves within the bound.
    let deadline = Instant::now() + HEAL_BOUND;
    for node in cluster.lab.cluster.node_ids() {
        loop {
            match cluster.lab.cluster.node_mut(&node).serving() {
                Ok(true) => break,
                Ok(false) => {}
                Err(status) => {
                    cluster.retired_output.push((node.clone(), cluster.lab.cluster.node(&node).output()));
                    let env = cluster.coordinator_env.clone();
                    phase(&format!("nemesis: {node} exited with {status} before serving; starting it again"));
                    cluster.lab.cluster.respawn_in_place(&node, &as_refs(&env));
                }
            }
            if Instant::now() >= deadline {
                return Err(format!("liveness: {node} did not serve within {HEAL_BOUND:?} after the heal"));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let lab = &mut cluster.lab;
    let mut coordinators = Vec::new();
    for node in lab.cluster.node_ids() {
        coordinators.push(lab.cluster.node(&node).client());
    }
    within("exactly one coordinator leads", HEAL_BOUND, || {
        let mut coordinators = coordinators.clone();
        async move {
            let mut leaders = 0;
            for coordinator in &mut coordinators {
                if let Ok(state) = coordinator.get_ha_state(leasehold::v1::GetHaStateRequest {}).await {
                    leaders += usize::from(state.into_inner().role == leasehold::v1::HaRole::Leader as i32);
                }
            }
            (leaders == 1).then_some(())
        }
    })
    .await?;
    for agent in &lab.agents {
        let what = format!("{} holds a lease", agent.node.node_id);
        within(&what, HEAL_BOUND, || async { agent.is(AgentLeaseState::Normal).await.then_some(()) }).await?;
    }
    let fresh = workload::fresh_ddl(client, history, HEAL_BOUND).await;
    if fresh.version().is_none() {
        return Err(format!("liveness: a fresh DDL after the heal did not succeed: {}", fresh.label()));
    }
    within("no procedure is still running", HEAL_BOUND, || async {
        let running = client
            .call_leader(|channel| async move {
                let request = ListProceduresRequest { state: "running".into(), limit: 100 };
                ProceduresClient::new(channel).list_procedures(request).await
            })
            .await
            .ok()?;
        running.procedures.is_empty().then_some(())
    })
    .await?;
    // Every agent serves (one whose lease ran out during the faults may fence just now, and
    // resync): every read is recorded, so the stale-read check holds each to the fresh version.
    for (index, agent) in lab.agents.iter().enumerate() {
        let what = format!("{} serves after the heal", agent.node.node_id);
        within(&what, HEAL_BOUND, || async move {
            let invoke_us = history.now_us();
            let outcome = match agent.resolve("n0", "t").await {
                Ok((version, _)) => Outcome::Ok { version },
                Err(status) => Outcome::of_status(&status),
            };
            history.record(Op {
                process: format!("reader-{index}"),
                kind: "resolve".into(),
                target: format!("n0.t@{}", agent.node.grpc),
                request_id: String::new(),
                invoke_us,
                complete_us: history.now_us(),
                outcome: outcome.clone(),
            });
            outcome.version().map(|_| ())
        })
        .await?;
    }
    Ok(())
}

async fn procedure_rows(client: &Client) -> Result<Vec<check::ProcedureRow>, String> {
    let answer = client
        .call_leader(|channel| async move {
            let request = ListProceduresRequest { state: String::new(), limit: 10_000 };
            ProceduresClient::new(channel).list_procedures(request).await
        })
        .await
        .map_err(|error| format!("listing procedures after the heal: {error}"))?;
    Ok(answer
        .procedures
        .into_iter()
        .map(|procedure| check::ProcedureRow {
            request_id: procedure.request_id,
            state: procedure.state,
            version: procedure.version,
        })
        .collect())
}

/// Every DDL a client had answered OK is in the final catalog, applied once: the client's
/// database is exactly its model.
async fn compare_catalog(client: &Client, result: &ClientResult) -> Vec<String> {
    let database = result.database.clone();
    let found = async {
        let databases = client
            .call_leader(
                |channel| async move { CatalogClient::new(channel).list_databases(ListDatabasesRequest {}).await },
            )
            .await
            .map_err(|error| error.to_string())?;
        let mut actual = Namespace {
            exists: databases.databases.iter().any(|found| found.name == database),
            ..Namespace::default()
        };
        if !actual.exists {
            return Ok(actual);
        }
        let tables = client
            .call_leader(|channel| {
                let request = ListTablesRequest { database: database.clone() };
                async move { CatalogClient::new(channel).list_tables(request).await }
            })
            .await
            .map_err(|error| error.to_string())?;
        for table in tables.tables {
            let full = client
                .call_leader(|channel| {
                    let request = GetTableRequest { database: database.clone(), name: table.name.clone() };
                    async move { CatalogClient::new(channel).get_table(request).await }
                })
                .await
                .map_err(|error| error.to_string())?;
            let columns = full.columns.iter().map(|column| column.name.clone()).collect();
            actual.tables.insert(full.name.clone(), TableModel { columns, ttl_ms: full.ttl_ms });
        }
        // Views are listed by no call of their own: the whole catalog's snapshot holds them.
        let snapshot = client
            .call_leader(|channel| async move {
                let request = GetSnapshotRequest { since_version: 0, store_epoch: String::new() };
                CatalogClient::new(channel).get_snapshot(request).await
            })
            .await
            .map_err(|error| error.to_string())?;
        for change in snapshot.snapshot {
            if let Some(catalog_change::Kind::PutView(view)) = change.kind
                && view.database == database
                && view.state == ObjectState::Visible as i32
            {
                actual.views.insert(view.name);
            }
        }
        Ok::<Namespace, String>(actual)
    };
    match found.await {
        Err(error) => vec![format!("reading database {database} after the heal: {error}")],
        Ok(actual) => {
            let expected = &result.model;
            if actual == *expected {
                Vec::new()
            } else {
                vec![format!(
                    "database {database}: the catalog holds {actual:?}, the acknowledged DDL make {expected:?}"
                )]
            }
        }
    }
}
