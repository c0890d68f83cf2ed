"""The interface of a market calendar, its two record types and its bounds error.

Apart from :mod:`market_pipeline.domain.calendars` (which names and builds calendars) so that
the implementations, among them :mod:`market_pipeline.domain.exchange_sessions`, depend on this
module only. Instants are integer seconds since the epoch (UTC); see the calendars module for
what trading periods and daily sessions are.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import NamedTuple

DAY = 86_400
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class CalendarOutOfBounds(ValueError):
    """An instant outside the dates a calendar covers; the message names calendar, instant and
    bounds. Raised instead of the library's ``MinuteOutOfBounds``, so that callers catch one
    domain error."""

    def __init__(self, calendar: str, instant: int, first: int, last: int) -> None:
        self.calendar, self.instant, self.first, self.last = calendar, instant, first, last
        super().__init__(
            f"calendar {calendar!r} covers {utc_text(first)} to {utc_text(last)}; "
            f"{utc_text(instant)} is outside it"
        )


class Period(NamedTuple):
    """A stretch of trading, ``[open, close)`` in epoch seconds."""

    open: int
    close: int


class Session(NamedTuple):
    """A daily session: its date (``day``, epoch days: the daily bar's stamp is ``day * DAY``)
    and its ``[open, close)`` in epoch seconds."""

    day: int
    open: int
    close: int


class MarketCalendar(ABC):
    """When one market trades (see :mod:`market_pipeline.domain.calendars`)."""

    name: str
    aligns_to_epoch: bool
    timezone: str = "UTC"
    """The zone whose local date names a session (the exchange's; UTC for 24/7 and FX)."""

    @abstractmethod
    def periods_before(self, instant: int) -> Iterator[Period]:
        """Trading periods that opened before ``instant``, newest first; raises
        :class:`CalendarOutOfBounds` when ``instant`` or a period needed lies outside the
        calendar's bounds."""

    @abstractmethod
    def session_closed_by(self, instant: int) -> Session:
        """The newest daily session whose close is at or before ``instant``."""

    def sessions_closed_after(self, after: int, cutoff: int) -> tuple[int, int | None]:
        """How many sessions dated after the instant ``after`` (their date's 00:00 UTC is
        later) closed by ``cutoff``, and the close of the oldest of them (None: none). Steps
        back one session at a time; calendars with a session table override it."""
        count, oldest_close = 0, None
        session = self.session_closed_by(cutoff)
        while session.day * DAY > after:
            count, oldest_close = count + 1, session.close
            session = self.session_closed_by(session.close - 1)
        return count, oldest_close


def to_seconds(instant: datetime) -> int:
    """Whole seconds since the epoch, rounded down (exact: no float), of an aware datetime."""
    return (instant - _EPOCH) // timedelta(seconds=1)


def to_datetime(seconds: int) -> datetime:
    return _EPOCH + timedelta(seconds=seconds)


def utc_text(seconds: int) -> str:
    return to_datetime(seconds).isoformat().replace("+00:00", "Z")
