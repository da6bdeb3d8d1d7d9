//! A flood of work other than lease renewals against one coordinator, for the overload test
//! and the overload bench: readers (GetTable, ListTables, GetSnapshot of database `flood`'s
//! tables `t0`–`t19`), DDL clients (create and drop a table of their own) and registrants
//! (register and deregister a node that never heartbeats), each in a closed loop until a
//! deadline, spread over the given connections.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use leasehold::status::{error_reason, reason};
use leasehold::v1::catalog_client::CatalogClient;
use leasehold::v1::data_nodes_client::DataNodesClient;
use leasehold::v1::{
    DeregisterRequest, DropTableRequest, GetSnapshotRequest, GetTableRequest, ListTablesRequest, RegisterRequest,
};
use tokio::task::JoinSet;
use tokio::time::{Instant, timeout};
use tonic::transport::Channel;
use tonic::{Code, Status};

use crate::requests::create_table;

/// The database the flood reads and changes; the readers expect its tables `t0`–`t19`.
pub const DATABASE: &str = "flood";
/// The most one flood call may take before it counts as failed.
const CALL_DEADLINE: Duration = Duration::from_secs(10);

/// How many callers of each kind.
#[derive(Debug, Clone, Copy)]
pub struct Flood {
    /// Readers.
    pub readers: usize,
    /// DDL clients.
    pub ddl_clients: usize,
    /// Registrants.
    pub registrants: usize,
}

/// What the flood's calls came back with.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Outcomes {
    /// Answered (a DDL client's `ALREADY_EXISTS`, `NOT_FOUND` or `ABORTED` counts: they race
    /// on their own names only after a retry).
    pub answered: u64,
    /// Shed with `OVERLOADED`.
    pub shed: u64,
    /// Anything else: an unexpected refusal, or a call past its deadline.
    pub failed: u64,
}

#[derive(Default)]
struct Counters {
    answered: AtomicU64,
    shed: AtomicU64,
    failed: AtomicU64,
}

impl Counters {
    fn count<T>(&self, outcome: Result<Result<T, Status>, tokio::time::error::Elapsed>) {
        let counter = match &outcome {
            Ok(Ok(_)) => &self.answered,
            Ok(Err(status)) if error_reason(status).as_deref() == Some(reason::OVERLOADED) => &self.shed,
            Ok(Err(status)) if matches!(status.code(), Code::AlreadyExists | Code::NotFound | Code::Aborted) => {
                &self.answered
            }
            _ => &self.failed,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// Creates database [`DATABASE`] with the tables the readers read, on the leader at
/// `channel`; retries while a new leader still loads its state.
pub async fn prepare(channel: Channel) {
    let mut catalog = CatalogClient::new(channel);
    let deadline = crate::Deadline::new("the leader accepts DDL", Duration::from_secs(30));
    while let Err(status) = catalog.create_database(crate::requests::create_database(DATABASE, "")).await {
        assert_eq!(error_reason(&status).as_deref(), Some(reason::LEADER_STARTING), "create database: {status:?}");
        deadline.tick().await;
    }
    for index in 0..20 {
        catalog.create_table(create_table(DATABASE, &format!("t{index}"), "")).await.expect("create table");
    }
}

impl Flood {
    /// Runs the flood on `connections` until `until`; what its calls came back with.
    pub async fn run(self, connections: &[Channel], until: Instant) -> Outcomes {
        let counters = Arc::new(Counters::default());
        let mut tasks = JoinSet::new();
        let on = |index: usize| connections[index % connections.len()].clone();
        for reader in 0..self.readers {
            let (mut catalog, counters) = (CatalogClient::new(on(reader)), counters.clone());
            tasks.spawn(async move {
                let mut round = 0_usize;
                while Instant::now() < until {
                    round += 1;
                    match round % 3 {
                        0 => {
                            let request =
                                GetTableRequest { database: DATABASE.into(), name: format!("t{}", round % 20) };
                            counters.count(timeout(CALL_DEADLINE, catalog.get_table(request)).await);
                        }
                        1 => {
                            let request = ListTablesRequest { database: DATABASE.into() };
                            counters.count(timeout(CALL_DEADLINE, catalog.list_tables(request)).await);
                        }
                        _ => {
                            let request = GetSnapshotRequest::default();
                            counters.count(timeout(CALL_DEADLINE, catalog.get_snapshot(request)).await);
                        }
                    }
                }
            });
        }
        for client in 0..self.ddl_clients {
            let (mut catalog, counters) = (CatalogClient::new(on(client)), counters.clone());
            tasks.spawn(async move {
                let table = format!("ddl{client}");
                while Instant::now() < until {
                    counters
                        .count(timeout(CALL_DEADLINE, catalog.create_table(create_table(DATABASE, &table, ""))).await);
                    let drop =
                        DropTableRequest { database: DATABASE.into(), name: table.clone(), ..Default::default() };
                    counters.count(timeout(CALL_DEADLINE, catalog.drop_table(drop)).await);
                }
            });
        }
        for registrant in 0..self.registrants {
            let (mut nodes, counters) = (DataNodesClient::new(on(registrant)), counters.clone());
            tasks.spawn(async move {
                let mut round = 0;
                while Instant::now() < until {
                    round += 1;
                    let (node_id, incarnation) = (format!("flood-{registrant}"), format!("i{round}"));
                    let register = RegisterRequest {
                        node_id: node_id.clone(),
                        address: "127.0.0.1:9".into(),
                        incarnation: incarnation.clone(),
                        ..Default::default()
                    };
                    counters.count(timeout(CALL_DEADLINE, nodes.register(register)).await);
                    let deregister = DeregisterRequest { node_id, incarnation, ..Default::default() };
                    counters.count(timeout(CALL_DEADLINE, nodes.deregister(deregister)).await);
                }
            });
        }
        while let Some(done) = tasks.join_next().await {
            done.expect("a flood task");
        }
        Outcomes {
            answered: counters.answered.load(Ordering::Relaxed),
            shed: counters.shed.load(Ordering::Relaxed),
            failed: counters.failed.load(Ordering::Relaxed),
        }
    }
}
