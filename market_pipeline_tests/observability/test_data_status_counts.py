"""Health's grouped read of data time gives exactly the per-pair figures.

Health reads ``feature_freshness`` grouped by (timeframe, newest bar) and rates each group once
per schedule; the staleness report and the coverage SLI rate pair by pair. Both are run here on
one store holding every case the grouping must keep apart: pairs of several calendars sharing a
stored bar, late pairs on bars of their own and sharing one, a monitored pair never stored, a
monitored pair without a schedule, a stored pair that is not monitored, and ties in lag.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from market_pipeline.domain.lag_rules import DataLagRules, PairSchedule
from market_pipeline.observability.store import ObservabilityStore, data_lag_reads
from market_pipeline.observability.store import data_status_counts as grouped

NOW = datetime(2026, 12, 2, 20, 47, tzinfo=UTC)  # a Wednesday, XNYS open
SCHEDULES = {
    **{(f"EQ{i}", tf): PairSchedule("XNYS", 0, "equity") for i in range(6) for tf in ("1h", "1d")},
    **{(f"CR{i}", tf): PairSchedule("24/7", 0, "crypto") for i in range(4) for tf in ("1h", "1d")},
    **{(f"FX{i}", "1h"): PairSchedule("FX", 60, "fx") for i in range(3)},
}
UNSCHEDULED = ("ODD", "1h")
NEVER_STORED = ("EQ5", "1h")


def _stored_bars(rules: DataLagRules) -> dict[tuple[str, str], datetime | None]:
    due = rules.evaluate(((s, tf, None) for s, tf in SCHEDULES), NOW)
    bars: dict[tuple[str, str], datetime | None] = {}
    for index, (pair, lag) in enumerate(due.items()):
        assert lag is not None
        if pair == NEVER_STORED:
            continue
        # Every third pair late: some on a stored bar of their own, others sharing one.
        behind = (index % 4) if index % 3 == 0 else 0
        bars[pair] = lag.expected_last_bar_at - timedelta(hours=30 * behind)
    # Two calendars storing the same 1d bar (XNYS and 24/7 share a midnight stamp).
    bars[("EQ0", "1d")] = bars[("CR0", "1d")]
    # One bar behind for 47 minutes: late, within the 1h tolerance of an hour.
    one_behind = due[("CR1", "1h")]
    assert one_behind is not None
    bars[("CR1", "1h")] = one_behind.expected_last_bar_at - timedelta(hours=1)
    bars[UNSCHEDULED] = NOW - timedelta(hours=5)
    bars[("GONE", "1h")] = NOW - timedelta(days=3)  # stored, not monitored
    bars[("EQ4", "1h")] = None  # a row without a bar yet
    return bars


def _store(engine, *, monitored: bool) -> ObservabilityStore:
    rules = DataLagRules(SCHEDULES, tolerances={"1h": 3600})
    plain = ObservabilityStore(engine, clock=lambda: NOW)
    plain.update_feature_freshness_many(
        [
            {
                "symbol": symbol,
                "timeframe": timeframe,
                "last_computed_at": NOW - timedelta(minutes=5),
                "data_point_count": 10,
                "last_bar_at": last,
            }
            for (symbol, timeframe), last in _stored_bars(rules).items()
        ],
        now=NOW,
    )
    return ObservabilityStore(
        engine,
        monitored_pairs=[*SCHEDULES, UNSCHEDULED] if monitored else None,
        clock=lambda: NOW,
        data_lag_rules=rules,
    )


@pytest.mark.parametrize("monitored", [True, False], ids=["monitored", "whole-table"])
def test_the_grouped_read_gives_the_per_pair_counts_and_late_pairs(engine, monitored):
    store = _store(engine, monitored=monitored)
    ctx = store._ctx
    lags = data_lag_reads.read_lags(ctx, NOW)
    assert lags is not None
    late = data_lag_reads.late_beyond_tolerance(ctx, lags)
    expected = (data_lag_reads.summary(lags, late), late)

    assert grouped.read(ctx, NOW) == expected
    summary, late_pairs = expected
    # The store holds what the test says: each case is present.
    assert summary["late_count"] >= 4 and summary["late_beyond_tolerance_count"] >= 2
    assert summary["unknown_count"] >= 1 and summary["missing_count"] == (2 if monitored else 1)
    assert summary["late_count"] > summary["late_beyond_tolerance_count"]
    assert len({row["data_lag_seconds"] for row in late_pairs}) < len(late_pairs)  # ties
    health = store.get_scheduler_health(recent_failures_limit=50)
    assert health.data_summary is not None
    assert health.data_summary.model_dump() == summary
    assert [(p.symbol, p.timeframe) for p in health.late_pairs] == [
        (row["symbol"], row["timeframe"]) for row in late_pairs
    ]
