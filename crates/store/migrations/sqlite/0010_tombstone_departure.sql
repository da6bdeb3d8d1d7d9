-- A tombstone records how its incarnation went: 1 when it deregistered (it left), 0 when it
-- was evicted, replaced or removed by an operator (it was lost). Listings show it.
ALTER TABLE data_node_tombstones ADD COLUMN left_cleanly INTEGER NOT NULL DEFAULT 0;
