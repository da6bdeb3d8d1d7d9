//! Conversions between the catalog's messages (`leasehold.v1`) and its values in
//! `leasehold-core`, shared by the coordinator, the agent and clients.

use std::time::Duration;

use leasehold_core::catalog::{
    self as core, CatalogChange, Category, Column, DataType, Database, ObjectState, Table, View,
};
use leasehold_core::ddl::ColumnSpec;

use crate::v1;

/// A TTL from its message form: milliseconds, 0 for none.
pub fn ttl_of(ms: u64) -> Option<Duration> {
    (ms > 0).then(|| Duration::from_millis(ms))
}

fn ms_of(ttl: Option<Duration>) -> u64 {
    ttl.map_or(0, |ttl| ttl.as_millis() as u64)
}

/// The core data type of a message value; `None` for unspecified or unknown values.
pub fn data_type(value: i32) -> Option<DataType> {
    Some(match v1::DataType::try_from(value).ok()? {
        v1::DataType::Unspecified => return None,
        v1::DataType::Boolean => DataType::Boolean,
        v1::DataType::Int32 => DataType::Int32,
        v1::DataType::Int64 => DataType::Int64,
        v1::DataType::Float => DataType::Float,
        v1::DataType::Double => DataType::Double,
        v1::DataType::Text => DataType::Text,
        v1::DataType::Blob => DataType::Blob,
        v1::DataType::Timestamp => DataType::Timestamp,
    })
}

/// The message value of a core data type.
pub fn data_type_value(data_type: DataType) -> i32 {
    (match data_type {
        DataType::Boolean => v1::DataType::Boolean,
        DataType::Int32 => v1::DataType::Int32,
        DataType::Int64 => v1::DataType::Int64,
        DataType::Float => v1::DataType::Float,
        DataType::Double => v1::DataType::Double,
        DataType::Text => v1::DataType::Text,
        DataType::Blob => v1::DataType::Blob,
        DataType::Timestamp => v1::DataType::Timestamp,
    }) as i32
}

/// The core category of a message value; `None` for unspecified or unknown values.
pub fn category(value: i32) -> Option<Category> {
    Some(match v1::ColumnCategory::try_from(value).ok()? {
        v1::ColumnCategory::Unspecified => return None,
        v1::ColumnCategory::Time => Category::Time,
        v1::ColumnCategory::Tag => Category::Tag,
        v1::ColumnCategory::Field => Category::Field,
        v1::ColumnCategory::Attribute => Category::Attribute,
    })
}

/// The message value of a core category.
pub fn category_value(category: Category) -> i32 {
    (match category {
        Category::Time => v1::ColumnCategory::Time,
        Category::Tag => v1::ColumnCategory::Tag,
        Category::Field => v1::ColumnCategory::Field,
        Category::Attribute => v1::ColumnCategory::Attribute,
    }) as i32
}

fn state_value(state: ObjectState) -> i32 {
    (match state {
        ObjectState::Visible => v1::ObjectState::Visible,
        ObjectState::Hidden => v1::ObjectState::Hidden,
        ObjectState::Dropping => v1::ObjectState::Dropping,
    }) as i32
}

/// Fails closed: a state this build does not know (or none) is neither readable nor writable.
fn state_of(value: i32) -> ObjectState {
    match v1::ObjectState::try_from(value) {
        Ok(v1::ObjectState::Visible) => ObjectState::Visible,
        Ok(v1::ObjectState::Dropping) => ObjectState::Dropping,
        _ => ObjectState::Hidden,
    }
}

/// A column definition of a request, checked for known enum values.
pub fn column_spec(field: &str, column: &v1::ColumnDefinition) -> Result<ColumnSpec, (String, String)> {
    let data_type = data_type(column.data_type)
        .ok_or_else(|| (format!("{field}.data_type"), format!("unknown data type {}", column.data_type)))?;
    let category = category(column.category)
        .ok_or_else(|| (format!("{field}.category"), format!("unknown category {}", column.category)))?;
    Ok(ColumnSpec { name: column.name.clone(), data_type, category, comment: column.comment.clone() })
}

/// The message of a database.
pub fn database_message(database: &Database) -> v1::Database {
    v1::Database {
        name: database.name.clone(),
        ttl_ms: ms_of(database.ttl),
        properties: database.properties.clone().into_iter().collect(),
        state: state_value(database.state),
        version: database.version,
        created_version: database.created_version,
        drop_ordered_version: database.drop_ordered_version,
    }
}

/// The message of a table; `effective_ttl` is the TTL in force, for reads.
pub fn table_message(table: &Table, effective_ttl: Option<Duration>) -> v1::Table {
    v1::Table {
        database: table.database.clone(),
        name: table.name.clone(),
        columns: table
            .columns
            .iter()
            .map(|column| v1::Column {
                name: column.name.clone(),
                data_type: data_type_value(column.data_type),
                category: category_value(column.category),
                comment: column.comment.clone(),
                state: state_value(column.state),
                created_version: column.created_version,
                drop_ordered_version: column.drop_ordered_version,
            })
            .collect(),
        ttl_ms: ms_of(table.ttl),
        properties: table.properties.clone().into_iter().collect(),
        comment: table.comment.clone(),
        state: state_value(table.state),
        version: table.version,
        effective_ttl_ms: ms_of(effective_ttl),
        created_version: table.created_version,
        drop_ordered_version: table.drop_ordered_version,
    }
}

/// The message of a view.
pub fn view_message(view: &View) -> v1::View {
    v1::View {
        database: view.database.clone(),
        name: view.name.clone(),
        definition: view.definition.clone(),
        state: state_value(view.state),
        version: view.version,
        created_version: view.created_version,
    }
}

fn database_of(message: &v1::Database) -> Database {
    Database {
        name: message.name.clone(),
        ttl: ttl_of(message.ttl_ms),
        properties: message.properties.clone().into_iter().collect(),
        state: state_of(message.state),
        version: message.version,
        created_version: message.created_version,
        drop_ordered_version: message.drop_ordered_version,
    }
}

fn table_of(message: &v1::Table) -> Table {
    Table {
        database: message.database.clone(),
        name: message.name.clone(),
        columns: message
            .columns
            .iter()
            .map(|column| Column {
                name: column.name.clone(),
                data_type: data_type(column.data_type).unwrap_or(DataType::Blob),
                category: category(column.category).unwrap_or(Category::Field),
                comment: column.comment.clone(),
                state: state_of(column.state),
                created_version: column.created_version,
                drop_ordered_version: column.drop_ordered_version,
            })
            .collect(),
        ttl: ttl_of(message.ttl_ms),
        properties: message.properties.clone().into_iter().collect(),
        comment: message.comment.clone(),
        state: state_of(message.state),
        version: message.version,
        created_version: message.created_version,
        drop_ordered_version: message.drop_ordered_version,
    }
}

fn view_of(message: &v1::View) -> View {
    View {
        database: message.database.clone(),
        name: message.name.clone(),
        definition: message.definition.clone(),
        state: state_of(message.state),
        version: message.version,
        created_version: message.created_version,
    }
}

/// The message of a catalog change.
pub fn change_message(change: &CatalogChange) -> v1::CatalogChange {
    use v1::catalog_change::Kind;
    let name = |database: &str, name: &str| v1::ObjectName { database: database.to_owned(), name: name.to_owned() };
    let kind = match change {
        CatalogChange::PutDatabase(database) => Kind::PutDatabase(database_message(database)),
        CatalogChange::RemoveDatabase { name } => Kind::RemoveDatabase(name.clone()),
        CatalogChange::PutTable(table) => Kind::PutTable(table_message(table, None)),
        CatalogChange::RemoveTable { database, name: table } => Kind::RemoveTable(name(database, table)),
        CatalogChange::PutView(view) => Kind::PutView(view_message(view)),
        CatalogChange::RemoveView { database, name: view } => Kind::RemoveView(name(database, view)),
    };
    v1::CatalogChange { kind: Some(kind) }
}

/// The catalog change of a message; `None` when it carries none.
pub fn change_of(message: &v1::CatalogChange) -> Option<CatalogChange> {
    use v1::catalog_change::Kind;
    Some(match message.kind.as_ref()? {
        Kind::PutDatabase(database) => CatalogChange::PutDatabase(database_of(database)),
        Kind::RemoveDatabase(name) => CatalogChange::RemoveDatabase { name: name.clone() },
        Kind::PutTable(table) => CatalogChange::PutTable(table_of(table)),
        Kind::RemoveTable(name) => {
            CatalogChange::RemoveTable { database: name.database.clone(), name: name.name.clone() }
        }
        Kind::PutView(view) => CatalogChange::PutView(view_of(view)),
        Kind::RemoveView(name) => {
            CatalogChange::RemoveView { database: name.database.clone(), name: name.name.clone() }
        }
    })
}

/// The catalog as snapshot messages.
pub fn snapshot_messages(catalog: &core::Catalog) -> Vec<v1::CatalogChange> {
    catalog.snapshot().iter().map(change_message).collect()
}

/// The catalog a snapshot describes, with the objects it could not hold (an orphaned table
/// or view) set aside rather than failing the whole snapshot.
pub fn catalog_of(snapshot: &[v1::CatalogChange]) -> (core::Catalog, Vec<core::Orphaned>) {
    core::Catalog::quarantining(snapshot.iter().filter_map(change_of))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn every_change_round_trips() {
        let table = Table {
            database: "db".into(),
            name: "t".into(),
            columns: vec![Column {
                drop_ordered_version: 0,
                name: "time".into(),
                data_type: DataType::Timestamp,
                category: Category::Time,
                comment: "c".into(),
                state: ObjectState::Hidden,
                created_version: 4,
            }],
            ttl: Some(Duration::from_secs(60)),
            properties: BTreeMap::from([("k".into(), "v".into())]),
            comment: "t".into(),
            state: ObjectState::Dropping,
            version: 9,
            created_version: 4,
            drop_ordered_version: 0,
        };
        let changes = [
            CatalogChange::PutDatabase(Database {
                name: "db".into(),
                ttl: None,
                properties: BTreeMap::new(),
                state: ObjectState::Visible,
                version: 1,
                created_version: 1,
                drop_ordered_version: 0,
            }),
            CatalogChange::PutTable(table),
            CatalogChange::RemoveTable { database: "db".into(), name: "t".into() },
            CatalogChange::PutView(View {
                database: "db".into(),
                name: "v".into(),
                definition: "x".into(),
                state: ObjectState::Hidden,
                version: 2,
                created_version: 2,
            }),
            CatalogChange::RemoveView { database: "db".into(), name: "v".into() },
            CatalogChange::RemoveDatabase { name: "db".into() },
        ];
        for change in changes {
            assert_eq!(change_of(&change_message(&change)), Some(change));
        }
    }

    #[test]
    fn unknown_enum_values_are_refused_with_the_field() {
        let column = v1::ColumnDefinition { name: "c".into(), data_type: 99, category: 1, comment: String::new() };
        assert_eq!(column_spec("columns[0]", &column).unwrap_err().0, "columns[0].data_type");
        let column = v1::ColumnDefinition { name: "c".into(), data_type: 1, category: 0, comment: String::new() };
        assert_eq!(column_spec("columns[0]", &column).unwrap_err().0, "columns[0].category");
    }
}
