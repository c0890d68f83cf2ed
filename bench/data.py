"""Synthetic bar frames for the feature and write-path cases and the TA-Lib comparison."""

from __future__ import annotations

import numpy as np
import pandas as pd

from market_pipeline.domain.timeframes import Timeframe


def synthetic_bars(
    n_series: int, n_bars: int, timeframe: str, asset_class: str, seed: int = 0
) -> list[pd.DataFrame]:
    """``n_series`` random-walk series of ``n_bars`` bars on the session grid of the class."""
    rng = np.random.default_rng(seed)
    step = Timeframe.parse(timeframe).seconds
    if asset_class == "equity" and step < 86400:
        per_day = int(390 * 60 // step)
        days = pd.bdate_range(
            "2024-01-02", periods=-(-n_bars // per_day) + 1, tz="America/New_York"
        )
        opens = days + pd.Timedelta(hours=9, minutes=30)
        utc = opens.tz_convert(None).to_numpy()
        grid = (utc[:, None] + np.arange(per_day) * np.timedelta64(step, "s")).ravel()
        ts = pd.DatetimeIndex(grid[:n_bars]).tz_localize("UTC")
    else:
        ts = pd.date_range("2024-01-01", periods=n_bars, freq=f"{step}s", tz="UTC")
    frames = []
    for _ in range(n_series):
        close = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.002, n_bars)))
        open_ = np.concatenate([[close[0]], close[:-1]])
        spread = np.abs(rng.normal(0.0, 0.001, n_bars)) * close
        frames.append(
            pd.DataFrame(
                {
                    "ts": ts,
                    "open": open_,
                    "high": np.maximum(open_, close) + spread,
                    "low": np.minimum(open_, close) - spread,
                    "close": close,
                    "volume": rng.integers(0, 10_000, n_bars).astype(np.float64),
                }
            )
        )
    return frames
