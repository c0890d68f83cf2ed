"""Quant features of OHLCV bars, computed for many series at once.

Pure Python (numpy, scipy, pandas): no Dagster, no database. The values are the textbook ones, so
any of them can be checked against TA-Lib or by hand; the tests in
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
block, all temporaries in one reused workspace). Rolling sums add shifted slices by pairwise
doubling (round-off ~log2(n) ulps and local to the window, no running total that drifts); the
variance uses sums of closes centred on the series' first close, and a window whose sum-of-squares
formula cancels badly (dev <= 1e-5 * sum of squares) is recomputed two-pass. EMA, Wilder and the
MACD signal are first-order IIR filters (``scipy.signal.lfilter``, the SMA seed as initial
condition), one call per filter for a whole block; OBV and VWAP are row cumulative sums. Each value
depends only on bars at or before it, through the same arithmetic whatever follows, so a prefix of
a series gives bit-identical values to the corresponding rows of the full computation (tested):
recomputing a series over its full stored history keeps stored values equal to a full-history
computation.

Inputs are expected validated: finite prices with low <= high, non-negative volumes, ``ts``
strictly increasing within each series (checked). A NaN price never turns into inf: windows that
contain it are NaN and, as in TA-Lib, the recursive features (EMA, RSI, MACD, ATR, OBV, VWAP) stay
NaN after it.
"""

from __future__ import annotations

import functools
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import pandas as pd
from numpy.lib.stride_tricks import sliding_window_view
from scipy.signal import lfilter

from market_pipeline.core.timeframes import SESSION_TIMEZONE, Timeframe, check_asset_class

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
# enough that the ~30 temporaries of one block stay in cache-friendly territory.
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
(_S1, _S2, _SQ, _STD, _CENTRED, _TMP, _CHANGE, _TYPICAL) = range(8)
_N_SCRATCH = 8
_N_LEVELS = _SMA_SLOW.bit_length() - 1  # doubling levels 2, 4, ..., 32 for windows up to 50


class _Kernel:
    """Computes all features of a block into ``res`` with preallocated scratch buffers.

    Every intermediate lives in one workspace allocated once per call and reused by every block:
    allocating ~30 fresh arrays per block costs more in page faults than the arithmetic.
    """

    def __init__(self, cells: int) -> None:
        self._cells = cells
        self._scratch = np.empty((_N_SCRATCH, cells))
        self._levels = np.empty((_N_LEVELS, cells))
        self._wilder = np.empty((2, cells))
        self._averages = np.empty((2, cells))
        # VWAP pairs (price x volume, volume) and their cumulative sums with a leading 0 column
        # per row (at most ``cells`` rows).
        self._pairs = np.empty(cells, dtype=np.complex128)
        self._cumulative = np.empty(2 * cells, dtype=np.complex128)
        self._flags = np.empty((2, cells), dtype=bool)
        self._index = np.empty(cells, dtype=np.int64)
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
        tmp, suspicious = self._scratch[_TMP, :m], self._flags[0, :m]
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
        small = self._flags[0, : var.size]
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
        nonpositive = self._flags[0, :m]
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
        zero_std = self._flags[0, :m]
        np.equal(std, 0.0, out=zero_std)
        np.copyto(zscore, np.nan, where=zero_std)

        # EMAs, MACD and its signal.
        for name, n in (("ema_12", _EMA_FAST), ("ema_26", _EMA_SLOW)):
            _smooth(
                close,
                alpha=2.0 / (n + 1),
                seed_at=n - 1,
                seed=_seed_mean(close, 0, n),
                out=feature(name),
            )
        macd = feature("macd")
        np.subtract(feature("ema_12"), feature("ema_26"), out=macd)
        _smooth(
            macd,
            alpha=2.0 / (_MACD_SIGNAL + 1),
            seed_at=_MACD_SIGNAL_AT,
            seed=_seed_mean(macd, _EMA_SLOW - 1, _MACD_SIGNAL),
            out=feature("macd_signal"),
        )
        np.subtract(macd, feature("macd_signal"), out=feature("macd_hist"))

        # Wilder RSI: gains and losses of the close change into each bar (undefined on bar 0),
        # smoothed together as one stacked block.
        change = scratch[_CHANGE]
        np.subtract(c[1:], c[:-1], out=change[1:])
        change.reshape(rows, width)[:, 0] = np.nan
        moves = self._wilder[:, :m]
        np.maximum(change, 0.0, out=moves[0])
        np.subtract(moves[0], change, out=moves[1])
        stacked = moves.reshape(2 * rows, width)
        averages = self._averages[:, :m].reshape(2 * rows, width)
        _smooth(
            stacked,
            alpha=1.0 / _RSI_WINDOW,
            seed_at=_RSI_WINDOW,
            seed=_seed_mean(stacked, 1, _RSI_WINDOW),
            out=averages,
        )
        avg_gain, avg_loss = averages[:rows], averages[rows:]
        rsi = feature("rsi_14")
        np.add(avg_gain, avg_loss, out=rsi)
        np.divide(avg_gain, rsi, out=rsi)
        rsi *= 100.0

        # ATR: Wilder smoothing of the true range (undefined on bar 0). With low <= high,
        # max(H - L, |H - C_prev|, |L - C_prev|) is max(H, C_prev) - min(L, C_prev): the same
        # difference of the same two prices, so the same rounding, in three passes instead of seven.
        true_range, lower = scratch[_S1], scratch[_TMP]
        np.maximum(h[1:], c[:-1], out=true_range[1:])
        np.minimum(lo[1:], c[:-1], out=lower[1:])
        true_range[1:] -= lower[1:]
        true_range_2d = true_range.reshape(rows, width)
        true_range_2d[:, 0] = np.nan
        _smooth(
            true_range_2d,
            alpha=1.0 / _ATR_WINDOW,
            seed_at=_ATR_WINDOW,
            seed=_seed_mean(true_range_2d, 1, _ATR_WINDOW),
            out=feature("atr_14"),
        )

        # OBV from 0: signed volume of each close change, cumulated along each row.
        signed = scratch[_TMP]
        np.sign(change, out=signed)
        signed *= v
        signed_2d = signed.reshape(rows, width)
        signed_2d[:, 0] = 0.0
        np.cumsum(signed_2d, axis=1, out=feature("obv"))

        # VWAP of the session so far.
        typical = scratch[_TYPICAL]
        np.add(h, lo, out=typical)
        typical += c
        typical /= 3.0
        vwap = flat("vwap")
        no_volume = self._flags[0, :m]
        if not daily.all():
            # Row cumulative sums minus their value before the session's first bar. Exact for zero
            # volume: adding zeros does not change a float, so no volume yet is exactly 0.
            # Price x volume and volume ride as the real and imaginary parts of one complex array:
            # complex sums add the parts independently (same bits as two float cumsums) in the
            # time of one.
            pairs = self._pairs[:m].reshape(rows, width)
            np.multiply(typical.reshape(rows, width), volume, out=pairs.real)
            np.copyto(pairs.imag, volume)
            # Each row of the cumulative sums starts with a 0 column: "before bar t" is column t.
            cums = self._cumulative[: rows * (width + 1)].reshape(rows, width + 1)
            cums[:, 0] = 0.0
            np.cumsum(pairs, axis=1, out=cums[:, 1:])
            # Flat index of "before the session's first bar": a running maximum of the session
            # start column (integer, so a fast one), shifted to the row.
            first = self._index[:m].reshape(rows, width)
            np.multiply(new_session, np.arange(width), out=first)
            np.maximum.accumulate(first, axis=1, out=first)
            first += (np.arange(rows) * (width + 1))[:, None]
            np.take(cums.reshape(-1), first.reshape(-1), out=pairs.reshape(-1))
            np.subtract(cums[:, 1:], pairs, out=pairs)
            np.divide(pairs.real, pairs.imag, out=feature("vwap"))
            np.less_equal(pairs.imag, 0.0, out=no_volume.reshape(rows, width))
            np.copyto(vwap, np.nan, where=no_volume)
        if daily.any():
            # Daily bars: each bar is its own session, so its VWAP is its typical price.
            np.greater(v, 0.0, out=no_volume)
            np.logical_not(no_volume, out=no_volume)
            source = np.where(no_volume, np.nan, typical).reshape(rows, width)
            if daily.all():
                np.copyto(feature("vwap"), source)
            else:
                feature("vwap")[daily] = source[daily]


_MACD_SIGNAL_AT = _EMA_SLOW - 1 + _MACD_SIGNAL - 1  # first signal value: bar 33


def _seed_mean(x: np.ndarray, start: int, n: int) -> np.ndarray:
    """Row means of ``x[:, start:start+n]`` summed left to right (as TA-Lib does); NaN if short."""
    if x.shape[1] < start + n:
        return np.full(x.shape[0], np.nan)
    total = x[:, start].copy()
    for k in range(start + 1, start + n):
        total += x[:, k]
    return total / n


def _smooth(
    x: np.ndarray, *, alpha: float, seed_at: int, seed: np.ndarray, out: np.ndarray
) -> None:
    """y_t = (1 - alpha) y_{t-1} + alpha x_t per row, with y = seed at ``seed_at``, into ``out``.

    NaN before ``seed_at``. One ``lfilter`` call (a first-order IIR filter whose initial
    condition carries the seed) covers all rows.
    """
    out[:, :seed_at] = np.nan
    if out.shape[1] <= seed_at:
        return
    out[:, seed_at] = seed
    if out.shape[1] > seed_at + 1:
        decay = 1.0 - alpha
        out[:, seed_at + 1 :] = lfilter(
            [alpha], [1.0, -decay], x[:, seed_at + 1 :], axis=1, zi=(decay * seed)[:, None]
        )[0]
