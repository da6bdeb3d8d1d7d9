-- The resource keeper (DESIGN §7): groups of worker processes and the processes (resources)
-- their containers started. Every write is term-guarded, but for the columns the
-- coordinator that runs a local container records (started_attempt_id, process, stopped,
-- last_error), which are guarded by the attempt id instead: a deposed leader can never ask
-- for a start, and a superseded attempt's outcome is never recorded.
CREATE TABLE IF NOT EXISTS resource_groups (
    cluster TEXT NOT NULL,
    name TEXT NOT NULL,
    container TEXT NOT NULL,
    min_members BIGINT NOT NULL,
    -- key=value lines, values escaped.
    properties TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    PRIMARY KEY (cluster, name)
);
CREATE TABLE IF NOT EXISTS resources (
    cluster TEXT NOT NULL,
    id TEXT NOT NULL,
    group_name TEXT NOT NULL,
    container TEXT NOT NULL,
    properties TEXT NOT NULL,
    -- What the container recorded of the running process (pid, start time, boot id, log).
    process TEXT NOT NULL,
    -- active | cleaning
    state TEXT NOT NULL,
    -- Restart attempts since it last stayed live for a whole grace period.
    attempts BIGINT NOT NULL,
    -- When it was last started, its first start included (store clock, ms).
    last_attempt_ms BIGINT NULL,
    -- The start the leader asked for last; the data node presents it when it registers.
    attempt_id TEXT NOT NULL,
    -- The start the container's coordinator has taken on (claimed before it spawns).
    started_attempt_id TEXT NOT NULL,
    -- 1 once the container's coordinator stopped the process of a cleaning resource.
    stopped BIGINT NOT NULL,
    last_error TEXT NOT NULL,
    -- When it was first started; a restart never changes it.
    start_time_ms BIGINT NULL,
    created_at_ms BIGINT NOT NULL,
    PRIMARY KEY (cluster, id)
);
-- The resource a data node registered as (empty for none).
ALTER TABLE data_nodes ADD COLUMN resource_id VARCHAR(64) NOT NULL DEFAULT '';
