-- Cluster-wide settings, one row per (cluster, name). `store_epoch` is written once.
CREATE TABLE IF NOT EXISTS cluster_meta (
    cluster VARCHAR(64) NOT NULL,
    name VARCHAR(64) NOT NULL,
    value VARCHAR(1024) NOT NULL,
    updated_at_ms BIGINT NOT NULL,
    PRIMARY KEY (cluster, name)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
