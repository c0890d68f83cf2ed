-- feature_freshness is a small table (one row per monitored pair) whose rows are all rewritten
-- by every run. The index on last_computed_at made each rewrite a non-HOT update (the indexed
-- column changes every time), so every run added a dead tuple and an index entry per pair: a
-- 500-pair table grew to ~4 MB of dead rows between autovacuum passes, and every freshness read
-- (health, staleness report) scanned them. No query needs that index (the reads join the
-- monitored pairs on the primary key). Without it, and with half of each page left free, the
-- rewrites are HOT updates: the old versions are pruned in place, no vacuum needed.
DROP INDEX ix_feature_freshness_last_computed_at;
ALTER TABLE feature_freshness SET (fillfactor = 50);

INSERT INTO schema_migrations (version, name) VALUES (5, '0005_feature_freshness_hot_updates');
