"""When each bar is due: hand-picked market days, and properties checked against the library."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from market_pipeline.domain.bar_schedule import due_bar_open, due_bars_after
from market_pipeline.domain.calendars import CalendarOutOfBounds, get_calendar
from market_pipeline.domain.exchange_sessions import library_calendar
from market_pipeline.domain.timeframes import Timeframe
from market_pipeline.domain.timestamps import NaiveDatetimeError

TIMEFRAMES = ["1m", "5m", "15m", "30m", "1h", "4h", "7m", "1d"]
GRACES = [timedelta(0), timedelta(seconds=59), timedelta(minutes=15), timedelta(hours=2)]
INSTANTS = st.datetimes(
    min_value=datetime(2020, 1, 1),
    max_value=datetime(2027, 12, 31, 23, 59, 59),
    timezones=st.just(UTC),
)
MICROSECOND = timedelta(microseconds=1)
PROPERTY = settings(deadline=None, max_examples=300, database=None)
"""Bounded so the file runs in a few seconds; no example database is written to the checkout."""

# The library's own queries (the oracle below) trigger pandas 3's Pandas4Warning; only that one.
pytestmark = pytest.mark.filterwarnings(
    "ignore:(Series|DatetimeIndex).values returning an ndarray:DeprecationWarning"
)


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)


def due(calendar: str, timeframe: str, now: datetime, grace: int = 0) -> datetime:
    return due_bar_open(
        get_calendar(calendar), Timeframe.parse(timeframe), now, grace=timedelta(seconds=grace)
    )


# --- hand-picked days ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("now", "timeframe", "expected"),
    [
        # 2026-11-27, the day after Thanksgiving: closes 13:00 New York (18:00 UTC). The 1h bar
        # opened at 17:30 UTC straddles the close: complete at 18:00, not at 18:30.
        (utc(2026, 11, 27, 17, 59), "1h", utc(2026, 11, 27, 16, 30)),
        (utc(2026, 11, 27, 18, 0), "1h", utc(2026, 11, 27, 17, 30)),
        (utc(2026, 11, 27, 18, 0), "15m", utc(2026, 11, 27, 17, 45)),
        (utc(2026, 11, 27, 18, 0), "1d", utc(2026, 11, 27)),
        # ... and before its close, the newest daily session is Wednesday: Thursday is a holiday.
        (utc(2026, 11, 27, 17, 59), "1d", utc(2026, 11, 25)),
        # A weekend: Saturday shows Friday's last bar and Friday's session.
        (utc(2026, 11, 28, 12), "1h", utc(2026, 11, 27, 17, 30)),
        (utc(2026, 11, 28, 12), "1d", utc(2026, 11, 27)),
        # 2026-07-03, Independence Day observed, then the weekend: Thursday July 2 until Monday.
        (utc(2026, 7, 3, 15), "1h", utc(2026, 7, 2, 19, 30)),
        (utc(2026, 7, 6, 14, 29), "1h", utc(2026, 7, 2, 19, 30)),
        (utc(2026, 7, 6, 14, 30), "1h", utc(2026, 7, 6, 13, 30)),
        (utc(2026, 7, 6, 19, 59), "1d", utc(2026, 7, 2)),
        # 2026-12-25, Christmas: the early close of December 24 (13:00 New York, 18:00 UTC).
        (utc(2026, 12, 25, 18), "1h", utc(2026, 12, 24, 17, 30)),
        (utc(2026, 12, 25, 18), "1d", utc(2026, 12, 24)),
    ],
)
def test_equity_bars_on_early_closes_weekends_and_holidays(now, timeframe, expected):
    assert due("XNYS", timeframe, now) == expected


def test_a_london_listing_follows_london_sessions():
    # 2026-12-28 is a UK bank holiday (Boxing Day observed) but New York trades.
    assert due("XLON", "1d", utc(2026, 12, 29, 12)) == utc(2026, 12, 24)
    assert due("XNYS", "1d", utc(2026, 12, 29, 12)) == utc(2026, 12, 28)


def test_intraday_bars_restart_after_a_lunch_break():
    # Tokyo 2026-12-01: 00:00-02:30 and 03:30-06:30 UTC. The 2h bar opened at 02:00 is cut at
    # the break (complete at 02:30); the afternoon's first 2h bar opens at 03:30.
    assert due("XTKS", "2h", utc(2026, 12, 1, 2, 30)) == utc(2026, 12, 1, 2)
    assert due("XTKS", "2h", utc(2026, 12, 1, 5, 29)) == utc(2026, 12, 1, 2)
    assert due("XTKS", "2h", utc(2026, 12, 1, 5, 30)) == utc(2026, 12, 1, 3, 30)


def test_fx_opens_on_sunday_at_22_utc():
    # 2026-11-29 is a Sunday. One minute before the open, Friday's last minute is the newest.
    assert due("FX", "1m", utc(2026, 11, 29, 21, 59)) == utc(2026, 11, 27, 21, 59)
    assert due("FX", "1m", utc(2026, 11, 29, 22, 1)) == utc(2026, 11, 29, 22, 0)
    assert due("FX", "1h", utc(2026, 11, 29, 22, 1)) == utc(2026, 11, 27, 21)
    assert due("FX", "1d", utc(2026, 11, 29, 22, 1)) == utc(2026, 11, 27)


def test_an_fx_bar_cut_by_the_weekly_close_is_complete_at_the_close():
    assert due("FX", "4h", utc(2026, 11, 27, 22)) == utc(2026, 11, 27, 20)
    assert due("FX", "4h", utc(2026, 11, 27, 21, 59)) == utc(2026, 11, 27, 16)


def test_24_7_bars_are_due_every_timeframe_and_daily_at_utc_midnight():
    assert due("24/7", "1h", utc(2026, 1, 1, 0, 30)) == utc(2025, 12, 31, 23)
    assert due("24/7", "1d", utc(2026, 1, 1, 0, 0)) == utc(2025, 12, 31)
    assert due("24/7", "1d", utc(2025, 12, 31, 23, 59, 59)) == utc(2025, 12, 30)
    # 7m bars sit on UTC multiples of 7 minutes since the epoch, across midnight.
    assert due("24/7", "7m", utc(2026, 1, 2, 0, 5)) == utc(2026, 1, 1, 23, 55)


def test_grace_delays_when_a_bar_counts_as_due():
    assert due("XNYS", "1h", utc(2026, 11, 27, 18, 0), grace=60) == utc(2026, 11, 27, 16, 30)
    assert due("XNYS", "1h", utc(2026, 11, 27, 18, 1), grace=60) == utc(2026, 11, 27, 17, 30)
    assert due("24/7", "1m", utc(2026, 1, 1, 0, 1, 59), grace=60) == utc(2025, 12, 31, 23, 59)
    assert due("24/7", "1m", utc(2026, 1, 1, 0, 2, 0), grace=60) == utc(2026, 1, 1, 0, 0)


def test_a_negative_grace_and_a_naive_instant_are_refused():
    with pytest.raises(ValueError, match="grace must not be negative"):
        due("24/7", "1h", utc(2026, 1, 1), grace=-1)
    with pytest.raises(NaiveDatetimeError):
        due("24/7", "1h", datetime(2026, 1, 1))


def test_before_the_first_session_the_calendar_error_is_raised():
    with pytest.raises(CalendarOutOfBounds, match="'XNYS' covers 1990-01-02"):
        due("XNYS", "1h", utc(1989, 12, 29, 15))
    with pytest.raises(CalendarOutOfBounds):
        due("XNYS", "1h", utc(1990, 1, 2, 14, 31))  # the first bar is not complete yet


# --- counting due bars after the stored one -----------------------------------------------------


def test_due_bars_after_counts_across_a_holiday_and_an_early_close():
    # Stored: 2026-11-25 19:30 UTC. Due by Monday 16:00 UTC: 20:30 (cut at 21:00) on Wednesday,
    # four on Friday (the last one cut at 18:00), Monday's 14:30.
    count, oldest_complete = due_bars_after(
        get_calendar("XNYS"),
        Timeframe.parse("1h"),
        utc(2026, 11, 25, 19, 30),
        utc(2026, 11, 30, 16),
    )

    assert (count, oldest_complete) == (6, utc(2026, 11, 25, 21))


def test_due_bars_after_counts_daily_sessions():
    count, oldest_complete = due_bars_after(
        get_calendar("XNYS"), Timeframe.parse("1d"), utc(2026, 11, 20), utc(2026, 11, 30, 16)
    )

    assert (count, oldest_complete) == (4, utc(2026, 11, 23, 21))


def test_nothing_is_due_after_the_newest_due_bar():
    calendar, timeframe, now = get_calendar("FX"), Timeframe.parse("5m"), utc(2026, 11, 28)

    assert due_bars_after(calendar, timeframe, due_bar_open(calendar, timeframe, now), now) == (
        0,
        None,
    )


# --- properties, against exchange_calendars itself ----------------------------------------------

LIBRARY = {
    name: library_calendar(name, date(2019, 1, 1), date(2028, 12, 31)) for name in ("XNYS", "XLON")
}
"""The library's own calendars (built with its Pandas4Warning filtered), the oracle below."""


def _library_bar(name: str, step: timedelta, bar_open: datetime) -> tuple[pd.Timestamp, datetime]:
    """The library's session holding ``bar_open`` and that bar's completion time, checking the
    bar starts a whole number of timeframes after the session open."""
    library = LIBRARY[name]
    session = library.minute_to_session(pd.Timestamp(bar_open), direction="none")
    session_open = library.session_open(session).to_pydatetime()
    session_close = library.session_close(session).to_pydatetime()
    assert session_open <= bar_open < session_close
    assert (bar_open - session_open) % step == timedelta(0), "not aligned to the session open"
    return session, min(bar_open + step, session_close)


def _library_next_bar_complete(name: str, step: timedelta, bar_open: datetime) -> datetime:
    library = LIBRARY[name]
    session, _ = _library_bar(name, step, bar_open)
    session_close = library.session_close(session).to_pydatetime()
    if bar_open + step < session_close:
        return min(bar_open + 2 * step, session_close)
    following = library.next_session(session)
    following_open = library.session_open(following).to_pydatetime()
    return min(following_open + step, library.session_close(following).to_pydatetime())


@PROPERTY
@given(
    now=INSTANTS,
    name=st.sampled_from(sorted(LIBRARY)),
    code=st.sampled_from([tf for tf in TIMEFRAMES if tf != "1d"]),
    grace=st.sampled_from(GRACES),
)
def test_the_due_intraday_bar_is_the_newest_complete_one_by_the_library(now, name, code, grace):
    step = Timeframe.parse(code).duration
    bar_open = due(name, code, now, grace=int(grace.total_seconds()))

    _, complete_at = _library_bar(name, step, bar_open)
    assert complete_at <= now - grace
    assert _library_next_bar_complete(name, step, bar_open) > now - grace


@PROPERTY
@given(now=INSTANTS, name=st.sampled_from(sorted(LIBRARY)), grace=st.sampled_from(GRACES))
def test_the_due_daily_bar_is_the_newest_closed_session_by_the_library(now, name, grace):
    library = LIBRARY[name]
    bar_open = due(name, "1d", now, grace=int(grace.total_seconds()))

    assert bar_open.time() == datetime.min.time()
    session = pd.Timestamp(bar_open.date())
    assert library.is_session(session)
    assert library.session_close(session).to_pydatetime() <= now - grace
    assert library.session_close(library.next_session(session)).to_pydatetime() > now - grace


def _fx_week_close(instant: datetime) -> datetime | None:
    """The Friday 22:00 UTC closing the FX week ``instant`` trades in; None on the weekend."""
    days_to_friday = (4 - instant.weekday()) % 7
    friday = (instant + timedelta(days=days_to_friday)).replace(hour=22, minute=0, second=0)
    if instant.weekday() == 4 and instant >= friday:
        return None  # Friday after the close
    if instant.weekday() == 5 or (instant.weekday() == 6 and instant.hour < 22):
        return None
    return friday  # from Sunday night, the coming Friday


def _brute_force_fx_due(step: timedelta, cutoff: datetime) -> datetime:
    """Walk back over UTC multiples of ``step`` to the newest FX bar complete by ``cutoff``."""
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    start = epoch + (cutoff - epoch) // step * step
    while True:
        close = _fx_week_close(start)
        if close is not None and min(start + step, close) <= cutoff:
            return start
        start -= step


@PROPERTY
@given(
    now=INSTANTS,
    code=st.sampled_from([tf for tf in TIMEFRAMES if tf != "1d"]),
    grace=st.sampled_from(GRACES),
)
def test_the_due_fx_bar_matches_a_walk_over_the_week(now, code, grace):
    step = Timeframe.parse(code).duration

    assert due("FX", code, now, grace=int(grace.total_seconds())) == _brute_force_fx_due(
        step, now - grace
    )


@PROPERTY
@given(now=INSTANTS, code=st.sampled_from(TIMEFRAMES), grace=st.sampled_from(GRACES))
def test_the_due_24_7_bar_is_the_one_that_ended_last(now, code, grace):
    step = Timeframe.parse(code).duration
    epoch = datetime(1970, 1, 1, tzinfo=UTC)

    assert due("24/7", code, now, grace=int(grace.total_seconds())) == (
        epoch + ((now - grace - epoch) // step - 1) * step
    )


@settings(deadline=None, max_examples=100, database=None)
@given(
    stored=INSTANTS,
    elapsed=st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=4)),
    name=st.sampled_from(["XNYS", "FX", "24/7"]),
    code=st.sampled_from(TIMEFRAMES),
)
def test_counting_due_bars_agrees_with_stepping_back_bar_by_bar(stored, elapsed, name, code):
    calendar, timeframe = get_calendar(name), Timeframe.parse(code)
    last_bar = due_bar_open(calendar, timeframe, stored)
    now = stored + elapsed

    count, oldest_complete = due_bars_after(calendar, timeframe, last_bar, now)

    # At a bar's open instant the bar is not complete and its predecessor is: stepping back
    # through open instants visits every bar once.
    missing, cursor = [], now
    while (newest := due_bar_open(calendar, timeframe, cursor)) > last_bar:
        missing.append(newest)
        cursor = newest
    assert count == len(missing)
    if not missing:
        assert oldest_complete is None
    else:  # the oldest missing bar completes at oldest_complete, not a microsecond earlier
        assert due_bar_open(calendar, timeframe, oldest_complete) == missing[-1]
        assert due_bar_open(calendar, timeframe, oldest_complete - MICROSECOND) == last_bar
