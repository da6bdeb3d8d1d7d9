-- Catalog objects, one row each: kind 'database' (with name ''), 'table' or 'view'. The
-- payload is the encoded object, its state included (hidden, visible, dropping).
CREATE TABLE IF NOT EXISTS catalog_objects (
    cluster VARCHAR(64) NOT NULL,
    kind VARCHAR(16) NOT NULL,
    database_name VARCHAR(64) NOT NULL,
    name VARCHAR(64) NOT NULL,
    payload LONGBLOB NOT NULL,
    version BIGINT NOT NULL,
    PRIMARY KEY (cluster, kind, database_name, name)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
-- Persisted DDL procedures: a new leader resumes every running one from its step.
CREATE TABLE IF NOT EXISTS procedures (
    cluster VARCHAR(64) NOT NULL,
    id BIGINT NOT NULL,
    kind VARCHAR(32) NOT NULL,
    target VARCHAR(200) NOT NULL,
    step VARCHAR(32) NOT NULL,
    state VARCHAR(16) NOT NULL,
    error VARCHAR(2048) NOT NULL,
    request_id VARCHAR(128),
    request LONGBLOB NOT NULL,
    term BIGINT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL,
    PRIMARY KEY (cluster, id),
    UNIQUE KEY procedures_request_id (cluster, request_id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
