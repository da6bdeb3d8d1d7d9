-- The metadata version counter: bumped inside each change's own transaction, so version
-- order is commit order.
CREATE TABLE IF NOT EXISTS metadata_version (
    cluster VARCHAR(64) NOT NULL PRIMARY KEY,
    version BIGINT NOT NULL
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
-- Committed changes, kept for a retention window so that agents catch up incrementally.
CREATE TABLE IF NOT EXISTS metadata_changes (
    cluster VARCHAR(64) NOT NULL,
    version BIGINT NOT NULL,
    kind VARCHAR(32) NOT NULL,
    payload LONGBLOB NOT NULL,
    created_at_ms BIGINT NOT NULL,
    PRIMARY KEY (cluster, version)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
-- Registered data nodes: one incarnation per node id.
CREATE TABLE IF NOT EXISTS data_nodes (
    cluster VARCHAR(64) NOT NULL,
    node_id VARCHAR(64) NOT NULL,
    incarnation VARCHAR(64) NOT NULL,
    address VARCHAR(255) NOT NULL,
    registered_at_ms BIGINT NOT NULL,
    PRIMARY KEY (cluster, node_id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
