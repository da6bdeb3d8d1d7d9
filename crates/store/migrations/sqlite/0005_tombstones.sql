-- Data-node incarnations that were deregistered, evicted or replaced while they may still
-- hold a lease: every leader counts them until they have provably fenced.
CREATE TABLE IF NOT EXISTS data_node_tombstones (
    cluster TEXT NOT NULL,
    node_id TEXT NOT NULL,
    incarnation TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL,
    PRIMARY KEY (cluster, node_id, incarnation)
);
