-- Logging a failure asks "is this execution's failure of the pair already recorded?"
-- (execution_id, symbol, timeframe). With only the (execution_id) index that walks every failure
-- of the execution, so logging the k-th failed pair of a run read the k - 1 before it: a run of
-- 10,000 pairs that all failed cost 50 million row visits. This index answers it with one probe.
CREATE INDEX ix_feature_computation_failures_execution_pair
    ON feature_computation_failures (execution_id, symbol, timeframe);

-- The dashboard's pair detail reads one pair's failures newest first. Only the open ones had a
-- pair index: the resolved history (100k+ rows) was read along failed_at for every pair.
CREATE INDEX ix_feature_computation_failures_pair_failed_at
    ON feature_computation_failures (symbol, timeframe, failed_at DESC, id DESC);

INSERT INTO schema_migrations (version, name) VALUES (7, '0007_failure_lookup_indexes');
