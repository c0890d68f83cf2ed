"""The typed contract: Python form keeps precision, JSON form is the spec's."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import pytest
from pydantic import ValidationError

from market_pipeline.domain.reports import (
    MAX_LIMIT,
    FreshnessItem,
    PairsByStatus,
    SchedulerHealth,
)

AT = datetime(2024, 11, 13, 19, 30, 0, 987654, tzinfo=UTC)


def _item(**changes) -> FreshnessItem:
    fields = {
        "symbol": "AAPL",
        "timeframe": "1d",
        "last_computed_at": AT - timedelta(seconds=1200.75),
        "staleness_seconds": 1200.75,
        "status": "fresh",
        "data_point_count": 250,
    }
    return FreshnessItem(**{**fields, **changes})


def test_json_has_whole_second_z_timestamps_and_floored_staleness():
    item = _item()
    assert item.staleness_seconds == 1200.75  # Python keeps the precision
    assert item.model_dump(mode="json") == {
        "symbol": "AAPL",
        "timeframe": "1d",
        "last_computed_at": "2024-11-13T19:10:00Z",
        "staleness_seconds": 1200,
        "status": "fresh",
        "data_point_count": 250,
        # data-time additions, null when the store knows no calendars
        "last_bar_at": None,
        "expected_last_bar_at": None,
        "bars_behind": None,
        "data_lag_seconds": None,
        "data_status": None,
    }


def test_other_zones_are_kept_in_utc_and_naive_datetimes_are_refused():
    plus_two = timezone(timedelta(hours=2))
    item = _item(last_computed_at=datetime(2024, 11, 13, 21, 0, tzinfo=plus_two))
    assert item.last_computed_at == datetime(2024, 11, 13, 19, 0, tzinfo=UTC)
    assert item.last_computed_at.tzinfo is UTC
    with pytest.raises(ValidationError, match="no timezone"):
        _item(last_computed_at=datetime(2024, 11, 13, 19, 0))


@pytest.mark.parametrize(
    "changes",
    [{"status": "unknown"}, {"data_point_count": -1}, {"staleness_seconds": -0.5}, {"extra": 1}],
)
def test_values_outside_the_contract_are_refused(changes):
    with pytest.raises(ValidationError):
        _item(**changes)


def test_a_status_list_holds_at_most_the_largest_limit():
    many = [_item()] * (MAX_LIMIT + 1)
    with pytest.raises(ValidationError, match=str(MAX_LIMIT)):
        PairsByStatus(fresh=many, aging=[], stale=[], missing=[])


def test_the_health_json_keeps_the_spec_field_order():
    summary = {
        "fresh_count": 0,
        "aging_count": 0,
        "stale_count": 0,
        "missing_count": 0,
        "total_monitored": 0,
    }
    health = SchedulerHealth(
        status="degraded",
        timestamp=AT,
        last_execution=None,
        stale_features_count=0,
        recent_failures=[],
        total_symbols_monitored=0,
        reasons=["no execution recorded yet"],
        missing_features_count=0,
        open_failures_count=0,
        freshness_summary=summary,
        alerts=[],
    )
    text = json.dumps(health.model_dump(mode="json"))
    assert list(json.loads(text)) == [
        "status",
        "timestamp",
        "last_execution",
        "stale_features_count",
        "recent_failures",
        "total_symbols_monitored",
        "reasons",
        "missing_features_count",
        "open_failures_count",
        "freshness_summary",
        "alerts",
        "data_summary",
        "late_pairs",
    ]
    assert '"timestamp": "2024-11-13T19:30:00Z"' in text
