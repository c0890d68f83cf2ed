"""Synthetic prices: a Levy (Brownian-bridge) log-price path per symbol, and the bars on it."""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pandas as pd

from market_pipeline.domain.timeframes import Timeframe
from market_pipeline.providers.synthetic.grid import bars_per_day, utc_timestamps
from market_pipeline.providers.synthetic.hashing import (
    hash_key,
    uniform16x4,
    unit_normal,
    unit_scalar,
)

_BLOCK_LEVELS = 20  # anchors every 2**20 minutes (~728 days)
_YEAR_MINUTES = 365.25 * 1440
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
    u = [unit_scalar(hash_key(seed, "params", symbol, str(i))) for i in range(3)]
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
        path_key=hash_key(seed, "path", symbol),
    )


def synthetic_bars(
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
    bar_key = hash_key(seed, "bar", symbol, timeframe.code)

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
    noise = uniform16x4(bar_key, stamp // 60)
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
            "ts": utc_timestamps(stamp),
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
    minutes_per_bar = 1440 / bars_per_day(asset_class, timeframe)
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
        path += residual_sd * unit_normal(bar_key ^ 0x5, minutes)
    return path


def _anchor_line(minutes: np.ndarray, params: _SymbolParams) -> np.ndarray:
    """The anchors (independent, sd ``anchor_sd``, every 2**_BLOCK_LEVELS minutes) interpolated
    linearly at sorted ``minutes``."""
    block = minutes >> _BLOCK_LEVELS
    first = int(block[0])
    anchors = params.anchor_sd * unit_normal(
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
_LEVEL_SALT = _LEVEL_SHIFT.astype(np.uint64) << np.uint64(56)


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
    tent *= unit_normal(keys, points >> _LEVEL_SHIFT[levels, None])
    tent *= _LEVEL_SCALE[levels, None]
    return tent.sum(axis=0)  # row by row, in level order: independent of the number of points
