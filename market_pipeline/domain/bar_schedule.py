"""When each bar is due: the newest bar of a (calendar, timeframe) that must be complete by now.

Bars, by the conventions our providers stamp them with (see
:meth:`market_pipeline.providers.base.MarketDataProvider.fetch_bars`):

- **Intraday bars of an exchange** start at each trading period's open (the session open, and
  the end of a lunch break) and every timeframe after it. The last bar of a period may be cut by
  the close: it straddles the close and is complete at the close (an early close included), not
  at open + timeframe.
- **Intraday bars of 24/7 and FX** start at UTC multiples of the timeframe (since the epoch);
  an FX bar counts when it starts inside the week, and the week's last bar is cut at Friday
  22:00 UTC. This is the synthetic provider's grid.
- A bar is **complete** at ``min(open + timeframe, close of its period)``.
- **Daily bars** are dated by their session: stamped at the session's date 00:00 UTC, complete
  at the session's close (exchanges: the library's close, early closes included; 24/7: the next
  UTC midnight; FX: 22:00 UTC of that date, Monday to Friday).
- A bar is **due** at ``now`` with ``grace`` (the vendor's publication delay) when its completion
  time + grace <= now. :func:`due_bar_open` gives the open time (the stamp) of the newest due
  bar. Timeframes are at most one day (:class:`~market_pipeline.domain.timeframes.Timeframe`
  refuses weekly and monthly ones).

Outside an exchange calendar's bounds these functions raise
:class:`~market_pipeline.domain.calendars.CalendarOutOfBounds` (a ``ValueError``).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import datetime, timedelta

from market_pipeline.domain.calendars import (
    DAY,
    CalendarOutOfBounds,
    MarketCalendar,
    Period,
    to_datetime,
    to_seconds,
)
from market_pipeline.domain.timeframes import Timeframe
from market_pipeline.domain.timestamps import ensure_utc

NO_GRACE = timedelta(0)


def due_bar_open(
    calendar: MarketCalendar, timeframe: Timeframe, now: datetime, *, grace: timedelta = NO_GRACE
) -> datetime:
    """The open time of the newest bar that is complete at ``now - grace``."""
    cutoff = _cutoff(now, grace)
    if not timeframe.is_intraday:
        return to_datetime(calendar.session_closed_by(cutoff).day * DAY)
    return to_datetime(next(_due_bars(calendar, timeframe.seconds, cutoff))[0])


def due_bars_after(
    calendar: MarketCalendar,
    timeframe: Timeframe,
    after: datetime,
    now: datetime,
    *,
    grace: timedelta = NO_GRACE,
) -> tuple[int, datetime | None]:
    """How many bars newer than ``after`` are due at ``now``, and when the oldest of them became
    complete (``None`` when there is none). Counts per trading period, not per bar."""
    cutoff = _cutoff(now, grace)
    after_s = to_seconds(ensure_utc(after, name="after"))
    if not timeframe.is_intraday:
        return _due_sessions_after(calendar, after_s, cutoff)
    count, oldest_end = 0, None
    for start, end, first in _due_bars(calendar, timeframe.seconds, cutoff):
        if start <= after_s:
            break
        step = timeframe.seconds
        oldest = max(first, start - (start - after_s - 1) // step * step)
        count += (start - oldest) // step + 1
        oldest_end = min(oldest + step, end)
    return count, None if oldest_end is None else to_datetime(oldest_end)


def _cutoff(now: datetime, grace: timedelta) -> int:
    if grace < NO_GRACE:
        raise ValueError(f"grace must not be negative, got {grace}")
    return to_seconds(ensure_utc(now, name="now") - grace)


def _due_bars(calendar: MarketCalendar, step: int, cutoff: int) -> Iterator[tuple[int, int, int]]:
    """Per trading period, newest first: ``(start of its newest bar complete by cutoff, end of
    that bar's period, start of the period's first bar)``, for periods that have one."""
    for period in calendar.periods_before(cutoff):
        first = _first_start(period, step, calendar.aligns_to_epoch)
        if first >= period.close:
            continue  # a period too short to hold an aligned bar start
        if cutoff >= period.close:
            newest = first + (period.close - 1 - first) // step * step
        elif cutoff - step >= first:
            newest = first + (cutoff - step - first) // step * step
        else:
            continue
        yield newest, period.close, first


def _first_start(period: Period, step: int, aligns_to_epoch: bool) -> int:
    return -(-period.open // step) * step if aligns_to_epoch else period.open


def _due_sessions_after(
    calendar: MarketCalendar, after: int, cutoff: int
) -> tuple[int, datetime | None]:
    count, oldest_close = calendar.sessions_closed_after(after, cutoff)
    return count, None if oldest_close is None else to_datetime(oldest_close)


def sessions_closed_between(
    calendars: Iterable[MarketCalendar], since: datetime, until: datetime
) -> bool:
    """Whether any of ``calendars`` closed a daily session in ``(since, until]``: whether a
    daily refresh at ``until`` has a new daily bar to fetch. Out-of-bounds counts as closed (a
    refresh too many beats one missed)."""
    start = to_seconds(ensure_utc(since, name="since"))
    end = to_seconds(ensure_utc(until, name="until"))
    for calendar in calendars:
        try:
            if calendar.session_closed_by(end).close > start:
                return True
        except CalendarOutOfBounds:
            return True
    return False
