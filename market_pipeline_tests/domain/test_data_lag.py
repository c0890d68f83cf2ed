"""Data lag of a pair: current, late or missing, by the market's calendar (pure function)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from market_pipeline.domain.calendars import CalendarOutOfBounds, get_calendar
from market_pipeline.domain.data_lag import DATA_STATUSES, DataLag, data_lag
from market_pipeline.domain.timeframes import Timeframe
from market_pipeline.domain.timestamps import NaiveDatetimeError

H1, D1 = Timeframe.parse("1h"), Timeframe.parse("1d")


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)


def test_the_statuses():
    assert DATA_STATUSES == ("current", "late", "missing")


def test_friday_last_bar_is_current_all_weekend():
    # 2026-11-27 closes early at 18:00 UTC; its last 1h bar opens at 17:30.
    lag = data_lag(get_calendar("XNYS"), H1, utc(2026, 11, 27, 17, 30), utc(2026, 11, 29, 20))

    assert lag == DataLag(
        last_bar_at=utc(2026, 11, 27, 17, 30),
        expected_last_bar_at=utc(2026, 11, 27, 17, 30),
        bars_behind=0,
        data_lag_seconds=0.0,
        data_status="current",
    )


def test_missing_bars_make_the_pair_late_counting_only_market_time():
    # Stored Wednesday's 19:30 bar; at Monday 16:00 UTC six bars are due after it, the oldest
    # (20:30, cut at 21:00) since Wednesday 21:00 UTC, across Thanksgiving and a weekend.
    now = utc(2026, 11, 30, 16)

    lag = data_lag(get_calendar("XNYS"), H1, utc(2026, 11, 25, 19, 30), now)

    assert lag.data_status == "late"
    assert lag.bars_behind == 6
    assert lag.expected_last_bar_at == utc(2026, 11, 30, 14, 30)
    assert lag.data_lag_seconds == (now - utc(2026, 11, 25, 21)).total_seconds()


def test_grace_postpones_lateness_and_counts_in_the_lag():
    calendar, stored = get_calendar("24/7"), utc(2026, 1, 1, 10)

    on_time = data_lag(calendar, H1, stored, utc(2026, 1, 1, 12, 0, 30), grace=timedelta(minutes=1))
    late = data_lag(calendar, H1, stored, utc(2026, 1, 1, 12, 1, 30), grace=timedelta(minutes=1))

    assert (on_time.data_status, on_time.bars_behind) == ("current", 0)
    assert (late.data_status, late.bars_behind, late.data_lag_seconds) == ("late", 1, 30.0)


def test_a_pair_with_no_bar_is_missing():
    lag = data_lag(get_calendar("FX"), D1, None, utc(2026, 11, 30, 23))

    assert lag == DataLag(None, utc(2026, 11, 30), None, None, "missing")


def test_a_stored_bar_newer_than_expected_is_current():
    lag = data_lag(get_calendar("24/7"), D1, utc(2026, 1, 2), utc(2026, 1, 2, 12))

    assert (lag.data_status, lag.bars_behind, lag.expected_last_bar_at) == (
        "current",
        0,
        utc(2026, 1, 1),
    )


def test_naive_instants_are_refused():
    with pytest.raises(NaiveDatetimeError):
        data_lag(get_calendar("24/7"), H1, datetime(2026, 1, 1), utc(2026, 1, 2))
    with pytest.raises(NaiveDatetimeError):
        data_lag(get_calendar("24/7"), H1, None, datetime(2026, 1, 2))


def test_outside_the_calendar_the_domain_error_is_raised():
    with pytest.raises(CalendarOutOfBounds):
        data_lag(get_calendar("XNYS"), D1, utc(2026, 11, 2), utc(2040, 1, 2))


def test_a_stored_bar_older_than_the_calendar_is_late_counting_from_its_first_session():
    lag = data_lag(get_calendar("XNYS"), D1, utc(1980, 1, 2), utc(2026, 11, 30))
    assert lag.data_status == "late"
    # Every XNYS session from 2 January 1990 to Friday 27 November 2026: a lower bound.
    assert lag.bars_behind == 9295


def test_default_tolerances_absorb_the_schedules_cadence():
    from market_pipeline.domain.lag_rules import default_tolerance_seconds

    # Timeframes under 1h are refreshed every 15 minutes, the others once a day.
    assert {
        code: default_tolerance_seconds(Timeframe.parse(code))
        for code in ("1m", "5m", "15m", "1h", "4h", "1d")
    } == {
        "1m": 960,
        "5m": 1200,
        "15m": 1800,
        "1h": 90000,
        "4h": 90000,
        "1d": 90000,
    }
