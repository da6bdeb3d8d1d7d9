-- Cluster-wide settings, one row per (cluster, name). `store_epoch` is written once.
CREATE TABLE IF NOT EXISTS cluster_meta (
    cluster TEXT NOT NULL,
    name TEXT NOT NULL,
    value TEXT NOT NULL,
    updated_at_ms INTEGER NOT NULL,
    PRIMARY KEY (cluster, name)
);
