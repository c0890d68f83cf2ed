"""The time grid of synthetic bars: sessions, bar starts and ends, New York's UTC offset."""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

from market_pipeline.domain.calendars import get_calendar
from market_pipeline.domain.exchange_sessions import ExchangeCalendar
from market_pipeline.domain.timeframes import Timeframe
from market_pipeline.providers.base import (
    ProviderError,
)

MAX_BARS_PER_FETCH = 5_000_000
_DAY = 86_400
_EQUITY_OPEN_LOCAL = 9 * 3600 + 30 * 60  # 09:30 New York
_EQUITY_SESSION = 6 * 3600 + 30 * 60  # 6.5 h
_FX_WEEK_ORIGIN = -(3 * _DAY + 2 * 3600)  # Sunday 1969-12-28 22:00 UTC
_FX_WEEK_OPEN = 5 * _DAY  # Sunday 22:00 -> Friday 22:00
_WEEK = 7 * _DAY
_EPOCH_DATE = date(1970, 1, 1)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
SECOND = timedelta(seconds=1)
_EPOCH_ORDINAL = _EPOCH_DATE.toordinal()
_FIRST_DAY = date(1900, 1, 1).toordinal() - _EPOCH_ORDINAL  # synthetic history starts here


def bars_per_day(asset_class: str, timeframe: Timeframe) -> float:
    """Average bars per calendar day, to size the day range to generate."""
    if not timeframe.is_intraday:
        return 1.0 if asset_class == "crypto" else 5 / 7
    if asset_class == "equity":
        return math.ceil(_EQUITY_SESSION / timeframe.seconds) * 5 / 7
    per_day = _DAY / timeframe.seconds
    return per_day if asset_class == "crypto" else per_day * 5 / 7


def bar_grid(
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
    per_day = bars_per_day(asset_class, timeframe)
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
        days, session_open, session_close = equity_sessions(days[weekday < 5], first_day, last_day)
        if not timeframe.is_intraday:
            return days * _DAY, session_open, session_close, np.zeros(len(days))
        per_session = -(-_EQUITY_SESSION // dur)
        offsets = np.arange(per_session, dtype=np.int64) * dur
        start = (session_open[:, None] + offsets[None, :]).ravel()
        closes = np.repeat(session_close, per_session)
        end = np.minimum(start + dur, closes)
        pos = np.tile(offsets / _EQUITY_SESSION, len(days))
        inside = start < closes  # an early close (13:00) ends the session's bars sooner
        return start[inside], start[inside], end[inside], pos[inside]
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


def equity_sessions(
    weekdays: np.ndarray, first_day: int, last_day: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(days, opens, closes)`` of the equity sessions of ``first_day..last_day``: XNYS's own
    (holidays skipped, early closes at 13:00) where its calendar reaches (1990-2035), and
    09:30-16:00 New York on every weekday of ``weekdays`` outside it."""
    xnys = get_calendar("XNYS")
    assert isinstance(xnys, ExchangeCalendar)
    lo, hi = xnys.session_days
    outside = weekdays[(weekdays < lo) | (weekdays > hi)]
    opens = outside * _DAY + _EQUITY_OPEN_LOCAL + _new_york_utc_lag(outside)
    closes = opens + _EQUITY_SESSION
    if last_day < lo or first_day > hi:
        return outside, opens, closes
    days_in, opens_in, closes_in = (
        np.asarray(values, dtype=np.int64) for values in xnys.sessions_in(first_day, last_day)
    )
    days = np.concatenate([outside, days_in])
    order = np.argsort(days, kind="stable")
    return (
        days[order],
        np.concatenate([opens, opens_in])[order],
        np.concatenate([closes, closes_in])[order],
    )


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
    table = np.concatenate([_new_york_lag_for_year(y) for y in range(first_year, last_year + 1)])
    table_start = date(first_year, 1, 1).toordinal() - _EPOCH_ORDINAL
    return table[days - table_start]


def utc_timestamps(seconds: np.ndarray) -> pd.DatetimeIndex:
    nanoseconds = (seconds * 1_000_000_000).astype("datetime64[ns]")
    return pd.DatetimeIndex(nanoseconds).tz_localize("UTC")
