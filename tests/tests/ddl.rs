//! DDL against the real binary: the promise for every kind of DDL with healthy, blackholed
//! and push-dropping agents; rollback when an agent cannot apply; the leader killed at every
//! failpoint; request ids; racing DDL; bad input.

use std::collections::BTreeSet;
use std::time::Duration;

use leasehold::Client;
use leasehold::status::{error_reason, reason};
use leasehold::v1::alter_table_request::Action;
use leasehold::v1::catalog_client::CatalogClient;
use leasehold::v1::procedures_client::ProceduresClient;
use leasehold::v1::{
    AlterTableRequest, ColumnCategory, CreateTableRequest, CreateViewRequest, DataType, DdlResponse,
    DropDatabaseRequest, DropTableRequest, DropViewRequest, GetProcedureRequest, GetSnapshotRequest, GetTableRequest,
    ListDatabasesRequest, ListProceduresRequest, ListTablesRequest,
};
use leasehold_chaos::Fault;
use leasehold_tests::lab::ELECTION;
use leasehold_tests::requests::{alter, catalog_at, column, create_database, create_table};
use leasehold_tests::store::Kind;
use leasehold_tests::{AgentLab as Lab, Deadline, TestCluster, TestStore, eventually, phase, serial};
use tokio::time::Instant;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};

const BIN: &str = env!("CARGO_BIN_EXE_leasehold-test-node");

/// The environment of an agent whose host refuses every change.
const REFUSE_EVERY_CHANGE: (&str, &str) = ("LEASEHOLD_FAILPOINTS", "agent::cannot-apply=return");

/// How long a test waits for a log line the process wrote before it answered.
const WAIT_LOG: Duration = Duration::from_secs(5);

fn names(table: &leasehold::v1::Table) -> Vec<String> {
    table.columns.iter().map(|column| column.name.clone()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_promise_holds_for_every_ddl_with_healthy_blackholed_and_push_dropping_agents() {
    the_promise_holds_for_every_ddl(Kind::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_promise_holds_for_every_ddl_on_postgres() {
    the_promise_holds_for_every_ddl(Kind::Postgres).await;
}

/// Every kind of DDL with one agent healthy, one blackholed (waited out for T_proceed while
/// it may still hold a lease) and one whose pushes are lost (reached through heartbeats).
async fn the_promise_holds_for_every_ddl(kind: Kind) {
    let _serial = serial().await;
    let Some(mut lab) = Lab::start(BIN, kind, 1, &[], &[("dn1", &[]), ("dn2", &[]), ("dn3", &[])]).await else {
        return;
    };
    lab.agents[1].partition();
    lab.agents[2].pushes(Fault::Drop);
    let mut client = lab.leader().await;

    phase("create database: dn2 is waited out");
    let started = Instant::now();
    let created: DdlResponse = client.create_database(create_database("db", "")).await.unwrap().into_inner();
    let took = started.elapsed();
    eprintln!("create database with dn2 blackholed: {took:?} (T_proceed {:?})", lab.lease.proceed_after());
    assert!(created.fenced.iter().any(|node| node.starts_with("dn2/")), "{created:?}");
    assert!(took + lab.lease.heartbeat_interval * 2 >= lab.lease.proceed_after(), "returned after only {took:?}");
    lab.assert_agents_hold(created.version).await;

    type Step = (&'static str, Box<dyn Fn() -> DdlCall>);
    let steps: Vec<Step> = vec![
        ("create table", Box::new(|| DdlCall::CreateTable(create_table("db", "t", "")))),
        (
            "add column",
            Box::new(|| {
                DdlCall::Alter(alter(
                    "db",
                    "t",
                    Action::AddColumn(column("w", DataType::Int64, ColumnCategory::Field)),
                    "",
                ))
            }),
        ),
        ("drop column", Box::new(|| DdlCall::Alter(alter("db", "t", Action::DropColumn("v".into()), "")))),
        ("set ttl", Box::new(|| DdlCall::Alter(alter("db", "t", Action::SetTtlMs(60_000), "")))),
        (
            "create view",
            Box::new(|| {
                DdlCall::CreateView(CreateViewRequest {
                    database: "db".into(),
                    name: "v1".into(),
                    definition: "SELECT 1".into(),
                    request_id: String::new(),
                })
            }),
        ),
        (
            "drop view",
            Box::new(|| {
                DdlCall::DropView(DropViewRequest {
                    database: "db".into(),
                    name: "v1".into(),
                    request_id: String::new(),
                })
            }),
        ),
        (
            "drop table",
            Box::new(|| {
                DdlCall::DropTable(DropTableRequest {
                    database: "db".into(),
                    name: "t".into(),
                    request_id: String::new(),
                })
            }),
        ),
    ];
    for (what, call) in steps {
        phase(what);
        let started = Instant::now();
        let answer = call().send_retrying(&mut lab, &format!("promise-{}", what.replace(' ', "-"))).await;
        eprintln!("{what}: {:?}", started.elapsed());
        lab.assert_agents_agree("db", "t", answer.version).await;
        lab.assert_agents_hold(answer.version).await;
    }
    let table = client.get_table(GetTableRequest { database: "db".into(), name: "t".into() }).await.unwrap_err();
    assert_eq!(table.code(), Code::NotFound);

    phase("drop database");
    let dropped = client
        .drop_database(DropDatabaseRequest { name: "db".into(), request_id: String::new() })
        .await
        .unwrap()
        .into_inner();
    lab.assert_agents_agree("db", "t", dropped.version).await;
    assert!(client.list_databases(ListDatabasesRequest {}).await.unwrap().into_inner().databases.is_empty());
}

#[derive(Clone)]
enum DdlCall {
    CreateTable(CreateTableRequest),
    Alter(AlterTableRequest),
    CreateView(CreateViewRequest),
    DropView(DropViewRequest),
    DropTable(DropTableRequest),
    DropDatabase(DropDatabaseRequest),
}

impl DdlCall {
    /// The call as a user makes it safe to retry: with `request_id`.
    fn with_request_id(mut self, id: &str) -> DdlCall {
        let field = match &mut self {
            DdlCall::CreateTable(request) => &mut request.request_id,
            DdlCall::Alter(request) => &mut request.request_id,
            DdlCall::CreateView(request) => &mut request.request_id,
            DdlCall::DropView(request) => &mut request.request_id,
            DdlCall::DropTable(request) => &mut request.request_id,
            DdlCall::DropDatabase(request) => &mut request.request_id,
        };
        *field = id.to_owned();
        self
    }

    /// Sends the call as a careful user does: a retryable answer (`UNAVAILABLE`, such as a
    /// store that was busy under load) is retried with the same request id at the leader,
    /// so it is applied once; any other error fails the test.
    async fn send_retrying(self, lab: &mut Lab, request_id: &str) -> DdlResponse {
        let call = self.with_request_id(request_id);
        let deadline = Deadline::new(&format!("{request_id} is answered"), Duration::from_secs(60));
        loop {
            let mut client = lab.leader().await;
            match call.clone().send(&mut client).await {
                Ok(answer) => return answer,
                Err(status) if status.code() == Code::Unavailable => {
                    eprintln!("{request_id}: retrying after {status:?}");
                    deadline.tick().await;
                }
                Err(status) => panic!("{request_id}: {status:?}"),
            }
        }
    }

    async fn send(self, client: &mut CatalogClient<Channel>) -> Result<DdlResponse, Status> {
        self.call(client).await.map(tonic::Response::into_inner)
    }

    async fn call(self, client: &mut CatalogClient<Channel>) -> Result<tonic::Response<DdlResponse>, Status> {
        match self {
            DdlCall::CreateTable(request) => client.create_table(request).await,
            DdlCall::Alter(request) => client.alter_table(request).await,
            DdlCall::CreateView(request) => client.create_view(request).await,
            DdlCall::DropView(request) => client.drop_view(request).await,
            DdlCall::DropTable(request) => client.drop_table(request).await,
            DdlCall::DropDatabase(request) => client.drop_database(request).await,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hidden_objects_and_markers_are_unreadable_until_commit() {
    let _serial = serial().await;
    let hold = [("LEASEHOLD_FAILPOINTS", "ddl::after-prepare=return(1500)")];
    let mut lab = Lab::start(BIN, Kind::Sqlite, 1, &hold, &[("dn1", &[])]).await.unwrap();
    let mut client = lab.leader().await;
    client.create_database(create_database("db", "")).await.unwrap();
    let version = client.list_databases(ListDatabasesRequest {}).await.unwrap().into_inner().version;

    phase("while create table is held after its prepare, dn1 holds the table hidden");
    let creating = {
        let mut client = client.clone();
        tokio::spawn(async move { client.create_table(create_table("db", "t", "")).await })
    };
    let dn1 = &lab.agents[0];
    eventually("dn1 holds the prepared version", Duration::from_secs(10), || async move {
        dn1.lease().await.ok().filter(|lease| lease.applied_version > version).map(|_| ())
    })
    .await;
    assert_eq!(dn1.resolve("db", "t").await.unwrap().1, None, "a pre-created table is neither readable nor writable");
    let created = creating.await.unwrap().unwrap().into_inner();
    assert!(dn1.resolve("db", "t").await.unwrap().1.is_some());

    phase("a drop's marker hides the table at once");
    let dropping = {
        let mut client = client.clone();
        tokio::spawn(async move {
            client
                .drop_table(DropTableRequest { database: "db".into(), name: "t".into(), request_id: String::new() })
                .await
        })
    };
    eventually("dn1 holds the marker", Duration::from_secs(10), || async move {
        dn1.lease().await.ok().filter(|lease| lease.applied_version > created.version).map(|_| ())
    })
    .await;
    assert_eq!(dn1.resolve("db", "t").await.unwrap().1, None, "under a pre-delete marker");
    dropping.await.unwrap().unwrap();
    let dropped = dn1.node.wait_events("data dropped", 1, Duration::from_secs(5)).await;
    assert!(dropped.len() == 1, "the host dropped the data once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prepare_an_agent_cannot_apply_is_rolled_back_and_changes_nothing() {
    let _serial = serial().await;
    let refuse: &[(&str, &str)] = &[REFUSE_EVERY_CHANGE];
    let mut lab = Lab::start(BIN, Kind::Sqlite, 1, &[], &[("dn1", &[]), ("dn2", refuse)]).await.unwrap();
    let mut client = lab.leader().await;
    // dn2 refuses every change: creating the database is refused as a whole.
    let refused = client.create_database(create_database("db", "")).await.unwrap_err();
    assert_eq!(refused.code(), Code::Aborted, "{refused:?}");
    assert_eq!(error_reason(&refused).as_deref(), Some(reason::BROADCAST_FAILED));
    assert!(refused.message().contains("dn2/"), "{refused:?}");
    assert!(client.list_databases(ListDatabasesRequest {}).await.unwrap().into_inner().databases.is_empty());
    let snapshot = client
        .get_snapshot(GetSnapshotRequest { since_version: 0, store_epoch: String::new() })
        .await
        .unwrap()
        .into_inner();
    assert!(snapshot.full && snapshot.snapshot.is_empty(), "no hidden object or marker left: {snapshot:?}");
    lab.assert_agents_agree("db", "t", snapshot.version).await;
    let address = lab.cluster.node("c1").grpc.clone();
    let mut procedures =
        ProceduresClient::new(Endpoint::from_shared(format!("http://{address}")).unwrap().connect_lazy());
    let listed = procedures
        .list_procedures(ListProceduresRequest { state: String::new(), limit: 10 })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.procedures.len(), 1);
    assert_eq!((listed.procedures[0].state.as_str(), listed.procedures[0].step.as_str()), ("rolled_back", "done"));
    assert!(listed.procedures[0].error.contains("cannot apply"), "{:?}", listed.procedures[0]);
    let metrics = lab.cluster.node("c1").scrape_metrics().await.expect("c1 serves metrics");
    assert!(
        metrics.contains("leasehold_ddl_procedures_total{kind=\"create_database\",outcome=\"rolled_back\"} 1"),
        "{metrics}"
    );
}

/// An alter, a drop column, a drop table and a create table that one agent cannot apply are
/// each rolled back: the marker (or the hidden object) is removed and every agent serves the
/// old schema again, and nothing the refused change would have made visible ever was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_alters_and_drops_are_rolled_back_and_the_old_schema_is_served_again() {
    let _serial = serial().await;
    let mut lab = Lab::start(BIN, Kind::Sqlite, 1, &[], &[("dn1", &[]), ("dn2", &[])]).await.unwrap();
    let mut client = lab.leader().await;
    client.create_database(create_database("db", "")).await.unwrap();
    client.create_table(create_table("db", "t", "")).await.unwrap();

    lab.restart_agent(1, &[REFUSE_EVERY_CHANGE]).await;

    let refused_calls = [
        (
            "add column",
            DdlCall::Alter(alter(
                "db",
                "t",
                Action::AddColumn(column("w", DataType::Int64, ColumnCategory::Field)),
                "",
            )),
        ),
        ("drop column", DdlCall::Alter(alter("db", "t", Action::DropColumn("v".into()), ""))),
        (
            "drop table",
            DdlCall::DropTable(DropTableRequest { database: "db".into(), name: "t".into(), request_id: String::new() }),
        ),
        ("create table", DdlCall::CreateTable(create_table("db", "u", ""))),
    ];
    for (what, call) in refused_calls {
        phase(&format!("{what}, refused by dn2, is rolled back"));
        let refused = call.send(&mut client).await.unwrap_err();
        assert_eq!(refused.code(), Code::Aborted, "{what}: {refused:?}");
        assert_eq!(error_reason(&refused).as_deref(), Some(reason::BROADCAST_FAILED), "{what}");
        let table = client.get_table(GetTableRequest { database: "db".into(), name: "t".into() }).await;
        assert_eq!(names(&table.expect("t is still there").into_inner()), ["time", "v"], "{what}");
        let missing = client.get_table(GetTableRequest { database: "db".into(), name: "u".into() }).await;
        assert_eq!(missing.unwrap_err().code(), Code::NotFound, "{what}");
        let (catalog, version) = leader_catalog(&mut client).await;
        let t = catalog.table("db", "t").expect("t in the snapshot");
        assert!(
            t.state == leasehold_core::catalog::ObjectState::Visible
                && t.columns.iter().all(|column| column.state == leasehold_core::catalog::ObjectState::Visible),
            "{what}: a marker or a hidden column is left: {t:?}"
        );
        assert!(catalog.table("db", "u").is_none(), "{what}: the hidden table is left");
        // Every agent serves the old schema at the rollback's version, and nothing of u.
        lab.assert_agents_agree("db", "t", version).await;
        lab.assert_agents_agree("db", "u", version).await;
    }
}

/// The leader's whole catalog, every state included, with its version.
async fn leader_catalog(client: &mut CatalogClient<Channel>) -> (leasehold_core::catalog::Catalog, u64) {
    let snapshot = client
        .get_snapshot(GetSnapshotRequest { since_version: 0, store_epoch: String::new() })
        .await
        .unwrap()
        .into_inner();
    (leasehold::catalog::catalog_of(&snapshot.snapshot).0, snapshot.version)
}

/// Runs `request` through the SDK (which follows the leader) until it gives a final answer.
async fn ddl_through_failover(client: &Client, call: DdlCall) -> Result<DdlResponse, Status> {
    let result = client
        .call_leader(|channel| {
            let call = call.clone();
            async move { call.call(&mut CatalogClient::new(channel)).await }
        })
        .await;
    result.map_err(|error| error.status().cloned().unwrap_or_else(|| Status::unknown(error.to_string())))
}

/// One DDL of the failover matrix on `db`: the call, with `request_id`.
fn matrix_call(step: &str, request_id: &str) -> DdlCall {
    let call = match step {
        "create table" => DdlCall::CreateTable(create_table("db", "t", "")),
        "add column" => {
            DdlCall::Alter(alter("db", "t", Action::AddColumn(column("w", DataType::Int64, ColumnCategory::Field)), ""))
        }
        "drop column" => DdlCall::Alter(alter("db", "t", Action::DropColumn("v".into()), "")),
        "set ttl" => DdlCall::Alter(alter("db", "t", Action::SetTtlMs(7_200_000), "")),
        "create view" => DdlCall::CreateView(CreateViewRequest {
            database: "db".into(),
            name: "vw".into(),
            definition: "SELECT time FROM t".into(),
            request_id: String::new(),
        }),
        "drop view" => {
            DdlCall::DropView(DropViewRequest { database: "db".into(), name: "vw".into(), request_id: String::new() })
        }
        "drop table" => {
            DdlCall::DropTable(DropTableRequest { database: "db".into(), name: "t".into(), request_id: String::new() })
        }
        "drop database" => DdlCall::DropDatabase(DropDatabaseRequest { name: "db".into(), request_id: String::new() }),
        other => panic!("unknown step {other}"),
    };
    call.with_request_id(request_id)
}

/// What the catalog holds after `step`, given the steps before it: t's columns and TTL (or
/// no t), whether the view and the database exist.
#[derive(Debug, Clone, PartialEq, Eq)]
struct MatrixState {
    table: Option<(Vec<String>, u64)>,
    view: bool,
    database: bool,
}

impl MatrixState {
    fn after(&self, step: &str) -> MatrixState {
        let mut next = self.clone();
        match step {
            // `create_table` gives a table no TTL of its own: it inherits the database's hour.
            "create table" => next.table = Some((vec!["time".into(), "v".into()], 0)),
            "add column" => next.table.as_mut().expect("t exists").0.push("w".into()),
            "drop column" => next.table.as_mut().expect("t exists").0.retain(|name| name != "v"),
            "set ttl" => next.table.as_mut().expect("t exists").1 = 7_200_000,
            "create view" => next.view = true,
            "drop view" => next.view = false,
            "drop table" => next.table = None,
            "drop database" => next = MatrixState { table: None, view: false, database: false },
            other => panic!("unknown step {other}"),
        }
        next
    }

    /// Reads it back from the leader's catalog.
    async fn read(client: &mut CatalogClient<Channel>) -> MatrixState {
        let (catalog, _) = leader_catalog(client).await;
        let table = client.get_table(GetTableRequest { database: "db".into(), name: "t".into() }).await.ok();
        MatrixState {
            table: table.map(|table| {
                let table = table.into_inner();
                (names(&table), table.ttl_ms)
            }),
            view: catalog.visible_view("db", "vw").is_some(),
            database: catalog.database_visible("db"),
        }
    }
}

/// Kills the leader while it is held at `failpoint` in each of `steps` (run in order, each on
/// what the ones before it left), and checks that the new leader finishes each procedure,
/// that its answer and its procedure agree on the version, and that the catalog and every
/// agent agree afterwards. With `refuse`, the second agent refuses every change from the
/// first step on, so every step is rolled back (by the new leader, or by the killed one
/// before the kill) and answers ABORTED with nothing changed.
async fn kill_the_leader_at(kind: Kind, failpoint: &str, steps: &[&str], refuse: bool) {
    // Not serialized: each run has a cluster of its own, and two at a time halve the matrix's
    // share of CI; the elections and the failpoint's hold have bounds well above the load.
    let spec = format!("{failpoint}=return(2000)");
    let env = [("LEASEHOLD_FAILPOINTS", spec.as_str())];
    let Some(mut lab) = Lab::start(BIN, kind, 3, &env, &[("dn1", &[]), ("dn2", &[])]).await else { return };
    let sdk = lab.sdk();
    sdk.call_leader(
        |channel| async move { CatalogClient::new(channel).create_database(create_database("db", "db")).await },
    )
    .await
    .unwrap();
    let mut expected = MatrixState { table: None, view: false, database: true };
    if steps.first() != Some(&"create table") {
        ddl_through_failover(&sdk, DdlCall::CreateTable(create_table("db", "t", "setup-t"))).await.unwrap();
        expected = expected.after("create table");
    }
    if refuse {
        lab.restart_agent(1, &[REFUSE_EVERY_CHANGE]).await;
    }
    for (index, step) in steps.iter().enumerate() {
        phase(&format!("{step}: hold the leader at {failpoint}, then SIGKILL it"));
        let request_id = format!("{}-{index}", step.replace(' ', "-"));
        let call = matrix_call(step, &request_id);
        let (leader, term) = lab.cluster.leader(ELECTION).await;
        let node = lab.cluster.node(&leader);
        let already = node.events("failpoint reached: pausing").len();
        let running = {
            let sdk = sdk.clone();
            tokio::spawn(async move { ddl_through_failover(&sdk, call).await })
        };
        lab.cluster.node(&leader).wait_events("failpoint reached: pausing", already + 1, Duration::from_secs(20)).await;
        lab.cluster.node_mut(&leader).kill();
        lab.cluster.leader_above(term, ELECTION).await;
        let answer = running.await.unwrap();
        let mut procedures = ProceduresClient::new(
            Endpoint::from_shared(format!("http://{}", lab.cluster.leader_address().await)).unwrap().connect_lazy(),
        );
        let version = match (&answer, refuse) {
            (Ok(answer), false) => {
                let procedure = procedures
                    .get_procedure(GetProcedureRequest { id: answer.procedure_id })
                    .await
                    .unwrap()
                    .into_inner();
                assert_eq!(
                    (procedure.state.as_str(), procedure.request_id.as_str()),
                    ("succeeded", request_id.as_str()),
                    "{procedure:?}"
                );
                assert_eq!(procedure.version, answer.version, "the answer and the procedure agree on its version");
                expected = expected.after(step);
                answer.version
            }
            (Err(status), true) => {
                assert_eq!(status.code(), Code::Aborted, "{step} after the failover: {status:?}");
                let listed = procedures
                    .list_procedures(ListProceduresRequest { state: "rolled_back".into(), limit: 100 })
                    .await
                    .unwrap()
                    .into_inner();
                let procedure = listed
                    .procedures
                    .iter()
                    .find(|procedure| procedure.request_id == request_id)
                    .unwrap_or_else(|| panic!("no rolled-back procedure for {request_id}: {listed:?}"));
                procedure.version
            }
            (answer, _) => panic!("{step} after the failover: {answer:?}"),
        };
        let mut client = lab.leader().await;
        assert_eq!(MatrixState::read(&mut client).await, expected, "after {step}");
        lab.assert_agents_agree("db", "t", version).await;
        // The killed node comes back where agents know to find it (its id is free after one
        // lease TTL).
        lab.cluster.restart_in_place(&leader, &env).await;
    }
    // Nothing is left running or half-done.
    let mut procedures = ProceduresClient::new(
        Endpoint::from_shared(format!("http://{}", lab.cluster.leader_address().await)).unwrap().connect_lazy(),
    );
    let running = procedures
        .list_procedures(ListProceduresRequest { state: "running".into(), limit: 10 })
        .await
        .unwrap()
        .into_inner();
    assert!(running.procedures.is_empty(), "{running:?}");
}

macro_rules! failover_matrix {
    ($($name:ident: $failpoint:literal, [$($step:literal),*] $(, $refuse:ident)?;)*) => {
        $(
            mod $name {
                use super::*;

                async fn on(kind: Kind) {
                    let refuse = matches!(stringify!($($refuse)?), "rolled_back");
                    kill_the_leader_at(kind, $failpoint, &[$($step),*], refuse).await;
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() { on(Kind::Sqlite).await }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() { on(Kind::Postgres).await }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn mysql() { on(Kind::MySql).await }
            }
        )*
    };
}

// Every step under every failpoint, on SQLite, PostgreSQL and MySQL/MariaDB. `rolled_back`:
// an agent refuses every change. Held inside a rollback, the killed leader was rolling back
// (it heard the refusal) and the new one finishes the rollback. Held after the prepare, no
// push carried the prepare before the kill: the new leader decides the rollback, on the
// refusal the agent reports with its heartbeats (it never follows a leader whose answer it
// cannot apply, so it answers no push of the new leader). Before refusals were reported,
// that agent resynced to a snapshot holding the prepare without asking its host, and the
// DDL its host had refused committed.
failover_matrix! {
    sigkill_after_a_refused_prepare: "ddl::after-prepare", ["add column", "create view", "drop table"], rolled_back;
    sigkill_after_prepare: "ddl::after-prepare",
        ["create table", "add column", "set ttl", "create view", "drop view", "drop column", "drop table", "drop database"];
    sigkill_before_drop_data: "ddl::before-drop-data", ["drop column", "drop table", "drop database"];
    sigkill_after_drop_order: "ddl::after-drop-order", ["drop column", "drop table", "drop database"];
    // A TTL change is one step (its prepare is its change): no commit to be held after.
    sigkill_after_commit: "ddl::after-commit",
        ["create table", "add column", "create view", "drop view", "drop column", "drop table", "drop database"];
    sigkill_inside_a_rollback: "ddl::after-rollback", ["add column", "drop table"], rolled_back;
}

/// A new leader accepts no DDL before the procedures it resumes hold their locks. Without
/// that, a DROP DATABASE sent while the new leader had not yet resumed a CREATE TABLE in it
/// dropped the database first; the resumed CREATE TABLE then wrote a table row with no
/// database, and once the database was created again and a leader loaded the store, the
/// table was back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drop_database_never_overtakes_a_create_table_the_new_leader_resumes() {
    let _serial = serial().await;
    let env = [("LEASEHOLD_FAILPOINTS", "ddl::after-prepare=return(2000);ddl::before-resume=return(3000)")];
    let Some(mut lab) = Lab::start(BIN, Kind::Sqlite, 3, &env, &[("dn1", &[]), ("dn2", &[])]).await else { return };
    let sdk = lab.sdk();
    let on_leader = |sdk: &Client, name: &'static str, request_id: &'static str| {
        let sdk = sdk.clone();
        async move {
            sdk.call_leader(|channel| async move {
                let mut client = CatalogClient::new(channel);
                match name {
                    "create" => client.create_database(create_database("db", request_id)).await,
                    _ => {
                        client
                            .drop_database(DropDatabaseRequest { name: "db".into(), request_id: request_id.into() })
                            .await
                    }
                }
            })
            .await
        }
    };
    on_leader(&sdk, "create", "make-db").await.unwrap();

    phase("a create table held after its prepare; SIGKILL its leader");
    let (first, term) = lab.cluster.leader(ELECTION).await;
    let held = lab.cluster.node(&first).events("failpoint reached: pausing").len();
    let create_table_call = {
        let sdk = sdk.clone();
        tokio::spawn(async move {
            ddl_through_failover(&sdk, DdlCall::CreateTable(create_table("db", "t", "make-t"))).await
        })
    };
    lab.cluster.node(&first).wait_events("failpoint reached: pausing", held + 1, Duration::from_secs(20)).await;
    lab.cluster.node_mut(&first).kill();

    phase("a drop database reaches the new leader while it is held before resuming the create table");
    let (second, term, _) = lab.cluster.leader_above(term, ELECTION).await;
    lab.cluster.node(&second).wait_events("failpoint reached: pausing", 1, Duration::from_secs(20)).await;
    let dropped = on_leader(&sdk, "drop", "drop-db").await.expect("the drop runs once the create table is done");
    let created = create_table_call.await.unwrap().expect("the resumed create table finishes");
    assert!(created.version < dropped.version, "the create table ({created:?}) finished before the drop ({dropped:?})");

    phase("the database is created again, and another leader loads the store");
    on_leader(&sdk, "create", "make-db-again").await.unwrap();
    lab.cluster.start(&first, &[], &env).await;
    lab.cluster.node_mut(&second).kill();
    lab.cluster.leader_above(term, ELECTION).await;
    let mut client = lab.leader().await;
    let table = client.get_table(GetTableRequest { database: "db".into(), name: "t".into() }).await;
    assert_eq!(table.map(|table| names(&table.into_inner())).unwrap_err().code(), Code::NotFound);
    let version = client.list_databases(ListDatabasesRequest {}).await.unwrap().into_inner().version;
    lab.assert_agents_agree("db", "t", version).await;
    for agent in &lab.agents {
        let what = format!("{} serving version {version} or later", agent.node.node_id);
        let schema = eventually(&what, Duration::from_secs(20), || async {
            agent.resolve("db", "t").await.ok().filter(|(served, _)| *served >= version).map(|(_, schema)| schema)
        })
        .await;
        assert!(schema.is_none(), "{} serves db.t: {schema:?}", agent.node.node_id);
    }
}

/// Every DDL answer is checked against the leader's term after the reads it rests on. A leader
/// paused past its lease while a DDL and a retry of it waited on it answers neither once it
/// resumes (before, the retry could read the row the successor finished and answer for a
/// term that was no longer its own); the successor finishes the DDL and answers for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_paused_past_its_lease_answers_no_ddl_that_waited_on_it() {
    let _serial = serial().await;
    let env = [("LEASEHOLD_FAILPOINTS", "ddl::after-prepare=return(3000)")];
    let Some(mut lab) = Lab::start(BIN, Kind::Sqlite, 2, &env, &[("dn1", &[])]).await else { return };
    let sdk = lab.sdk();
    sdk.call_leader(
        |channel| async move { CatalogClient::new(channel).create_database(create_database("db", "db")).await },
    )
    .await
    .unwrap();

    phase("a create table held after its prepare, and a retry of it waiting, on the leader");
    let (paused, term) = lab.cluster.leader(ELECTION).await;
    // No client timeout: the calls are to wait through the pause.
    let address = format!("http://{}", lab.cluster.node(&paused).grpc);
    let pinned = CatalogClient::new(Endpoint::from_shared(address).unwrap().connect_lazy());
    let held = lab.cluster.node(&paused).events("failpoint reached: pausing").len();
    let first = {
        let mut pinned = pinned.clone();
        tokio::spawn(async move { pinned.create_table(create_table("db", "t", "make-t")).await })
    };
    lab.cluster.node(&paused).wait_events("failpoint reached: pausing", held + 1, Duration::from_secs(20)).await;
    let retry = {
        let mut pinned = pinned.clone();
        tokio::spawn(async move { pinned.create_table(create_table("db", "t", "make-t")).await })
    };
    let waiting = "a retried DDL waits for the outcome of its procedure";
    lab.cluster.node(&paused).wait_events(waiting, 1, WAIT_LOG).await;

    phase("SIGSTOP the leader; the successor finishes the DDL");
    lab.cluster.node(&paused).pause();
    lab.cluster.leader_above(term, ELECTION).await;
    let finished = DdlCall::CreateTable(create_table("db", "t", "")).send_retrying(&mut lab, "make-t").await;

    phase("SIGCONT the old leader: it answers neither call");
    lab.cluster.node(&paused).resume();
    for (call, answer) in [("the first call", first), ("the retry", retry)] {
        match answer.await.unwrap() {
            Ok(answer) => {
                panic!("{call} was answered by a leader whose term ended: {answer:?} (the successor: {finished:?})")
            }
            Err(status) => {
                assert_eq!(status.code(), Code::Unavailable, "{call}: {status:?}");
                assert_eq!(error_reason(&status).as_deref(), Some(reason::NOT_LEADER), "{call}: {status:?}");
            }
        }
    }
    lab.assert_agents_agree("db", "t", finished.version).await;
}

/// A leader cut from its store while a DDL is in its hands (agents and clients still reach
/// it) steps down when its hold ends; its successor finishes the DDL, and the old leader
/// answers the call it held with NOT_LEADER, never OK, although nothing it could see had
/// told it the outcome.
async fn a_leader_cut_from_its_store_answers_no_ddl_it_held(kind: Kind) {
    let _serial = serial().await;
    let env = [("LEASEHOLD_FAILPOINTS", "ddl::after-prepare=return(3000)")];
    let Some(mut lab) = Lab::start_behind_store_proxies(BIN, kind, 2, &env, &[("dn1", &[])]).await else { return };
    let sdk = lab.sdk();
    sdk.call_leader(
        |channel| async move { CatalogClient::new(channel).create_database(create_database("db", "db")).await },
    )
    .await
    .unwrap();

    phase("a create table held after its prepare on the leader");
    let (cut, term) = lab.cluster.leader(ELECTION).await;
    let address = format!("http://{}", lab.cluster.node(&cut).grpc);
    let mut pinned = CatalogClient::new(Endpoint::from_shared(address).unwrap().connect_lazy());
    let held = lab.cluster.node(&cut).events("failpoint reached: pausing").len();
    let call = tokio::spawn(async move { pinned.create_table(create_table("db", "t", "make-t")).await });
    lab.cluster.node(&cut).wait_events("failpoint reached: pausing", held + 1, Duration::from_secs(20)).await;

    phase("cut the leader from its store; the successor finishes the DDL");
    lab.store_proxies[&cut].blackhole();
    lab.cluster.leader_above(term, ELECTION).await;
    let finished = DdlCall::CreateTable(create_table("db", "t", "")).send_retrying(&mut lab, "make-t").await;

    phase("the old leader answers the call it held, and not with OK");
    let answer = tokio::time::timeout(Duration::from_secs(60), call)
        .await
        .expect("the cut leader answers within its store timeouts")
        .unwrap();
    match answer {
        Ok(answer) => panic!("a leader cut from its store answered OK: {answer:?} (the successor: {finished:?})"),
        Err(status) => {
            assert_eq!(status.code(), Code::Unavailable, "{status:?}");
            assert_eq!(error_reason(&status).as_deref(), Some(reason::NOT_LEADER), "{status:?}");
        }
    }
    lab.assert_agents_agree("db", "t", finished.version).await;
}

mod a_leader_cut_from_its_store_answers_no_ddl_it_held {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres() {
        a_leader_cut_from_its_store_answers_no_ddl_it_held(Kind::Postgres).await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn mysql() {
        a_leader_cut_from_its_store_answers_no_ddl_it_held(Kind::MySql).await
    }
}

/// A write guard the store refuses while the leader's local hold is valid (the store's clock
/// ran ahead of the leader's) makes the leader renew at once and carry on in the same term.
/// Before, a refusal during the load left every heartbeat answered LEADER_STARTING for the
/// whole term, so no agent ever got a lease, and one during a procedure's commit left the
/// procedure running with nobody to drive it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_guard_refused_while_the_hold_is_valid_makes_the_leader_renew_and_carry_on() {
    let _serial = serial().await;
    let env = [("LEASEHOLD_FAILPOINTS", "store::load-guard-refused=1*return;store::commit-guard-refused=1*return")];
    let Some(mut lab) = Lab::start(BIN, Kind::Sqlite, 1, &env, &[("dn1", &[])]).await else { return };
    let (leader, term) = lab.cluster.leader(ELECTION).await;

    phase("a create database whose commit's guard is refused once");
    let mut client = lab.leader().await;
    let created = client.create_database(create_database("db", "make-db")).await.expect("the commit is tried again");
    let created = created.into_inner();
    let refused = "the store refused this term's write guard while the local hold is valid (is the store's clock ahead?); renewing now";
    lab.cluster.node(&leader).wait_events(refused, 1, WAIT_LOG).await;
    let mut procedures = ProceduresClient::new(
        Endpoint::from_shared(format!("http://{}", lab.cluster.node(&leader).grpc)).unwrap().connect_lazy(),
    );
    let procedure =
        procedures.get_procedure(GetProcedureRequest { id: created.procedure_id }).await.unwrap().into_inner();
    assert_eq!((procedure.state.as_str(), procedure.version), ("succeeded", created.version), "{procedure:?}");
    assert_eq!(lab.cluster.leader(ELECTION).await, (leader, term), "the same term carried on");

    phase("the agent was never fenced");
    let lease = lab.agents[0].lease().await.expect("the agent answers");
    assert_eq!((lease.fences, lease.term), (0, term), "{lease:?}");
}

async fn request_ids_and_races(kind: Kind) {
    let _serial = serial().await;
    let Some(mut lab) = Lab::start(BIN, kind, 1, &[], &[("dn1", &[])]).await else { return };
    let mut client = lab.leader().await;

    phase("a retried request id returns the first outcome and applies nothing twice");
    let first = client.create_database(create_database("db", "make-db")).await.unwrap().into_inner();
    let again = client.create_database(create_database("db", "make-db")).await.unwrap().into_inner();
    assert_eq!(first.procedure_id, again.procedure_id);
    let other = client.create_database(create_database("db", "another-id")).await.unwrap_err();
    assert_eq!(other.code(), Code::AlreadyExists);
    let table = client.create_table(create_table("db", "t", "make-t")).await.unwrap().into_inner();
    let retried = client.create_table(create_table("db", "t", "make-t")).await.unwrap().into_inner();
    assert_eq!(table.procedure_id, retried.procedure_id);
    let version = client.list_databases(ListDatabasesRequest {}).await.unwrap().into_inner().version;
    assert_eq!(version, table.version, "the retries changed nothing");

    phase("a request id reused for another request is refused, and the new request changes nothing");
    let reused = client.create_table(create_table("db", "other", "make-t")).await.unwrap_err();
    assert_eq!(reused.code(), Code::InvalidArgument, "{reused:?}");
    assert_eq!(error_reason(&reused).as_deref(), Some(reason::REQUEST_ID_REUSED));
    let missing = client.get_table(GetTableRequest { database: "db".into(), name: "other".into() }).await;
    assert_eq!(missing.unwrap_err().code(), Code::NotFound);
    let version = client.list_databases(ListDatabasesRequest {}).await.unwrap().into_inner().version;
    assert_eq!(version, table.version, "the refused reuse changed nothing");

    phase("the same request id twice at once: one procedure, one answer for both");
    let twins: Vec<_> = (0..2)
        .map(|_| {
            let mut client = client.clone();
            tokio::spawn(async move { client.create_table(create_table("db", "twin", "twin-id")).await })
        })
        .collect();
    let mut ids = BTreeSet::new();
    for twin in twins {
        ids.insert(twin.await.unwrap().expect("both calls get the first outcome").into_inner().procedure_id);
    }
    assert_eq!(ids.len(), 1, "one procedure ran: {ids:?}");

    phase("a retry after other DDL reports its own procedure's version, not the newest");
    let newest = client.list_databases(ListDatabasesRequest {}).await.unwrap().into_inner().version;
    assert!(newest > table.version, "the twin moved the catalog on");
    let later = client.create_table(create_table("db", "t", "make-t")).await.unwrap().into_inner();
    assert_eq!((later.procedure_id, later.version), (table.procedure_id, table.version));

    phase("two concurrent drops of one table: one wins, one finds nothing");
    let drops: Vec<_> = (0..2)
        .map(|_| {
            let mut client = client.clone();
            tokio::spawn(async move {
                client
                    .drop_table(DropTableRequest { database: "db".into(), name: "t".into(), request_id: String::new() })
                    .await
            })
        })
        .collect();
    let mut codes = Vec::new();
    for drop in drops {
        codes.push(drop.await.unwrap().map(|_| Code::Ok).unwrap_or_else(|status| status.code()));
    }
    codes.sort_by_key(|code| *code as i32);
    assert_eq!(codes, [Code::Ok, Code::NotFound]);

    phase("drop database racing create table inside it");
    let create = {
        let mut client = client.clone();
        tokio::spawn(async move { client.create_table(create_table("db", "u", "")).await })
    };
    let drop = {
        let mut client = client.clone();
        tokio::spawn(async move {
            client.drop_database(DropDatabaseRequest { name: "db".into(), request_id: String::new() }).await
        })
    };
    let created = create.await.unwrap();
    drop.await.unwrap().expect("the drop wins or runs after the create");
    if let Err(status) = &created {
        assert!(matches!(status.code(), Code::NotFound | Code::FailedPrecondition), "{status:?}");
    }
    let snapshot = client
        .get_snapshot(GetSnapshotRequest { since_version: 0, store_epoch: String::new() })
        .await
        .unwrap()
        .into_inner();
    assert!(snapshot.snapshot.is_empty(), "nothing of db is left: {snapshot:?}");
    lab.assert_agents_agree("db", "u", snapshot.version).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_ids_and_races_sqlite() {
    request_ids_and_races(Kind::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_ids_and_races_postgres() {
    request_ids_and_races(Kind::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_ids_and_races_mysql() {
    request_ids_and_races(Kind::MySql).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_naming_the_field_and_changes_nothing() {
    let _serial = serial().await;
    let mut lab = Lab::start(BIN, Kind::Sqlite, 1, &[], &[]).await.unwrap();
    let mut client = lab.leader().await;
    client.create_database(create_database("db", "")).await.unwrap();
    let before = client.list_databases(ListDatabasesRequest {}).await.unwrap().into_inner().version;

    let mut bad_tables: Vec<(CreateTableRequest, &str)> = Vec::new();
    let mut request = create_table("db", "select", "");
    bad_tables.push((request.clone(), "name"));
    request = create_table("db", "1t", "");
    bad_tables.push((request.clone(), "name"));
    request = create_table("bad db", "t", "");
    bad_tables.push((request.clone(), "database"));
    request = create_table("db", "t", "");
    request.columns.push(column("V", DataType::Int32, ColumnCategory::Tag));
    bad_tables.push((request.clone(), "columns[2].name"));
    request = create_table("db", "t", "");
    request.columns.remove(0);
    bad_tables.push((request.clone(), "columns"));
    request = create_table("db", "t", "");
    request.columns[1].data_type = 42;
    bad_tables.push((request.clone(), "columns[1].data_type"));
    request = create_table("db", "t", "");
    request.columns = (0..1100).map(|i| column(&format!("c{i}"), DataType::Int32, ColumnCategory::Field)).collect();
    request.columns[0] = column("time", DataType::Timestamp, ColumnCategory::Time);
    bad_tables.push((request.clone(), "columns"));
    request = create_table("db", "t", "");
    request.properties = (0..100).map(|i| (format!("k{i}"), "v".to_owned())).collect();
    bad_tables.push((request.clone(), "properties"));
    request = create_table("db", "t", &"x".repeat(200));
    bad_tables.push((request.clone(), "request_id"));
    for (request, field) in bad_tables {
        let refused = client.create_table(request).await.unwrap_err();
        assert_eq!(refused.code(), Code::InvalidArgument, "{field}: {refused:?}");
        let named = tonic_types::StatusExt::get_details_error_info(&refused)
            .and_then(|info| info.metadata.get("field").cloned());
        assert_eq!(named.as_deref(), Some(field), "{refused:?}");
    }
    let refused = client
        .create_view(CreateViewRequest {
            database: "db".into(),
            name: "v".into(),
            definition: "x".repeat(70_000),
            request_id: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument);
    let refused = client
        .alter_table(AlterTableRequest {
            database: "db".into(),
            name: "t".into(),
            action: None,
            request_id: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument);
    let refused = client
        .drop_table(DropTableRequest { database: "db".into(), name: "missing".into(), request_id: String::new() })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::NotFound);
    let mut oversized = create_table("db", "t", "");
    oversized.comment = "x".repeat(2 * 1024 * 1024);
    let refused = client.create_table(oversized).await.unwrap_err();
    assert_eq!(refused.code(), Code::OutOfRange, "{refused:?}");

    let after = client.list_databases(ListDatabasesRequest {}).await.unwrap().into_inner();
    assert_eq!(after.version, before, "a refused request wrote a change");
    assert!(
        client.list_tables(ListTablesRequest { database: "db".into() }).await.unwrap().into_inner().tables.is_empty()
    );
    let address = lab.cluster.node("c1").grpc.clone();
    let mut procedures =
        ProceduresClient::new(Endpoint::from_shared(format!("http://{address}")).unwrap().connect_lazy());
    let listed = procedures
        .list_procedures(ListProceduresRequest { state: String::new(), limit: 100 })
        .await
        .unwrap()
        .into_inner();
    let kinds: BTreeSet<_> = listed.procedures.iter().map(|p| p.kind.clone()).collect();
    assert_eq!(kinds, BTreeSet::from(["create_database".to_owned()]), "only the setup ran a procedure");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hot_followers_serve_catalog_reads_and_standbys_redirect() {
    let _serial = serial().await;
    let mut cluster = TestCluster::new(BIN, TestStore::sqlite());
    cluster.start("c1", &["--priority", "10"], &[]).await;
    let (leader, _) = cluster.leader(ELECTION).await;
    assert_eq!(leader, "c1");
    cluster.start("c2", &["--ha-mode", "hot-standby"], &[]).await;
    cluster.start("c3", &["--ha-mode", "standby"], &[]).await;
    cluster.start("c4", &["--ha-mode", "hot-backup"], &[]).await;
    let mut client = catalog_at(&cluster.node("c1").grpc);
    client.create_database(create_database("db", "")).await.unwrap();
    let created = client.create_table(create_table("db", "t", "")).await.unwrap().into_inner();

    for follower in ["c2", "c4"] {
        let mut hot = catalog_at(&cluster.node(follower).grpc);
        let tables = hot.list_tables(ListTablesRequest { database: "db".into() }).await.unwrap().into_inner();
        assert_eq!(tables.tables.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(), ["t"], "{follower}");
        let table =
            hot.get_table(GetTableRequest { database: "db".into(), name: "t".into() }).await.unwrap().into_inner();
        assert_eq!(names(&table), ["time", "v"], "{follower}");
        let refused = hot.create_table(create_table("db", "u", "")).await.unwrap_err();
        assert_eq!(
            (refused.code(), error_reason(&refused).as_deref()),
            (Code::Unavailable, Some(reason::NOT_LEADER)),
            "DDL only on the leader, not on {follower}"
        );
    }

    phase("GetSnapshot since a version: the changes after it, in order, not the whole catalog");
    let full = client
        .get_snapshot(GetSnapshotRequest { since_version: 0, store_epoch: String::new() })
        .await
        .unwrap()
        .into_inner();
    assert!(full.full && full.changes.is_empty() && full.snapshot.len() == 2, "{full:?}");
    let since = created.procedure_id - 1;
    let answer = client
        .get_snapshot(GetSnapshotRequest { since_version: since, store_epoch: full.store_epoch.clone() })
        .await
        .unwrap()
        .into_inner();
    assert!(!answer.full && answer.snapshot.is_empty(), "{answer:?}");
    let versions: Vec<u64> = answer.changes.iter().map(|change| change.version).collect();
    assert_eq!(versions, (since + 1..=answer.version).collect::<Vec<_>>(), "{answer:?}");
    assert_eq!((answer.version, answer.store_epoch.as_str()), (created.version, full.store_epoch.as_str()));
    assert!(answer.changes.iter().all(|change| change.change.is_some()), "every change here is a catalog change");

    let mut standby = catalog_at(&cluster.node("c3").grpc);
    let refused = standby.list_databases(ListDatabasesRequest {}).await.unwrap_err();
    assert_eq!((refused.code(), error_reason(&refused).as_deref()), (Code::Unavailable, Some(reason::NOT_LEADER)));
    assert_eq!(leasehold::status::redirect_target(&refused).as_deref(), Some(cluster.node("c1").grpc.as_str()));
}

/// `leasehold ctl --endpoints ENDPOINTS --output json ARGS…`: the JSON it printed, or what it
/// said on stderr when it failed.
async fn ctl_json(endpoints: &str, args: &[&str]) -> Result<serde_json::Value, String> {
    let mut all = vec!["ctl", "--endpoints", endpoints, "--output", "json"];
    all.extend_from_slice(args);
    let output = tokio::process::Command::new(BIN).args(&all).output().await.expect("running ctl");
    if !output.status.success() {
        return Err(String::from_utf8_lossy(&output.stderr).into_owned());
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    Ok(serde_json::from_str(&stdout).unwrap_or_else(|error| panic!("ctl {args:?} printed no JSON ({error}): {stdout}")))
}

fn column_names(table: &serde_json::Value) -> Vec<&str> {
    table["columns"].as_array().unwrap().iter().map(|column| column["name"].as_str().unwrap()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctl_manages_databases_tables_views_and_procedures() {
    let _serial = serial().await;
    let mut lab = Lab::start(BIN, Kind::Sqlite, 1, &[], &[("dn1", &[])]).await.unwrap();
    let endpoints = lab.cluster.endpoints().into_iter().map(|(_, address)| address).collect::<Vec<_>>().join(",");
    let ctl = |args: &'static [&'static str]| {
        let endpoints = endpoints.clone();
        async move { ctl_json(&endpoints, args).await.unwrap_or_else(|stderr| panic!("ctl {args:?}: {stderr}")) }
    };
    let files = std::env::temp_dir().join("leasehold-tests").join(format!("ctl-{}", std::process::id()));
    std::fs::create_dir_all(&files).unwrap();

    phase("databases from flags; the same request id twice is one procedure");
    let first =
        ctl(&["db", "create", "db1", "--ttl", "7d", "--property", "owner=ops", "--request-id", "db1-once"]).await;
    let again =
        ctl(&["db", "create", "db1", "--ttl", "7d", "--property", "owner=ops", "--request-id", "db1-once"]).await;
    assert_eq!(first["procedure_id"], again["procedure_id"]);
    let listed = ctl(&["db", "list"]).await;
    assert_eq!(listed["databases"].as_array().unwrap().len(), 1, "{listed}");
    assert_eq!(listed["databases"][0]["ttl_ms"], 7 * 24 * 3600 * 1000);
    assert_eq!(listed["databases"][0]["properties"]["owner"], "ops");

    phase("tables from flags, from a JSON file and from a TOML file");
    ctl(&[
        "table",
        "create",
        "db1",
        "t1",
        "--column",
        "time:TIMESTAMP:TIME",
        "--column",
        "host:TEXT:TAG",
        "--column",
        "cpu:DOUBLE:FIELD:percent",
        "--comment",
        "from flags",
    ])
    .await;
    let json_file = files.join("t2.json");
    std::fs::write(
        &json_file,
        r#"{"columns": [{"name": "time", "type": "TIMESTAMP", "category": "TIME"},
                        {"name": "v", "type": "INT64", "category": "FIELD"}], "ttl": "30d"}"#,
    )
    .unwrap();
    let toml_file = files.join("t3.toml");
    std::fs::write(
        &toml_file,
        "comment = \"from toml\"\n[[columns]]\nname = \"time\"\ntype = \"TIMESTAMP\"\ncategory = \"TIME\"\n\
         [[columns]]\nname = \"region\"\ntype = \"TEXT\"\ncategory = \"ATTRIBUTE\"\n",
    )
    .unwrap();
    for (name, file) in [("t2", &json_file), ("t3", &toml_file)] {
        ctl_json(&endpoints, &["table", "create", "db1", name, "--file", file.to_str().unwrap()])
            .await
            .unwrap_or_else(|stderr| panic!("{name}: {stderr}"));
    }
    let tables = ctl(&["table", "list", "db1"]).await;
    let names: Vec<&str> = tables["tables"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["t1", "t2", "t3"]);
    let t2 = ctl(&["table", "get", "db1", "t2"]).await;
    assert_eq!((t2["ttl_ms"].as_u64(), column_names(&t2)), (Some(30 * 24 * 3600 * 1000), vec!["time", "v"]));
    let t3 = ctl(&["table", "get", "db1", "t3"]).await;
    assert_eq!(t3["effective_ttl_ms"], 7 * 24 * 3600 * 1000, "t3 inherits the database's TTL");
    assert_eq!(t3["ttl_ms"].as_u64().unwrap_or(0), 0, "t3 has no TTL of its own");
    assert_eq!(t3["columns"][1]["category"], "COLUMN_CATEGORY_ATTRIBUTE", "enums are named as in the proto");

    phase("alter: add and drop a column, set the TTL and a property; the agent follows");
    let added = ctl(&["table", "alter", "db1", "t1", "--add-column", "mem:DOUBLE:FIELD"]).await;
    ctl(&["table", "alter", "db1", "t1", "--drop-column", "cpu"]).await;
    ctl(&["table", "alter", "db1", "t1", "--set-ttl", "1d"]).await;
    let last = ctl(&["table", "alter", "db1", "t1", "--set-property", "tier=hot"]).await;
    assert!(last["version"].as_u64() > added["version"].as_u64());
    let t1 = ctl(&["table", "get", "db1", "t1"]).await;
    assert_eq!(column_names(&t1), ["time", "host", "mem"]);
    let created = |index: usize| t1["columns"][index]["created_version"].as_u64().unwrap();
    assert_eq!(created(0), t1["created_version"].as_u64().unwrap(), "created with the table");
    let added_at = added["version"].as_u64().unwrap();
    assert!(created(0) < created(2) && created(2) < added_at, "created by the add's prepare, before its commit");
    assert_eq!((t1["ttl_ms"].as_u64(), t1["properties"]["tier"].as_str()), (Some(24 * 3600 * 1000), Some("hot")));
    lab.assert_agents_agree("db1", "t1", last["version"].as_u64().unwrap()).await;

    phase("views, a dropped table, and the procedures that did it all");
    ctl(&["view", "create", "db1", "v1", "--definition", "SELECT host, mem FROM t1"]).await;
    ctl(&["view", "drop", "db1", "v1"]).await;
    let dropped = ctl(&["table", "drop", "db1", "t2"]).await;
    let gone = ctl_json(&endpoints, &["table", "get", "db1", "t2"]).await.unwrap_err();
    assert!(gone.contains("t2"), "{gone}");
    let procedures = ctl(&["procedure", "list", "--limit", "50"]).await;
    let procedures = procedures.as_array().unwrap();
    assert_eq!(procedures.len(), 11, "{procedures:?}");
    assert!(procedures.iter().all(|procedure| procedure["state"] == "succeeded"), "{procedures:?}");
    let id = dropped["procedure_id"].as_u64().unwrap().to_string();
    let procedure = ctl_json(&endpoints, &["procedure", "get", &id]).await.unwrap();
    assert_eq!((procedure["kind"].as_str(), procedure["target"].as_str()), (Some("drop_table"), Some("db1.t2")));

    phase("bad input is refused with the field named, and nothing is written");
    let refusals: [(&[&str], &str); 4] = [
        (&["db", "create", "select"], "reserved"),
        (
            &["table", "create", "db1", "bad", "--column", "time:TIMESTAMP:TIME", "--column", "TIME:INT64:FIELD"],
            "columns[1].name",
        ),
        (&["table", "create", "db1", "bad", "--column", "v:INT64:FIELD"], "TIME"),
        (&["table", "alter", "db1", "t1", "--drop-column", "time"], "drop_column"),
    ];
    for (args, expected) in refusals {
        let stderr = ctl_json(&endpoints, args).await.expect_err("refused");
        assert!(stderr.contains(expected), "ctl {args:?} should name {expected:?}: {stderr}");
    }
    let after = ctl(&["procedure", "list", "--limit", "50"]).await;
    assert_eq!(after.as_array().unwrap().len(), 11, "a refused request left a procedure: {after}");

    phase("drop the database");
    ctl(&["db", "drop", "db1"]).await;
    assert!(ctl(&["db", "list"]).await["databases"].as_array().unwrap().is_empty());
    std::fs::remove_dir_all(&files).ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_commit_answer_reloads_the_leader_state_and_the_ddl_finishes_once() {
    let _serial = serial().await;
    let once = [("LEASEHOLD_FAILPOINTS", "store::commit-answer-lost=1*return")];
    let mut lab = Lab::start(BIN, Kind::Sqlite, 1, &once, &[("dn1", &[])]).await.unwrap();
    let sdk = lab.sdk();

    phase("create database: its prepare commits, and the answer is lost");
    let created = sdk
        .call_leader(|channel| async move {
            CatalogClient::new(channel).create_database(create_database("db", "db-once")).await
        })
        .await
        .unwrap_or_else(|error| panic!("the retried request gets the first outcome: {error}"));
    let c1 = lab.cluster.node("c1");
    let reloads = c1.wait_events("data-node state no longer matches the store; loading it again", 1, WAIT_LOG).await;
    assert_eq!(reloads.len(), 1);
    let resumed = c1.wait_events("resuming a procedure left by the previous leader", 1, WAIT_LOG).await;
    assert_eq!(resumed.len(), 1, "{}", c1.output());

    phase("the reloaded state goes on: one procedure, and the next DDL works");
    let address = c1.grpc.clone();
    let mut procedures =
        ProceduresClient::new(Endpoint::from_shared(format!("http://{address}")).unwrap().connect_lazy());
    let listed = procedures
        .list_procedures(ListProceduresRequest { state: String::new(), limit: 10 })
        .await
        .unwrap()
        .into_inner()
        .procedures;
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!((listed[0].id, listed[0].state.as_str()), (created.procedure_id, "succeeded"));
    let mut client = lab.leader().await;
    let table = client.create_table(create_table("db", "t", "")).await.unwrap().into_inner();
    lab.assert_agents_agree("db", "t", table.version).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_that_fails_on_the_store_is_tried_again_from_the_stored_step() {
    let _serial = serial().await;
    // The prepare's transaction opens; the commit step's fails once.
    let second = [("LEASEHOLD_FAILPOINTS", "store::begin-fails=1*off->1*return->off")];
    let mut lab = Lab::start(BIN, Kind::Sqlite, 1, &second, &[("dn1", &[])]).await.unwrap();
    let mut client = lab.leader().await;
    let created = client.create_database(create_database("db", "")).await.expect("the DDL still succeeds").into_inner();
    let c1 = lab.cluster.node("c1");
    let retried =
        c1.wait_events("a procedure step failed; trying again from the step the store holds", 1, WAIT_LOG).await;
    assert_eq!(retried.len(), 1);
    let databases = client.list_databases(ListDatabasesRequest {}).await.unwrap().into_inner();
    assert_eq!(databases.databases.len(), 1);
    lab.assert_agents_hold(created.version).await;
}
