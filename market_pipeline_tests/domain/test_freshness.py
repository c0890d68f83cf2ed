"""Freshness status thresholds and the scheduler health rule (pure functions)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from market_pipeline.domain.freshness import (
    FRESH_SECONDS,
    NO_EXECUTION_REASON,
    STALE_SECONDS,
    count_by_status,
    freshness_cutoffs,
    freshness_status,
    health_status,
    staleness_seconds,
)
from market_pipeline.domain.timestamps import NaiveDatetimeError

NOW = datetime(2024, 11, 13, 19, 30, tzinfo=UTC)


def ago(seconds: float) -> datetime:
    return NOW - timedelta(seconds=seconds)


def test_thresholds_are_the_spec_values():
    assert FRESH_SECONDS == 60 * 60
    assert STALE_SECONDS == 24 * 60 * 60


@pytest.mark.parametrize(
    ("age", "expected"),
    [
        (0, "fresh"),
        (1200, "fresh"),
        (3599.999, "fresh"),
        (3599.999999, "fresh"),
        (3600, "aging"),
        (3600.000001, "aging"),
        (86399, "aging"),
        (86399.999999, "aging"),
        (86400, "stale"),
        (86400.000001, "stale"),
        (10 * 86400, "stale"),
    ],
)
def test_status_boundaries(age, expected):
    assert freshness_status(ago(age), 250, NOW) == expected


def test_never_computed_is_missing():
    assert freshness_status(None, 0, NOW) == "missing"
    assert freshness_status(None, 10, NOW) == "missing"


def test_zero_data_points_is_missing_even_when_recent():
    assert freshness_status(ago(10), 0, NOW) == "missing"


def test_future_computation_counts_as_fresh_with_zero_staleness():
    future = NOW + timedelta(minutes=5)
    assert staleness_seconds(future, NOW) == 0.0
    assert freshness_status(future, 1, NOW) == "fresh"


def test_staleness_seconds_is_exact_to_the_microsecond():
    assert staleness_seconds(ago(3599.999), NOW) == pytest.approx(3599.999, abs=1e-6)
    assert staleness_seconds(None, NOW) is None


def test_other_timezones_are_compared_as_instants():
    new_york = timezone(timedelta(hours=-5))
    same_instant = (NOW - timedelta(hours=2)).astimezone(new_york)
    assert staleness_seconds(same_instant, NOW) == 7200.0
    assert freshness_status(same_instant, 1, NOW.astimezone(new_york)) == "aging"


def test_naive_datetimes_are_refused():
    with pytest.raises(NaiveDatetimeError):
        freshness_status(datetime(2024, 11, 13, 19, 0), 1, NOW)
    with pytest.raises(NaiveDatetimeError):
        staleness_seconds(ago(5), datetime(2024, 11, 13, 19, 30))


def test_negative_or_non_integer_counts_are_refused():
    with pytest.raises(ValueError):
        freshness_status(ago(5), -1, NOW)
    with pytest.raises(TypeError):
        freshness_status(ago(5), 2.5, NOW)


@pytest.mark.parametrize("age", [0, 3599.999999, 3600, 86399.999999, 86400, 90000])
def test_cutoffs_classify_like_the_status_function(age):
    fresh_after, stale_at_or_before = freshness_cutoffs(NOW)
    last = ago(age)
    if last > fresh_after:
        via_cutoffs = "fresh"
    elif last > stale_at_or_before:
        via_cutoffs = "aging"
    else:
        via_cutoffs = "stale"
    assert via_cutoffs == freshness_status(last, 1, NOW)


def test_count_by_status_lists_every_status():
    assert count_by_status(["fresh", "stale", "fresh"]) == {
        "fresh": 2,
        "aging": 0,
        "stale": 1,
        "missing": 0,
    }
    with pytest.raises(ValueError):
        count_by_status(["rotten"])


# -- health ------------------------------------------------------------------------------------


def health(**overrides):
    args = {
        "last_execution_status": "completed",
        "stale_count": 0,
        "missing_count": 0,
        "open_failures_count": 0,
    }
    args.update(overrides)
    return health_status(**args)


def test_all_good_is_healthy_without_reasons():
    assert health() == ("healthy", [])


def test_running_last_execution_alone_is_healthy():
    assert health(last_execution_status="running") == ("healthy", [])


def test_failed_last_execution_degrades():
    status, reasons = health(last_execution_status="failed")
    assert status == "degraded"
    assert reasons == ["last execution failed"]


def test_no_execution_at_all_degrades():
    status, reasons = health(last_execution_status=None)
    assert status == "degraded"
    assert reasons == [NO_EXECUTION_REASON]


@pytest.mark.parametrize("field", ["stale_count", "missing_count", "open_failures_count"])
def test_each_problem_count_degrades_and_is_named(field):
    status, reasons = health(**{field: 2})
    assert status == "degraded"
    assert len(reasons) == 1
    assert reasons[0].startswith("2 ")


def test_all_reasons_are_listed_in_order():
    status, reasons = health(
        last_execution_status="failed", stale_count=1, missing_count=3, open_failures_count=1
    )
    assert status == "degraded"
    assert reasons[0] == "last execution failed"
    assert "stale" in reasons[1]
    assert "missing" in reasons[2]
    assert "unresolved" in reasons[3]


def test_negative_counts_are_refused():
    with pytest.raises(ValueError):
        health(stale_count=-1)
