-- A deregistered or evicted incarnation keeps its row, marked retired, until its node
-- registers again: a registration that arrives late, or an evicted agent coming back, is
-- told its incarnation was retired rather than taken back.
ALTER TABLE data_nodes ADD COLUMN retired_at_ms BIGINT NULL;
