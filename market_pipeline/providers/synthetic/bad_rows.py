"""Failure injection: bad rows amid good ones, one of each kind the validation rejects."""

from __future__ import annotations

import pandas as pd


def inject_bad_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """Spoil rows at positions (2i+1)n//8, i = 0..3 (see the module docstring)."""
    n = len(frame)
    positions = [(2 * i + 1) * n // 8 for i in range(4)] if n >= 4 else list(range(n))
    frame = frame.copy()
    if len(positions) > 0:  # OHLC violation: high below the body
        p = positions[0]
        body_low = min(frame["open"].to_numpy()[p], frame["close"].to_numpy()[p])
        frame.loc[p, "high"] = float(body_low) * 0.98
    if len(positions) > 1:  # missing price
        frame.loc[positions[1], "close"] = float("nan")
    if len(positions) > 2:  # non-positive price
        frame.loc[positions[2], "low"] = 0.0
    if len(positions) > 3:  # duplicated timestamp: an exact copy right after the row
        p = positions[3]
        frame = pd.concat([frame.iloc[: p + 1], frame.iloc[p : p + 1], frame.iloc[p + 1 :]])
        frame = frame.reset_index(drop=True)
    return frame
