-- Version table: one row per applied migration file (see sql/postgresql/0000 for the why).
-- Timestamps on SQLite are fixed-width UTC text 'YYYY-MM-DD HH:MM:SS.ffffff+00:00', so text order
-- is time order.
CREATE TABLE schema_migrations (
    version     INTEGER PRIMARY KEY,
    name        TEXT NOT NULL,
    checksum    TEXT,
    applied_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now') || '000+00:00')
);

INSERT INTO schema_migrations (version, name) VALUES (0, '0000_schema_migrations');
