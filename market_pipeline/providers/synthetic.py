"""Synthetic bars: deterministic, realistic-looking OHLCV for any symbol, with failure injection.

Used by the demo universe and by tests. Provider block::

    provider:
      kind: synthetic
      history_bars: 2000        # bars returned when since is None (default 2000)
      seed: 0                   # changes every series at once (default 0)
      fail_symbols: [XYZ]       # fetch_bars raises ProviderError for these symbols
      bad_row_symbols: [ABC]    # these symbols get bad rows amid good ones (see below)

Conventions (all times UTC, timestamps are bar starts):

- Sessions. Equities trade 09:30-16:00 America/New_York on weekdays (holidays are ignored: every
  Monday-Friday is a session); intraday bars are anchored at 09:30, so 1h bars start at 09:30,
  10:30, ... 15:30 and the last one is a 30-minute bar ending at the 16:00 close. Crypto trades
  24/7 and FX 24/5 from Sunday 22:00 UTC to Friday 22:00 UTC; their intraday bars sit on the
  UTC grid (multiples of the bar length since 1970-01-01 00:00 UTC).
- Daily bars are stamped 00:00 UTC of their session date: the New York date for equities (the
  bar covers 09:30-16:00 New York), the UTC date for crypto (00:00-24:00 UTC), and for FX the date
  on which the FX day closes at 22:00 UTC (it opened 22:00 UTC the day before); FX and equity
  daily bars exist on weekdays only.
- A bar is returned once complete: its end (start + length, or the session close) is <= until.
- History. ``since=None`` returns the last ``history_bars`` (default 2,000) complete bars: for
  equities about 5 sessions of 1m, 26 of 5m, 77 of 15m, 286 (~1.1 years) of 1h and ~8 years of
  1d bars. With ``since`` it returns every complete bar with ``ts >= since`` (no overlap), at
  most 5 million per call. Nothing exists before 1900-01-01.

Determinism. The log-price is a function of the symbol and of the time alone, built by the Levy
(Brownian-bridge) construction: independent anchors every 2**20 minutes (~2 years, which keeps
price levels sane) and, inside, tent functions at dyadic scales down to about a quarter of the
bar length whose heights come from a counter-based hash (splitmix64) of (seed, symbol, scale,
position). The coarse path is therefore shared by all timeframes of a symbol (a daily close is
close to the last 1m close), scales below the bar add a small per-bar term, and high, low and
volume use a hash of (seed, symbol, timeframe, bar start). Nothing is accumulated from the start
of the request, so a bar has the same values whether it comes from a full-history call or from an
incremental one, in any process. Seeds come from ``zlib.crc32``, never from ``hash()``.

Bad rows (``bad_row_symbols``): in a fetch of n >= 4 bars, the rows at positions (2i+1)n//8 get,
in order, an OHLC violation (high below the body), a NaN close, a zero low (non-positive price)
and an exact duplicate row inserted after it (a duplicated timestamp); fewer bars get the first
kinds only. The validation rejects exactly one row per kind.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from functools import lru_cache
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

from market_pipeline.domain.timeframes import ASSET_CLASSES, Timeframe
from market_pipeline.providers.base import (
    MarketDataProvider,
    ProviderError,
    check_window,
    register_provider,
)

DEFAULT_HISTORY_BARS = 2000
MAX_BARS_PER_FETCH = 5_000_000

_DAY = 86_400
_EQUITY_OPEN_LOCAL = 9 * 3600 + 30 * 60  # 09:30 New York
_EQUITY_SESSION = 6 * 3600 + 30 * 60  # 6.5 h
_FX_WEEK_ORIGIN = -(3 * _DAY + 2 * 3600)  # Sunday 1969-12-28 22:00 UTC
_FX_WEEK_OPEN = 5 * _DAY  # Sunday 22:00 -> Friday 22:00
_WEEK = 7 * _DAY
_EPOCH_DATE = date(1970, 1, 1)
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_SECOND = timedelta(seconds=1)
_EPOCH_ORDINAL = _EPOCH_DATE.toordinal()
_FIRST_DAY = date(1900, 1, 1).toordinal() - _EPOCH_ORDINAL  # synthetic history starts here

_BLOCK_LEVELS = 20  # anchors every 2**20 minutes (~728 days)
_YEAR_MINUTES = 365.25 * 1440

_MASK64 = (1 << 64) - 1
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_SQRT6 = math.sqrt(6.0)
_SHIFT27, _SHIFT30, _SHIFT31, _SHIFT32 = (np.uint64(v) for v in (27, 30, 31, 32))
_LOW32 = np.uint64(0xFFFFFFFF)
_LOW16 = np.uint64(0xFFFF)
_SHIFT_16X4 = np.array([0, 16, 32, 48], dtype=np.uint64)
_SHIFT16, _SHIFT20 = np.uint64(16), np.uint64(20)
_ONE_BITS = np.uint64(0x3FF0000000000000)  # 1.0 as IEEE 754 bits

# Reference price levels so the demo's crypto and FX look familiar; other symbols get a level
# drawn from their hash within a range for their asset class.
_KNOWN_LEVELS = {
    "BTC-USD": 60_000.0,
    "ETH-USD": 3_000.0,
    "SOL-USD": 150.0,
    "DOGE-USD": 0.15,
    "EURUSD": 1.08,
    "GBPUSD": 1.27,
    "USDJPY": 150.0,
    "AUDUSD": 0.66,
    "USDCHF": 0.88,
    "USDCAD": 1.36,
}
_LEVEL_RANGE = {"equity": (15.0, 450.0), "crypto": (0.5, 500.0), "fx": (0.6, 1.6)}
_ANNUAL_VOL_RANGE = {"equity": (0.18, 0.45), "crypto": (0.45, 0.85), "fx": (0.05, 0.12)}
# Typical volume per minute of trading: shares for equities, coins for crypto (from a dollar
# turnover), ticks for FX.
_DAILY_TURNOVER_RANGE = {"equity": (2e6, 6e7), "crypto": (5e7, 2e9), "fx": (3e4, 3e5)}
_ZERO_VOLUME_PROBABILITY = 0.002  # intraday bars without trades


@register_provider
class SyntheticProvider(MarketDataProvider):
    """Deterministic synthetic bars (see the module docstring for every convention)."""

    kind = "synthetic"

    def __init__(
        self,
        *,
        history_bars: int = DEFAULT_HISTORY_BARS,
        seed: int = 0,
        fail_symbols: Iterable[str] = (),
        bad_row_symbols: Iterable[str] = (),
    ) -> None:
        if isinstance(history_bars, bool) or not isinstance(history_bars, int):
            raise ValueError(f"history_bars must be an integer, got {history_bars!r}")
        if not 1 <= history_bars <= MAX_BARS_PER_FETCH:
            raise ValueError(
                f"history_bars must be between 1 and {MAX_BARS_PER_FETCH}, got {history_bars}"
            )
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ValueError(f"seed must be an integer, got {seed!r}")
        self.history_bars = history_bars
        self.seed = seed
        self.fail_symbols = _symbol_set("fail_symbols", fail_symbols)
        self.bad_row_symbols = _symbol_set("bad_row_symbols", bad_row_symbols)
        self._config = {
            "kind": self.kind,
            "history_bars": history_bars,
            "seed": seed,
            "fail_symbols": sorted(self.fail_symbols),
            "bad_row_symbols": sorted(self.bad_row_symbols),
        }

    def referenced_symbols(self) -> frozenset[str]:
        return self.fail_symbols | self.bad_row_symbols

    def fetch_bars(
        self,
        symbol: str,
        asset_class: str,
        timeframe: Timeframe,
        *,
        since: datetime | None,
        until: datetime,
    ) -> pd.DataFrame:
        """Bars of one pair; ``ts`` is ``datetime64[ns, UTC]`` (see the module docstring)."""
        if symbol in self.fail_symbols:
            raise ProviderError(f"synthetic provider: injected failure for {symbol} {timeframe}")
        if asset_class not in ASSET_CLASSES:
            raise ProviderError(
                f"synthetic provider: {symbol} {timeframe}: unknown asset class {asset_class!r}"
            )
        check_window(since, until)
        until_s = (until - _EPOCH) // _SECOND  # floor: the last whole second
        since_s = None if since is None else -((_EPOCH - since) // _SECOND)  # ceil
        stamp, start, end, session_pos = _bar_grid(
            asset_class, timeframe, since_s, until_s, self.history_bars, symbol
        )
        frame = _bars(symbol, asset_class, timeframe, self.seed, stamp, start, end, session_pos)
        if symbol in self.bad_row_symbols:
            frame = _inject_bad_rows(frame)
        return frame


def _symbol_set(name: str, values: Iterable[str]) -> frozenset[str]:
    if isinstance(values, str) or not all(isinstance(v, str) for v in values):
        raise ValueError(f"{name} must be a list of symbols, got {values!r}")
    return frozenset(values)


# --- time grid --------------------------------------------------------------------------------


def _bars_per_day(asset_class: str, timeframe: Timeframe) -> float:
    """Average bars per calendar day, to size the day range to generate."""
    if not timeframe.is_intraday:
        return 1.0 if asset_class == "crypto" else 5 / 7
    if asset_class == "equity":
        return math.ceil(_EQUITY_SESSION / timeframe.seconds) * 5 / 7
    per_day = _DAY / timeframe.seconds
    return per_day if asset_class == "crypto" else per_day * 5 / 7


def _bar_grid(
    asset_class: str,
    timeframe: Timeframe,
    since_s: int | None,
    until_s: int,
    history_bars: int,
    symbol: str,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Complete bars in the window: (stamp, start, end, position in session) in epoch seconds.

    ``stamp`` is the bar's ts, ``start``/``end`` the instants its open and close are taken at
    (they differ from the stamp for daily bars), ``session_pos`` the fraction of the equity
    session elapsed at the bar start (0 for other asset classes).
    """
    per_day = _bars_per_day(asset_class, timeframe)
    last_day = until_s // _DAY + 1
    if since_s is not None:
        first_day = max(since_s // _DAY - 1, _FIRST_DAY)
        if (last_day - first_day + 1) * per_day > MAX_BARS_PER_FETCH:
            raise ProviderError(
                f"synthetic provider: {symbol} {timeframe}: the window from since to until holds "
                f"more than {MAX_BARS_PER_FETCH} bars; fetch it in smaller windows"
            )
        stamp, start, end, pos = _grid_for_days(asset_class, timeframe, first_day, last_day)
        keep = (stamp >= since_s) & (end <= until_s)
        return stamp[keep], start[keep], end[keep], pos[keep]
    days_back = math.ceil(history_bars / per_day) + 8
    while True:
        first_day = max(last_day - days_back, _FIRST_DAY)
        stamp, start, end, pos = _grid_for_days(asset_class, timeframe, first_day, last_day)
        keep = end <= until_s
        if int(keep.sum()) >= history_bars or first_day == _FIRST_DAY:
            break
        days_back *= 2
    stamp, start, end, pos = stamp[keep], start[keep], end[keep], pos[keep]
    return stamp[-history_bars:], start[-history_bars:], end[-history_bars:], pos[-history_bars:]


def _grid_for_days(
    asset_class: str, timeframe: Timeframe, first_day: int, last_day: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Every bar of the days ``first_day..last_day`` (epoch day numbers), sorted by stamp."""
    days = np.arange(first_day, last_day + 1, dtype=np.int64)
    weekday = (days + 3) % 7  # 1970-01-01 was a Thursday; Monday = 0
    dur = timeframe.seconds
    if asset_class == "equity":
        days = days[weekday < 5]
        session_open = days * _DAY + _EQUITY_OPEN_LOCAL + _new_york_utc_lag(days)
        session_close = session_open + _EQUITY_SESSION
        if not timeframe.is_intraday:
            return days * _DAY, session_open, session_close, np.zeros(len(days))
        per_session = -(-_EQUITY_SESSION // dur)
        offsets = np.arange(per_session, dtype=np.int64) * dur
        start = (session_open[:, None] + offsets[None, :]).ravel()
        end = np.minimum(start + dur, np.repeat(session_close, per_session))
        pos = np.tile(offsets / _EQUITY_SESSION, len(days))
        return start, start, end, pos
    if not timeframe.is_intraday:
        if asset_class == "crypto":
            stamp = days * _DAY
            return stamp, stamp, stamp + _DAY, np.zeros(len(days))
        stamp = days[weekday < 5] * _DAY
        return stamp, stamp - 2 * 3600, stamp + 22 * 3600, np.zeros(len(stamp))
    first = -(-(first_day * _DAY) // dur) * dur
    start = np.arange(first, (last_day + 1) * _DAY, dur, dtype=np.int64)
    if asset_class == "crypto":
        return start, start, start + dur, np.zeros(len(start))
    week_pos = (start - _FX_WEEK_ORIGIN) % _WEEK
    open_ = week_pos < _FX_WEEK_OPEN
    start, week_pos = start[open_], week_pos[open_]
    end = np.minimum(start + dur, start - week_pos + _FX_WEEK_OPEN)
    return start, start, end, np.zeros(len(start))


@lru_cache(maxsize=256)
def _new_york_lag_for_year(year: int) -> np.ndarray:
    """Seconds to add to New York local time to get UTC at 09:30 on each day of ``year``."""
    zone = ZoneInfo("America/New_York")
    first = datetime(year, 1, 1).toordinal()
    count = datetime(year + 1, 1, 1).toordinal() - first
    lags = np.empty(count, dtype=np.int64)
    for i in range(count):
        day = datetime.fromordinal(first + i).replace(hour=9, minute=30, tzinfo=zone)
        lags[i] = -int(day.utcoffset().total_seconds())  # type: ignore[union-attr]
    lags.setflags(write=False)
    return lags


def _new_york_utc_lag(days: np.ndarray) -> np.ndarray:
    """Per epoch day: 14400 (EDT) or 18000 (EST), the New York lag behind UTC at 09:30."""
    if len(days) == 0:
        return np.zeros(0, dtype=np.int64)
    first_year = _EPOCH_DATE.fromordinal(_EPOCH_ORDINAL + int(days[0])).year
    last_year = _EPOCH_DATE.fromordinal(_EPOCH_ORDINAL + int(days[-1])).year
    table = np.concatenate(
        [_new_york_lag_for_year(y) for y in range(first_year, last_year + 1)]
    )
    table_start = date(first_year, 1, 1).toordinal() - _EPOCH_ORDINAL
    return table[days - table_start]


# --- values -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _SymbolParams:
    level: float
    annual_vol: float
    anchor_sd: float
    decimals: int
    volume_per_minute: float
    volume_decimals: int
    path_key: int


@lru_cache(maxsize=4096)
def _symbol_params(symbol: str, asset_class: str, seed: int) -> _SymbolParams:
    u = [_unit_scalar(_key(seed, "params", symbol, str(i))) for i in range(3)]
    lo, hi = _LEVEL_RANGE[asset_class]
    level = _KNOWN_LEVELS.get(symbol) or lo * (hi / lo) ** u[0]
    vlo, vhi = _ANNUAL_VOL_RANGE[asset_class]
    annual_vol = vlo + (vhi - vlo) * u[1]
    tlo, thi = _DAILY_TURNOVER_RANGE[asset_class]
    turnover = tlo * (thi / tlo) ** u[2]
    if asset_class == "equity":
        decimals, per_minute, volume_decimals = 2, turnover / 390, 0
    elif asset_class == "crypto":
        decimals, per_minute, volume_decimals = 2, turnover / level / 1440, 4
    else:
        decimals, per_minute, volume_decimals = (5 if level < 20 else 3), turnover / 1440, 0
    # At least three significant digits at the lowest level the path reaches (~level / 5).
    decimals = max(decimals, math.ceil(3 - math.log10(level / 5)))
    return _SymbolParams(
        level=level,
        annual_vol=annual_vol,
        anchor_sd=min(annual_vol, 0.5),
        decimals=decimals,
        volume_per_minute=per_minute,
        volume_decimals=volume_decimals,
        path_key=_key(seed, "path", symbol),
    )


def _bars(
    symbol: str,
    asset_class: str,
    timeframe: Timeframe,
    seed: int,
    stamp: np.ndarray,
    start: np.ndarray,
    end: np.ndarray,
    session_pos: np.ndarray,
) -> pd.DataFrame:
    n = len(stamp)
    params = _symbol_params(symbol, asset_class, seed)
    sigma_minute = params.annual_vol / math.sqrt(_YEAR_MINUTES)
    finest, coarse = _levels(asset_class, timeframe)
    bar_key = _key(seed, "bar", symbol, timeframe.code)

    # Prices at the bars' open and close instants. Consecutive bars usually share an instant
    # (close of one = open of the next), so evaluate each instant once.
    start_min, end_min = start // 60, end // 60
    own_close = np.ones(n, dtype=bool)
    own_close[:-1] = end_min[:-1] != start_min[1:]
    points = np.concatenate([start_min, end_min[own_close]])
    close_at = np.arange(1, n + 1)
    close_at[own_close] = n + np.arange(int(own_close.sum()))
    log_path = _log_path(points, params, sigma_minute, finest, coarse, bar_key)
    prices = params.level * np.exp(log_path)
    open_ = prices[:n]
    close = prices[close_at]

    # Range and volume from one 64-bit hash per bar: four 16-bit uniforms. Highs and lows
    # extend the body by up to 1.5 bar sds (mostly much less); no transcendental functions.
    noise = _uniform16x4(bar_key, stamp // 60)
    length_minutes = (end - start) * (1.0 / 60.0)
    bar_sigma = sigma_minute * np.sqrt(length_minutes)
    extension = noise[:2] * noise[:2]
    extension *= 1.5 * bar_sigma
    extension += 1.0
    values = np.empty((5, n))
    values[0] = open_
    np.maximum(open_, close, out=values[1])
    values[1] *= extension[0]
    np.minimum(open_, close, out=values[2])
    values[2] /= extension[1]
    values[3] = close
    np.round(values[:4], params.decimals, out=values[:4])

    # Volume: turnover x bar length, higher on big moves, U-shaped over the equity session,
    # times noise in [0.4, 1.6); a few intraday bars without any trade.
    volume = values[4]
    np.subtract(close, open_, out=volume)
    np.abs(volume, out=volume)
    volume /= open_ * bar_sigma  # the move in bar sds
    volume *= 0.4
    volume += 0.6
    volume *= params.volume_per_minute * length_minutes
    volume *= 0.4 + 1.2 * noise[2]
    if asset_class == "equity" and timeframe.is_intraday:
        volume *= 1.0 + 1.5 * (2.0 * session_pos - 1.0) ** 2
    if timeframe.is_intraday:
        volume[noise[3] < _ZERO_VOLUME_PROBABILITY] = 0.0
    np.round(volume, params.volume_decimals, out=volume)
    return pd.DataFrame(
        {
            "ts": _utc_timestamps(stamp),
            "open": values[0],
            "high": values[1],
            "low": values[2],
            "close": values[3],
            "volume": values[4],
        },
        copy=False,
    )


@lru_cache(maxsize=256)
def _levels(asset_class: str, timeframe: Timeframe) -> tuple[int, int]:
    """(finest, coarse) dyadic levels of the path for a pair's bars.

    ``finest``: about a quarter of the bar length; the levels below it only add noise within a
    bar. ``coarse``: the split between grid and per-point evaluation that minimises the hashing
    work for bars spaced as this asset class and timeframe space them (nights and weekends
    included): grid nodes per bar x grid levels + per-point levels.
    """
    finest = max(0, int(math.log2(timeframe.seconds // 60)) - 2)
    minutes_per_bar = 1440 / _bars_per_day(asset_class, timeframe)
    coarse = min(
        range(finest, _BLOCK_LEVELS + 1),
        key=lambda c: minutes_per_bar / 2**c * (_BLOCK_LEVELS - c) + (c - finest),
    )
    return finest, coarse


def _log_path(
    minutes: np.ndarray,
    params: _SymbolParams,
    sigma_minute: float,
    finest: int,
    coarse: int,
    bar_key: int,
) -> np.ndarray:
    """Log-price (relative to the symbol's level) at epoch minutes (any order, repeats allowed).

    Levy construction of a Brownian path: independent anchors every 2**_BLOCK_LEVELS minutes,
    linear in between, plus for each dyadic level m a tent of half-width h = 2**m over every
    interval of length 2h, peaking mid-interval at sqrt(h/2) per-minute sds (the sd of a
    Brownian bridge there) times a hash of (symbol, m, interval index). The value at a minute
    depends on nothing but the minute.

    Levels below ``finest`` are replaced by one per-point term of the same variance. For speed,
    the levels from ``coarse`` up are evaluated on a grid (spacing 2**coarse minutes) over the
    points' span and interpolated, which is exact because they are linear between grid nodes;
    only the finer levels are evaluated per point. ``coarse`` must depend on the pair alone,
    never on the request, so that every call adds the same terms in the same order and a bar's
    values are bit-for-bit reproducible.
    """
    count = len(minutes)
    if count == 0:
        return np.zeros(0)
    lo, hi = int(minutes.min()), int(minutes.max())
    first = lo >> coarse
    nodes = np.arange(first, (hi >> coarse) + 2, dtype=np.int64) << coarse
    grid = _anchor_line(nodes, params)
    grid += sigma_minute * _tents(nodes, coarse, _BLOCK_LEVELS, params.path_key)
    index = (minutes >> coarse) - first
    fraction = (minutes & ((1 << coarse) - 1)) * (1.0 / (1 << coarse))
    path = grid[index] * (1.0 - fraction) + grid[index + 1] * fraction
    if coarse > finest:
        path += sigma_minute * _tents(minutes, finest, coarse, params.path_key)
    if finest > 0:
        residual_sd = sigma_minute * math.sqrt(((1 << finest) - 1) / 6)
        path += residual_sd * _unit_normal(bar_key ^ 0x5, minutes)
    return path


def _anchor_line(minutes: np.ndarray, params: _SymbolParams) -> np.ndarray:
    """The anchors (independent, sd ``anchor_sd``, every 2**_BLOCK_LEVELS minutes) interpolated
    linearly at sorted ``minutes``."""
    block = minutes >> _BLOCK_LEVELS
    first = int(block[0])
    anchors = params.anchor_sd * _unit_normal(
        params.path_key ^ 0xA, np.arange(first, int(block[-1]) + 2, dtype=np.int64)
    )
    fraction = (minutes & ((1 << _BLOCK_LEVELS) - 1)) * (1.0 / (1 << _BLOCK_LEVELS))
    index = block - first
    return anchors[index] * (1.0 - fraction) + anchors[index + 1] * fraction


_LEVELS = np.arange(_BLOCK_LEVELS, dtype=np.int64)
_LEVEL_SHIFT = _LEVELS + 1
_LEVEL_MASK = (np.int64(1) << _LEVEL_SHIFT) - 1
_LEVEL_INV_HALF = 1.0 / (np.int64(1) << _LEVELS).astype(np.float64)
_LEVEL_SCALE = np.sqrt((np.int64(1) << _LEVELS) / 2.0)
_LEVEL_SALT = (_LEVEL_SHIFT.astype(np.uint64) << np.uint64(56))


def _tents(minutes: np.ndarray, first_level: int, stop_level: int, path_key: int) -> np.ndarray:
    """Sum over levels first_level..stop_level-1 of the Levy tents at ``minutes``, in units of
    the per-minute sd. One 2-D pass (levels x points) keeps the number of numpy calls small."""
    if stop_level <= first_level:
        return np.zeros(len(minutes))
    levels = slice(first_level, stop_level)
    points = minutes[None, :]
    tent = (points & _LEVEL_MASK[levels, None]) * _LEVEL_INV_HALF[levels, None]
    tent -= 1.0
    np.abs(tent, out=tent)
    np.subtract(1.0, tent, out=tent)
    keys = (_LEVEL_SALT[levels] ^ np.uint64(path_key))[:, None]
    tent *= _unit_normal(keys, points >> _LEVEL_SHIFT[levels, None])
    tent *= _LEVEL_SCALE[levels, None]
    return tent.sum(axis=0)  # row by row, in level order: independent of the number of points


def _inject_bad_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """Spoil rows at positions (2i+1)n//8, i = 0..3 (see the module docstring)."""
    n = len(frame)
    positions = [(2 * i + 1) * n // 8 for i in range(4)] if n >= 4 else list(range(n))
    frame = frame.copy()
    if len(positions) > 0:  # OHLC violation: high below the body
        p = positions[0]
        frame.loc[p, "high"] = min(frame.loc[p, "open"], frame.loc[p, "close"]) * 0.98
    if len(positions) > 1:  # missing price
        frame.loc[positions[1], "close"] = float("nan")
    if len(positions) > 2:  # non-positive price
        frame.loc[positions[2], "low"] = 0.0
    if len(positions) > 3:  # duplicated timestamp: an exact copy right after the row
        p = positions[3]
        frame = pd.concat([frame.iloc[: p + 1], frame.iloc[p : p + 1], frame.iloc[p + 1 :]])
        frame = frame.reset_index(drop=True)
    return frame


# --- counter-based randomness -----------------------------------------------------------------


def _key(*parts: object) -> int:
    """A 64-bit key from a stable hash of the parts (crc32, never Python's ``hash()``)."""
    text = "\x1f".join(str(p) for p in parts).encode()
    low = zlib.crc32(text)
    high = zlib.crc32(text[::-1] + b"\x00")
    return _splitmix_scalar((high << 32) | low)


def _splitmix_scalar(value: int) -> int:
    value = (value + 0x9E3779B97F4A7C15) & _MASK64
    value = ((value ^ (value >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    value = ((value ^ (value >> 27)) * 0x94D049BB133111EB) & _MASK64
    return value ^ (value >> 31)


def _unit_scalar(key: int) -> float:
    """Uniform in (0, 1) from a 64-bit key."""
    return ((key >> 11) + 0.5) * 2.0**-53


def _hash64(key: int | np.ndarray, counter: np.ndarray) -> np.ndarray:
    """splitmix64 of (key, counter): independent-looking 64-bit values, one per counter.
    ``key`` is an int or a uint64 array broadcasting against ``counter``."""
    x = counter.astype(np.uint64)
    x *= _GOLDEN
    x += key if isinstance(key, np.ndarray) else np.uint64(key & _MASK64)
    x ^= x >> _SHIFT30
    x *= _MIX1
    x ^= x >> _SHIFT27
    x *= _MIX2
    x ^= x >> _SHIFT31
    return x


def _unit_normal(key: int | np.ndarray, counter: np.ndarray) -> np.ndarray:
    """Zero-mean, unit-variance noise per counter: the sum of two independent 32-bit uniforms,
    standardised (triangular: cheap, and the sum over many scales is close to Gaussian)."""
    x = _hash64(key, counter)
    high = _unit_from_bits(x >> _SHIFT32)
    high += _unit_from_bits(x & _LOW32)
    high -= 1.0
    high *= _SQRT6
    return high


def _uniform16x4(key: int, counter: np.ndarray) -> np.ndarray:
    """Four independent uniforms in [0, 1) per counter (16 bits each), shape (4, n)."""
    x = _hash64(key, counter)[None, :] >> _SHIFT_16X4[:, None]
    x &= _LOW16
    x <<= _SHIFT16
    return _unit_from_bits(x)


def _unit_from_bits(bits: np.ndarray) -> np.ndarray:
    """Uniform in [0, 1) from integers below 2**32 taken as 32-bit fractions (``bits`` is
    overwritten).

    Writes them into the mantissa of floats in [1, 2) and subtracts 1: integer operations that
    vectorise, unlike numpy's uint64-to-float conversion.
    """
    bits <<= _SHIFT20
    bits |= _ONE_BITS
    floats = bits.view(np.float64)
    floats -= 1.0
    return floats


def _utc_timestamps(seconds: np.ndarray) -> pd.DatetimeIndex:
    nanoseconds = (seconds * 1_000_000_000).astype("datetime64[ns]")
    return pd.DatetimeIndex(nanoseconds).tz_localize("UTC")
