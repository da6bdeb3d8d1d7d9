-- Catalog objects, one row each: kind 'database' (with name ''), 'table' or 'view'. The
-- payload is the encoded object, its state included (hidden, visible, dropping).
CREATE TABLE IF NOT EXISTS catalog_objects (
    cluster TEXT NOT NULL,
    kind TEXT NOT NULL,
    database_name TEXT NOT NULL,
    name TEXT NOT NULL,
    payload BYTEA NOT NULL,
    version BIGINT NOT NULL,
    PRIMARY KEY (cluster, kind, database_name, name)
);
-- Persisted DDL procedures: a new leader resumes every running one from its step.
CREATE TABLE IF NOT EXISTS procedures (
    cluster TEXT NOT NULL,
    id BIGINT NOT NULL,
    kind TEXT NOT NULL,
    target TEXT NOT NULL,
    step TEXT NOT NULL,
    state TEXT NOT NULL,
    error TEXT NOT NULL,
    request_id TEXT,
    request BYTEA NOT NULL,
    term BIGINT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL,
    PRIMARY KEY (cluster, id)
);
CREATE UNIQUE INDEX IF NOT EXISTS procedures_request_id ON procedures (cluster, request_id);
