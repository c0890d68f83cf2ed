"""revised_bar_count: which re-fetched overlap bars differ from the stored ones."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from market_pipeline.config.universe_file import universe_from_mapping
from market_pipeline.domain.revisions import revised_bar_count
from market_pipeline.domain.universe import UniverseError


def _bars(close, start="2026-01-05", volume=1000.0) -> pd.DataFrame:
    close = np.asarray(close, dtype=float)
    return pd.DataFrame(
        {
            "ts": pd.date_range(start, periods=len(close), freq="1D", tz="UTC"),
            "open": close,
            "high": close + 1,
            "low": close - 1,
            "close": close,
            "volume": volume,
        }
    )


def test_equal_bars_are_no_revision_and_a_split_revises_every_bar():
    stored = _bars([100.0, 101.0, 102.0])
    assert revised_bar_count(stored.copy(), stored, tolerance=1e-6) == 0
    split = stored.assign(**{c: stored[c] / 2 for c in ("open", "high", "low", "close")})
    assert revised_bar_count(split, stored, tolerance=1e-6) == 3


def test_the_tolerance_is_relative_and_volume_counts():
    stored = _bars([100.0, 101.0])
    nudged = stored.assign(close=stored["close"] * (1 + 1e-8))
    assert revised_bar_count(nudged, stored, tolerance=1e-6) == 0
    assert revised_bar_count(nudged, stored, tolerance=0) == 2
    late_trades = stored.copy()
    late_trades.loc[1, "volume"] = 1500.0
    assert revised_bar_count(late_trades, stored, tolerance=1e-6) == 1


def test_only_bars_in_both_frames_are_compared():
    stored = _bars([100.0, 101.0])
    newer = _bars([500.0, 501.0], start="2026-02-01")
    assert revised_bar_count(newer, stored, tolerance=1e-6) == 0
    assert revised_bar_count(stored, stored.iloc[0:0], tolerance=1e-6) == 0


def test_bars_match_on_the_instant_whatever_the_unit_and_order_of_either_frame():
    stored = _bars([100.0, 101.0, 102.0, 103.0])
    stored["ts"] = stored["ts"].astype("datetime64[us, UTC]")  # as read back from a database
    fetched = _bars([101.0, 150.0, 103.0, 104.0], start="2026-01-06").iloc[::-1]
    # 01-06 equal, 01-07 revised, 01-08 equal, 01-09 new: one revision
    assert revised_bar_count(fetched, stored, tolerance=1e-6) == 1
    assert revised_bar_count(stored, fetched, tolerance=1e-6) == 1


@pytest.mark.parametrize("tolerance", [-0.1, 2, "small", True])
def test_the_universe_refuses_a_bad_tolerance(tolerance):
    with pytest.raises(UniverseError, match="revision_tolerance must be a number from 0 to 1"):
        universe_from_mapping(
            {
                "provider": {"kind": "synthetic", "revision_tolerance": tolerance},
                "symbols": [{"symbol": "AAPL", "asset_class": "equity"}],
                "timeframes": ["1d"],
            },
            source="u.yaml",
        )
