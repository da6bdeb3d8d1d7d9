//! CREATE DATABASE and DROP DATABASE.

use super::*;

/// A database pre-created hidden, made visible at commit.
pub(super) fn create(
    catalog: &Catalog,
    name: &str,
    ttl: &Option<Duration>,
    properties: &BTreeMap<String, String>,
) -> Result<DdlPlan, DdlError> {
    if catalog.database(name).is_some() {
        return Err(DdlError::AlreadyExists { what: format!("database {name}") });
    }
    let database = Database {
        name: name.to_owned(),
        ttl: *ttl,
        properties: properties.clone(),
        state: ObjectState::Hidden,
        version: 0,
        created_version: 0,
        drop_ordered_version: 0,
    };
    Ok(DdlPlan {
        kind: DdlKind::CreateDatabase,
        target: name.to_owned(),
        prepare: CatalogChange::PutDatabase(database.to_owned()),
        drop_data: None,
        commit: Some(CatalogChange::PutDatabase(Database { state: ObjectState::Visible, ..database })),
        rollback: CatalogChange::RemoveDatabase { name: name.to_owned() },
    })
}

/// A database marked, its data dropped, then removed; refused while another procedure has a
/// table or view in it halfway.
pub(super) fn drop(catalog: &Catalog, name: &str) -> Result<DdlPlan, DdlError> {
    let database = visible_database(catalog, name)?;
    // A pre-created or marked object is another procedure's, halfway: dropped from
    // under it, that procedure would write into a database that is gone.
    let in_flight = catalog
        .tables(name)
        .filter(|table| table.state != ObjectState::Visible)
        .map(|table| format!("table {name}.{}", table.name))
        .chain(
            catalog
                .views(name)
                .filter(|view| view.state != ObjectState::Visible)
                .map(|view| format!("view {name}.{}", view.name)),
        )
        .next();
    if let Some(what) = in_flight {
        return Err(DdlError::Busy { what });
    }
    Ok(DdlPlan {
        kind: DdlKind::DropDatabase,
        target: name.to_owned(),
        prepare: CatalogChange::PutDatabase(Database { state: ObjectState::Dropping, ..database.to_owned() }),
        drop_data: Some(DataTarget::Database { database: name.to_owned(), created_version: database.created_version }),
        commit: Some(CatalogChange::RemoveDatabase { name: name.to_owned() }),
        rollback: CatalogChange::PutDatabase(database.to_owned()),
    })
}
