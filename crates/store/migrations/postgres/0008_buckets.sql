-- Bucket pools and who owns each bucket. A bucket's row is written at its first grant and
-- kept from then on: released, it has no owner (empty node id) but keeps its epoch, so that
-- epochs only grow. `revoke_version` is the version of a revoke that has not settled.
CREATE TABLE IF NOT EXISTS bucket_pools (
    cluster TEXT NOT NULL,
    name TEXT NOT NULL,
    bucket_count BIGINT NOT NULL,
    -- 1 while the pool is being deleted: its buckets are revoked and none is granted again.
    deleting BIGINT NOT NULL DEFAULT 0,
    created_at_ms BIGINT NOT NULL,
    PRIMARY KEY (cluster, name)
);
CREATE TABLE IF NOT EXISTS bucket_assignments (
    cluster TEXT NOT NULL,
    pool TEXT NOT NULL,
    bucket BIGINT NOT NULL,
    node_id TEXT NOT NULL,
    incarnation TEXT NOT NULL,
    epoch BIGINT NOT NULL,
    revoke_version BIGINT NULL,
    PRIMARY KEY (cluster, pool, bucket)
);
-- The bucket pools a data node joined at its registration, comma-separated.
ALTER TABLE data_nodes ADD COLUMN pools VARCHAR(1200) NOT NULL DEFAULT '';
-- A tombstone whose incarnation gave every bucket up as it deregistered: its revokes settle at
-- once, under every leader.
ALTER TABLE data_node_tombstones ADD COLUMN buckets_released BIGINT NOT NULL DEFAULT 0;
