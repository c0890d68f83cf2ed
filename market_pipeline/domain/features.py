"""Quant features of OHLCV bars, computed for many series at once.

numpy and pandas plus one numba-compiled loop: no Dagster, no database. The values are the
textbook ones, so any of them can be checked against TA-Lib or by hand; the tests in
``market_pipeline_tests/core/test_features.py`` do exactly that on real daily data.

Entry points: :func:`compute_features` (one series), :func:`compute_features_many` (a dict of
series) and :func:`compute_features_stacked` (series back to back in one long frame: the fastest,
no per-series pandas objects). All three give bit-identical values for the same series.

Conventions (bar ``t`` of a series has O, H, L, C, V; ``t`` is its 0-based position in the series;
``n`` is the window; NaN is stored as NULL and means "undefined here"):

- ``simple_return`` = C_t / C_{t-1} - 1, ``log_return`` = ln(C_t / C_{t-1}); NaN on the first bar
  and wherever C_t <= 0 or C_{t-1} <= 0 (never -inf, never forward-filled across gaps).
- ``volatility_20``: sample standard deviation (ddof=1) of the last 20 log returns, times
  sqrt(bars per year) of the series' asset class and timeframe (``Timeframe.bars_per_year``:
  1d equity 252, 1h crypto 8,760, ...). First value at t = 20; NaN if the window has a NaN return.
- ``sma_20``, ``sma_50``: plain means; NaN for the first n-1 bars.
- ``ema_12``, ``ema_26``: alpha = 2/(n+1), seeded with the SMA of the first n closes at t = n-1
  (TA-Lib and StockCharts; pandas ``ewm(adjust=False)`` seeds at the first close instead).
- ``rsi_14``: Wilder. Average gain AG and loss AL seeded with the plain mean of the first 14 close
  changes (first RSI at t = 14), then ``avg = (avg * 13 + x) / 14``. RSI = 100 * AG / (AG + AL),
  which is 100 - 100 / (1 + AG/AL) without dividing by AL: AL = 0 < AG gives 100. **A series that
  has not moved since its first bar (AG = AL = 0) gives NaN**: 0/0 is undefined, like every other
  division by zero here (TA-Lib returns 0, which reads as "extremely oversold"; 50 would invent a
  neutral reading). After any move the Wilder averages stay positive, so a later flat stretch
  keeps a value.
- ``macd`` = EMA12 - EMA26, each EMA seeded with the SMA of its own first n closes (first MACD at
  t = 25); ``macd_signal`` = EMA9 of MACD seeded with the SMA of the first 9 MACD values (first
  at t = 33); ``macd_hist`` = macd - macd_signal. TA-Lib's MACD seeds its fast EMA at t = 25 from
  closes 14..25 instead; the difference decays by 11/13 per bar (negligible after ~200 bars).
- ``bb_upper`` / ``bb_middle`` / ``bb_lower``: SMA20 +/- 2 population standard deviations (ddof=0).
- ``atr_14``: true range max(H - L, |H - C_{t-1}|, |L - C_{t-1}|), undefined on bar 0; Wilder
  smoothing seeded with the mean of the first 14 true ranges (first ATR at t = 14).
- ``obv``: 0 on the first bar, then + V on an up close, - V on a down close, + 0 when unchanged
  (TA-Lib's OBV starts at V_0 instead: it is this one plus V_0).
- ``vwap``: on intraday timeframes, cumulative typical price (H + L + C)/3 times volume over
  cumulative volume, **reset at each session**; a session is a calendar date in
  ``SESSION_TIMEZONE[asset_class]`` (New York for equities, so the reset follows DST; UTC days
  for crypto and FX). **On daily bars each bar is its own session**, so the VWAP is the bar's
  typical price: the same definition at the only granularity the bar gives (a rolling VWAP would
  be a different feature under the same name). No volume yet in the session gives NaN.
- ``zscore_20`` = (C - SMA20) / std20, std20 the population std (ddof=0) of Bollinger; NaN when
  std20 is 0.

Zero standard deviations: a window whose values are all equal has std exactly 0 (not the round-off
a running-sum formula leaves), and a std at or below ``STD_REL_EPSILON`` (1e-10) times the window's
scale (|SMA| for closes, RMS for log returns) is 0 too: that is round-off in the inputs (e.g.
adjustment factors), not a move (a one-tick move is above 1e-8 of the price on the markets we
store). Volatility is then 0; anything divided by such a std, by zero volume or by AG + AL = 0 is
NaN: never inf, never an exception.

How it is computed: series are rows of padded 2-D blocks (similar lengths together, ~64k cells per
block, all temporaries in one reused workspace). The windowed features are numpy passes over a
whole block: rolling sums add shifted slices by pairwise doubling (round-off ~log2(n) ulps and
local to the window, no running total that drifts); the variance uses sums of closes centred on
the series' first close, and a window whose sum-of-squares formula cancels badly (dev <= 1e-5 *
sum of squares) is recomputed two-pass. The recursive features (EMA, MACD and its signal, Wilder
RSI and ATR, OBV, VWAP) are one loop along each row that computes all of them in the same pass,
each smoothed one with the plain recursion ``y = decay * y + alpha * x`` from its SMA seed (two
rounded products and their rounded sum, no fused multiply-add: the textbook formula in float64).
That loop is compiled with numba on first use, with ``cache=True``: the first call in a process
pays ~1 s (numba's import and loading the cached machine code), ~3 s where it has to compile.
Each value depends only on bars at or before it, through the same arithmetic whatever follows, so
a prefix of a series gives bit-identical values to the corresponding rows of the full computation
(tested): recomputing a series over its full stored history keeps stored values equal to a
full-history computation.

Inputs are expected validated: finite prices with low <= high, non-negative volumes, ``ts``
strictly increasing within each series (checked). A NaN price never turns into inf: windows that
contain it are NaN and, as in TA-Lib, the recursive features (EMA, RSI, MACD, ATR, OBV, VWAP) stay
NaN after it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import pandas as pd
from numpy.lib.stride_tricks import sliding_window_view

from market_pipeline.domain.timeframes import SESSION_TIMEZONE, Timeframe, check_asset_class

FEATURE_COLUMNS: tuple[str, ...] = (
    "simple_return",
    "log_return",
    "volatility_20",
    "sma_20",
    "sma_50",
    "ema_12",
    "ema_26",
    "rsi_14",
    "macd",
    "macd_signal",
    "macd_hist",
    "bb_upper",
    "bb_middle",
    "bb_lower",
    "atr_14",
    "obv",
    "vwap",
    "zscore_20",
)

BAR_COLUMNS: tuple[str, ...] = ("ts", "open", "high", "low", "close", "volume")

# A standard deviation at or below this fraction of the window's scale is round-off, treated as 0.
STD_REL_EPSILON = 1e-10
# Sum-of-squares variance is exact to ~3e-15 * S2; below this fraction of S2 recompute two-pass.
_CANCELLATION_TOLERANCE = 1e-5
# Cells (series x bars) per padded block: big enough to amortise numpy call overhead, small
# enough that the ~10 temporaries of one block stay in cache-friendly territory.
_BLOCK_CELLS = 1 << 16
# A block may hold at most this many padded cells per real bar.
_MAX_PADDING_RATIO = 1.3

_VOL_WINDOW = 20
_SMA_FAST, _SMA_SLOW = 20, 50
_EMA_FAST, _EMA_SLOW, _MACD_SIGNAL = 12, 26, 9
_RSI_WINDOW = 14
_BB_WINDOW, _BB_WIDTH = 20, 2.0
_ATR_WINDOW = 14

_NS_PER_DAY = 86_400 * 10**9

_COL = {name: i for i, name in enumerate(FEATURE_COLUMNS)}

K = TypeVar("K", bound=Hashable)


@dataclass(frozen=True)
class _SeriesKind:
    """What the features need to know about a series besides its bars."""

    sqrt_bars_per_year: float
    intraday: bool
    session_tz: str


@functools.lru_cache(maxsize=256)
def _series_kind(asset_class: str, timeframe: str) -> _SeriesKind:
    check_asset_class(asset_class)
    tf = Timeframe.parse(timeframe)
    return _SeriesKind(
        sqrt_bars_per_year=float(np.sqrt(tf.bars_per_year(asset_class))),
        intraday=tf.is_intraday,
        session_tz=SESSION_TIMEZONE[asset_class],
    )


# --------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------


def compute_features(bars: pd.DataFrame, *, asset_class: str, timeframe: str) -> pd.DataFrame:
    """Compute the feature columns of one series of bars.

    Args:
        bars: columns ``ts`` (tz-aware datetime, UTC), ``open, high, low, close, volume``; sorted
            ascending by ``ts`` with unique timestamps.
        asset_class: ``equity``, ``crypto`` or ``fx`` (annualisation, VWAP session time zone).
        timeframe: e.g. ``1m``, ``5m``, ``1h``, ``1d``.

    Returns:
        A frame with the same index and row order as ``bars``: ``ts`` (in UTC) followed by the
        float64 ``FEATURE_COLUMNS``. An empty input gives an empty frame with those columns.
    """
    return compute_features_stacked(
        bars, lengths=[len(bars)], asset_classes=[asset_class], timeframes=[timeframe]
    )


def compute_features_many(
    series: Iterable[tuple[K, pd.DataFrame, str, str]],
) -> dict[K, pd.DataFrame]:
    """Compute features for many series in one vectorised pass.

    The frames are concatenated once and computed with :func:`compute_features_stacked`; each
    result is a row slice of that one frame (so results share its memory until modified).

    Args:
        series: ``(key, bars, asset_class, timeframe)`` tuples; ``bars`` as for
            :func:`compute_features`. Keys must be unique.

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
    )
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    return {key: features.iloc[offsets[i] : offsets[i + 1]] for i, key in enumerate(keys)}


def compute_features_stacked(
    bars: pd.DataFrame,
    *,
    lengths: Sequence[int],
    asset_classes: Sequence[str],
    timeframes: Sequence[str],
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
    kinds = [_series_kind(a, t) for a, t in zip(asset_classes, timeframes, strict=True)]
    values = _compute(
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
    missing = [name for name in BAR_COLUMNS if name not in bars.columns]
    if missing:
        raise ValueError(f"bars are missing columns {missing}; expected {list(BAR_COLUMNS)}")
    if getattr(bars["ts"].dtype, "tz", None) is None:
        raise ValueError(
            f"bars.ts must be a tz-aware datetime column (UTC), got dtype {bars['ts'].dtype}"
        )
    return bars


def _ts_ticks(ts: pd.Series) -> tuple[np.ndarray, int]:
    """Ticks since the epoch (UTC) in the column's own unit (no copy), and nanoseconds per tick."""
    index = pd.DatetimeIndex(ts)
    return index.asi8, int(np.timedelta64(1, index.unit) // np.timedelta64(1, "ns"))


def _float_column(bars: pd.DataFrame, name: str) -> np.ndarray:
    values = np.ascontiguousarray(bars[name].to_numpy(dtype=np.float64, na_value=np.nan))
    # inf is not a price: make it NaN so that it can never leak into a feature as inf. (A finite
    # sum, one fast reduction, rules out inf and NaN in the common case.)
    if not np.isfinite(values.sum()) and np.isinf(values).any():
        values = np.where(np.isinf(values), np.nan, values)
    return values


def _frame(bars: pd.DataFrame, values: np.ndarray) -> pd.DataFrame:
    """Output frame: input index, ``ts`` in UTC, one float64 column per feature."""
    frame = pd.DataFrame(values.T, index=bars.index, columns=list(FEATURE_COLUMNS), copy=False)
    frame.insert(0, "ts", bars["ts"].dt.tz_convert("UTC"))
    return frame


# --------------------------------------------------------------------------------------------
# Layout: flat series -> blocks of rows (one series per row, NaN padding at the end of a row)
# --------------------------------------------------------------------------------------------


def _compute(
    ts: np.ndarray,
    tick_ns: int,
    high: np.ndarray,
    low: np.ndarray,
    close: np.ndarray,
    volume: np.ndarray,
    *,
    lengths: np.ndarray,
    kinds: Sequence[_SeriesKind],
) -> np.ndarray:
    """All features of concatenated series as an array of shape (len(FEATURE_COLUMNS), n_bars)."""
    n_bars = len(close)
    out = np.empty((len(FEATURE_COLUMNS), n_bars))
    if n_bars == 0:
        return out
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    _check_increasing(ts, offsets)
    new_session = _session_starts(ts, tick_ns, offsets, kinds)
    sqrt_bars_per_year = np.array([kind.sqrt_bars_per_year for kind in kinds])
    daily = np.array([not kind.intraday for kind in kinds], dtype=bool)
    blocks = [rows for rows in _blocks(lengths) if lengths[rows].max() > 0]
    kernel = _Kernel(max(len(rows) * int(lengths[rows].max()) for rows in blocks))
    with np.errstate(all="ignore"):
        for rows in blocks:
            shape = (len(rows), int(lengths[rows].max()))
            starts, ends = offsets[rows], offsets[rows + 1]
            if (lengths[rows] == shape[1]).all() and (starts[1:] == ends[:-1]).all():
                # Series that are back to back and of equal length: views, no copies.
                span = slice(starts[0], ends[-1])
                kernel.run(
                    *(a[span].reshape(shape) for a in (high, low, close, volume, new_session)),
                    sqrt_bars_per_year=sqrt_bars_per_year[rows],
                    daily=daily[rows],
                    res=out[:, span].reshape(len(FEATURE_COLUMNS), *shape),
                )
                continue
            padded = kernel.padded_inputs(shape)
            for j, (a, b) in enumerate(zip(starts, ends, strict=True)):
                for block, flat in zip(
                    padded, (high, low, close, volume, new_session), strict=True
                ):
                    block[j, : b - a] = flat[a:b]
            res = kernel.padded_result(shape)
            kernel.run(
                *padded, sqrt_bars_per_year=sqrt_bars_per_year[rows], daily=daily[rows], res=res
            )
            for j, (a, b) in enumerate(zip(starts, ends, strict=True)):
                out[:, a:b] = res[:, j, : b - a]
    return out


def _blocks(lengths: np.ndarray) -> list[np.ndarray]:
    """Group series (by index) into blocks of similar length to bound padding and block size."""
    order = np.argsort(-lengths, kind="stable")
    blocks: list[np.ndarray] = []
    current: list[int] = []
    width = total = 0
    for i in order:
        n = int(lengths[i])
        if current and (
            (len(current) + 1) * width > _MAX_PADDING_RATIO * (total + n)
            or (len(current) + 1) * width > _BLOCK_CELLS
        ):
            blocks.append(np.sort(np.array(current)))
            current, total = [], 0
        if not current:
            width = n
        current.append(int(i))
        total += n
    if current:
        blocks.append(np.sort(np.array(current)))
    return blocks


def _check_increasing(ts: np.ndarray, offsets: np.ndarray) -> None:
    increasing = np.greater(ts[1:], ts[:-1])
    # A series boundary may go back in time; inside a series ts must strictly increase.
    inner = offsets[1:-1]
    increasing[inner[(inner > 0) & (inner < len(ts))] - 1] = True
    if not increasing.all():
        raise ValueError("bars.ts must be strictly increasing within each series")


def _session_starts(
    ts: np.ndarray, tick_ns: int, offsets: np.ndarray, kinds: Sequence[_SeriesKind]
) -> np.ndarray:
    """True on the first bar of each VWAP session: every bar for daily series, else a new date.

    ``ts`` in ticks of ``tick_ns`` nanoseconds since the epoch (UTC).
    """
    starts = np.ones(len(ts), dtype=bool)
    by_tz: dict[str, list[int]] = {}
    for i, kind in enumerate(kinds):
        if kind.intraday and offsets[i + 1] > offsets[i]:
            by_tz.setdefault(kind.session_tz, []).append(i)
    for tz, series in by_tz.items():
        if len(series) == len(kinds):
            select: slice | np.ndarray = slice(None)
        else:
            select = np.concatenate([np.arange(offsets[i], offsets[i + 1]) for i in series])
        stamps = ts[select]
        sizes = offsets[np.array(series) + 1] - offsets[series]
        if len(series) > 1 and (sizes == sizes[0]).all():
            # Series of one timeframe usually share the bar grid: then one date lookup does.
            grid = stamps.reshape(len(series), -1)
            if (grid == grid[0]).all():
                starts[select] = np.tile(_day_changes(grid[0], tz, tick_ns), len(series))
                continue
        change = _day_changes(stamps, tz, tick_ns)
        starts[select] = change
        starts[offsets[series]] = True
    return starts


def _day_changes(ts: np.ndarray, tz: str, tick_ns: int) -> np.ndarray:
    """True where the local date in ``tz`` differs from the previous bar's (and on bar 0)."""
    day = _local_day(ts, tz, tick_ns)
    change = np.empty(len(day), dtype=bool)
    change[0] = True
    np.not_equal(day[1:], day[:-1], out=change[1:])
    return change


_SLOT_NS = (3_600 * 10**9, 900 * 10**9)  # one hour, else 15 minutes


def _local_day(ts: np.ndarray, tz: str, tick_ns: int) -> np.ndarray:
    """Calendar day number (days since 1970-01-01) in time zone ``tz`` of each UTC instant.

    ``ts`` in ticks of ``tick_ns`` nanoseconds (a divisor of a second, so of every slot and day).
    """
    if tz == "UTC":
        return ts // (_NS_PER_DAY // tick_ns)
    # Look the local date up per UTC time slot (one pandas conversion per slot spanned, not per
    # bar). That is exact when every UTC offset is a whole number of slots (so local midnight is a
    # slot boundary) and the offset is constant within each slot, which is checked; bars in slots
    # where it is not (a transition in mid-slot) are converted exactly.
    lo, hi = int(ts.min()) * tick_ns, int(ts.max()) * tick_ns
    for slot_ns in _SLOT_NS:
        first = lo // slot_ns
        grid = pd.date_range(
            pd.Timestamp(first * slot_ns, unit="ns", tz="UTC"),
            periods=hi // slot_ns - first + 1,
            freq=pd.Timedelta(slot_ns, unit="ns"),
            unit="ns",
        )
        offset = grid.tz_convert(tz).tz_localize(None).as_unit("ns").asi8 - grid.asi8
        if not (offset % slot_ns).any():
            break
    else:
        return _exact_local_day(ts, tz, tick_ns)
    day_of_slot = (grid.asi8 + offset) // _NS_PER_DAY
    slot = ts // (slot_ns // tick_ns)
    slot -= first
    day = day_of_slot[slot]
    # Offset changes between two slot starts: fine if the change is exactly at the later start.
    for k in np.flatnonzero(offset[1:] != offset[:-1]):
        last_instant = pd.DatetimeIndex([grid.asi8[k + 1] - 1], dtype="M8[ns]").tz_localize("UTC")
        last_offset = (
            last_instant.tz_convert(tz).tz_localize(None).as_unit("ns").asi8[0]
            - grid.asi8[k + 1]
            + 1
        )
        if last_offset != offset[k]:
            inside = np.flatnonzero(slot == k)
            day[inside] = _exact_local_day(ts[inside], tz, tick_ns)
    return day


def _exact_local_day(ts: np.ndarray, tz: str, tick_ns: int) -> np.ndarray:
    """:func:`_local_day` by converting every instant (slow; for irregular time zones)."""
    local = pd.DatetimeIndex((ts * tick_ns).view("M8[ns]")).tz_localize("UTC").tz_convert(tz)
    return local.tz_localize(None).as_unit("ns").asi8 // _NS_PER_DAY


# --------------------------------------------------------------------------------------------
# Kernel: the features of one block (rows = series, columns = bar position)
# --------------------------------------------------------------------------------------------

# Scratch buffers of the kernel, each one block of cells.
(_S1, _S2, _SQ, _STD, _CENTRED, _TMP) = range(6)
_N_SCRATCH = 6
_N_LEVELS = _SMA_SLOW.bit_length() - 1  # doubling levels 2, 4, ..., 32 for windows up to 50


class _Kernel:
    """Computes all features of a block into ``res`` with preallocated scratch buffers.

    Every intermediate lives in one workspace allocated once per call and reused by every block:
    allocating a dozen fresh arrays per block costs more in page faults than the arithmetic.
    """

    def __init__(self, cells: int) -> None:
        self._cells = cells
        self._scratch = np.empty((_N_SCRATCH, cells))
        self._levels = np.empty((_N_LEVELS, cells))
        self._flags = np.empty(cells, dtype=bool)
        self._inputs: tuple[np.ndarray, ...] | None = None
        self._result: np.ndarray | None = None
        self._x = self._scratch[0]
        self._level_cache: dict[int, np.ndarray] = {}

    # Padded blocks (series of unequal length) are copied into these.
    def padded_inputs(self, shape: tuple[int, int]) -> tuple[np.ndarray, ...]:
        m = shape[0] * shape[1]
        if self._inputs is None:
            self._inputs = (*np.empty((4, self._cells)), np.empty(self._cells, dtype=bool))
        views = tuple(buf[:m].reshape(shape) for buf in self._inputs)
        for view in views[:4]:
            view.fill(np.nan)
        views[4].fill(True)
        return views

    def padded_result(self, shape: tuple[int, int]) -> np.ndarray:
        if self._result is None:
            self._result = np.empty((len(FEATURE_COLUMNS), self._cells))
        return self._result[:, : shape[0] * shape[1]].reshape(len(FEATURE_COLUMNS), *shape)

    # Sliding-window sums by pairwise doubling: level w holds x[i] + ... + x[i + w - 1]. A window
    # of any width is a few additions of levels, so its round-off is local to it (no running total
    # that drifts) and windows that run from one row into the next are masked afterwards.
    def _prepare_sums(self, x: np.ndarray) -> None:
        self._x = x
        self._level_cache = {1: x}

    def _level(self, width: int) -> np.ndarray:
        if width not in self._level_cache:
            half = self._level(width // 2)
            count = max(self._x.size - width + 1, 0)
            out = self._levels[width.bit_length() - 2, :count]
            np.add(half[:count], half[width // 2 : width // 2 + count], out=out)
            self._level_cache[width] = out
        return self._level_cache[width]

    def _window_sums(self, n: int, out: np.ndarray, width: int) -> None:
        """``out[t]``: sum of the n values ending at flat index t; NaN in each row's first n-1."""
        count = self._x.size - n + 1
        if count > 0:
            parts = [1 << k for k in range(n.bit_length() - 1, -1, -1) if n >> k & 1]
            target = out[n - 1 :]
            if len(parts) == 1:
                np.copyto(target, self._level(parts[0])[:count])
            else:
                first, second = self._level(parts[0]), self._level(parts[1])
                np.add(first[:count], second[parts[0] : parts[0] + count], out=target)
                shift = parts[0] + parts[1]
                for part in parts[2:]:
                    target += self._level(part)[shift : shift + count]
                    shift += part
        out.reshape(-1, width)[:, : n - 1] = np.nan

    def _variance(
        self,
        x: np.ndarray,
        s1: np.ndarray,
        s2: np.ndarray,
        n: int,
        ddof: int,
        out: np.ndarray,
        *,
        zero_below_rms: bool = False,
    ) -> None:
        """Window variance from window sums ``s1``, ``s2`` of (x - per-row constant), into ``out``.

        Windows whose sum-of-squares formula cancels badly are recomputed two-pass from ``x``;
        windows whose values are all equal get exactly 0. With ``zero_below_rms`` (sums of ``x``
        itself), a variance at or below STD_REL_EPSILON**2 times the mean square is set to 0:
        only recomputed windows can be that small, since the others have dev > 1e-5 * s2.
        """
        m = x.size
        tmp, suspicious = self._scratch[_TMP, :m], self._flags[:m]
        np.multiply(s1, s1, out=out)
        out /= n
        np.subtract(s2, out, out=out)
        np.multiply(s2, _CANCELLATION_TOLERANCE, out=tmp)
        np.less_equal(out, tmp, out=suspicious)
        if suspicious.any():
            windows = sliding_window_view(x, n)
            found = np.flatnonzero(suspicious)
            for chunk in np.array_split(found, -(-found.size // 65536)):
                w = windows[chunk - (n - 1)]
                exact = ((w - w.mean(axis=1, keepdims=True)) ** 2).sum(axis=1)
                exact[w.max(axis=1) == w.min(axis=1)] = 0.0
                if zero_below_rms:
                    mean_square = (w * w).sum(axis=1) / n
                    exact[exact / (n - ddof) <= STD_REL_EPSILON**2 * mean_square] = 0.0
                out[chunk] = exact
        # A negative dev can only come from cancellation, and those windows were just recomputed.
        out /= n - ddof

    def _std_from_variance(self, var: np.ndarray, scale_sq: np.ndarray) -> None:
        """sqrt in place; a std at or below STD_REL_EPSILON * scale becomes exactly 0."""
        small = self._flags[: var.size]
        np.less_equal(var, scale_sq, out=small)
        np.copyto(var, 0.0, where=small)
        np.sqrt(var, out=var)

    def run(
        self,
        high: np.ndarray,
        low: np.ndarray,
        close: np.ndarray,
        volume: np.ndarray,
        new_session: np.ndarray,
        *,
        sqrt_bars_per_year: np.ndarray,
        daily: np.ndarray,
        res: np.ndarray,
    ) -> None:
        """Write all features of the block (inputs of shape (rows, width)) into ``res``."""
        rows, width = close.shape
        m = rows * width
        scratch = self._scratch[:, :m]
        h, lo, c, v = (a.reshape(-1) for a in (high, low, close, volume))

        def feature(name: str) -> np.ndarray:
            return res[_COL[name]]

        def flat(name: str) -> np.ndarray:
            return res[_COL[name]].reshape(-1)

        # Returns. Shifted operations run on the flat block; column 0 (which would mix two rows)
        # is then set to NaN.
        simple, logret = flat("simple_return"), flat("log_return")
        np.divide(c[1:], c[:-1], out=simple[1:])
        np.log(simple[1:], out=logret[1:])
        simple[1:] -= 1.0
        nonpositive = self._flags[:m]
        np.less_equal(c, 0.0, out=nonpositive)
        if nonpositive.any():
            bad = nonpositive[1:] | nonpositive[:-1]
            simple[1:][bad] = np.nan
            logret[1:][bad] = np.nan
        feature("simple_return")[:, 0] = np.nan
        feature("log_return")[:, 0] = np.nan

        # Volatility: sample std (ddof=1) of 20 log returns, annualised per series. Returns are
        # close to zero-mean, so their sums need no centring.
        s1, s2, sq, std = scratch[_S1], scratch[_S2], scratch[_SQ], scratch[_STD]
        self._prepare_sums(logret)
        self._window_sums(_VOL_WINDOW, s1, width)
        np.multiply(logret, logret, out=sq)
        self._prepare_sums(sq)
        self._window_sums(_VOL_WINDOW, s2, width)
        self._variance(logret, s1, s2, _VOL_WINDOW, 1, std, zero_below_rms=True)
        np.sqrt(std, out=std)
        np.multiply(
            std.reshape(rows, width), sqrt_bars_per_year[:, None], out=feature("volatility_20")
        )

        # SMAs and the population std of closes, from sums of closes centred on each series' first
        # close (smaller magnitudes, so the sum-of-squares variance keeps its precision).
        reference = close[:, :1]
        centred = scratch[_CENTRED]
        np.subtract(close, reference, out=centred.reshape(rows, width))
        self._prepare_sums(centred)
        sma20, sma50 = flat("sma_20"), flat("sma_50")
        self._window_sums(_SMA_FAST, sma20, width)
        self._window_sums(_SMA_SLOW, sma50, width)
        np.multiply(centred, centred, out=sq)
        self._prepare_sums(sq)
        self._window_sums(_BB_WINDOW, s2, width)
        self._variance(c, sma20, s2, _BB_WINDOW, 0, std)
        for name, n in (("sma_20", _SMA_FAST), ("sma_50", _SMA_SLOW)):
            sma = feature(name)
            sma /= n
            sma += reference
        scale_sq = scratch[_TMP]
        np.multiply(sma20, sma20, out=scale_sq)
        scale_sq *= STD_REL_EPSILON**2
        self._std_from_variance(std, scale_sq)

        # Bollinger bands and z-score.
        np.copyto(flat("bb_middle"), sma20)
        band = scratch[_TMP]
        np.multiply(std, _BB_WIDTH, out=band)
        np.add(sma20, band, out=flat("bb_upper"))
        np.subtract(sma20, band, out=flat("bb_lower"))
        zscore = flat("zscore_20")
        np.subtract(c, sma20, out=zscore)
        np.divide(zscore, std, out=zscore)
        zero_std = self._flags[:m]
        np.equal(std, 0.0, out=zero_std)
        np.copyto(zscore, np.nan, where=zero_std)

        # The recursive features (EMAs, MACD, RSI, ATR, OBV, VWAP): one compiled pass per row.
        _scan()(
            h,
            lo,
            c,
            v,
            new_session.reshape(-1),
            daily,
            width,
            *(flat(name) for name in _SCANNED),
        )


# Output columns of the compiled row scan, in its argument order.
_SCANNED = (
    "ema_12",
    "ema_26",
    "macd",
    "macd_signal",
    "macd_hist",
    "rsi_14",
    "atr_14",
    "obv",
    "vwap",
)
_MACD_SIGNAL_AT = _EMA_SLOW - 1 + _MACD_SIGNAL - 1  # first signal value: bar 33


@functools.cache
def _scan() -> Callable[..., None]:
    """:func:`_scan_rows` compiled with numba, on first use (only processes that compute pay).

    ``cache=True`` keeps the machine code next to this module (or in numba's user cache
    directory), so a new process loads it (~1 s with numba's import) instead of compiling it
    (~3 s). Where no cache directory is writable, it is compiled in memory instead.
    """
    import numba
    from numba import types

    # One explicit signature, so that read-only inputs (pandas hands those out) and writable ones
    # share one compiled specialisation.
    inputs = types.Array(types.float64, 1, "C", readonly=True)
    flags = types.Array(types.bool_, 1, "C", readonly=True)
    outputs = types.Array(types.float64, 1, "C")
    signature = types.void(*(inputs,) * 4, flags, flags, types.int64, *(outputs,) * len(_SCANNED))
    # error_model="numpy": 0/0 is NaN (an RSI with AG = AL = 0), not a ZeroDivisionError.
    options = {"nogil": True, "error_model": "numpy"}
    try:
        return numba.njit(signature, cache=True, **options)(_scan_rows)
    except RuntimeError:  # "cannot cache function ...: no locator available"
        return numba.njit(signature, **options)(_scan_rows)


def _scan_rows(
    high: np.ndarray,
    low: np.ndarray,
    close: np.ndarray,
    volume: np.ndarray,
    new_session: np.ndarray,
    daily: np.ndarray,
    width: int,
    ema_fast: np.ndarray,
    ema_slow: np.ndarray,
    macd: np.ndarray,
    macd_signal: np.ndarray,
    macd_hist: np.ndarray,
    rsi: np.ndarray,
    atr: np.ndarray,
    obv: np.ndarray,
    vwap: np.ndarray,
) -> None:
    """EMAs, MACD, RSI, ATR, OBV and VWAP of each row, all in one pass along the row.

    Flat arrays of a block, ``width`` cells per row (one series, NaN padding at its end);
    ``daily`` has one flag per row. Called compiled, through :func:`_scan`.

    Each smoothed feature is NaN before its seed bar ``s``; at ``s`` it is the seed, the plain
    mean of its first ``n`` inputs summed left to right; after it, ``y = decay * y + alpha * x``
    (two rounded products, then their rounded sum: no fused multiply-add). The inputs of the
    Wilder features are undefined on bar 0 (no previous close). NaN inputs propagate like the
    arithmetic does (``max``/``min`` of a NaN is NaN, as numpy's), so a recursive feature stays
    NaN after a NaN price. OBV and VWAP are running sums from the row's first bar; the VWAP of a
    session is the running sums minus their value before the session's first bar.
    """
    nan = np.nan
    a_fast = 2.0 / (_EMA_FAST + 1)
    a_slow = 2.0 / (_EMA_SLOW + 1)
    a_signal = 2.0 / (_MACD_SIGNAL + 1)
    a_rsi = 1.0 / _RSI_WINDOW
    a_atr = 1.0 / _ATR_WINDOW
    d_fast, d_slow, d_signal = 1.0 - a_fast, 1.0 - a_slow, 1.0 - a_signal
    d_rsi, d_atr = 1.0 - a_rsi, 1.0 - a_atr
    fast_at, slow_at, signal_at = _EMA_FAST - 1, _EMA_SLOW - 1, _MACD_SIGNAL_AT
    for row in range(close.size // width):
        start = row * width
        intraday = not daily[row]
        y_fast = y_slow = y_signal = gain_avg = loss_avg = y_atr = 0.0
        obv_sum = pv_sum = v_sum = pv_before = v_before = 0.0
        prev = nan
        for t in range(width):
            i = start + t
            c = close[i]

            # EMA 12 and 26, seeded with the SMA of their first n closes.
            if t < fast_at:
                y_fast = c if t == 0 else y_fast + c
                e_fast = nan
            else:
                if t == fast_at:
                    y_fast = (y_fast + c) / _EMA_FAST
                else:
                    y_fast = d_fast * y_fast + a_fast * c
                e_fast = y_fast
            if t < slow_at:
                y_slow = c if t == 0 else y_slow + c
                e_slow = nan
            else:
                if t == slow_at:
                    y_slow = (y_slow + c) / _EMA_SLOW
                else:
                    y_slow = d_slow * y_slow + a_slow * c
                e_slow = y_slow
            ema_fast[i], ema_slow[i] = e_fast, e_slow

            # MACD and its EMA 9 signal, seeded with the SMA of the first 9 MACD values.
            m = e_fast - e_slow
            if t < signal_at:
                y_signal = m if t == slow_at else y_signal + m
                signal = nan
            else:
                if t == signal_at:
                    y_signal = (y_signal + m) / _MACD_SIGNAL
                else:
                    y_signal = d_signal * y_signal + a_signal * m
                signal = y_signal
            macd[i], macd_signal[i], macd_hist[i] = m, signal, m - signal

            # Close change into the bar (undefined on bar 0): gains and losses, OBV's sign, and
            # the true range max(H, C_prev) - min(L, C_prev) (max(H - L, |H - C_prev|,
            # |L - C_prev|) for L <= H: the same difference of the same two prices).
            hi, lo_ = high[i], low[i]
            change = c - prev
            # gain = max(change, 0) and loss = gain - change, NaN where the change is NaN.
            if change >= 0.0 or change != change:
                gain = change
            else:
                gain = 0.0
            loss = gain - change
            if hi != hi or prev != prev:
                upper = nan
            else:
                upper = hi if hi >= prev else prev
            if lo_ != lo_ or prev != prev:
                lower = nan
            else:
                lower = lo_ if lo_ <= prev else prev
            true_range = upper - lower

            # Wilder RSI and ATR: seeded with the mean of the first 14 values (bars 1..14).
            if t < _RSI_WINDOW:
                if t == 1:
                    gain_avg, loss_avg = gain, loss
                elif t > 1:
                    gain_avg, loss_avg = gain_avg + gain, loss_avg + loss
                rsi[i] = nan
            else:
                if t == _RSI_WINDOW:
                    gain_avg = (gain_avg + gain) / _RSI_WINDOW
                    loss_avg = (loss_avg + loss) / _RSI_WINDOW
                else:
                    gain_avg = d_rsi * gain_avg + a_rsi * gain
                    loss_avg = d_rsi * loss_avg + a_rsi * loss
                rsi[i] = gain_avg / (gain_avg + loss_avg) * 100.0
            if t < _ATR_WINDOW:
                if t == 1:
                    y_atr = true_range
                elif t > 1:
                    y_atr = y_atr + true_range
                atr[i] = nan
            else:
                if t == _ATR_WINDOW:
                    y_atr = (y_atr + true_range) / _ATR_WINDOW
                else:
                    y_atr = d_atr * y_atr + a_atr * true_range
                atr[i] = y_atr

            # OBV from 0: + V on an up close, - V on a down close, + 0 * V when unchanged.
            vol = volume[i]
            if t > 0:
                if change > 0.0:
                    sign = 1.0
                elif change < 0.0:
                    sign = -1.0
                elif change == 0.0:
                    sign = 0.0
                else:
                    sign = nan
                obv_sum = obv_sum + sign * vol
            obv[i] = obv_sum

            # VWAP: per session on intraday rows; the bar's typical price on daily rows. Adding
            # zero volumes leaves a float unchanged, so a session without volume yet has exactly
            # 0 and gets NaN.
            typical = (hi + lo_ + c) / 3.0
            if intraday:
                if new_session[i]:
                    pv_before, v_before = pv_sum, v_sum
                if t == 0:
                    pv_sum, v_sum = typical * vol, vol
                else:
                    pv_sum, v_sum = pv_sum + typical * vol, v_sum + vol
                session_volume = v_sum - v_before
                vwap[i] = nan if session_volume <= 0.0 else (pv_sum - pv_before) / session_volume
            else:
                vwap[i] = typical if vol > 0.0 else nan
            prev = c
