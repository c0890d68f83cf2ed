"""Bulk writes of bars and features: idempotent, revisions replace, NaN stored as NULL."""

from __future__ import annotations

import sqlite3

import numpy as np
import pandas as pd
import psycopg2
import pytest

from market_pipeline.database.tables import FEATURE_COLUMNS
from market_pipeline.market_data.repository import MarketDataRepository


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
    # A NULL close breaks NOT NULL: the driver's IntegrityError (the writes use raw connections).
    with pytest.raises((sqlite3.IntegrityError, psycopg2.IntegrityError)):
        repo.upsert_bars({("GOOD", "1h"): _bars(5), ("BAD", "1h"): bad})
    assert repo.count_rows("ohlcv_bars") == 0


def _irregular_bars(n: int, seed: int, freq: str) -> pd.DataFrame:
    """Bars whose floats use all 53 bits, so a read that rounds anywhere shows."""
    rng = np.random.default_rng(seed)
    close = 100.0 + rng.standard_normal(n).cumsum()
    frame = _bars(n, freq=freq)
    frame["open"] = close * (1 + 1e-3 * rng.standard_normal(n))
    frame["close"] = close
    frame["high"] = np.maximum(frame["open"], close) + rng.random(n)
    frame["low"] = np.minimum(frame["open"], close) - rng.random(n)
    frame["volume"] = rng.random(n) * 1e6
    return frame


def test_many_pairs_read_back_bit_for_bit_each_under_its_own_key(engine):
    repo = MarketDataRepository(engine)
    stored = {
        ("O'REILLY", "1h"): _irregular_bars(40, 1, "1h"),
        ("AAPL", "1d"): _irregular_bars(7, 2, "1D"),
        ("AAPL", "1h"): _irregular_bars(25, 3, "1h"),
        ("Z", "5m"): _irregular_bars(1, 4, "5min"),
    }
    repo.upsert_bars(stored, new_pairs=list(stored))
    asked = [*stored, ("AAPL", "5m"), ("NOPE", "1h")]
    loaded = repo.load_bars(asked)
    assert set(loaded) == set(stored)  # pairs with nothing stored are absent
    for pair, frame in stored.items():
        pd.testing.assert_frame_equal(loaded[pair], frame, check_dtype=False, check_exact=True)
        assert str(loaded[pair]["ts"].dt.tz) == "UTC"


def test_bars_since_an_instant_are_those_stamped_at_or_after_it(engine):
    repo = MarketDataRepository(engine)
    stored = {("A", "1h"): _irregular_bars(10, 5, "1h"), ("B", "1h"): _irregular_bars(3, 6, "1h")}
    repo.upsert_bars(stored, new_pairs=list(stored))
    since = stored[("A", "1h")]["ts"].iloc[7].to_pydatetime()
    loaded = repo.load_bars_since(list(stored), since)
    assert set(loaded) == {("A", "1h")}  # B's last bar is older than since
    expected = stored[("A", "1h")].iloc[7:].reset_index(drop=True)
    pd.testing.assert_frame_equal(loaded[("A", "1h")], expected, check_dtype=False)


def test_infinite_feature_values_are_stored_as_null_on_first_write_and_on_update(engine):
    repo = MarketDataRepository(engine)
    pair = ("AAPL", "1d")
    feats = pd.DataFrame({"ts": pd.date_range("2024-01-01", periods=4, freq="1D", tz="UTC")})
    for col in FEATURE_COLUMNS:
        feats[col] = [1.0, np.inf, -np.inf, np.nan]
    repo.upsert_features({pair: feats}, new_pairs=[pair])
    update = feats.copy()
    update[list(FEATURE_COLUMNS)] = [[np.inf] * len(FEATURE_COLUMNS)] * 4
    assert repo.upsert_features({pair: update}) == {pair: 1}  # only the 1.0 row changes
    with engine.connect() as conn:
        nulls = conn.exec_driver_sql(
            "SELECT COUNT(*) FROM quant_features WHERE obv IS NULL AND zscore_20 IS NULL"
        ).scalar_one()
    assert nulls == 4
    assert repo.load_features([pair])[pair]["obv"].isna().all()
