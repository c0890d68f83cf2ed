-- Scheduler observability (PHASE_1_OBSERVABILITY.md, "Migration 013"): the spec's four tables
-- with its column names; additions are marked. Every run of the pipeline is mirrored here.

CREATE TABLE scheduler_execution_log (
    execution_id             TEXT PRIMARY KEY,            -- the Dagster run id (canonical dashed UUID text)
    started_at               TEXT NOT NULL,
    completed_at             TEXT,
    total_symbols            INTEGER NOT NULL DEFAULT 0 CHECK (total_symbols >= 0),
    successful_symbols       INTEGER NOT NULL DEFAULT 0 CHECK (successful_symbols >= 0),
    failed_symbols           INTEGER NOT NULL DEFAULT 0 CHECK (failed_symbols >= 0),
    total_records_processed  INTEGER NOT NULL DEFAULT 0 CHECK (total_records_processed >= 0),
    duration_seconds         REAL CHECK (duration_seconds >= 0),
    status                   TEXT NOT NULL CHECK (status IN ('running', 'completed', 'failed')),
    error_message            TEXT,
    -- additions
    job_name                 TEXT,
    run_trigger              TEXT,                        -- schedule | sensor | backfill | manual
    scheduled_for            TEXT,
    updated_at               TEXT NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now') || '000+00:00')
);
CREATE INDEX ix_scheduler_execution_log_started_at ON scheduler_execution_log (started_at DESC);
CREATE INDEX ix_scheduler_execution_log_status ON scheduler_execution_log (status, started_at DESC);

CREATE TABLE feature_computation_failures (
    id                        INTEGER PRIMARY KEY,
    symbol                    TEXT NOT NULL,
    timeframe                 TEXT NOT NULL,
    error_message             TEXT NOT NULL,
    execution_id              TEXT REFERENCES scheduler_execution_log (execution_id)
                                  ON DELETE SET NULL,
    retry_count               INTEGER NOT NULL DEFAULT 0 CHECK (retry_count >= 0),
    resolved                  INTEGER NOT NULL DEFAULT 0 CHECK (resolved IN (0, 1)),
    failed_at                 TEXT NOT NULL,
    -- additions
    first_failed_at           TEXT NOT NULL,
    resolved_at               TEXT,
    resolved_by_execution_id  TEXT
);
-- At most one open failure per pair: a repeat failure increments its retry_count.
CREATE UNIQUE INDEX ux_feature_computation_failures_open
    ON feature_computation_failures (symbol, timeframe) WHERE resolved = 0;
CREATE INDEX ix_feature_computation_failures_failed_at
    ON feature_computation_failures (failed_at DESC);
CREATE INDEX ix_feature_computation_failures_execution
    ON feature_computation_failures (execution_id);

CREATE TABLE feature_freshness (
    symbol             TEXT NOT NULL,
    timeframe          TEXT NOT NULL,
    last_computed_at   TEXT,
    data_point_count   INTEGER NOT NULL DEFAULT 0 CHECK (data_point_count >= 0),
    status             TEXT NOT NULL CHECK (status IN ('fresh', 'aging', 'stale', 'missing')),
    staleness_seconds  REAL,
    updated_at         TEXT NOT NULL,
    -- additions
    last_bar_at        TEXT,
    PRIMARY KEY (symbol, timeframe)
);
CREATE INDEX ix_feature_freshness_last_computed_at ON feature_freshness (last_computed_at);

CREATE TABLE symbol_computation_status (
    id                 INTEGER PRIMARY KEY,
    execution_id       TEXT NOT NULL REFERENCES scheduler_execution_log (execution_id)
                           ON DELETE CASCADE,
    symbol             TEXT NOT NULL,
    asset_class        TEXT,
    timeframe          TEXT NOT NULL,
    status             TEXT NOT NULL
                           CHECK (status IN ('pending', 'in_progress', 'completed', 'failed')),
    records_processed  INTEGER NOT NULL DEFAULT 0 CHECK (records_processed >= 0),
    records_inserted   INTEGER NOT NULL DEFAULT 0 CHECK (records_inserted >= 0),
    features_computed  INTEGER NOT NULL DEFAULT 0 CHECK (features_computed >= 0),
    started_at         TEXT,
    completed_at       TEXT,
    duration_seconds   REAL CHECK (duration_seconds >= 0),
    error_message      TEXT,
    UNIQUE (execution_id, symbol, timeframe)
);
CREATE INDEX ix_symbol_computation_status_pair
    ON symbol_computation_status (symbol, timeframe, started_at DESC);

INSERT INTO schema_migrations (version, name) VALUES (2, '0002_scheduler_monitoring');
