-- Data-node incarnations that were deregistered, evicted or replaced while they may still
-- hold a lease: every leader counts them until they have provably fenced.
CREATE TABLE IF NOT EXISTS data_node_tombstones (
    cluster VARCHAR(64) NOT NULL,
    node_id VARCHAR(64) NOT NULL,
    incarnation VARCHAR(64) NOT NULL,
    created_at_ms BIGINT NOT NULL,
    PRIMARY KEY (cluster, node_id, incarnation)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
