-- Coverage SLI samples: at each freshness refresh, per timeframe and asset class, how many
-- monitored pairs there were and how many had their newest due bar stored (data status
-- "current"), how many were late, and late beyond their timeframe's tolerance. The SLI over a window is the sum of current over the sum of monitored of the
-- samples in it. Rows older than the retention setting are deleted when a sample is written.

CREATE TABLE data_coverage_samples (
    sampled_at        TIMESTAMPTZ NOT NULL,
    timeframe         TEXT NOT NULL,
    asset_class       TEXT NOT NULL,
    monitored_count   INTEGER NOT NULL CHECK (monitored_count >= 0),
    current_count     INTEGER NOT NULL CHECK (current_count >= 0 AND current_count <= monitored_count),
    late_count        INTEGER NOT NULL CHECK (late_count >= 0),
    late_beyond_tolerance_count INTEGER NOT NULL CHECK (late_beyond_tolerance_count >= 0),
    PRIMARY KEY (sampled_at, timeframe, asset_class)
);

INSERT INTO schema_migrations (version, name) VALUES (6, '0006_data_coverage_samples');
