"""Bulk writes of bars and features: idempotent, revisions replace, unchanged rows are not
rewritten, NaN stored as NULL."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from market_pipeline.storage import market_data
from market_pipeline.storage.market_data import MarketDataRepository
from market_pipeline.storage.tables import FEATURE_COLUMNS


def _bars(n: int, start: str = "2024-03-08 14:30", freq: str = "1h", base: float = 100.0):
    ts = pd.date_range(start, periods=n, freq=freq, tz="UTC")
    close = base + np.arange(n, dtype=float)
    return pd.DataFrame(
        {
            "ts": ts,
            "open": close - 0.5,
            "high": close + 1.0,
            "low": close - 1.0,
            "close": close,
            "volume": np.full(n, 1000.0),
        }
    )


def test_new_pair_bars_round_trip_with_aware_utc_times(engine):
    repo = MarketDataRepository(engine)
    bars = _bars(50)
    written = repo.upsert_bars({("AAPL", "1h"): bars}, new_pairs=[("AAPL", "1h")])
    assert written == {("AAPL", "1h"): 50}
    loaded = repo.load_bars([("AAPL", "1h")])[("AAPL", "1h")]
    pd.testing.assert_frame_equal(loaded, bars, check_dtype=False)
    assert str(loaded["ts"].dt.tz) == "UTC"


def test_rerun_of_same_bars_stores_nothing_twice(engine):
    repo = MarketDataRepository(engine)
    bars = _bars(30)
    repo.upsert_bars({("MSFT", "1h"): bars}, new_pairs=[("MSFT", "1h")])
    written = repo.upsert_bars({("MSFT", "1h"): bars})
    assert written == {("MSFT", "1h"): 0}
    assert repo.count_rows("ohlcv_bars") == 30


def test_revised_and_new_bars_are_upserted(engine):
    repo = MarketDataRepository(engine)
    repo.upsert_bars({("IBM", "1h"): _bars(10)}, new_pairs=[("IBM", "1h")])
    update = _bars(12).iloc[8:].copy()
    update.loc[update.index[0], "close"] = 999.0
    update.loc[update.index[0], "high"] = 1000.0
    written = repo.upsert_bars({("IBM", "1h"): update})
    assert written == {("IBM", "1h"): 3}  # one revised bar, two new ones; one unchanged
    loaded = repo.load_bars([("IBM", "1h")])[("IBM", "1h")]
    assert len(loaded) == 12
    assert loaded.loc[8, "close"] == 999.0


def test_direct_copy_of_a_pair_that_was_stored_meanwhile_falls_back_to_upsert(engine):
    repo = MarketDataRepository(engine)
    bars = _bars(20)
    repo.upsert_bars({("X", "1h"): bars}, new_pairs=[("X", "1h")])
    # A concurrent run believed the pair new: the write must still succeed, without duplicates.
    written = repo.upsert_bars({("X", "1h"): bars}, new_pairs=[("X", "1h")])
    assert repo.count_rows("ohlcv_bars") == 20
    assert written[("X", "1h")] in (0, 20)


def test_latest_bar_times_per_pair(engine):
    repo = MarketDataRepository(engine)
    repo.upsert_bars(
        {("A", "1h"): _bars(5), ("A", "1d"): _bars(3, freq="1D")},
        new_pairs=[("A", "1h"), ("A", "1d")],
    )
    latest = repo.latest_bar_times([("A", "1h"), ("A", "1d"), ("B", "1h")])
    assert latest[("A", "1h")] == pd.Timestamp("2024-03-08 18:30", tz="UTC")
    assert latest[("A", "1d")] == pd.Timestamp("2024-03-10 14:30", tz="UTC")
    assert ("B", "1h") not in latest
    assert latest[("A", "1h")].tzinfo is not None


def test_features_nan_is_stored_as_null_and_read_back_as_nan(engine):
    repo = MarketDataRepository(engine)
    n = 25
    feats = pd.DataFrame({"ts": pd.date_range("2024-01-01", periods=n, freq="1D", tz="UTC")})
    for j, col in enumerate(FEATURE_COLUMNS):
        values = np.arange(n, dtype=float) + j
        values[: j % 5] = np.nan
        feats[col] = values
    repo.upsert_features({("AAPL", "1d"): feats}, new_pairs=[("AAPL", "1d")])
    with engine.connect() as conn:
        nulls = conn.exec_driver_sql(
            "SELECT COUNT(*) FROM quant_features WHERE simple_return IS NULL"
        ).scalar_one()
        nulls_obv = conn.exec_driver_sql(
            "SELECT COUNT(*) FROM quant_features WHERE obv IS NULL"
        ).scalar_one()
    assert nulls == 0
    assert nulls_obv == FEATURE_COLUMNS.index("obv") % 5
    loaded = repo.load_features([("AAPL", "1d")])[("AAPL", "1d")]
    pd.testing.assert_frame_equal(loaded, feats, check_dtype=False)


def test_count_rows_refuses_unknown_table(engine):
    with pytest.raises(ValueError, match="unknown market-data table"):
        MarketDataRepository(engine).count_rows("users; DROP TABLE ohlcv_bars")


def test_a_failing_bulk_write_after_migrate_leaves_nothing_behind(engine):
    # The migration runner drives SQLite transactions by hand; the pooled connection it used
    # must be back in transactional mode, or the first pair below would be committed alone.
    repo = MarketDataRepository(engine)
    bad = _bars(5)
    bad.loc[2, "close"] = np.nan
    with pytest.raises(Exception):
        repo.upsert_bars({("GOOD", "1h"): _bars(5), ("BAD", "1h"): bad})
    assert repo.count_rows("ohlcv_bars") == 0


# -- PostgreSQL: the two ways a staged batch is merged -------------------------------------------


@pytest.fixture(params=["per-row", "set-based"])
def merge_way(request, monkeypatch):
    """Force one merge of a staged batch: the choice normally follows the batch's size against
    the table's, and test tables are a page or two."""
    share = 0 if request.param == "per-row" else 10**9
    monkeypatch.setattr(market_data, "_SET_BASED_MIN_SHARE", share)
    return request.param


def _versions(engine, table: str) -> dict[tuple, str]:
    """xmin of every stored row: it changes exactly when the row is rewritten."""
    with engine.connect() as conn:
        rows = conn.exec_driver_sql(
            f"SELECT symbol, timeframe, ts, xmin::text FROM {table}"
        ).all()
    return {(s, t, ts): xmin for s, t, ts, xmin in rows}


@pytest.mark.postgres
def test_a_batch_of_new_changed_and_unchanged_rows_writes_only_new_and_changed(
    pg_engine, merge_way
):
    repo = MarketDataRepository(pg_engine)
    stored = {(s, "1h"): _bars(10) for s in ("REV", "SAME", "ALL", "GROW", "OUT")}
    repo.upsert_bars(stored, new_pairs=list(stored))
    before = _versions(pg_engine, "ohlcv_bars")

    revised = _bars(12)  # bar 3 revised, bars 10 and 11 new, the others re-sent unchanged
    revised.loc[3, ["high", "close"]] = [500.0, 499.0]
    all_changed = _bars(10).assign(volume=2000.0)
    grown = _bars(11).assign(volume=3000.0)  # every stored bar revised, and one new bar
    written = repo.upsert_bars(
        {
            ("REV", "1h"): revised,
            ("SAME", "1h"): _bars(10),
            ("ALL", "1h"): all_changed,
            ("GROW", "1h"): grown,
        }
    )

    assert written == {("REV", "1h"): 3, ("SAME", "1h"): 0, ("ALL", "1h"): 10, ("GROW", "1h"): 11}
    loaded = repo.load_bars(stored)
    pd.testing.assert_frame_equal(loaded[("REV", "1h")], revised, check_dtype=False)
    pd.testing.assert_frame_equal(loaded[("ALL", "1h")], all_changed, check_dtype=False)
    pd.testing.assert_frame_equal(loaded[("GROW", "1h")], grown, check_dtype=False)
    for untouched in (("SAME", "1h"), ("OUT", "1h")):
        pd.testing.assert_frame_equal(loaded[untouched], _bars(10), check_dtype=False)
    after = _versions(pg_engine, "ohlcv_bars")
    rewritten = {key for key in before if after[key] != before[key]}
    assert rewritten == {
        ("REV", "1h", revised["ts"][3]),
        *(("ALL", "1h", ts) for ts in all_changed["ts"]),
        *(("GROW", "1h", ts) for ts in grown["ts"][:10]),
    }
    assert len(after) == 53


@pytest.mark.postgres
def test_re_sent_features_with_nulls_are_not_rewritten(pg_engine, merge_way):
    repo = MarketDataRepository(pg_engine)
    feats = pd.DataFrame({"ts": pd.date_range("2024-01-01", periods=30, freq="1D", tz="UTC")})
    for j, col in enumerate(FEATURE_COLUMNS):
        feats[col] = np.arange(30, dtype=float) + j
        feats.loc[: j % 7, col] = np.nan  # warm-up NULLs, as the feature pass leaves them
    pair = ("AAPL", "1d")
    repo.upsert_features({pair: feats}, new_pairs=[pair])
    before = _versions(pg_engine, "quant_features")

    assert repo.upsert_features({pair: feats}) == {pair: 0}
    assert _versions(pg_engine, "quant_features") == before

    changed = feats.copy()
    changed.loc[0, "simple_return"] = 0.5  # a value where NULL was stored
    changed.loc[20, "rsi_14"] = np.nan  # NULL where a value was stored
    assert repo.upsert_features({pair: changed}) == {pair: 2}
    loaded = repo.load_features([pair])[pair]
    pd.testing.assert_frame_equal(loaded, changed, check_dtype=False)


@pytest.mark.postgres
def test_a_batch_repeating_a_timestamp_is_refused_and_nothing_is_stored(pg_engine, merge_way):
    repo = MarketDataRepository(pg_engine)
    repo.upsert_bars({("A", "1h"): _bars(5)}, new_pairs=[("A", "1h")])
    twice = pd.concat([_bars(6), _bars(6).iloc[[4]].assign(close=7.0)], ignore_index=True)
    with pytest.raises(ValueError, match="repeat a timestamp"):
        repo.upsert_bars({("B", "1h"): _bars(3), ("A", "1h"): twice})
    assert repo.count_rows("ohlcv_bars") == 5
