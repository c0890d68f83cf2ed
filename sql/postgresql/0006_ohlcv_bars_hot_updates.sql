-- A revised bar is written as an UPDATE of its row. With full pages (the default fillfactor of
-- 100) the new row version lands on another page and needs a new primary-key entry too; rewriting
-- a whole history that way ran at a fifth to a third of the rate of loading it
-- (bench/write_path.py).
-- With half of each page left free, the new version of every row of a page fits beside the old
-- one: a HOT update, no index entry written, and the old version is pruned in place later. The
-- price is twice the table's pages. Only pages written from now on are left half empty; existing
-- ones keep their rows until the table is rewritten (VACUUM FULL ohlcv_bars, which locks it).
ALTER TABLE ohlcv_bars SET (fillfactor = 50);

INSERT INTO schema_migrations (version, name) VALUES (6, '0006_ohlcv_bars_hot_updates');
