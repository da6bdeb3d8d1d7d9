//! Planning a DDL against the catalog: one function per DDL, a file per object family.

use super::*;

mod alter;
mod database;
mod table;
mod view;

/// What a DDL does, phase by phase.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DdlPlan {
    /// The kind, stored with the procedure.
    pub kind: DdlKind,
    /// The target, for the procedure table (`db.t`).
    pub target: String,
    /// The reversible first change.
    pub prepare: CatalogChange,
    /// Data to delete once the prepare's verdict is `Proceed`.
    pub drop_data: Option<DataTarget>,
    /// The change that makes it final; `None` when the prepare is the change.
    pub commit: Option<CatalogChange>,
    /// The change that undoes the prepare.
    pub rollback: CatalogChange,
}

/// Plans `request` against `catalog`. Call [`validate`] first; call this while holding the
/// request's [`locks`], so that the catalog cannot change underneath.
pub fn plan(catalog: &Catalog, request: &DdlRequest) -> Result<DdlPlan, DdlError> {
    match request {
        DdlRequest::CreateDatabase { name, ttl, properties } => database::create(catalog, name, ttl, properties),
        DdlRequest::DropDatabase { name } => database::drop(catalog, name),
        DdlRequest::CreateTable { database, name, columns, ttl, properties, comment } => {
            table::create(catalog, database, name, columns, ttl, properties, comment)
        }
        DdlRequest::AlterTable { database, name, action } => alter::alter_table(catalog, database, name, action),
        DdlRequest::DropTable { database, name } => table::drop(catalog, database, name),
        DdlRequest::CreateView { database, name, definition } => view::create(catalog, database, name, definition),
        DdlRequest::DropView { database, name } => view::drop(catalog, database, name),
    }
}

fn visible_database<'a>(catalog: &'a Catalog, name: &str) -> Result<&'a Database, DdlError> {
    let database = catalog.database(name).ok_or_else(|| DdlError::NotFound { what: format!("database {name}") })?;
    match database.state {
        ObjectState::Visible => Ok(database),
        ObjectState::Hidden => Err(DdlError::NotFound { what: format!("database {name}") }),
        ObjectState::Dropping => Err(DdlError::Busy { what: format!("database {name}") }),
    }
}

fn visible_table<'a>(catalog: &'a Catalog, database: &str, name: &str) -> Result<&'a Table, DdlError> {
    visible_database(catalog, database)?;
    let table =
        catalog.table(database, name).ok_or_else(|| DdlError::NotFound { what: format!("table {database}.{name}") })?;
    match table.state {
        ObjectState::Visible if table.columns.iter().all(|column| column.state == ObjectState::Visible) => Ok(table),
        ObjectState::Visible | ObjectState::Dropping => {
            Err(DdlError::Busy { what: format!("table {database}.{name}") })
        }
        ObjectState::Hidden => Err(DdlError::NotFound { what: format!("table {database}.{name}") }),
    }
}

fn column_of(spec: &ColumnSpec, state: ObjectState) -> Column {
    Column {
        name: spec.name.clone(),
        data_type: spec.data_type,
        category: spec.category,
        comment: spec.comment.clone(),
        state,
        created_version: 0,
        drop_ordered_version: 0,
    }
}
