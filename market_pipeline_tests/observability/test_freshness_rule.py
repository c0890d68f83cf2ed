"""One freshness rule: the Python rule and every SQL path rate the same rows the same way.

The rule (fresh < 1 h <= aging < 24 h <= stale; missing when never computed or without data)
lives in ``domain.freshness``; the store applies it in Python when it writes a row and in SQL
when it reads or refreshes many. Each path is checked here against the Python rule, on the
boundaries, on SQLite and PostgreSQL.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from market_pipeline.database.tables import feature_freshness
from market_pipeline.domain.freshness import FRESHNESS_STATUSES, freshness_status
from market_pipeline.observability.store import ObservabilityStore

NOW = datetime(2026, 11, 27, 18, 0, tzinfo=UTC)  # the day after Thanksgiving, 13:00 New York

# (symbol, age in seconds or None when never computed, data points)
ROWS = [
    ("ZERO", 0.0, 10),
    ("JUST_FRESH", 3599.999, 10),
    ("AGING_STARTS", 3600.0, 10),
    ("JUST_AGING", 86399.999, 10),
    ("STALE_STARTS", 86400.0, 10),
    ("LONG_STALE", 10 * 86400.0, 10),
    ("FUTURE", -120.0, 10),  # clock skew: computed "after" now
    ("NO_DATA", 10.0, 0),
    ("NEVER_WITH_ROW", None, 0),
]
NO_ROW = "NEVER_NO_ROW"  # monitored, never written


def _expected() -> dict[str, str]:
    expected = {
        symbol: freshness_status(None if age is None else NOW - timedelta(seconds=age), count, NOW)
        for symbol, age, count in ROWS
    }
    expected[NO_ROW] = "missing"
    return expected


def _store(engine, clock_at: datetime) -> ObservabilityStore:
    pairs = [(symbol, "1h") for symbol, _, _ in ROWS] + [(NO_ROW, "1h")]
    return ObservabilityStore(engine, monitored_pairs=pairs, clock=lambda: clock_at)


def _write(store: ObservabilityStore, *, now: datetime) -> None:
    store.update_feature_freshness_many(
        [
            {
                "symbol": symbol,
                "timeframe": "1h",
                "last_computed_at": None if age is None else NOW - timedelta(seconds=age),
                "data_point_count": count,
            }
            for symbol, age, count in ROWS
        ],
        now=now,
    )


def _stored_statuses(engine) -> dict[str, str]:
    t = feature_freshness
    with engine.connect() as conn:
        return dict(conn.execute(sa.select(t.c.symbol, t.c.status)).all())


def test_the_expected_statuses_cover_every_status_and_both_sides_of_each_boundary():
    expected = _expected()
    assert set(expected.values()) == set(FRESHNESS_STATUSES)
    assert (expected["JUST_FRESH"], expected["AGING_STARTS"]) == ("fresh", "aging")
    assert (expected["JUST_AGING"], expected["STALE_STARTS"]) == ("aging", "stale")


def test_rows_written_at_now_carry_the_python_rule(engine):
    _write(_store(engine, NOW), now=NOW)
    expected = _expected()
    del expected[NO_ROW]
    assert _stored_statuses(engine) == expected


@pytest.mark.parametrize("limit", [1000, 1])
def test_the_staleness_report_rates_in_sql_as_the_python_rule(engine, limit):
    store = _store(engine, NOW)
    _write(store, now=NOW - timedelta(days=3))  # cached statuses are stale on purpose
    report = store.get_feature_staleness_report(limit=limit)
    listed = {
        item.symbol: status
        for status in FRESHNESS_STATUSES
        for item in getattr(report.by_status, status)
    }
    expected = _expected()
    if limit == 1000:
        assert listed == expected
    else:
        assert all(expected[symbol] == status for symbol, status in listed.items())
    counts = report.summary.model_dump()
    assert counts == {
        **{f"{s}_count": list(expected.values()).count(s) for s in FRESHNESS_STATUSES},
        "total_monitored": len(expected),
    }


def test_the_health_counts_rate_in_sql_as_the_python_rule(engine):
    store = _store(engine, NOW)
    _write(store, now=NOW - timedelta(days=3))
    summary = store.get_scheduler_health().freshness_summary
    expected = list(_expected().values())
    assert summary.model_dump() == {
        **{f"{s}_count": expected.count(s) for s in FRESHNESS_STATUSES},
        "total_monitored": len(expected),
    }


def test_the_periodic_refresh_rates_in_sql_as_the_python_rule(engine):
    store = _store(engine, NOW)
    _write(store, now=NOW - timedelta(days=3))
    assert _stored_statuses(engine)["AGING_STARTS"] == "fresh"  # as of three days before NOW
    store.refresh_feature_freshness(now=NOW)
    expected = _expected()
    del expected[NO_ROW]
    assert _stored_statuses(engine) == expected
