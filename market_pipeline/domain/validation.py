"""Checking raw bars before they are stored.

Every provider's raw frame goes through :func:`validate_bars`. Bad rows are rejected and
counted by reason, never stored and never dropped silently; the counts go into the metadata of
the materialization. Everything is vectorised.

Rules, applied in this order; a row is counted once, under the first rule it breaks:

1. ``unparsable_timestamp``: ``ts`` is missing or not ISO 8601 (``2024-03-11T09:30:00-04:00``,
   ``...Z``, or without offset, which means UTC) nor a datetime. Timestamps outside the
   ``datetime64[ns]`` range (years 1677-2262) count here too.
2. ``missing_price``: open, high, low or close is missing, NaN, infinite or not a number.
3. ``nonpositive_price``: open, high, low or close is zero or negative.
4. ``ohlc_violation``: ``high < max(open, close)``, ``low > min(open, close)`` or
   ``high < low``. No tolerance: equal values pass.
5. ``negative_volume``: volume is negative or infinite. A *missing* volume (empty, NaN, not a
   number) is not a reason to lose the prices: it is stored as 0 and counted in
   :attr:`BarValidation.volume_filled` (FX sources often have no volume at all).
6. ``duplicate_timestamp``: among the rows that passed 1-5, several share a timestamp. The last
   one (in the frame's order) is kept, as the source's latest revision of that bar, and the
   earlier ones are counted here.

Unknown extra columns are dropped. A missing required column raises :class:`BarValidationError`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from market_pipeline.domain.timeframes import Timeframe

BAR_COLUMNS = ("ts", "open", "high", "low", "close", "volume")
PRICE_COLUMNS = ("open", "high", "low", "close")
REJECTION_REASONS = (
    "unparsable_timestamp",
    "missing_price",
    "nonpositive_price",
    "ohlc_violation",
    "negative_volume",
    "duplicate_timestamp",
)
"""The keys of :attr:`BarValidation.rejected`, always all present, in the order rules apply."""

_TS_DTYPE = pd.DatetimeTZDtype(unit="ns", tz="UTC")
_NS_MIN = pd.Timestamp.min.tz_localize("UTC")
_NS_MAX = pd.Timestamp.max.tz_localize("UTC")


class BarValidationError(ValueError):
    """The raw frame as a whole cannot be validated (e.g. a required column is missing)."""


@dataclass(frozen=True)
class BarValidation:
    """Outcome of :func:`validate_bars`.

    ``bars`` has columns :data:`BAR_COLUMNS`: ``ts`` as ``datetime64[ns, UTC]``, sorted and
    unique, prices and volume as ``float64``, and a fresh ``RangeIndex``. ``rejected`` maps each
    of :data:`REJECTION_REASONS` to the number of rows rejected for it (0 included).
    """

    bars: pd.DataFrame
    rejected: dict[str, int]
    volume_filled: int = 0
    _rows_in: int = field(default=-1, repr=False)

    @property
    def rows_in(self) -> int:
        """Rows of the raw frame."""
        return self._rows_in if self._rows_in >= 0 else len(self.bars) + self.rows_rejected

    @property
    def rows_rejected(self) -> int:
        """Rows not kept, over all reasons."""
        return sum(self.rejected.values())

    @property
    def rows_kept(self) -> int:
        return len(self.bars)

    def metadata(self) -> dict[str, int]:
        """Flat counts for materialization metadata: rows_in, rows_kept, rows_rejected,
        volume_filled and ``rejected_<reason>`` for every reason."""
        counts = {
            "rows_in": self.rows_in,
            "rows_kept": self.rows_kept,
            "rows_rejected": self.rows_rejected,
            "volume_filled": self.volume_filled,
        }
        counts.update({f"rejected_{reason}": n for reason, n in self.rejected.items()})
        return counts


def validate_bars(raw: pd.DataFrame, *, timeframe: Timeframe | None = None) -> BarValidation:
    """Parse, check and clean a raw frame of bars (see the module docstring for the rules).

    ``timeframe`` only names the series in error messages: bar grids differ between sources
    (clock-aligned or session-anchored hours), so timestamps are not checked against one.
    Raises :class:`BarValidationError` when a required column is missing or ``ts`` holds
    numbers (epoch units would be a guess).
    """
    what = f"{timeframe} bars" if timeframe is not None else "bars"
    if not isinstance(raw, pd.DataFrame):
        raise BarValidationError(f"{what}: expected a pandas DataFrame, got {type(raw).__name__}")
    missing = [column for column in BAR_COLUMNS if column not in raw.columns]
    if missing:
        raise BarValidationError(
            f"{what}: missing required column(s) {', '.join(missing)} "
            f"(found: {', '.join(map(str, raw.columns)) or 'none'})"
        )
    rows_in = len(raw)
    ts = parse_timestamps(raw["ts"], what=what)
    prices = (
        np.column_stack([_as_float(raw[column]) for column in PRICE_COLUMNS])
        if rows_in
        else (np.empty((0, 4)))
    )
    volume = _as_float(raw["volume"])

    bad_ts = ts.isna().to_numpy()
    bad_missing = ~np.isfinite(prices).all(axis=1)
    with np.errstate(invalid="ignore"):
        bad_nonpositive = (prices <= 0).any(axis=1)
        open_, high, low, close = prices.T
        body_high = np.maximum(open_, close)
        body_low = np.minimum(open_, close)
        bad_ohlc = (high < body_high) | (low > body_low) | (high < low)
        bad_volume = (volume < 0) | np.isinf(volume)

    rejected: dict[str, int] = {}
    remaining = np.ones(rows_in, dtype=bool)
    for reason, bad in (
        ("unparsable_timestamp", bad_ts),
        ("missing_price", bad_missing),
        ("nonpositive_price", bad_nonpositive),
        ("ohlc_violation", bad_ohlc),
        ("negative_volume", bad_volume),
    ):
        hit = remaining & bad
        rejected[reason] = int(hit.sum())
        remaining &= ~hit

    ts_values = ts.to_numpy(dtype="datetime64[ns]", na_value=np.datetime64("NaT"))
    kept_positions = np.flatnonzero(remaining)
    # Duplicates: keep the last occurrence in frame order (the source's latest revision).
    kept_ts = ts_values[kept_positions]
    last = ~pd.Index(kept_ts).duplicated(keep="last")
    rejected["duplicate_timestamp"] = int((~last).sum())
    kept_positions = kept_positions[last]
    order = np.argsort(ts_values[kept_positions], kind="stable")
    kept_positions = kept_positions[order]

    kept_volume = volume[kept_positions]
    filled = np.isnan(kept_volume)
    kept_volume[filled] = 0.0
    bars = pd.DataFrame(
        {
            "ts": pd.DatetimeIndex(ts_values[kept_positions]).tz_localize("UTC"),
            "open": prices[kept_positions, 0],
            "high": prices[kept_positions, 1],
            "low": prices[kept_positions, 2],
            "close": prices[kept_positions, 3],
            "volume": kept_volume,
        },
        columns=list(BAR_COLUMNS),
    )
    return BarValidation(
        bars=bars, rejected=rejected, volume_filled=int(filled.sum()), _rows_in=rows_in
    )


def parse_timestamps(values: pd.Series, *, what: str = "bars") -> pd.Series[pd.Timestamp]:
    """``values`` as ``datetime64[ns, UTC]`` with a fresh index; NaT where unparsable or out of
    range (rule 1 of the module docstring). Raises :class:`BarValidationError` for numbers."""
    values = values.reset_index(drop=True)
    dtype = values.dtype
    parsed: pd.Series[pd.Timestamp]  # the stubs type the .dt accessors' results as Any
    if isinstance(dtype, pd.DatetimeTZDtype):
        parsed = values.dt.tz_convert("UTC")
    elif pd.api.types.is_datetime64_dtype(dtype):
        parsed = values.dt.tz_localize("UTC")  # naive datetimes are UTC
    elif pd.api.types.is_numeric_dtype(dtype):
        if len(values) == 0 or values.isna().all():
            parsed = pd.Series(pd.NaT, index=values.index, dtype=_TS_DTYPE)
        else:
            raise BarValidationError(
                f"{what}: column ts holds numbers ({dtype}); expected ISO 8601 text or datetimes"
            )
    else:
        if pd.api.types.is_object_dtype(dtype):
            # Mixed objects (datetimes, text, numbers, None): their text form is parsed.
            values = values.astype(str).where(values.notna(), None)
        parsed = pd.to_datetime(values, utc=True, errors="coerce", format="ISO8601")
    if parsed.dtype != _TS_DTYPE:
        in_range = (parsed >= _NS_MIN) & (parsed <= _NS_MAX)
        parsed = parsed.where(in_range).astype(_TS_DTYPE)
    return parsed


def _as_float(values: pd.Series) -> np.ndarray:
    """A float64 copy of ``values``; NaN where missing or not a number."""
    if pd.api.types.is_float_dtype(values.dtype) or pd.api.types.is_integer_dtype(values.dtype):
        return values.to_numpy(dtype=np.float64, na_value=np.nan, copy=True)
    if pd.api.types.is_bool_dtype(values.dtype):
        return np.full(len(values), np.nan)
    return pd.to_numeric(values, errors="coerce").to_numpy(
        dtype=np.float64, na_value=np.nan, copy=True
    )
