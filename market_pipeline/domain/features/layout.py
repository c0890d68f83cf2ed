"""Layout: concatenated series -> blocks of rows (one series per row, NaN padding at its end).

Also where each VWAP session starts: the local calendar day of every bar, looked up per UTC time
slot rather than per bar.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from market_pipeline.domain.features.columns import FEATURE_COLUMNS
from market_pipeline.domain.features.windowed import BlockBars, Kernel
from market_pipeline.domain.timeframes import SESSION_TIMEZONE, Timeframe, check_asset_class

# Cells (series x bars) per padded block: big enough to amortise numpy call overhead, small
# enough that the ~10 temporaries of one block stay in cache-friendly territory.
_BLOCK_CELLS = 1 << 16
# A block may hold at most this many padded cells per real bar.
_MAX_PADDING_RATIO = 1.3

_NS_PER_DAY = 86_400 * 10**9


@dataclass(frozen=True)
class SeriesKind:
    """What the features need to know about a series besides its bars."""

    sqrt_bars_per_year: float
    intraday: bool
    session_tz: str


@functools.lru_cache(maxsize=256)
def series_kind(asset_class: str, timeframe: str, session_tz: str | None = None) -> SeriesKind:
    """The kind of a series of ``asset_class`` and ``timeframe`` whose VWAP sessions are the
    local dates of ``session_tz`` (default: the asset class's zone); cached, few kinds recur."""
    check_asset_class(asset_class)
    tf = Timeframe.parse(timeframe)
    return SeriesKind(
        sqrt_bars_per_year=float(np.sqrt(tf.bars_per_year(asset_class))),
        intraday=tf.is_intraday,
        session_tz=session_tz or SESSION_TIMEZONE[asset_class],
    )


def compute(
    ts: NDArray[np.int64],
    tick_ns: int,
    high: NDArray[np.float64],
    low: NDArray[np.float64],
    close: NDArray[np.float64],
    volume: NDArray[np.float64],
    *,
    lengths: NDArray[np.int64],
    kinds: Sequence[SeriesKind],
) -> NDArray[np.float64]:
    """All features of concatenated series as an array of shape (len(FEATURE_COLUMNS), n_bars).

    ``ts`` in ticks of ``tick_ns`` nanoseconds since the epoch (UTC); series ``i`` is the next
    ``lengths[i]`` bars, of kind ``kinds[i]``.
    """
    n_bars = len(close)
    out = np.empty((len(FEATURE_COLUMNS), n_bars))
    if n_bars == 0:
        return out
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    _check_increasing(ts, offsets)
    # Flat over all series here; the kernel gets them one block at a time.
    bars = BlockBars(high, low, close, volume, _session_starts(ts, tick_ns, offsets, kinds))
    sqrt_bars_per_year = np.array([kind.sqrt_bars_per_year for kind in kinds])
    daily = np.array([not kind.intraday for kind in kinds], dtype=bool)
    blocks = [rows for rows in _blocks(lengths) if lengths[rows].max() > 0]
    kernel = Kernel(max(len(rows) * int(lengths[rows].max()) for rows in blocks))
    with np.errstate(all="ignore"):
        for rows in blocks:
            shape = (len(rows), int(lengths[rows].max()))
            starts, ends = offsets[rows], offsets[rows + 1]
            if (lengths[rows] == shape[1]).all() and (starts[1:] == ends[:-1]).all():
                # Series that are back to back and of equal length: views, no copies.
                span = slice(starts[0], ends[-1])
                kernel.run(
                    bars.block(span, shape),
                    sqrt_bars_per_year=sqrt_bars_per_year[rows],
                    daily=daily[rows],
                    res=out[:, span].reshape(len(FEATURE_COLUMNS), *shape),
                )
            else:
                _run_padded(
                    kernel,
                    bars,
                    starts,
                    ends,
                    out,
                    shape=shape,
                    sqrt_bars_per_year=sqrt_bars_per_year[rows],
                    daily=daily[rows],
                )
    return out


def _run_padded(
    kernel: Kernel,
    bars: BlockBars,
    starts: NDArray[np.int64],
    ends: NDArray[np.int64],
    out: NDArray[np.float64],
    *,
    shape: tuple[int, int],
    sqrt_bars_per_year: NDArray[np.float64],
    daily: NDArray[np.bool_],
) -> None:
    """Copy series of unequal length into a padded block, compute it, copy the rows back.

    Series ``j`` of the block is ``bars[starts[j]:ends[j]]``; its features go to the same
    columns of ``out``.
    """
    padded = kernel.padded_inputs(shape)
    for j, (a, b) in enumerate(zip(starts, ends, strict=True)):
        for block, flat in zip(padded, bars, strict=True):
            block[j, : b - a] = flat[a:b]
    res = kernel.padded_result(shape)
    kernel.run(padded, sqrt_bars_per_year=sqrt_bars_per_year, daily=daily, res=res)
    for j, (a, b) in enumerate(zip(starts, ends, strict=True)):
        out[:, a:b] = res[:, j, : b - a]


def _blocks(lengths: NDArray[np.int64]) -> list[NDArray[np.intp]]:
    """Group series (by index) into blocks of similar length to bound padding and block size."""
    order = np.argsort(-lengths, kind="stable")
    blocks: list[NDArray[np.intp]] = []
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


def _check_increasing(ts: NDArray[np.int64], offsets: NDArray[np.int64]) -> None:
    increasing = np.greater(ts[1:], ts[:-1])
    # A series boundary may go back in time; inside a series ts must strictly increase.
    inner = offsets[1:-1]
    increasing[inner[(inner > 0) & (inner < len(ts))] - 1] = True
    if not increasing.all():
        raise ValueError("bars.ts must be strictly increasing within each series")


def _session_starts(
    ts: NDArray[np.int64], tick_ns: int, offsets: NDArray[np.int64], kinds: Sequence[SeriesKind]
) -> NDArray[np.bool_]:
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
            select: slice | NDArray[np.int64] = slice(None)
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


def _day_changes(ts: NDArray[np.int64], tz: str, tick_ns: int) -> NDArray[np.bool_]:
    """True where the local date in ``tz`` differs from the previous bar's (and on bar 0)."""
    day = _local_day(ts, tz, tick_ns)
    change = np.empty(len(day), dtype=bool)
    change[0] = True
    np.not_equal(day[1:], day[:-1], out=change[1:])
    return change


_SLOT_NS = (3_600 * 10**9, 900 * 10**9)  # one hour, else 15 minutes


def _local_day(ts: NDArray[np.int64], tz: str, tick_ns: int) -> NDArray[np.int64]:
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


def _exact_local_day(ts: NDArray[np.int64], tz: str, tick_ns: int) -> NDArray[np.int64]:
    """:func:`_local_day` by converting every instant (slow; for irregular time zones)."""
    local = pd.DatetimeIndex((ts * tick_ns).view("M8[ns]")).tz_localize("UTC").tz_convert(tz)
    return local.tz_localize(None).as_unit("ns").asi8 // _NS_PER_DAY
