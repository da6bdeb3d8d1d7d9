-- The coordinator lease: one row per cluster. `term` is the fencing token (+1 on every
-- acquire); `version` is +1 on every write (optimistic concurrency for acquires);
-- `write_seq` is +1 on every term-guarded write. Times are milliseconds on the store's clock.
CREATE TABLE IF NOT EXISTS ha_lease (
    cluster TEXT NOT NULL PRIMARY KEY,
    term BIGINT NOT NULL,
    holder_node_id TEXT,
    holder_incarnation TEXT,
    holder_address TEXT,
    expires_at_ms BIGINT NOT NULL,
    version BIGINT NOT NULL,
    write_seq BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL
);
-- Every coordinator's stable node id; `incarnation` is NULL after a clean stop.
CREATE TABLE IF NOT EXISTS ha_nodes (
    cluster TEXT NOT NULL,
    node_id TEXT NOT NULL,
    incarnation TEXT,
    address TEXT NOT NULL,
    mode TEXT NOT NULL,
    priority BIGINT NOT NULL,
    role TEXT NOT NULL,
    last_seen_ms BIGINT NOT NULL,
    started_at_ms BIGINT NOT NULL,
    PRIMARY KEY (cluster, node_id)
);
