-- The PostgreSQL migration of the same number leaves half of each ohlcv_bars page free so that a
-- revised bar is a HOT update; SQLite has no such setting, so here the file only keeps the
-- version numbers of the two dialects in step.
INSERT INTO schema_migrations (version, name) VALUES (6, '0006_ohlcv_bars_hot_updates');
