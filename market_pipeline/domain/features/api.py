"""Entry points (one series, a dict of series, series back to back) and their input/output frames.

Everything here is pandas at the edges: the bars are checked and turned into flat float64 arrays,
:func:`.layout.compute` computes, and the result becomes one frame with the input's index.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping, Sequence
from typing import TypeVar

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from market_pipeline.domain.features.columns import BAR_COLUMNS, FEATURE_COLUMNS
from market_pipeline.domain.features.layout import compute, series_kind

K = TypeVar("K", bound=Hashable)


def compute_features(
    bars: pd.DataFrame, *, asset_class: str, timeframe: str, session_tz: str | None = None
) -> pd.DataFrame:
    """Compute the feature columns of one series of bars.

    Args:
        bars: columns ``ts`` (tz-aware datetime, UTC), ``open, high, low, close, volume``; sorted
            ascending by ``ts`` with unique timestamps.
        asset_class: ``equity``, ``crypto`` or ``fx`` (annualisation, VWAP session time zone).
        timeframe: e.g. ``1m``, ``5m``, ``1h``, ``1d``.
        session_tz: the time zone whose local date is the VWAP session (the exchange's, e.g.
            ``Asia/Tokyo`` for XTKS); default: the asset class's (New York for equities).

    Returns:
        A frame with the same index and row order as ``bars``: ``ts`` (in UTC) followed by the
        float64 ``FEATURE_COLUMNS``. An empty input gives an empty frame with those columns.
    """
    return compute_features_stacked(
        bars,
        lengths=[len(bars)],
        asset_classes=[asset_class],
        timeframes=[timeframe],
        session_timezones=[session_tz],
    )


def compute_features_many(
    series: Iterable[tuple[K, pd.DataFrame, str, str]],
    *,
    session_timezones: Mapping[K, str] | None = None,
) -> dict[K, pd.DataFrame]:
    """Compute features for many series in one vectorised pass.

    The frames are concatenated once and computed with :func:`compute_features_stacked`; each
    result is a row slice of that one frame (so results share its memory until modified).

    Args:
        series: ``(key, bars, asset_class, timeframe)`` tuples; ``bars`` as for
            :func:`compute_features`. Keys must be unique.
        session_timezones: the VWAP session time zone of a key (its exchange's); keys not in it
            take their asset class's.

    Returns:
        ``{key: features}``, each frame what :func:`compute_features` returns for it (if the
        frames' ``ts`` dtypes differ, every ``ts`` comes back as ``datetime64[ns, UTC]``).
    """
    items = list(series)
    keys = [item[0] for item in items]
    if len(set(keys)) != len(keys):
        raise ValueError("compute_features_many: duplicate series keys")
    if not items:
        return {}
    frames = [_check_bars(item[1]) for item in items]
    if len({frame["ts"].dtype for frame in frames}) > 1:
        # Mixed units or display zones: concatenate the same instants in one dtype.
        frames = [
            frame.assign(ts=frame["ts"].dt.tz_convert("UTC").dt.as_unit("ns")) for frame in frames
        ]
    lengths = [len(frame) for frame in frames]
    features = compute_features_stacked(
        pd.concat(frames) if len(frames) > 1 else frames[0],
        lengths=lengths,
        asset_classes=[item[2] for item in items],
        timeframes=[item[3] for item in items],
        session_timezones=[(session_timezones or {}).get(key) for key in keys],
    )
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    return {key: features.iloc[offsets[i] : offsets[i + 1]] for i, key in enumerate(keys)}


def compute_features_stacked(
    bars: pd.DataFrame,
    *,
    lengths: Sequence[int],
    asset_classes: Sequence[str],
    timeframes: Sequence[str],
    session_timezones: Sequence[str | None] | None = None,
) -> pd.DataFrame:
    """Compute features for series stored back to back in one long frame.

    This is the fastest entry point (no per-series frames): e.g. bars read with
    ``ORDER BY symbol, timeframe, ts`` and ``lengths`` from the group sizes.

    Args:
        bars: the bars of all series concatenated; series ``i`` is the next ``lengths[i]`` rows,
            sorted ascending by ``ts`` with unique timestamps.
        lengths: number of rows of each series; they must add up to ``len(bars)``.
        asset_classes: asset class of each series.
        timeframes: timeframe of each series.

    Returns:
        A frame with the index and row order of ``bars``: ``ts`` (UTC) and ``FEATURE_COLUMNS``.
    """
    bars = _check_bars(bars)
    lengths_arr = np.asarray(lengths, dtype=np.int64).reshape(-1)
    if not len(lengths_arr) == len(asset_classes) == len(timeframes):
        raise ValueError("lengths, asset_classes and timeframes must have one entry per series")
    if (lengths_arr < 0).any() or int(lengths_arr.sum()) != len(bars):
        raise ValueError(
            f"series lengths add up to {int(lengths_arr.sum())}, but bars has {len(bars)} rows"
        )
    zones = list(session_timezones) if session_timezones is not None else [None] * len(timeframes)
    if len(zones) != len(timeframes):
        raise ValueError("session_timezones must have one entry per series")
    kinds = [series_kind(a, t, z) for a, t, z in zip(asset_classes, timeframes, zones, strict=True)]
    values = compute(
        *_ts_ticks(bars["ts"]),
        *(_float_column(bars, name) for name in ("high", "low", "close", "volume")),
        lengths=lengths_arr,
        kinds=kinds,
    )
    return _frame(bars, values)


# --------------------------------------------------------------------------------------------
# Input and output
# --------------------------------------------------------------------------------------------


def _check_bars(bars: pd.DataFrame) -> pd.DataFrame:
    """``bars`` itself, once it has the bar columns and a tz-aware ``ts``; else ValueError."""
    missing = [name for name in BAR_COLUMNS if name not in bars.columns]
    if missing:
        raise ValueError(f"bars are missing columns {missing}; expected {list(BAR_COLUMNS)}")
    if getattr(bars["ts"].dtype, "tz", None) is None:
        raise ValueError(
            f"bars.ts must be a tz-aware datetime column (UTC), got dtype {bars['ts'].dtype}"
        )
    return bars


def _ts_ticks(ts: pd.Series) -> tuple[NDArray[np.int64], int]:
    """Ticks since the epoch (UTC) in the column's own unit (no copy), and nanoseconds per tick."""
    index = pd.DatetimeIndex(ts)
    return index.asi8, int(np.timedelta64(1, index.unit) // np.timedelta64(1, "ns"))


def _float_column(bars: pd.DataFrame, name: str) -> NDArray[np.float64]:
    """Column ``name`` as contiguous float64, missing values and inf as NaN."""
    values = np.ascontiguousarray(bars[name].to_numpy(dtype=np.float64, na_value=np.nan))
    # inf is not a price: make it NaN so that it can never leak into a feature as inf. (A finite
    # sum, one fast reduction, rules out inf and NaN in the common case.)
    if not np.isfinite(values.sum()) and np.isinf(values).any():
        values = np.where(np.isinf(values), np.nan, values)
    return values


def _frame(bars: pd.DataFrame, values: NDArray[np.float64]) -> pd.DataFrame:
    """Output frame: input index, ``ts`` in UTC, one float64 column per feature."""
    frame = pd.DataFrame(values.T, index=bars.index, columns=list(FEATURE_COLUMNS), copy=False)
    frame.insert(0, "ts", bars["ts"].dt.tz_convert("UTC"))
    return frame
