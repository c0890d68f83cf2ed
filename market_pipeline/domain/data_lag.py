"""Data lag of one (symbol, timeframe) pair: is its newest stored bar the one now due?

Next to the spec's freshness (:mod:`market_pipeline.domain.freshness`, which rates when features
were last *computed*), never instead of it. Given the pair's calendar, timeframe and provider
grace, its stored ``last_bar_at`` and ``now``:

- ``expected_last_bar_at``: the open time of the newest due bar
  (:func:`~market_pipeline.domain.bar_schedule.due_bar_open`);
- ``bars_behind``: how many due bars are newer than the stored one (None when nothing is stored);
- ``data_lag_seconds``: how long the oldest of those bars has been due (complete + grace), so a
  weekend or a holiday adds nothing; 0 when current, None when nothing is stored;
- ``data_status``: ``current`` (nothing due is missing), ``late`` (a due bar is missing) or
  ``missing`` (no bar stored).

A stored bar newer than the expected one (a vendor faster than its grace) is current. Instants
outside an exchange calendar's bounds raise
:class:`~market_pipeline.domain.calendars.CalendarOutOfBounds`; callers catch it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from market_pipeline.domain.bar_schedule import NO_GRACE, due_bar_open, due_bars_after
from market_pipeline.domain.calendars import MarketCalendar
from market_pipeline.domain.timeframes import Timeframe
from market_pipeline.domain.timestamps import ensure_utc

DATA_STATUSES = ("current", "late", "missing")


@dataclass(frozen=True)
class DataLag:
    """The data-lag figures of one pair at one instant (see the module docstring)."""

    last_bar_at: datetime | None
    expected_last_bar_at: datetime
    bars_behind: int | None
    data_lag_seconds: float | None
    data_status: str


def data_lag(
    calendar: MarketCalendar,
    timeframe: Timeframe,
    last_bar_at: datetime | None,
    now: datetime,
    *,
    grace: timedelta = NO_GRACE,
) -> DataLag:
    """How far the stored bars of one pair are behind the bars due at ``now``."""
    now_utc = ensure_utc(now, name="now")
    expected = due_bar_open(calendar, timeframe, now_utc, grace=grace)
    if last_bar_at is None:
        return DataLag(None, expected, None, None, "missing")
    return stored_lag(calendar, timeframe, last_bar_at, now_utc, expected, grace=grace)


def stored_lag(
    calendar: MarketCalendar,
    timeframe: Timeframe,
    last_bar_at: datetime,
    now: datetime,
    expected: datetime,
    *,
    grace: timedelta = NO_GRACE,
) -> DataLag:
    """:func:`data_lag` of a stored bar, given ``expected``: what :func:`due_bar_open` gives at
    ``now`` (callers rating many pairs of one schedule find it once)."""
    now_utc = ensure_utc(now, name="now")
    stored = ensure_utc(last_bar_at, name="last_bar_at")
    behind, oldest_complete = due_bars_after(calendar, timeframe, stored, now_utc, grace=grace)
    if oldest_complete is None:
        return DataLag(stored, expected, 0, 0.0, "current")
    lag = (now_utc - (oldest_complete + grace)).total_seconds()
    return DataLag(stored, expected, behind, lag, "late")
