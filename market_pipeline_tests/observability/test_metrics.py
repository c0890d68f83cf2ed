"""The /metrics collector against the JSON reports of the same rows, on SQLite and PostgreSQL.

A scrape and the spec's reports read the same tables; these tests hold them to the same answer
(pair counts, health, failures, last execution), and check the per-pair switch and a database
that cannot be read.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from market_pipeline.domain.freshness import DEGRADATION_REASONS
from market_pipeline.observability.metrics.collector import PipelineCollector, metrics_registry
from market_pipeline.observability.metrics.families import MetricsConfig
from market_pipeline.observability.store import ObservabilityStore

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
CLASSES = {"AAA": "equity", "BBB": "equity", "BTCUSD": "crypto", "NEVER": "crypto"}
TIMEFRAMES = ("1h", "1d")
AGES = {"AAA": 60.0, "BBB": 7200.0, "BTCUSD": 2 * 86400.0}  # fresh, aging, stale; NEVER missing


def _config(**overrides) -> MetricsConfig:
    values = {
        "provider": "synthetic",
        "asset_classes": CLASSES,
        "timeframes": TIMEFRAMES,
        "expected_interval_seconds": 86400,
        "failure_alert_threshold": 3,
        "per_pair": True,
    }
    values.update(overrides)
    return MetricsConfig(**values)


def _store(engine) -> ObservabilityStore:
    pairs = [(symbol, tf) for symbol in CLASSES for tf in TIMEFRAMES]
    return ObservabilityStore(engine, monitored_pairs=pairs, clock=lambda: NOW)


def _fill(store: ObservabilityStore) -> str:
    store.update_feature_freshness_many(
        [
            {
                "symbol": symbol,
                "timeframe": tf,
                "last_computed_at": NOW - timedelta(seconds=age),
                "data_point_count": 100,
            }
            for symbol, age in AGES.items()
            for tf in TIMEFRAMES
        ]
    )
    done = store.create_scheduler_execution_log(started_at=NOW - timedelta(hours=4))
    store.update_scheduler_execution_log(
        execution_id=done,
        completed_at=NOW - timedelta(hours=2),
        status="completed",
        successful_symbols=4,
        failed_symbols=0,
    )
    last = store.create_scheduler_execution_log(started_at=NOW - timedelta(minutes=30))
    store.update_scheduler_execution_log(
        execution_id=last,
        completed_at=NOW - timedelta(minutes=20),
        status="failed",
        successful_symbols=3,
        failed_symbols=1,
    )
    for hours in (3, 2, 1):  # BBB/1h fails in three executions: an alert at threshold 3
        failed_in = store.create_scheduler_execution_log(started_at=NOW - timedelta(hours=hours))
        store.log_feature_computation_failure(
            symbol="BBB", timeframe="1h", error_message="boom", execution_id=failed_in
        )
    store.log_feature_computation_failure(
        symbol="AAA", timeframe="1d", error_message="once", execution_id=last
    )
    return str(last)


def _scrape(collector: PipelineCollector) -> dict[str, list]:
    text = generate_latest(metrics_registry(collector)).decode()
    return {family.name: family.samples for family in text_string_to_metric_families(text)}


def _value(samples, name: str, **labels) -> float:
    found = [
        s.value
        for s in samples
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    ]
    assert len(found) == 1, (name, labels, found)
    return found[0]


def test_scrape_agrees_with_the_spec_reports(engine):
    store = _store(engine)
    _fill(store)
    metrics = _scrape(PipelineCollector(store, _config(), clock=lambda: NOW))
    report = store.get_feature_staleness_report(limit=100)
    health = store.get_scheduler_health()

    pairs = metrics["market_pipeline_pairs"]
    for status in ("fresh", "aging", "stale", "missing"):
        total = sum(s.value for s in pairs if s.labels["status"] == status)
        assert total == getattr(report.summary, f"{status}_count"), status
    assert (
        _value(
            pairs,
            "market_pipeline_pairs",
            status="stale",
            timeframe="1d",
            asset_class="crypto",
            provider="synthetic",
        )
        == 1
    )
    assert (
        _value(
            pairs,
            "market_pipeline_pairs",
            status="missing",
            timeframe="1h",
            asset_class="crypto",
            provider="synthetic",
        )
        == 1
    )
    assert (
        _value(metrics["market_pipeline_monitored_pairs"], "market_pipeline_monitored_pairs")
        == report.summary.total_monitored
    )

    assert health.status == "degraded"
    assert (
        _value(metrics["market_pipeline_scheduler_healthy"], "market_pipeline_scheduler_healthy")
        == 0
    )
    held = {
        s.labels["reason"]
        for s in metrics["market_pipeline_scheduler_degraded_reason"]
        if s.value == 1
    }
    assert held == {"last_execution_failed", "stale_pairs", "missing_pairs", "open_failures"}
    assert len(held) == len(health.reasons)
    assert {s.labels["reason"] for s in metrics["market_pipeline_scheduler_degraded_reason"]} == (
        set(DEGRADATION_REASONS)
    )

    assert (
        _value(metrics["market_pipeline_open_failures"], "market_pipeline_open_failures")
        == health.open_failures_count
        == 2
    )
    assert (
        _value(metrics["market_pipeline_failure_alerts"], "market_pipeline_failure_alerts")
        == len(health.alerts)
        == 1
    )
    assert (
        _value(
            metrics["market_pipeline_max_consecutive_failures"],
            "market_pipeline_max_consecutive_failures",
        )
        == 3
    )

    last = health.last_execution
    assert last is not None
    assert (
        _value(
            metrics["market_pipeline_last_execution_status"],
            "market_pipeline_last_execution_status",
            status="failed",
        )
        == 1
    )
    assert _value(
        metrics["market_pipeline_last_execution_start_timestamp_seconds"],
        "market_pipeline_last_execution_start_timestamp_seconds",
    ) == (last.started_at.timestamp())
    assert (
        _value(
            metrics["market_pipeline_last_execution_symbols"],
            "market_pipeline_last_execution_symbols",
            outcome="failed",
        )
        == 1
    )
    assert _value(
        metrics["market_pipeline_last_successful_execution_end_timestamp_seconds"],
        "market_pipeline_last_successful_execution_end_timestamp_seconds",
    ) == ((NOW - timedelta(hours=2)).timestamp())
    executions = metrics["market_pipeline_executions"]
    assert _value(executions, "market_pipeline_executions_total", status="completed") == 1
    assert _value(executions, "market_pipeline_executions_total", status="failed") == 1
    assert _value(
        metrics["market_pipeline_oldest_staleness_seconds"],
        "market_pipeline_oldest_staleness_seconds",
        timeframe="1h",
    ) == pytest.approx(2 * 86400.0, abs=1e-3)


def test_per_pair_series_follow_the_switch(engine):
    store = _store(engine)
    _fill(store)
    on = _scrape(PipelineCollector(store, _config(per_pair=True), clock=lambda: NOW))
    staleness = on["market_pipeline_pair_staleness_seconds"]
    assert len(staleness) == len(AGES) * len(TIMEFRAMES)  # NEVER has no staleness
    assert (
        _value(
            staleness,
            "market_pipeline_pair_staleness_seconds",
            symbol="BBB",
            timeframe="1d",
        )
        == pytest.approx(7200.0, abs=1e-3)  # SQLite julianday: about 10 us
    )
    failures = on["market_pipeline_pair_consecutive_failures"]
    assert {(s.labels["symbol"], s.labels["timeframe"], s.value) for s in failures} == {
        ("BBB", "1h", 3.0),
        ("AAA", "1d", 1.0),
    }
    off = _scrape(PipelineCollector(store, _config(per_pair=False), clock=lambda: NOW))
    assert "market_pipeline_pair_staleness_seconds" not in off
    assert "market_pipeline_pair_consecutive_failures" not in off
    assert (
        _value(
            off["market_pipeline_metrics_per_pair_enabled"],
            "market_pipeline_metrics_per_pair_enabled",
        )
        == 0
    )
    assert off["market_pipeline_pairs"] == on["market_pipeline_pairs"]


def test_every_status_is_present_even_at_zero(engine):
    metrics = _scrape(PipelineCollector(_store(engine), _config(), clock=lambda: NOW))
    pairs = metrics["market_pipeline_pairs"]
    assert len(pairs) == 4 * len(TIMEFRAMES) * len(set(CLASSES.values()))
    assert sum(s.value for s in pairs if s.labels["status"] == "missing") == len(CLASSES) * 2
    assert (
        _value(
            metrics["market_pipeline_scheduler_degraded_reason"],
            "market_pipeline_scheduler_degraded_reason",
            reason="no_execution",
        )
        == 1
    )


def test_an_unreadable_database_is_reported_not_raised(tmp_path):
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'never_migrated.db'}")
    metrics = _scrape(PipelineCollector(_store(engine), _config(), clock=lambda: NOW))
    assert _value(metrics["market_pipeline_database_up"], "market_pipeline_database_up") == 0
    assert "market_pipeline_pairs" not in metrics
    engine.dispose()


@pytest.mark.parametrize("limit, pairs, expected", [(2000, 2000, True), (2000, 2001, False)])
def test_auto_per_pair_follows_the_pair_budget(limit, pairs, expected):
    from market_pipeline.config.settings import Settings

    settings = Settings.from_env({"MARKET_PIPELINE_METRICS_PER_PAIR_LIMIT": str(limit)})
    assert settings.per_pair_metrics(pairs) is expected
    assert Settings.from_env({"MARKET_PIPELINE_METRICS_PER_PAIR": "on"}).per_pair_metrics(10**6)
    assert not Settings.from_env({"MARKET_PIPELINE_METRICS_PER_PAIR": "off"}).per_pair_metrics(1)
    with pytest.raises(ValueError, match="MARKET_PIPELINE_METRICS_PER_PAIR must be one of"):
        Settings.from_env({"MARKET_PIPELINE_METRICS_PER_PAIR": "sometimes"})


def test_without_an_instance_no_dagster_families(engine):
    metrics = _scrape(PipelineCollector(_store(engine), _config(), None, clock=lambda: NOW))
    assert not [name for name in metrics if "dagster" in name or "mirror" in name]


def test_data_time_families_come_from_the_newest_coverage_sample(engine):
    from market_pipeline.domain.lag_rules import DataLagRules, PairSchedule

    schedules = {
        (symbol, tf): PairSchedule("24/7", 0, "crypto") for symbol in ("X1", "X2") for tf in ("1h",)
    }
    clock = {"now": NOW}
    store = ObservabilityStore(
        engine,
        monitored_pairs=list(schedules),
        clock=lambda: clock["now"],
        data_lag_rules=DataLagRules(schedules, tolerances={"1h": 600}),
    )
    config = _config(asset_classes={"X1": "crypto", "X2": "crypto"}, timeframes=("1h",))
    # X1 has the 11:00 bar (due at 12:00): current. X2 stopped at 08:00: late by 3 h.
    store.update_feature_freshness_many(
        [
            {
                "symbol": s,
                "timeframe": "1h",
                "last_computed_at": NOW,
                "data_point_count": 9,
                "last_bar_at": bar,
            }
            for s, bar in (("X1", NOW - timedelta(hours=1)), ("X2", NOW - timedelta(hours=4)))
        ]
    )
    before = _scrape(PipelineCollector(store, config, clock=lambda: NOW))
    assert (
        "market_pipeline_coverage_sli" not in before or not before["market_pipeline_coverage_sli"]
    )
    store.data_time.record_coverage_sample()
    metrics = _scrape(PipelineCollector(store, config, clock=lambda: NOW))
    pairs = metrics["market_pipeline_pairs_by_data_status"]
    assert _value(pairs, "market_pipeline_pairs_by_data_status", data_status="current") == 1
    assert _value(pairs, "market_pipeline_pairs_by_data_status", data_status="late") == 1
    late = metrics["market_pipeline_pairs_late_beyond_tolerance"]
    assert _value(late, "market_pipeline_pairs_late_beyond_tolerance", provider="synthetic") == 1
    sli = metrics["market_pipeline_coverage_sli"]
    assert _value(sli, "market_pipeline_coverage_sli", window="1h") == 0.5
    burn = metrics["market_pipeline_coverage_burn_rate"]
    assert _value(burn, "market_pipeline_coverage_burn_rate", window="30d") == pytest.approx(50)
    budget = metrics["market_pipeline_coverage_error_budget_remaining"]
    assert budget[0].value == pytest.approx(-49)
    # Health as a metric agrees with the API: the late pair degrades it.
    reasons = metrics["market_pipeline_scheduler_degraded_reason"]
    assert _value(reasons, "market_pipeline_scheduler_degraded_reason", reason="late_pairs") == 1
    assert "late_pairs" in DEGRADATION_REASONS
    assert any("late beyond tolerance" in r for r in store.get_scheduler_health().reasons)
