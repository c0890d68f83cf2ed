-- Indexes for the observability store's hot paths (market_pipeline.storage.observability).
--
-- log_feature_computation_failure asks "did a later success of this pair supersede the failure?":
-- the earliest completed symbol status of the pair with completed_at >= failed_at. With only the
-- (symbol, timeframe, started_at) index that walks every row of the pair (one per execution, so
-- thousands over time); this partial index answers it with one index probe, and stays smaller
-- than a full index because failed/pending rows are left out.
CREATE INDEX ix_symbol_computation_status_pair_completed
    ON symbol_computation_status (symbol, timeframe, completed_at)
    WHERE status = 'completed';

-- The health report reads the open failures (count, newest first, and those over the alert
-- threshold); a partial index over the few open rows keeps that independent of the resolved
-- history (100k+ rows).
CREATE INDEX ix_feature_computation_failures_open_failed_at
    ON feature_computation_failures (failed_at DESC, id DESC)
    WHERE NOT resolved;

INSERT INTO schema_migrations (version, name) VALUES (4, '0004_observability_read_indexes');
