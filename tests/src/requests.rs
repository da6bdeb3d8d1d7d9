//! Catalog requests the tests send, with the same small shapes everywhere.

use std::time::Duration;

use leasehold::v1::alter_table_request::Action;
use leasehold::v1::catalog_client::CatalogClient;
use leasehold::v1::{
    AlterTableRequest, ColumnCategory, ColumnDefinition, CreateDatabaseRequest, CreateTableRequest, DataType,
};
use tonic::transport::{Channel, Endpoint};

/// A `Catalog` client for one coordinator, with a deadline long enough for a DDL that waits
/// a data node out.
pub fn catalog_at(address: &str) -> CatalogClient<Channel> {
    let channel = Endpoint::from_shared(format!("http://{address}"))
        .expect("a coordinator address")
        .timeout(Duration::from_secs(60))
        .connect_lazy();
    CatalogClient::new(channel)
}

/// A column without a comment.
pub fn column(name: &str, data_type: DataType, category: ColumnCategory) -> ColumnDefinition {
    ColumnDefinition {
        name: name.into(),
        data_type: data_type as i32,
        category: category as i32,
        comment: String::new(),
    }
}

/// Table `database.name` with the columns `time` (TIME) and `v` (a DOUBLE field).
pub fn create_table(database: &str, name: &str, request_id: &str) -> CreateTableRequest {
    CreateTableRequest {
        database: database.into(),
        name: name.into(),
        columns: vec![
            column("time", DataType::Timestamp, ColumnCategory::Time),
            column("v", DataType::Double, ColumnCategory::Field),
        ],
        ttl_ms: 0,
        properties: Default::default(),
        comment: String::new(),
        request_id: request_id.into(),
    }
}

/// Database `name` with a one-hour TTL.
pub fn create_database(name: &str, request_id: &str) -> CreateDatabaseRequest {
    CreateDatabaseRequest {
        name: name.into(),
        ttl_ms: 3_600_000,
        properties: Default::default(),
        request_id: request_id.into(),
    }
}

/// One `AlterTable` action on `database.name`.
pub fn alter(database: &str, name: &str, action: Action, request_id: &str) -> AlterTableRequest {
    AlterTableRequest {
        database: database.into(),
        name: name.into(),
        action: Some(action),
        request_id: request_id.into(),
    }
}
