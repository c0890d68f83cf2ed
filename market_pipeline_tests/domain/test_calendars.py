"""Market calendars by name: built-in 24/7 and FX weeks, exchange calendars from the library."""

from __future__ import annotations

import subprocess
import sys
import warnings
from datetime import UTC, date, datetime
from itertools import islice

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from market_pipeline.domain.calendars import (
    DEFAULT_CALENDARS,
    CalendarOutOfBounds,
    Period,
    Session,
    UnknownCalendarError,
    check_calendar_name,
    get_calendar,
    to_datetime,
    to_seconds,
)
from market_pipeline.domain.exchange_sessions import ExchangeCalendar
from market_pipeline.domain.market_calendar import MarketCalendar


def s(*parts: int) -> int:
    return to_seconds(datetime(*parts, tzinfo=UTC))


def test_defaults_per_asset_class():
    assert DEFAULT_CALENDARS == {"equity": "XNYS", "crypto": "24/7", "fx": "FX"}


def test_each_name_is_built_once_per_process():
    assert get_calendar("XNYS") is get_calendar("XNYS")
    assert get_calendar("FX") is get_calendar("FX")


@pytest.mark.parametrize("name", ["24/7", "FX", "XNYS", "XLON", "XTKS", "NYSE"])
def test_known_names_are_accepted(name):
    assert check_calendar_name(name) == name


def test_an_unknown_name_is_refused_with_the_closest_names_and_the_kinds_accepted():
    with pytest.raises(UnknownCalendarError) as info:
        check_calendar_name("XNYC")

    message = str(info.value)
    assert "'XNYC'" in message
    assert "did you mean XNYS" in message
    assert "'24/7', 'FX' or an exchange_calendars name" in message
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize("name", ["24/5x", "", None, 7])
def test_names_that_are_not_calendars_are_refused(name):
    with pytest.raises(UnknownCalendarError):
        check_calendar_name(name)


def test_the_library_is_imported_only_when_an_exchange_calendar_is_used():
    code = (
        "import sys\n"
        "from market_pipeline.domain import bar_schedule, calendars\n"
        "calendars.get_calendar('24/7'); calendars.get_calendar('FX')\n"
        "assert 'exchange_calendars' not in sys.modules, 'imported too early'\n"
        "calendars.get_calendar('XNYS')\n"
        "assert 'exchange_calendars' in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


# --- 24/7 and FX --------------------------------------------------------------------------------


def test_24_7_is_one_endless_period_and_utc_day_sessions():
    always = get_calendar("24/7")

    (period,) = always.periods_before(s(2026, 1, 1, 12))
    assert period.open < s(1900, 1, 1) and period.close > s(2100, 1, 1)
    assert always.session_closed_by(s(2026, 1, 1, 0, 0)) == Session(
        s(2025, 12, 31) // 86400, s(2025, 12, 31), s(2026, 1, 1)
    )


def test_fx_weeks_run_from_sunday_22_to_friday_22_utc():
    fx = get_calendar("FX")

    # 2026-11-29 is a Sunday.
    assert next(fx.periods_before(s(2026, 11, 29, 22, 0, 1))) == Period(
        s(2026, 11, 29, 22), s(2026, 12, 4, 22)
    )
    before_open = list(islice(fx.periods_before(s(2026, 11, 29, 22)), 2))
    assert before_open == [
        Period(s(2026, 11, 22, 22), s(2026, 11, 27, 22)),
        Period(s(2026, 11, 15, 22), s(2026, 11, 20, 22)),
    ]


@pytest.mark.parametrize(
    ("instant", "session_date"),
    [
        ((2026, 11, 30, 22), date(2026, 11, 30)),  # Monday's session closes at 22:00
        ((2026, 11, 30, 21, 59), date(2026, 11, 27)),  # before it: Friday's
        ((2026, 11, 28, 12), date(2026, 11, 27)),  # Saturday
        ((2026, 11, 29, 23), date(2026, 11, 27)),  # Sunday night
        ((2026, 12, 4, 22), date(2026, 12, 4)),  # Friday at the week's close
    ],
)
def test_fx_daily_sessions_are_monday_to_friday_closing_at_22_utc(instant, session_date):
    session = get_calendar("FX").session_closed_by(s(*instant))

    assert to_datetime(session.day * 86400).date() == session_date
    assert to_datetime(session.close) == datetime(*session_date.timetuple()[:3], 22, tzinfo=UTC)
    assert session.close - session.open == 86400


# --- exchange calendars -------------------------------------------------------------------------


def test_an_early_close_shortens_the_session():
    xnys = get_calendar("XNYS")

    # The day after Thanksgiving 2026 closes at 13:00 New York (18:00 UTC).
    assert next(xnys.periods_before(s(2026, 11, 27, 23))) == Period(
        s(2026, 11, 27, 14, 30), s(2026, 11, 27, 18)
    )


def test_holidays_and_weekends_have_no_session():
    xnys = get_calendar("XNYS")

    # 2026-07-03 (Independence Day observed), then the weekend: Thursday's session is newest.
    session = xnys.session_closed_by(s(2026, 7, 5, 23))
    assert to_datetime(session.day * 86400).date() == date(2026, 7, 2)
    assert to_datetime(session.close) == datetime(2026, 7, 2, 20, tzinfo=UTC)


def test_a_lunch_break_splits_the_session_into_two_periods():
    xtks = get_calendar("XTKS")

    # Tokyo 2026-12-01: 09:00-11:30 and 12:30-15:30 local (UTC+9).
    afternoon, morning = islice(xtks.periods_before(s(2026, 12, 1, 7)), 2)
    assert morning == Period(s(2026, 12, 1, 0), s(2026, 12, 1, 2, 30))
    assert afternoon == Period(s(2026, 12, 1, 3, 30), s(2026, 12, 1, 6, 30))


def test_an_exchange_whose_rules_start_later_is_built_from_its_own_first_date():
    xtks = get_calendar("XTKS")

    assert to_datetime(xtks.first).date() == date(1997, 1, 6)
    with pytest.raises(CalendarOutOfBounds):
        xtks.session_closed_by(s(1996, 6, 3))


def test_an_instant_outside_the_bounds_is_a_domain_error_naming_calendar_instant_and_bounds():
    xnys = get_calendar("XNYS")

    with pytest.raises(CalendarOutOfBounds) as info:
        next(xnys.periods_before(s(1985, 3, 4, 15)))

    message = str(info.value)
    assert "'XNYS'" in message
    assert "1985-03-04T15:00:00Z" in message
    assert "1990-01-02T14:30:00Z to 2035-12-31T21:00:00Z" in message
    assert isinstance(info.value, ValueError)
    with pytest.raises(CalendarOutOfBounds):
        xnys.session_closed_by(s(2036, 1, 2))


def test_building_a_calendar_lets_no_pandas_deprecation_warning_through():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        # Dates of their own, so that the library's own cache cannot hide the build.
        ExchangeCalendar("XHEL", start=date(2001, 2, 3), end=date(2027, 4, 5))

    assert [w for w in caught if issubclass(w.category, DeprecationWarning)] == []


@settings(max_examples=300, deadline=None)
@given(
    name=st.sampled_from(["24/7", "FX", "XNYS", "XTKS"]),
    cutoff=st.integers(1_262_304_000, 1_830_000_000),  # 2010-2027
    back=st.integers(0, 90 * 86_400),
)
def test_counting_closed_sessions_agrees_with_stepping_back_one_by_one(name, cutoff, back):
    calendar = get_calendar(name)
    stepped = MarketCalendar.sessions_closed_after(calendar, cutoff - back, cutoff)
    assert calendar.sessions_closed_after(cutoff - back, cutoff) == stepped
