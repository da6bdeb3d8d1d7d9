//! The nemesis's workload: DDL clients that each own a database and keep a model of it, readers
//! resolving tables through every agent's cache, and a barrier caller. Every call is recorded
//! in the history.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use leasehold::Client;
use leasehold::status::{error_reason, reason};
use leasehold::v1::agent_client::AgentClient;
use leasehold::v1::alter_table_request::Action;
use leasehold::v1::catalog_client::CatalogClient;
use leasehold::v1::data_nodes_client::DataNodesClient;
use leasehold::v1::{
    BarrierRequest, ColumnCategory, CreateViewRequest, DataType, DdlResponse, DropDatabaseRequest, DropTableRequest,
    DropViewRequest, ResolveTableRequest,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio_util::sync::CancellationToken;
use tonic::Status;
use tonic::transport::Channel;

use super::history::{History, Op, Outcome};
use crate::agents::not_found_version;
use crate::process::channel;
use crate::requests::{alter, column, create_database, create_table};

/// Tables, columns and views a client picks from: few, so that operations collide.
const TABLES: [&str; 3] = ["t0", "t1", "t2"];
const COLUMNS: [&str; 3] = ["c0", "c1", "c2"];
const VIEWS: [&str; 2] = ["v0", "v1"];

/// A table as the model expects it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableModel {
    /// Column names.
    pub columns: BTreeSet<String>,
    /// The table's own TTL.
    pub ttl_ms: u64,
}

/// One client's database as the model expects it, from the DDL answered so far.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Namespace {
    /// Whether the database exists.
    pub exists: bool,
    /// Its tables.
    pub tables: BTreeMap<String, TableModel>,
    /// Its views.
    pub views: BTreeSet<String>,
}

/// A DDL a client sends.
#[derive(Debug, Clone)]
enum Ddl {
    CreateDatabase,
    DropDatabase,
    CreateTable(&'static str),
    DropTable(&'static str),
    AddColumn(&'static str, &'static str),
    DropColumn(&'static str, &'static str),
    SetTtl(&'static str, u64),
    CreateView(&'static str),
    DropView(&'static str),
}

impl Ddl {
    fn kind(&self) -> &'static str {
        match self {
            Ddl::CreateDatabase => "create_database",
            Ddl::DropDatabase => "drop_database",
            Ddl::CreateTable(_) => "create_table",
            Ddl::DropTable(_) => "drop_table",
            Ddl::AddColumn(..) => "add_column",
            Ddl::DropColumn(..) => "drop_column",
            Ddl::SetTtl(..) => "set_ttl",
            Ddl::CreateView(_) => "create_view",
            Ddl::DropView(_) => "drop_view",
        }
    }

    fn target(&self, database: &str) -> String {
        match self {
            Ddl::CreateDatabase | Ddl::DropDatabase => database.to_owned(),
            Ddl::CreateTable(object) | Ddl::DropTable(object) | Ddl::CreateView(object) | Ddl::DropView(object) => {
                format!("{database}.{object}")
            }
            Ddl::AddColumn(table, column) | Ddl::DropColumn(table, column) => format!("{database}.{table}.{column}"),
            Ddl::SetTtl(table, ttl) => format!("{database}.{table}={ttl}"),
        }
    }

    /// What the model becomes once it committed.
    fn apply(&self, model: &mut Namespace) {
        match *self {
            Ddl::CreateDatabase => model.exists = true,
            Ddl::DropDatabase => *model = Namespace::default(),
            Ddl::CreateTable(table) => {
                let columns = ["time", "v"].into_iter().map(str::to_owned).collect();
                model.tables.insert(table.into(), TableModel { columns, ttl_ms: 0 });
            }
            Ddl::DropTable(table) => {
                model.tables.remove(table);
            }
            Ddl::AddColumn(table, column) => {
                model.tables.get_mut(table).expect("a modelled table").columns.insert(column.into());
            }
            Ddl::DropColumn(table, column) => {
                model.tables.get_mut(table).expect("a modelled table").columns.remove(column);
            }
            Ddl::SetTtl(table, ttl) => model.tables.get_mut(table).expect("a modelled table").ttl_ms = ttl,
            Ddl::CreateView(view) => {
                model.views.insert(view.into());
            }
            Ddl::DropView(view) => {
                model.views.remove(view);
            }
        }
    }

    /// A DDL that the model says will succeed.
    fn pick(rng: &mut StdRng, model: &Namespace) -> Ddl {
        if !model.exists {
            return Ddl::CreateDatabase;
        }
        let absent_tables: Vec<&'static str> =
            TABLES.into_iter().filter(|table| !model.tables.contains_key(*table)).collect();
        let present_tables: Vec<&'static str> =
            TABLES.into_iter().filter(|table| model.tables.contains_key(*table)).collect();
        let mut choices: Vec<Ddl> = Vec::new();
        if let Some(&table) = pick_one(rng, &absent_tables) {
            choices.extend([Ddl::CreateTable(table), Ddl::CreateTable(table)]);
        }
        if let Some(&table) = pick_one(rng, &present_tables) {
            let columns = &model.tables[table].columns;
            let column = COLUMNS[rng.random_range(0..COLUMNS.len())];
            if columns.contains(column) {
                choices.push(Ddl::DropColumn(table, column));
            } else {
                choices.extend([Ddl::AddColumn(table, column), Ddl::AddColumn(table, column)]);
            }
            choices.push(Ddl::SetTtl(table, [0, 60_000, 3_600_000][rng.random_range(0..3)]));
            choices.push(Ddl::DropTable(table));
        }
        let view = VIEWS[rng.random_range(0..VIEWS.len())];
        choices.push(if model.views.contains(view) { Ddl::DropView(view) } else { Ddl::CreateView(view) });
        if model.tables.is_empty() && model.views.is_empty() && rng.random_bool(0.3) {
            choices.push(Ddl::DropDatabase);
        }
        choices.swap_remove(rng.random_range(0..choices.len()))
    }

    async fn send(&self, channel: Channel, database: &str, request_id: &str) -> Result<DdlResponse, Status> {
        let mut catalog = CatalogClient::new(channel);
        let (database, request_id) = (database.to_owned(), request_id.to_owned());
        let answer = match *self {
            Ddl::CreateDatabase => catalog.create_database(create_database(&database, &request_id)).await,
            Ddl::DropDatabase => catalog.drop_database(DropDatabaseRequest { name: database, request_id }).await,
            Ddl::CreateTable(table) => catalog.create_table(create_table(&database, table, &request_id)).await,
            Ddl::DropTable(table) => {
                catalog.drop_table(DropTableRequest { database, name: table.into(), request_id }).await
            }
            Ddl::AddColumn(table, name) => {
                let action = Action::AddColumn(column(name, DataType::Double, ColumnCategory::Field));
                catalog.alter_table(alter(&database, table, action, &request_id)).await
            }
            Ddl::DropColumn(table, name) => {
                catalog.alter_table(alter(&database, table, Action::DropColumn(name.into()), &request_id)).await
            }
            Ddl::SetTtl(table, ttl) => {
                catalog.alter_table(alter(&database, table, Action::SetTtlMs(ttl), &request_id)).await
            }
            Ddl::CreateView(view) => {
                let definition = "SELECT time, v FROM t0".to_owned();
                catalog.create_view(CreateViewRequest { database, name: view.into(), definition, request_id }).await
            }
            Ddl::DropView(view) => catalog.drop_view(DropViewRequest { database, name: view.into(), request_id }).await,
        };
        answer.map(|response| response.into_inner())
    }
}

fn pick_one<'a, T>(rng: &mut StdRng, items: &'a [T]) -> Option<&'a T> {
    (!items.is_empty()).then(|| &items[rng.random_range(0..items.len())])
}

/// What a DDL client leaves behind: its model, and what went against it.
#[derive(Debug, Clone, Default)]
pub struct ClientResult {
    /// The database it owned.
    pub database: String,
    /// The model after every answer.
    pub model: Namespace,
    /// Answers the model did not predict, and requests left without a definite answer.
    pub violations: Vec<String>,
}

/// A DDL client: sends DDL on its own database one at a time, each with a request id that it
/// retries (following the leader) until the answer is definite, so the model knows exactly what
/// the catalog should hold. It stops picking new DDL at `stop`, and gives up on an unanswered one
/// at `give_up`. Now and then it sends an answered request again, which must get the same answer.
pub async fn ddl_client(
    index: usize,
    seed: u64,
    client: Client,
    history: History,
    stop: CancellationToken,
    give_up: CancellationToken,
) -> ClientResult {
    let database = format!("n{index}");
    let process = format!("ddl-{index}");
    let mut rng = StdRng::seed_from_u64(seed ^ (index as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let mut result = ClientResult { database: database.clone(), ..ClientResult::default() };
    let mut sent = 0u64;
    while !stop.is_cancelled() {
        let ddl = Ddl::pick(&mut rng, &result.model);
        sent += 1;
        let request_id = format!("s{seed}-{index}-{sent}");
        // One in five committed DDL is sent once more: the checker compares the answers.
        let repeats = if rng.random_bool(0.2) { 2 } else { 1 };
        let mut committed = false;
        for attempt in 0..repeats {
            let Some(outcome) = answer(&client, &ddl, &database, &request_id, &process, &history, &give_up).await
            else {
                result.violations.push(format!(
                    "{process}: {} {} (request {request_id}) had no definite answer after the heal",
                    ddl.kind(),
                    ddl.target(&database)
                ));
                return result;
            };
            match &outcome {
                Outcome::Ok { .. } => committed = true,
                // Rolled back: a data node refused the change or could not be waited out.
                Outcome::Refused { reason, .. } if reason == reason::BROADCAST_FAILED => {}
                refused if attempt == 0 => result.violations.push(format!(
                    "{process}: {} {} (request {request_id}) was {} although the model {:?} says it applies",
                    ddl.kind(),
                    ddl.target(&database),
                    refused.label(),
                    result.model
                )),
                _ => {}
            }
            if !committed {
                break;
            }
        }
        if committed {
            ddl.apply(&mut result.model);
        }
    }
    result
}

/// A DDL of database `n0` that nothing else touches, sent until its answer is definite or
/// `bound` passes (then its outcome is unknown). A roll-back (a host refused the change: the
/// agents' failpoint stays armed after the heal) is followed by another request.
pub async fn fresh_ddl(client: &Client, history: &History, bound: Duration) -> Outcome {
    let give_up = CancellationToken::new();
    let attempts = async {
        loop {
            let request_id = format!("fresh-{}", history.now_us());
            let answered = answer(client, &Ddl::CreateDatabase, "n0", &request_id, "ddl-0", history, &give_up).await;
            match answered {
                Some(Outcome::Refused { reason, .. }) if reason == reason::BROADCAST_FAILED => continue,
                answered => {
                    return answered.unwrap_or(Outcome::Unknown { code: "Cancelled".into(), reason: "gave up".into() });
                }
            }
        }
    };
    tokio::select! {
        answered = attempts => answered,
        _ = tokio::time::sleep(bound) => {
            Outcome::Unknown { code: "DeadlineExceeded".into(), reason: format!("no success within {bound:?}") }
        }
    }
}

/// Sends `ddl` until its answer is definite; `None` when `give_up` came first.
async fn answer(
    client: &Client,
    ddl: &Ddl,
    database: &str,
    request_id: &str,
    process: &str,
    history: &History,
    give_up: &CancellationToken,
) -> Option<Outcome> {
    loop {
        if give_up.is_cancelled() {
            return None;
        }
        let invoke_us = history.now_us();
        let call = client.call_leader(|channel| {
            let ddl = ddl.clone();
            async move { ddl.send(channel, database, request_id).await.map(tonic::Response::new) }
        });
        let outcome = tokio::select! {
            answer = call => Outcome::of_answer(answer.map(|response| response.version)),
            _ = give_up.cancelled() => Outcome::Unknown { code: "Cancelled".into(), reason: "gave up".into() },
        };
        history.record(Op {
            process: process.to_owned(),
            kind: ddl.kind().to_owned(),
            target: ddl.target(database),
            request_id: request_id.to_owned(),
            invoke_us,
            complete_us: history.now_us(),
            outcome: outcome.clone(),
        });
        if !matches!(outcome, Outcome::Unknown { .. }) {
            return Some(outcome);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The agents' current addresses (a restarted agent listens elsewhere).
pub type AgentAddresses = Arc<Mutex<Vec<String>>>;

/// Resolves random tables of the clients' databases through agent `index`'s cache until
/// `stop`, recording each answer: served (at its version), refused (FENCED), or unknown.
pub async fn reader(
    index: usize,
    seed: u64,
    databases: usize,
    addresses: AgentAddresses,
    history: History,
    stop: CancellationToken,
) {
    let process = format!("reader-{index}");
    let mut rng = StdRng::seed_from_u64(seed.wrapping_add(1000 + index as u64));
    let mut connected: Option<(String, AgentClient<Channel>)> = None;
    while !stop.is_cancelled() {
        let address = addresses.lock().expect("addresses poisoned")[index].clone();
        if connected.as_ref().is_none_or(|(at, _)| *at != address) {
            connected = Some((address.clone(), AgentClient::new(channel(&address))));
        }
        let (_, agent) = connected.as_mut().expect("a client");
        let database = format!("n{}", rng.random_range(1..=databases));
        let table = TABLES[rng.random_range(0..TABLES.len())];
        let invoke_us = history.now_us();
        let request = ResolveTableRequest { database: database.clone(), table: table.into() };
        let answer = tokio::time::timeout(Duration::from_millis(500), agent.resolve_table(request)).await;
        let outcome = match answer {
            Ok(Ok(response)) => Outcome::Ok { version: response.into_inner().version },
            Ok(Err(status)) if status.code() == tonic::Code::NotFound => {
                Outcome::Ok { version: not_found_version(&status) }
            }
            Ok(Err(status)) if error_reason(&status).as_deref() == Some(reason::FENCED) => {
                Outcome::Refused { code: format!("{:?}", status.code()), reason: reason::FENCED.into() }
            }
            Ok(Err(status)) => Outcome::of_status(&status),
            Err(_) => Outcome::Unknown { code: "DeadlineExceeded".into(), reason: "500 ms".into() },
        };
        history.record(Op {
            process: process.clone(),
            kind: "resolve".into(),
            target: format!("{database}.{table}@{address}"),
            request_id: String::new(),
            invoke_us,
            complete_us: history.now_us(),
            outcome,
        });
        tokio::time::sleep(Duration::from_millis(rng.random_range(5..30))).await;
    }
}

/// Runs a barrier on the leader about once a second until `stop`.
pub async fn barriers(client: Client, history: History, stop: CancellationToken) {
    while !stop.is_cancelled() {
        let invoke_us = history.now_us();
        let call =
            client.call_leader(|channel| async move { DataNodesClient::new(channel).barrier(BarrierRequest {}).await });
        let outcome = tokio::select! {
            answer = call => Outcome::of_answer(answer.map(|response| response.version)),
            _ = stop.cancelled() => Outcome::Unknown { code: "Cancelled".into(), reason: "stopped".into() },
        };
        history.record(Op {
            process: "barrier".into(),
            kind: "barrier".into(),
            target: String::new(),
            request_id: String::new(),
            invoke_us,
            complete_us: history.now_us(),
            outcome,
        });
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = stop.cancelled() => {}
        }
    }
}
