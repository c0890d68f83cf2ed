-- Watermark of the Dagster run mirror (market_pipeline.mirror.reconcile_instance): the newest run
-- update time up to which every run of the Dagster instance was projected into the four scheduler
-- observability tables. One row per mirror name, so two Dagster instances sharing this database
-- keep separate watermarks.

CREATE TABLE mirror_watermark (
    name              TEXT PRIMARY KEY,
    run_updated_at    TEXT NOT NULL,
    runs_mirrored     INTEGER NOT NULL DEFAULT 0 CHECK (runs_mirrored >= 0),
    updated_at        TEXT NOT NULL
);

INSERT INTO schema_migrations (version, name) VALUES (3, '0003_mirror_watermark');
