"""Real daily bars the suite already depends on: five stocks of bokeh-sampledata, the S&P 500
of arch. The vendor tests serve them in each vendor's format."""

from __future__ import annotations

from functools import cache

import numpy as np
import pandas as pd

_COLUMNS = ("open", "high", "low", "close", "volume")


@cache
def _bokeh(ticker: str) -> pd.DataFrame:
    from bokeh_sampledata import stocks

    raw = getattr(stocks, ticker)
    return pd.DataFrame(
        {
            "ts": pd.to_datetime(raw["date"]).tz_localize("UTC").as_unit("ns"),
            **{name: np.asarray(raw[name], dtype=float) for name in _COLUMNS},
        }
    )


@cache
def _sp500() -> pd.DataFrame:
    from arch.data import sp500

    raw = sp500.load()
    return pd.DataFrame(
        {
            "ts": pd.DatetimeIndex(raw.index).tz_localize("UTC").as_unit("ns"),
            **{name: raw[name.capitalize()].to_numpy(float) for name in _COLUMNS},
        }
    )


def real_daily(name: str) -> pd.DataFrame:
    """One real daily series: AAPL, FB, GOOG, IBM, MSFT or SP500 (a copy, oldest first)."""
    frame = _sp500() if name == "SP500" else _bokeh(name)
    return frame.sort_values("ts").reset_index(drop=True).copy()


REAL_SERIES = ("AAPL", "FB", "GOOG", "IBM", "MSFT", "SP500")


def twenty_series() -> dict[str, pd.DataFrame]:
    """20 symbols over the 6 real series: each series under up to 4 names, prices scaled by
    1-4 so that no two symbols hold the same bars."""
    out: dict[str, pd.DataFrame] = {}
    for index in range(20):
        base = REAL_SERIES[index % len(REAL_SERIES)]
        scale = 1 + index // len(REAL_SERIES)
        frame = real_daily(base)
        for column in ("open", "high", "low", "close"):
            frame[column] = frame[column] * scale
        out[f"{base}{scale}"] = frame
    return out
