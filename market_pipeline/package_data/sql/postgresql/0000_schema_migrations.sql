-- Version table: one row per applied migration file. Every later file records itself here, so a
-- file applied by hand with `psql -1 -f` is known to `market-pipeline migrate` afterwards.
CREATE TABLE schema_migrations (
    version     INTEGER PRIMARY KEY,
    name        TEXT NOT NULL,
    checksum    TEXT,
    applied_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

INSERT INTO schema_migrations (version, name) VALUES (0, '0000_schema_migrations');
