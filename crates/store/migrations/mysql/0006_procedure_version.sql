-- The version a finished procedure answers with (its commit, or its rollback): every answer
-- for it, first, retried or read back, reports this one, never the leader's newest. 0 while
-- it runs, and for procedures finished before it was recorded.
ALTER TABLE procedures ADD COLUMN result_version BIGINT NOT NULL DEFAULT 0;
