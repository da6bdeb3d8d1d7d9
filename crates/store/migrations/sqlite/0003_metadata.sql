-- The metadata version counter: bumped inside each change's own transaction, so version
-- order is commit order.
CREATE TABLE IF NOT EXISTS metadata_version (
    cluster TEXT NOT NULL PRIMARY KEY,
    version INTEGER NOT NULL
);
-- Committed changes, kept for a retention window so that agents catch up incrementally.
CREATE TABLE IF NOT EXISTS metadata_changes (
    cluster TEXT NOT NULL,
    version INTEGER NOT NULL,
    kind TEXT NOT NULL,
    payload BLOB NOT NULL,
    created_at_ms INTEGER NOT NULL,
    PRIMARY KEY (cluster, version)
);
-- Registered data nodes: one incarnation per node id.
CREATE TABLE IF NOT EXISTS data_nodes (
    cluster TEXT NOT NULL,
    node_id TEXT NOT NULL,
    incarnation TEXT NOT NULL,
    address TEXT NOT NULL,
    registered_at_ms INTEGER NOT NULL,
    PRIMARY KEY (cluster, node_id)
);
