"""Market calendars: when a market trades, as trading periods and daily sessions in UTC.

One interface, :class:`MarketCalendar`, and three kinds of calendar behind it, by name:

- ``"24/7"`` (:class:`AlwaysOpen`): always trading, no holidays, no bounds (crypto's default);
- ``"FX"`` (:class:`FxWeek`): every week from Sunday 22:00 to Friday 22:00 UTC, no holidays, no
  bounds (FX's default). Not exchange_calendars' ``"24/5"``, whose week is Monday 00:00 to
  Friday 24:00 UTC;
- any other name that exchange_calendars knows (``XNYS``, the equity default, ``XLON``, ``XTKS``,
  aliases such as ``NYSE``): its sessions, holidays, early closes and lunch breaks
  (:mod:`market_pipeline.domain.exchange_sessions`, which imports the library only when such a
  calendar is first used).

A calendar says two things, both in integer seconds since the epoch (UTC):

- its *trading periods*, newest first (:meth:`MarketCalendar.periods_before`): the stretches
  intraday bars live in. An exchange session is one period, or two around a lunch break; the FX
  week is one period; 24/7 is one endless period. ``aligns_to_epoch`` says where intraday bars
  start: at UTC multiples of the timeframe (24/7, FX) or at the period's open and every timeframe
  after it (exchanges);
- its *daily sessions* (:meth:`MarketCalendar.session_closed_by`): one daily bar each, dated by
  the session's date. Exchange sessions are those of the library; 24/7 sessions are UTC days;
  an FX session dated D (Monday to Friday) runs from D-1 22:00 to D 22:00 UTC, as the synthetic
  provider stamps FX daily bars.

Exchange calendars cover 1990-01-01 (or the library's first date for that exchange, e.g. 1997
for XTKS) to :data:`CALENDAR_END`; beyond those bounds :class:`CalendarOutOfBounds` is raised, a
``ValueError`` callers (sensors, reports) catch. :func:`get_calendar` caches one instance per
name, so each exchange calendar is built once per process (about 0.3 s). The interface and its
records live in :mod:`market_pipeline.domain.market_calendar` (re-exported here), so that the
exchange implementation, imported lazily from here, does not import this module back.
"""

from __future__ import annotations

import difflib
import threading
from collections.abc import Iterator
from datetime import date

from market_pipeline.domain.market_calendar import (
    DAY,
    CalendarOutOfBounds,
    MarketCalendar,
    Period,
    Session,
    to_datetime,
    to_seconds,
    utc_text,
)

__all__ = [
    "ALWAYS_OPEN",
    "CALENDAR_END",
    "CALENDAR_START",
    "DAY",
    "DEFAULT_CALENDARS",
    "FX_WEEK",
    "AlwaysOpen",
    "CalendarOutOfBounds",
    "FxWeek",
    "MarketCalendar",
    "Period",
    "Session",
    "UnknownCalendarError",
    "check_calendar_name",
    "get_calendar",
    "to_datetime",
    "to_seconds",
    "utc_text",
]

WEEK = 7 * DAY
CALENDAR_START = date(1990, 1, 1)
CALENDAR_END = date(2035, 12, 31)
"""Exchange calendars are built for these dates; the library projects future holidays from
today's rules, so a later end would only extend guesses."""

ALWAYS_OPEN = "24/7"
FX_WEEK = "FX"
DEFAULT_CALENDARS = {"equity": "XNYS", "crypto": ALWAYS_OPEN, "fx": FX_WEEK}
"""The calendar of each asset class when the universe names none."""

_FOREVER = 1 << 62
# Sunday 1969-12-28 22:00 UTC: the FX week opens at this instant plus a whole number of weeks.
_FX_WEEK_ORIGIN = -(3 * DAY + 2 * 3600)
_FX_WEEK_OPEN = 5 * DAY
_FX_DAILY_CLOSE = 22 * 3600


class UnknownCalendarError(ValueError):
    """A calendar name that is neither built in nor known to exchange_calendars."""


class AlwaysOpen(MarketCalendar):
    """``"24/7"``: always trading; intraday bars at UTC multiples, daily bars on UTC days."""

    name = ALWAYS_OPEN
    aligns_to_epoch = True

    def periods_before(self, instant: int) -> Iterator[Period]:
        yield Period(-_FOREVER, _FOREVER)

    def session_closed_by(self, instant: int) -> Session:
        day = instant // DAY - 1
        return Session(day, day * DAY, (day + 1) * DAY)

    def sessions_closed_after(self, after: int, cutoff: int) -> tuple[int, int | None]:
        first, last = after // DAY + 1, cutoff // DAY - 1
        return (0, None) if last < first else (last - first + 1, (first + 1) * DAY)


class FxWeek(MarketCalendar):
    """``"FX"``: Sunday 22:00 to Friday 22:00 UTC every week (no holidays, no daylight saving)."""

    name = FX_WEEK
    aligns_to_epoch = True

    def periods_before(self, instant: int) -> Iterator[Period]:
        week_open = _FX_WEEK_ORIGIN + (instant - 1 - _FX_WEEK_ORIGIN) // WEEK * WEEK
        while True:
            yield Period(week_open, week_open + _FX_WEEK_OPEN)
            week_open -= WEEK

    def session_closed_by(self, instant: int) -> Session:
        day = (instant - _FX_DAILY_CLOSE) // DAY
        while (day + 3) % 7 >= 5:  # 1970-01-01 was a Thursday: (day + 3) % 7 is Monday = 0
            day -= 1
        close = day * DAY + _FX_DAILY_CLOSE
        return Session(day, close - DAY, close)

    def sessions_closed_after(self, after: int, cutoff: int) -> tuple[int, int | None]:
        first, last = after // DAY + 1, self.session_closed_by(cutoff).day
        while first <= last and (first + 3) % 7 >= 5:  # to the first weekday
            first += 1
        if last < first:
            return 0, None
        return _weekdays(first, last), first * DAY + _FX_DAILY_CLOSE


def _weekdays(first: int, last: int) -> int:
    """Monday-Friday epoch days in ``first..last``."""
    weeks, rest = divmod(last - first + 1, 7)
    start = first + 7 * weeks
    return 5 * weeks + sum(1 for day in range(start, start + rest) if (day + 3) % 7 < 5)


_cache: dict[str, MarketCalendar] = {}
_cache_lock = threading.Lock()


def get_calendar(name: str) -> MarketCalendar:
    """The calendar called ``name`` (built once per process; :class:`UnknownCalendarError` for
    a name nobody knows)."""
    cached = _cache.get(name)
    if cached is not None:
        return cached
    with _cache_lock:
        if name not in _cache:
            _cache[name] = _build(check_calendar_name(name))
        return _cache[name]


def _build(name: str) -> MarketCalendar:
    if name == ALWAYS_OPEN:
        return AlwaysOpen()
    if name == FX_WEEK:
        return FxWeek()
    from market_pipeline.domain.exchange_sessions import ExchangeCalendar

    return ExchangeCalendar(name, start=CALENDAR_START, end=CALENDAR_END)


def check_calendar_name(name: object) -> str:
    """``name`` when it names a calendar, else :class:`UnknownCalendarError` saying what would."""
    if isinstance(name, str) and name in (ALWAYS_OPEN, FX_WEEK):
        return name
    from market_pipeline.domain.exchange_sessions import exchange_calendar_names

    known = exchange_calendar_names()
    if isinstance(name, str) and name in known:
        return name
    close = difflib.get_close_matches(str(name).upper(), sorted(known), n=3)
    hint = f" (did you mean {', '.join(close)}?)" if close else ""
    raise UnknownCalendarError(
        f"unknown calendar {name!r}{hint}: expected {ALWAYS_OPEN!r}, {FX_WEEK!r} or an "
        "exchange_calendars name such as XNYS, XLON, XTKS (exchange_calendars.get_calendar_names())"
    )
