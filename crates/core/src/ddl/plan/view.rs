//! CREATE VIEW and DROP VIEW.

use super::*;

/// A view pre-created hidden, made visible at commit.
pub(super) fn create(catalog: &Catalog, database: &str, name: &str, definition: &str) -> Result<DdlPlan, DdlError> {
    visible_database(catalog, database)?;
    if catalog.view(database, name).is_some() {
        return Err(DdlError::AlreadyExists { what: format!("view {database}.{name}") });
    }
    let view = View {
        database: database.to_owned(),
        name: name.to_owned(),
        definition: definition.to_owned(),
        state: ObjectState::Hidden,
        version: 0,
        created_version: 0,
    };
    Ok(DdlPlan {
        kind: DdlKind::CreateView,
        target: format!("{database}.{name}"),
        prepare: CatalogChange::PutView(view.clone()),
        drop_data: None,
        commit: Some(CatalogChange::PutView(View { state: ObjectState::Visible, ..view })),
        rollback: CatalogChange::RemoveView { database: database.to_owned(), name: name.to_owned() },
    })
}

/// A view marked, then removed (a view has no data).
pub(super) fn drop(catalog: &Catalog, database: &str, name: &str) -> Result<DdlPlan, DdlError> {
    visible_database(catalog, database)?;
    let view = catalog
        .view(database, name)
        .filter(|view| view.state != ObjectState::Hidden)
        .ok_or_else(|| DdlError::NotFound { what: format!("view {database}.{name}") })?;
    if view.state == ObjectState::Dropping {
        return Err(DdlError::Busy { what: format!("view {database}.{name}") });
    }
    Ok(DdlPlan {
        kind: DdlKind::DropView,
        target: format!("{database}.{name}"),
        prepare: CatalogChange::PutView(View { state: ObjectState::Dropping, ..view.clone() }),
        drop_data: None,
        commit: Some(CatalogChange::RemoveView { database: database.to_owned(), name: name.to_owned() }),
        rollback: CatalogChange::PutView(view.clone()),
    })
}
