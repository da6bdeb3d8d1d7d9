//! CREATE TABLE and DROP TABLE.

use super::*;

/// A table pre-created hidden, made visible at commit.
pub(super) fn create(
    catalog: &Catalog,
    database: &str,
    name: &str,
    columns: &[ColumnSpec],
    ttl: &Option<Duration>,
    properties: &BTreeMap<String, String>,
    comment: &str,
) -> Result<DdlPlan, DdlError> {
    visible_database(catalog, database)?;
    if catalog.table(database, name).is_some() {
        return Err(DdlError::AlreadyExists { what: format!("table {database}.{name}") });
    }
    let table = Table {
        database: database.to_owned(),
        name: name.to_owned(),
        columns: columns.iter().map(|spec| column_of(spec, ObjectState::Visible)).collect(),
        ttl: *ttl,
        properties: properties.clone(),
        comment: comment.to_owned(),
        state: ObjectState::Hidden,
        version: 0,
        created_version: 0,
        drop_ordered_version: 0,
    };
    Ok(DdlPlan {
        kind: DdlKind::CreateTable,
        target: format!("{database}.{name}"),
        prepare: CatalogChange::PutTable(table.clone()),
        drop_data: None,
        commit: Some(CatalogChange::PutTable(Table { state: ObjectState::Visible, ..table })),
        rollback: CatalogChange::RemoveTable { database: database.to_owned(), name: name.to_owned() },
    })
}

/// A table marked, its data dropped, then removed.
pub(super) fn drop(catalog: &Catalog, database: &str, name: &str) -> Result<DdlPlan, DdlError> {
    let table = visible_table(catalog, database, name)?;
    Ok(DdlPlan {
        kind: DdlKind::DropTable,
        target: format!("{database}.{name}"),
        prepare: CatalogChange::PutTable(Table { state: ObjectState::Dropping, ..table.clone() }),
        drop_data: Some(DataTarget::Table {
            database: database.to_owned(),
            table: name.to_owned(),
            created_version: table.created_version,
        }),
        commit: Some(CatalogChange::RemoveTable { database: database.to_owned(), name: name.to_owned() }),
        rollback: CatalogChange::PutTable(table.clone()),
    })
}
