//! ALTER TABLE: add or drop a column (two phases, through a hidden or marked column), or change
//! a setting (one phase: the prepare is the change).

use super::*;

/// The plan of `action` on `database.name`.
pub(super) fn alter_table(
    catalog: &Catalog,
    database: &str,
    name: &str,
    action: &AlterAction,
) -> Result<DdlPlan, DdlError> {
    let table = visible_table(catalog, database, name)?;
    let target = format!("{database}.{name}");
    let rollback = CatalogChange::PutTable(table.clone());
    let mut changed = table.clone();
    let (kind, drop_data, commit) = match action {
        AlterAction::AddColumn(spec) => {
            if table.column(&spec.name).is_some() {
                return Err(DdlError::AlreadyExists { what: format!("column {target}.{}", spec.name) });
            }
            if table.columns.len() >= MAX_COLUMNS {
                return Err(invalid("add_column", format!("a table has at most {MAX_COLUMNS} columns")));
            }
            changed.columns.push(column_of(spec, ObjectState::Hidden));
            let mut committed = changed.clone();
            committed.columns.iter_mut().for_each(|column| column.state = ObjectState::Visible);
            (DdlKind::AddColumn, None, Some(CatalogChange::PutTable(committed)))
        }
        AlterAction::DropColumn(column) => {
            let index = table
                .columns
                .iter()
                .position(|existing| existing.name.eq_ignore_ascii_case(column))
                .ok_or_else(|| DdlError::NotFound { what: format!("column {target}.{column}") })?;
            if table.columns[index].category == Category::Time {
                return Err(invalid("drop_column", "the TIME column cannot be dropped"));
            }
            changed.columns[index].state = ObjectState::Dropping;
            let mut committed = table.clone();
            committed.columns.remove(index);
            let data = DataTarget::Column {
                database: database.to_owned(),
                table: name.to_owned(),
                column: table.columns[index].name.to_owned(),
                created_version: table.columns[index].created_version,
            };
            (DdlKind::DropColumn, Some(data), Some(CatalogChange::PutTable(committed)))
        }
        AlterAction::SetTtl(ttl) => {
            changed.ttl = *ttl;
            (DdlKind::SetTtl, None, None)
        }
        AlterAction::SetProperties { set, unset } => {
            for key in unset {
                changed.properties.remove(key);
            }
            changed.properties.extend(set.clone());
            if changed.properties.len() > MAX_PROPERTIES {
                return Err(invalid("set_properties", format!("a table has at most {MAX_PROPERTIES} properties")));
            }
            (DdlKind::SetProperties, None, None)
        }
        AlterAction::SetComment(comment) => {
            changed.comment = comment.to_owned();
            (DdlKind::SetComment, None, None)
        }
    };
    Ok(DdlPlan { kind, target, prepare: CatalogChange::PutTable(changed), drop_data, commit, rollback })
}
