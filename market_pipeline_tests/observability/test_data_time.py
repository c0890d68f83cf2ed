"""Data time in the store, on SQLite and PostgreSQL, with a fixed clock: each pair's stored
newest bar against the bar due on its exchange calendar, next to the spec's run-time status.

The dates are real market days: Thanksgiving 2026 (Thursday 26 November, XNYS closed) and the
day after (an early close at 13:00 New York = 18:00 UTC), a weekend, and FX's Sunday 22:00 UTC
open.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from market_pipeline.domain.lag_rules import DataLagRules, PairSchedule
from market_pipeline.observability.store import ObservabilityStore
from market_pipeline_tests.observability.test_store import FixedClock


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


EQUITY = PairSchedule("XNYS", 0, "equity")
FX = PairSchedule("FX", 0, "fx")
CRYPTO = PairSchedule("24/7", 0, "crypto")


def data_store(
    engine, now: datetime, schedules, tolerances=None
) -> tuple[ObservabilityStore, FixedClock]:
    clock = FixedClock(now)
    store = ObservabilityStore(
        engine,
        monitored_pairs=list(schedules),
        clock=clock,
        data_lag_rules=DataLagRules(schedules, tolerances=tolerances),
    )
    return store, clock


def store_bars(store: ObservabilityStore, last_bars: dict, computed_at: datetime) -> None:
    store.update_feature_freshness_many(
        [
            {
                "symbol": symbol,
                "timeframe": timeframe,
                "last_computed_at": computed_at,
                "data_point_count": 100,
                "last_bar_at": last_bar,
            }
            for (symbol, timeframe), last_bar in last_bars.items()
        ],
        now=computed_at,
    )


def items(store: ObservabilityStore) -> dict:
    """Every listed pair of the staleness report, by pair."""
    by_status = store.get_feature_staleness_report(limit=100).by_status
    return {
        (item.symbol, item.timeframe): item
        for status in ("fresh", "aging", "stale", "missing")
        for item in getattr(by_status, status)
    }


def test_the_day_after_thanksgiving_closes_early_at_13_new_york(engine):
    schedules = {("AAPL", "1d"): EQUITY, ("AAPL", "1h"): EQUITY}
    # 18:30 UTC = 13:30 New York: the early close has passed, Friday's daily bar is due.
    now = utc(2026, 11, 27, 18, 30)
    store, _ = data_store(engine, now, schedules)
    store_bars(
        store,
        {("AAPL", "1d"): utc(2026, 11, 25), ("AAPL", "1h"): utc(2026, 11, 27, 17, 30)},
        now - timedelta(minutes=10),
    )
    found = items(store)
    daily, hourly = found[("AAPL", "1d")], found[("AAPL", "1h")]
    # Wednesday's bar is stored; Friday's (dated 27 November, closed 18:00 UTC) is due.
    assert daily.status == "fresh"
    assert (daily.data_status, daily.bars_behind) == ("late", 1)
    assert daily.expected_last_bar_at == utc(2026, 11, 27)
    assert daily.data_lag_seconds == pytest.approx(30 * 60)
    # The 12:30 New York bar is the last of the day, cut at 13:00: it is stored, so current.
    assert (hourly.data_status, hourly.bars_behind) == ("current", 0)
    assert hourly.expected_last_bar_at == utc(2026, 11, 27, 17, 30)


def test_a_holiday_and_a_weekend_make_no_equity_bar_due(engine):
    schedules = {("AAPL", "1d"): EQUITY, ("AAPL", "1h"): EQUITY}
    wednesday_close = {
        ("AAPL", "1d"): utc(2026, 11, 25),
        ("AAPL", "1h"): utc(2026, 11, 25, 20, 30),
    }
    # Thanksgiving, 20:00 UTC: the exchange is closed all day.
    store, clock = data_store(engine, utc(2026, 11, 26, 20, 0), schedules)
    store_bars(store, wednesday_close, utc(2026, 11, 25, 21, 30))
    for item in items(store).values():
        assert (item.data_status, item.bars_behind, item.data_lag_seconds) == ("current", 0, 0.0)
    # Sunday 29 November, with Friday's bars stored: nothing is due all weekend.
    friday = {("AAPL", "1d"): utc(2026, 11, 27), ("AAPL", "1h"): utc(2026, 11, 27, 17, 30)}
    clock.now = utc(2026, 11, 29, 23, 0)
    store_bars(store, friday, utc(2026, 11, 27, 18, 30))
    found = items(store)
    assert {item.data_status for item in found.values()} == {"current"}
    # The spec's status, run time, does age over the weekend: 2 days since the computation.
    assert {item.status for item in found.values()} == {"stale"}
    health = store.get_scheduler_health()
    assert health.late_pairs == []
    assert health.data_summary is not None and health.data_summary.current_count == 2


def test_fx_opens_on_sunday_at_22_utc(engine):
    schedules = {("EURUSD", "1h"): FX}
    friday_last = utc(2026, 11, 27, 21, 0)  # the week's last hourly bar, closing 22:00 UTC
    store, clock = data_store(engine, utc(2026, 11, 29, 22, 59), schedules)
    store_bars(store, {("EURUSD", "1h"): friday_last}, utc(2026, 11, 27, 22, 5))
    # 22:59 Sunday: the week opened at 22:00 but its first hourly bar is not complete yet.
    assert items(store)[("EURUSD", "1h")].data_status == "current"
    clock.now = utc(2026, 11, 29, 23, 1)
    item = items(store)[("EURUSD", "1h")]
    assert (item.data_status, item.bars_behind) == ("late", 1)
    assert item.expected_last_bar_at == utc(2026, 11, 29, 22, 0)
    assert item.data_lag_seconds == pytest.approx(60)


def test_fx_daily_bar_closes_at_22_utc_one_minute_decides(engine):
    schedules = {("EURUSD", "1d"): FX}
    store, clock = data_store(engine, utc(2026, 11, 30, 21, 59), schedules)
    store_bars(store, {("EURUSD", "1d"): utc(2026, 11, 27)}, utc(2026, 11, 28, 0, 0))
    assert items(store)[("EURUSD", "1d")].data_status == "current"
    clock.now = utc(2026, 11, 30, 22, 1)
    item = items(store)[("EURUSD", "1d")]
    assert (item.data_status, item.expected_last_bar_at) == ("late", utc(2026, 11, 30))


def test_a_provider_that_keeps_returning_the_last_bar_turns_late_while_fresh(engine):
    schedules = {("BTC-USD", "1h"): CRYPTO, ("AAPL", "1d"): EQUITY}
    # 1h pairs refreshed hourly here, so a tolerance of 2 h (the default follows the daily run).
    store, clock = data_store(engine, utc(2026, 12, 1, 12, 0), schedules, {"1h": 7200})
    stuck = {("BTC-USD", "1h"): utc(2026, 12, 1, 11, 0), ("AAPL", "1d"): utc(2026, 11, 30)}
    store_bars(store, stuck, clock.now)
    assert {i.data_status for i in items(store).values()} == {"current"}
    # Every 15 minutes for 3 h the job runs and the vendor answers with the same newest bar.
    for _ in range(12):
        clock.advance(minutes=15)
        store_bars(store, stuck, clock.now)
    found = items(store)
    btc = found[("BTC-USD", "1h")]
    assert btc.status == "fresh"  # the spec's rule: computed a moment ago
    assert (btc.data_status, btc.bars_behind) == ("late", 3)
    assert btc.data_lag_seconds == pytest.approx(2 * 3600)  # the 12:00 bar was due at 13:00
    health = store.get_scheduler_health()
    assert health.status == "degraded"
    # The crypto pair is 2 h late, its 1h tolerance is 2 h: not beyond yet; 1 minute later it is.
    assert health.late_pairs == []
    clock.advance(minutes=1)
    store_bars(store, stuck, clock.now)
    health = store.get_scheduler_health()
    assert [(p.symbol, p.timeframe) for p in health.late_pairs] == [("BTC-USD", "1h")]
    assert health.late_pairs[0].bars_behind == 3
    assert any("late beyond tolerance: BTC-USD 1h" in reason for reason in health.reasons)
    assert health.data_summary is not None
    assert (health.data_summary.late_count, health.data_summary.late_beyond_tolerance_count) == (
        1,
        1,
    )
    # The equity pair: Monday 30 November's bar stored, Tuesday's closes at 21:00 UTC.
    assert found[("AAPL", "1d")].data_status == "current"


def test_tolerances_come_from_the_rules_and_a_missing_bar_is_missing(engine):
    schedules = {("BTC-USD", "1h"): CRYPTO, ("ETH-USD", "1h"): CRYPTO}
    store, clock = data_store(engine, utc(2026, 12, 1, 12, 0), schedules, {"1h": 600})
    # The 10:00 bar was due at 11:00 (complete), the 11:00 one at 12:00: 2 behind, 1 h late.
    store_bars(store, {("BTC-USD", "1h"): utc(2026, 12, 1, 9, 0)}, clock.now)
    found = items(store)
    assert found[("ETH-USD", "1h")].data_status == "missing"
    assert found[("ETH-USD", "1h")].bars_behind is None
    assert found[("BTC-USD", "1h")].data_lag_seconds == pytest.approx(3600)
    health = store.get_scheduler_health()
    assert [p.symbol for p in health.late_pairs] == ["BTC-USD"]
    assert health.late_pairs[0].tolerance_seconds == 600


def test_a_store_without_calendars_leaves_data_time_null(engine):
    store = ObservabilityStore(engine, clock=FixedClock(utc(2026, 12, 1)))
    store_bars(store, {("AAPL", "1d"): utc(2026, 11, 30)}, utc(2026, 11, 30, 22))
    report = store.get_feature_staleness_report()
    assert store.get_scheduler_health().data_summary is None
    (item,) = report.by_status.fresh + report.by_status.aging + report.by_status.stale
    assert item.last_bar_at == utc(2026, 11, 30)
    assert (item.data_status, item.expected_last_bar_at) == (None, None)
    assert store.data_time.lags() is None
    assert store.data_time.record_coverage_sample() == 0


def test_outside_an_exchange_calendar_the_pair_is_unknown_not_an_error(engine):
    schedules = {("AAPL", "1d"): EQUITY, ("BTC-USD", "1d"): CRYPTO}
    store, _ = data_store(engine, utc(2040, 1, 3), schedules)
    store_bars(
        store,
        {("AAPL", "1d"): utc(2039, 12, 30), ("BTC-USD", "1d"): utc(2040, 1, 2)},
        utc(2040, 1, 3),
    )
    found = items(store)
    assert found[("AAPL", "1d")].data_status is None
    assert found[("BTC-USD", "1d")].data_status == "current"
    summary = store.get_scheduler_health().data_summary
    assert summary is not None and (summary.unknown_count, summary.current_count) == (1, 1)


def test_coverage_samples_give_the_sli_burn_rate_and_error_budget(engine):
    schedules = {
        ("BTC-USD", "1h"): CRYPTO,
        ("ETH-USD", "1h"): CRYPTO,
        ("AAPL", "1d"): EQUITY,
        ("MSFT", "1d"): EQUITY,
    }
    start = utc(2026, 12, 1, 12, 0)
    store, clock = data_store(engine, start, schedules, {"1h": 600})
    assert store.data_time.coverage_report().windows[0].sli is None  # no sample yet
    current = {
        ("BTC-USD", "1h"): utc(2026, 12, 1, 11, 0),
        ("ETH-USD", "1h"): utc(2026, 12, 1, 11, 0),
        ("AAPL", "1d"): utc(2026, 11, 30),
        ("MSFT", "1d"): utc(2026, 11, 30),
    }
    store_bars(store, current, start)
    # Two days ago: a sample with everything current (outside the 1 h and 24 h windows).
    assert store.data_time.record_coverage_sample(now=start - timedelta(days=2)) == 2
    # Now ETH stops updating: the 12:00 bar was due at 13:00 and only BTC gets it. At 13:15
    # ETH is 15 min late, beyond its 10 min tolerance: not covered. (Within it, it would be.)
    clock.now = start + timedelta(hours=1, minutes=15)
    store_bars(store, {("BTC-USD", "1h"): utc(2026, 12, 1, 12, 0)}, clock.now)
    assert store.data_time.record_coverage_sample() == 2
    report = store.data_time.coverage_report(objective=0.9)
    windows = {w.window: w for w in report.windows}
    # 1 h: one sample, 3 of 4 pairs current. 30 d: 4 + 3 of 8.
    assert (windows["1h"].samples, windows["1h"].sli) == (1, pytest.approx(0.75))
    assert windows["1h"].burn_rate == pytest.approx(0.25 / 0.1)
    assert (windows["30d"].samples, windows["30d"].sli) == (2, pytest.approx(7 / 8))
    assert report.error_budget_remaining == pytest.approx(1 - (1 / 8) / 0.1)
    latest = {(g.timeframe, g.asset_class): g for g in report.latest}
    assert report.latest_sampled_at == clock.now
    assert (latest[("1h", "crypto")].current_count, latest[("1h", "crypto")].share) == (1, 0.5)
    assert latest[("1d", "equity")].share == 1.0
    json_body = report.model_dump(mode="json")
    assert json_body["latest_sampled_at"] == "2026-12-01T13:15:00Z"
    assert (
        latest[("1h", "crypto")].late_count,
        latest[("1h", "crypto")].late_beyond_tolerance_count,
    ) == (1, 1)


def test_coverage_retention_deletes_old_samples_and_bad_arguments_are_refused(engine):
    schedules = {("BTC-USD", "1h"): CRYPTO}
    now = utc(2026, 12, 1, 12, 0)
    store, _ = data_store(engine, now, schedules)
    store.data_time.record_coverage_sample(now=now - timedelta(days=40))
    store.data_time.record_coverage_sample(now=now - timedelta(days=3))
    assert store.data_time.coverage_report().windows[2].samples == 1  # 30 d: only the newer
    store.data_time.record_coverage_sample(now=now, retention_days=2)
    assert store.data_time.coverage_report().windows[2].samples == 1  # the 3-day one deleted
    with pytest.raises(ValueError, match="retention_days must be >= 1"):
        store.data_time.record_coverage_sample(retention_days=0)
    with pytest.raises(ValueError, match="objective must be between 0 and 1"):
        store.data_time.coverage_report(objective=1.0)


def test_fx_minute_bars_sunday_21_59_versus_22_01_utc(engine):
    schedules = {("EURUSD", "1m"): FX}
    friday_last = utc(2026, 11, 27, 21, 59)  # the week's last minute bar, closing 22:00 Friday
    store, clock = data_store(engine, utc(2026, 11, 29, 21, 59), schedules)
    store_bars(store, {("EURUSD", "1m"): friday_last}, utc(2026, 11, 27, 22, 1))
    before = items(store)[("EURUSD", "1m")]
    # 21:59 Sunday: the market has been shut all weekend, nothing is due since Friday's bar.
    assert (before.data_status, before.expected_last_bar_at) == ("current", friday_last)
    assert before.status == "stale"  # run time: computed two days ago
    clock.now = utc(2026, 11, 29, 22, 1)
    after = items(store)[("EURUSD", "1m")]
    # 22:01: the week opened at 22:00 and its first minute bar closed at 22:01.
    assert (after.data_status, after.bars_behind) == ("late", 1)
    assert after.expected_last_bar_at == utc(2026, 11, 29, 22, 0)
    assert after.data_lag_seconds == pytest.approx(0)


def test_as_of_an_instant_the_store_reads_the_bars_runs_and_failures_of_then(engine):
    import sqlalchemy as sa

    from market_pipeline.database.tables import ohlcv_bars

    schedules = {("BTC-USD", "1h"): CRYPTO}
    at = utc(2026, 12, 1, 12, 30)
    live, _ = data_store(engine, utc(2026, 12, 3), schedules)
    bars = [utc(2026, 12, 1, h) for h in range(8, 24)]  # stored up to 23:00 since
    with engine.begin() as conn:
        conn.execute(
            sa.insert(ohlcv_bars),
            [
                {"symbol": "BTC-USD", "timeframe": "1h", "ts": ts, "open": 1.0, "high": 1.0}
                | {"low": 1.0, "close": 1.0, "volume": 1.0}
                for ts in bars
            ],
        )
    store_bars(live, {("BTC-USD", "1h"): bars[-1]}, utc(2026, 12, 2, 0, 5))
    before = live.create_scheduler_execution_log(started_at=at - timedelta(hours=2))
    live.update_scheduler_execution_log(
        execution_id=before, completed_at=at - timedelta(hours=1), status="completed"
    )
    after = live.create_scheduler_execution_log(started_at=at + timedelta(hours=3))
    live.log_feature_computation_failure(
        symbol="BTC-USD", timeframe="1h", error_message="503", execution_id=after
    )
    as_of = ObservabilityStore(
        engine,
        monitored_pairs=list(schedules),
        clock=lambda: at,
        data_lag_rules=DataLagRules(schedules),
        as_of=True,
    )
    (item,) = as_of.get_feature_staleness_report().by_status.fresh
    # At 12:30 the 11:00 bar (complete at 12:00) was the newest stored, and the one due.
    assert (item.last_bar_at, item.data_status) == (utc(2026, 12, 1, 11), "current")
    health = as_of.get_scheduler_health()
    assert health.last_execution is not None and health.last_execution.execution_id == before
    assert (health.open_failures_count, health.recent_failures) == (0, [])
    assert [e.execution_id for e in as_of.get_execution_history().executions] == [before]
    # The live store sees everything stored since.
    assert live.get_scheduler_health().open_failures_count == 1
