-- The coordinator lease: one row per cluster. `term` is the fencing token (+1 on every
-- acquire); `version` is +1 on every write (optimistic concurrency for acquires);
-- `write_seq` is +1 on every term-guarded write. Times are milliseconds on the store's clock.
CREATE TABLE IF NOT EXISTS ha_lease (
    cluster VARCHAR(64) NOT NULL PRIMARY KEY,
    term BIGINT NOT NULL,
    holder_node_id VARCHAR(64),
    holder_incarnation VARCHAR(64),
    holder_address VARCHAR(255),
    expires_at_ms BIGINT NOT NULL,
    version BIGINT NOT NULL,
    write_seq BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
-- Every coordinator's stable node id; `incarnation` is NULL after a clean stop.
CREATE TABLE IF NOT EXISTS ha_nodes (
    cluster VARCHAR(64) NOT NULL,
    node_id VARCHAR(64) NOT NULL,
    incarnation VARCHAR(64),
    address VARCHAR(255) NOT NULL,
    mode VARCHAR(16) NOT NULL,
    priority BIGINT NOT NULL,
    role VARCHAR(16) NOT NULL,
    last_seen_ms BIGINT NOT NULL,
    started_at_ms BIGINT NOT NULL,
    PRIMARY KEY (cluster, node_id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
