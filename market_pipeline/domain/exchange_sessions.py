"""Exchange calendars from the ``exchange_calendars`` library, as :class:`MarketCalendar`.

The library is imported here, on first use (about 0.2 s on top of pandas), and each calendar
is turned once into plain sorted lists of epoch seconds, so that a query is a binary search and
never touches pandas. A session with a lunch break (XTKS, XHKG) is two trading periods,
``[open, break_start)`` and ``[break_end, close)``; intraday bars restart at the break's end.

Under pandas 3 the library triggers ``Pandas4Warning`` (a ``DeprecationWarning``) while it
builds a calendar; that one warning is silenced around the build, nothing else (by category and
message; ``catch_warnings`` is process-wide, so for the build's fraction of a second that warning
is silenced in other threads too).
"""

from __future__ import annotations

import importlib
import warnings
from bisect import bisect_left, bisect_right
from collections.abc import Iterator
from datetime import date
from functools import lru_cache
from typing import Any

import pandas as pd

from market_pipeline.domain.market_calendar import (
    DAY,
    CalendarOutOfBounds,
    MarketCalendar,
    Period,
    Session,
)

_NS = 1_000_000_000
_PANDAS4_VALUES = r"(Series|DatetimeIndex)\.values returning an ndarray that drops timezone"


@lru_cache(maxsize=1)
def exchange_calendar_names() -> frozenset[str]:
    """Every calendar name exchange_calendars knows, aliases included."""
    library: Any = importlib.import_module("exchange_calendars")
    return frozenset(library.get_calendar_names(include_aliases=True))


class ExchangeCalendar(MarketCalendar):
    """An exchange's sessions (holidays and early closes included) between ``start`` and
    ``end``, or the library's own bounds for that exchange when they are narrower."""

    aligns_to_epoch = False

    def __init__(self, name: str, *, start: date, end: date) -> None:
        self.name = name
        library = library_calendar(name, start, end)
        self.timezone = str(library.tz)
        opens = [int(ns) // _NS for ns in library.opens.astype("int64")]
        closes = [int(ns) // _NS for ns in library.closes.astype("int64")]
        breaks = zip(_seconds(library.break_starts), _seconds(library.break_ends), strict=True)
        self._period_opens: list[int] = []
        self._period_closes: list[int] = []
        for open_, close, (break_start, break_end) in zip(opens, closes, breaks, strict=True):
            if break_start is not None and break_end is not None:
                self._period_opens += [open_, break_end]
                self._period_closes += [break_start, close]
            else:
                self._period_opens.append(open_)
                self._period_closes.append(close)
        self._session_days = [int(ns) // (_NS * DAY) for ns in library.opens.index.asi8]
        self._session_opens = opens
        self._session_closes = closes
        self.first = opens[0]
        self.last = closes[-1]

    @property
    def session_days(self) -> tuple[int, int]:
        """The epoch day numbers of the first and the last session."""
        return self._session_days[0], self._session_days[-1]

    def sessions_in(self, first_day: int, last_day: int) -> tuple[list[int], list[int], list[int]]:
        """``(days, opens, closes)`` of the sessions dated ``first_day..last_day`` (epoch day
        numbers; opens and closes in epoch seconds, early closes included)."""
        lo = bisect_left(self._session_days, first_day)
        hi = bisect_right(self._session_days, last_day)
        return (
            self._session_days[lo:hi],
            self._session_opens[lo:hi],
            self._session_closes[lo:hi],
        )

    def sessions_closed_after(self, after: int, cutoff: int) -> tuple[int, int | None]:
        """Two binary searches. A stored bar older than the first session counts every session
        from the first (a lower bound: the pair is late either way)."""
        self._check(cutoff)
        newest = bisect_right(self._session_closes, cutoff) - 1
        oldest = bisect_right(self._session_days, after // DAY)
        if newest < oldest:
            return 0, None
        return newest - oldest + 1, self._session_closes[oldest]

    def _check(self, instant: int) -> None:
        if not self.first <= instant <= self.last:
            raise CalendarOutOfBounds(self.name, instant, self.first, self.last)

    def periods_before(self, instant: int) -> Iterator[Period]:
        self._check(instant)
        index = bisect_left(self._period_opens, instant) - 1
        while index >= 0:
            yield Period(self._period_opens[index], self._period_closes[index])
            index -= 1
        raise CalendarOutOfBounds(self.name, instant, self.first, self.last)

    def session_closed_by(self, instant: int) -> Session:
        self._check(instant)
        index = bisect_right(self._session_closes, instant) - 1
        if index < 0:
            raise CalendarOutOfBounds(self.name, instant, self._session_closes[0], self.last)
        return Session(
            self._session_days[index], self._session_opens[index], self._session_closes[index]
        )


def library_calendar(name: str, start: date, end: date) -> Any:
    """The library's own calendar for ``start..end``, narrowed to the exchange's bounds (the
    library refuses dates before, e.g., 1997 for XTKS), built without its Pandas4Warning."""
    library: Any = importlib.import_module("exchange_calendars")
    pandas4 = getattr(pd.errors, "Pandas4Warning", DeprecationWarning)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_PANDAS4_VALUES, category=pandas4)
        try:
            return library.get_calendar(name, start=start.isoformat(), end=end.isoformat())
        except ValueError:  # outside the exchange's own bounds: narrow to them
            kind = type(library.get_calendar(name))
        first = max(pd.Timestamp(start), kind.bound_min() or pd.Timestamp(start))
        last = min(pd.Timestamp(end), kind.bound_max() or pd.Timestamp(end))
        return library.get_calendar(name, start=first, end=last)


def _seconds(series: pd.Series) -> list[int | None]:
    """Epoch seconds of a UTC datetime series; None where it is NaT (no lunch break)."""
    values = series.astype("int64").tolist()
    missing = series.isna().tolist()
    return [None if gone else int(ns) // _NS for ns, gone in zip(values, missing, strict=True)]
