-- The index on feature_freshness.last_computed_at is unused (the reads join the monitored pairs
-- on the primary key) and cost an index write on every freshness update; the PostgreSQL
-- migration of the same number drops it so that those updates become HOT updates.
DROP INDEX ix_feature_freshness_last_computed_at;

INSERT INTO schema_migrations (version, name) VALUES (5, '0005_feature_freshness_hot_updates');
