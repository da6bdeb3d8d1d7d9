//! `leasehold.v1.Catalog` and `leasehold.v1.Procedures`: validate, convert, call, map.
//!
//! DDL goes to the leader's procedure runner. Reads come from the leader's catalog in memory
//! (consistent with the versions it publishes); a `hot-standby` or `hot-backup` coordinator
//! answers them from the store.

use std::collections::BTreeMap;
use std::sync::Arc;

use leasehold::catalog::{column_spec, database_message, snapshot_messages, table_message, ttl_of};
use leasehold::v1::catalog_server::Catalog as CatalogRpc;
use leasehold::v1::procedures_server::Procedures as ProceduresRpc;
use leasehold::v1::{
    self, AlterTableRequest, CreateDatabaseRequest, CreateTableRequest, CreateViewRequest, DdlResponse,
    DropDatabaseRequest, DropTableRequest, DropViewRequest, GetProcedureRequest, GetSnapshotRequest,
    GetSnapshotResponse, GetTableRequest, ListDatabasesRequest, ListDatabasesResponse, ListProceduresRequest,
    ListProceduresResponse, ListTablesRequest, ListTablesResponse, MetadataChangeRef, Procedure,
};
use leasehold_core::catalog::{Catalog, Table};
use leasehold_core::ddl::{AlterAction, DdlError, DdlRequest, validate_name};
use leasehold_store::{ProcedureRow, Store};
use tonic::{Request, Response, Status};

use crate::ha::Ha;
use crate::metadata_keeper::MetadataKeeper;
use crate::metadata_leader::{MetadataError, load_catalog};
use crate::metrics;
use crate::procedure_runner::{MAX_REQUEST_ID_LEN, ProcedureRunner};
use crate::status::{Refusal, ddl_error, invalid_argument};

/// The `Catalog` service.
#[derive(Debug, Clone)]
pub struct CatalogService {
    ha: Ha,
    keeper: MetadataKeeper,
    runner: Arc<ProcedureRunner>,
    store: Store,
}

fn request_id(value: String) -> Result<Option<String>, Status> {
    if value.is_empty() {
        return Ok(None);
    }
    if value.len() > MAX_REQUEST_ID_LEN || !value.chars().all(|c| c.is_ascii_graphic()) {
        return Err(invalid_argument(
            "request_id",
            format!("must be 1 to {MAX_REQUEST_ID_LEN} printable ASCII characters"),
        ));
    }
    Ok(Some(value))
}

fn name(field: &'static str, value: &str) -> Result<(), Status> {
    validate_name(field, value).map_err(ddl_error)
}

/// A catalog read's source: the leader's memory or, on a hot follower, the store.
async fn catalog_from_store(store: &Store, cluster: &str) -> Result<(Catalog, u64), Status> {
    // One snapshot: a change committing between two reads would pair rows with a version
    // they are not at.
    let (version, objects) = store
        .run("read versioned catalog", async |db| db.versioned_objects(cluster).await)
        .await
        .map_err(MetadataError::from)?;
    let (catalog, _orphans) = load_catalog(&objects)?;
    Ok((catalog, version))
}

impl CatalogService {
    /// The service over `ha`'s terms.
    pub fn new(ha: Ha, keeper: MetadataKeeper, runner: Arc<ProcedureRunner>, store: Store) -> Self {
        Self { ha, keeper, runner, store }
    }

    async fn ddl(&self, request: DdlRequest, id: String) -> Result<Response<DdlResponse>, Status> {
        let id = request_id(id)?;
        let leader = self.keeper.active(&self.ha)?;
        let term = leader.term();
        let outcome = self.runner.run(leader, request, id).await;
        // Every answer rests on reads made in `term`; checked again now, after them, so a
        // node whose term ended meanwhile (paused past its lease, say) speaks for no one and
        // answers NOT_LEADER: the retry goes to the leader that holds the procedure now.
        if self.keeper.active(&self.ha)?.term() != term {
            return Err(MetadataError::TermEnded { term }.into());
        }
        let outcome = outcome?;
        Ok(Response::new(DdlResponse {
            procedure_id: outcome.procedure_id,
            version: outcome.version,
            fenced: outcome.fenced,
        }))
    }

    /// Reads the catalog with `read`, with the version it is at: on the leader in place
    /// (nothing is copied under the lock heartbeats take), on a hot follower from the store.
    async fn read<R>(&self, read: impl FnOnce(&Catalog) -> R) -> Result<(R, u64), Status> {
        if let Ok(leader) = self.keeper.active(&self.ha) {
            return Ok(leader.with_catalog(read));
        }
        self.ha.check_reads()?;
        let (catalog, version) = catalog_from_store(&self.store, &self.ha.settings().cluster).await?;
        Ok((read(&catalog), version))
    }
}

#[tonic::async_trait]
impl CatalogRpc for CatalogService {
    async fn create_database(&self, request: Request<CreateDatabaseRequest>) -> Result<Response<DdlResponse>, Status> {
        let request = request.into_inner();
        let ddl = DdlRequest::CreateDatabase {
            name: request.name,
            ttl: ttl_of(request.ttl_ms),
            properties: request.properties.into_iter().collect(),
        };
        metrics::record("CreateDatabase", self.ddl(ddl, request.request_id).await)
    }

    async fn drop_database(&self, request: Request<DropDatabaseRequest>) -> Result<Response<DdlResponse>, Status> {
        let request = request.into_inner();
        metrics::record(
            "DropDatabase",
            self.ddl(DdlRequest::DropDatabase { name: request.name }, request.request_id).await,
        )
    }

    async fn list_databases(
        &self,
        _request: Request<ListDatabasesRequest>,
    ) -> Result<Response<ListDatabasesResponse>, Status> {
        let result = async {
            let (databases, version) =
                self.read(|catalog| catalog.visible_databases().into_iter().map(database_message).collect()).await?;
            Ok(Response::new(ListDatabasesResponse { databases, version }))
        }
        .await;
        metrics::record("ListDatabases", result)
    }

    async fn create_table(&self, request: Request<CreateTableRequest>) -> Result<Response<DdlResponse>, Status> {
        let result = async {
            let request = request.into_inner();
            let columns = request
                .columns
                .iter()
                .enumerate()
                .map(|(index, column)| column_spec(&format!("columns[{index}]"), column))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|(field, message)| ddl_error(DdlError::Invalid { field, message }))?;
            let ddl = DdlRequest::CreateTable {
                database: request.database,
                name: request.name,
                columns,
                ttl: ttl_of(request.ttl_ms),
                properties: request.properties.into_iter().collect(),
                comment: request.comment,
            };
            self.ddl(ddl, request.request_id).await
        }
        .await;
        metrics::record("CreateTable", result)
    }

    async fn alter_table(&self, request: Request<AlterTableRequest>) -> Result<Response<DdlResponse>, Status> {
        let result = async {
            let request = request.into_inner();
            use v1::alter_table_request::Action;
            let action = match request.action {
                Some(Action::AddColumn(column)) => AlterAction::AddColumn(
                    column_spec("add_column", &column)
                        .map_err(|(field, message)| ddl_error(DdlError::Invalid { field, message }))?,
                ),
                Some(Action::DropColumn(column)) => AlterAction::DropColumn(column),
                Some(Action::SetTtlMs(ms)) => AlterAction::SetTtl(ttl_of(ms)),
                Some(Action::SetProperties(properties)) => AlterAction::SetProperties {
                    set: properties.set.into_iter().collect::<BTreeMap<_, _>>(),
                    unset: properties.unset,
                },
                Some(Action::SetComment(comment)) => AlterAction::SetComment(comment),
                None => {
                    return Err(invalid_argument(
                        "action",
                        "say what to alter: add_column, drop_column, set_ttl_ms, set_properties or set_comment",
                    ));
                }
            };
            let ddl = DdlRequest::AlterTable { database: request.database, name: request.name, action };
            self.ddl(ddl, request.request_id).await
        }
        .await;
        metrics::record("AlterTable", result)
    }

    async fn drop_table(&self, request: Request<DropTableRequest>) -> Result<Response<DdlResponse>, Status> {
        let request = request.into_inner();
        let ddl = DdlRequest::DropTable { database: request.database, name: request.name };
        metrics::record("DropTable", self.ddl(ddl, request.request_id).await)
    }

    async fn get_table(&self, request: Request<GetTableRequest>) -> Result<Response<v1::Table>, Status> {
        let result = async {
            let request = request.into_inner();
            name("database", &request.database)?;
            name("name", &request.name)?;
            let (table, _) = self
                .read(|catalog| {
                    catalog.visible_table(&request.database, &request.name).map(|table| table_answer(catalog, &table))
                })
                .await?;
            let table = table.ok_or_else(|| {
                ddl_error(DdlError::NotFound { what: format!("table {}.{}", request.database, request.name) })
            })?;
            Ok(Response::new(table))
        }
        .await;
        metrics::record("GetTable", result)
    }

    async fn list_tables(&self, request: Request<ListTablesRequest>) -> Result<Response<ListTablesResponse>, Status> {
        let result = async {
            let request = request.into_inner();
            name("database", &request.database)?;
            let (tables, version) = self
                .read(|catalog| {
                    catalog.database_visible(&request.database).then(|| {
                        catalog.visible_tables(&request.database).iter().map(|t| table_answer(catalog, t)).collect()
                    })
                })
                .await?;
            let Some(tables) = tables else {
                return Err(ddl_error(DdlError::NotFound { what: format!("database {}", request.database) }));
            };
            Ok(Response::new(ListTablesResponse { tables, version }))
        }
        .await;
        metrics::record("ListTables", result)
    }

    async fn create_view(&self, request: Request<CreateViewRequest>) -> Result<Response<DdlResponse>, Status> {
        let request = request.into_inner();
        let ddl =
            DdlRequest::CreateView { database: request.database, name: request.name, definition: request.definition };
        metrics::record("CreateView", self.ddl(ddl, request.request_id).await)
    }

    async fn drop_view(&self, request: Request<DropViewRequest>) -> Result<Response<DdlResponse>, Status> {
        let request = request.into_inner();
        let ddl = DdlRequest::DropView { database: request.database, name: request.name };
        metrics::record("DropView", self.ddl(ddl, request.request_id).await)
    }

    async fn get_snapshot(
        &self,
        request: Request<GetSnapshotRequest>,
    ) -> Result<Response<GetSnapshotResponse>, Status> {
        let result = async {
            let request = request.into_inner();
            if let Ok(leader) = self.keeper.active(&self.ha) {
                let incremental = (request.store_epoch == leader.store_epoch())
                    .then(|| leader.changes_since(request.since_version))
                    .flatten();
                if let Some((changes, version)) = incremental {
                    let changes = changes
                        .into_iter()
                        .map(|change| MetadataChangeRef {
                            version: change.version,
                            change: match change.kind {
                                Some(v1::metadata_change::Kind::Catalog(change)) => Some(change),
                                _ => None,
                            },
                        })
                        .collect();
                    return Ok(Response::new(GetSnapshotResponse {
                        store_epoch: leader.store_epoch().to_owned(),
                        version,
                        changes,
                        snapshot: Vec::new(),
                        full: false,
                    }));
                }
                let (snapshot, version) = leader.with_catalog(snapshot_messages);
                return Ok(Response::new(GetSnapshotResponse {
                    store_epoch: leader.store_epoch().to_owned(),
                    version,
                    changes: Vec::new(),
                    snapshot,
                    full: true,
                }));
            }
            self.ha.check_reads()?;
            let cluster = &self.ha.settings().cluster;
            let (catalog, version) = catalog_from_store(&self.store, cluster).await?;
            let store_epoch = self
                .store
                .run("store epoch", async |db| db.store_epoch(cluster).await)
                .await
                .map_err(MetadataError::from)?;
            Ok(Response::new(GetSnapshotResponse {
                store_epoch,
                version,
                changes: Vec::new(),
                snapshot: snapshot_messages(&catalog),
                full: true,
            }))
        }
        .await;
        metrics::record("GetSnapshot", result)
    }
}

/// The `Procedures` service: read from the store.
#[derive(Debug, Clone)]
pub struct ProceduresService {
    ha: Ha,
    store: Store,
}

impl ProceduresService {
    /// The service over `store`.
    pub fn new(ha: Ha, store: Store) -> Self {
        Self { ha, store }
    }
}

/// A procedure row as `ListProcedures` (and the status page) shows it.
pub(crate) fn procedure_message(row: ProcedureRow) -> Procedure {
    Procedure {
        id: row.id,
        kind: row.kind.into_name(),
        target: row.target,
        step: row.step.into_name(),
        state: row.state.into_name(),
        error: row.error,
        request_id: row.request_id.unwrap_or_default(),
        term: row.term,
        created_at_ms: row.created_at_ms,
        updated_at_ms: row.updated_at_ms,
        version: row.result_version,
    }
}

#[tonic::async_trait]
impl ProceduresRpc for ProceduresService {
    async fn get_procedure(&self, request: Request<GetProcedureRequest>) -> Result<Response<Procedure>, Status> {
        let result = async {
            self.ha.check_reads()?;
            let id = request.into_inner().id;
            let row = self
                .store
                .run("read procedure", async |db| db.get_procedure(&self.ha.settings().cluster, id).await)
                .await
                .map_err(MetadataError::from)?;
            row.map(|row| Response::new(procedure_message(row))).ok_or_else(|| Refusal::ProcedureNotFound { id }.into())
        }
        .await;
        metrics::record("GetProcedure", result)
    }

    async fn list_procedures(
        &self,
        request: Request<ListProceduresRequest>,
    ) -> Result<Response<ListProceduresResponse>, Status> {
        let result = async {
            self.ha.check_reads()?;
            let request = request.into_inner();
            let state = (!request.state.is_empty())
                .then(|| request.state.parse::<leasehold_core::procedure::State>())
                .transpose()
                .map_err(|error| invalid_argument("state", error))?;
            let limit = if request.limit == 0 { 100 } else { request.limit.min(10_000) };
            let rows = self
                .store
                .run("list procedures", async |db| db.list_procedures(&self.ha.settings().cluster, state, limit).await)
                .await
                .map_err(MetadataError::from)?;
            Ok(Response::new(ListProceduresResponse { procedures: rows.into_iter().map(procedure_message).collect() }))
        }
        .await;
        metrics::record("ListProcedures", result)
    }
}

/// A table as GetTable and ListTables answer it: its visible columns, its own TTL (`ttl_ms`, 0
/// when it inherits) and the TTL in force (`effective_ttl_ms`). `visible` is the reader's view,
/// whose TTL is already resolved.
fn table_answer(catalog: &Catalog, visible: &Table) -> v1::Table {
    let own = catalog.table(&visible.database, &visible.name).and_then(|table| table.ttl);
    table_message(&Table { ttl: own, ..visible.clone() }, visible.ttl)
}
