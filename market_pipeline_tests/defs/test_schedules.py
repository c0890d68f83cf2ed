"""Schedules: bulk range runs (never one run per partition), tagged as scheduled."""

from __future__ import annotations

from datetime import UTC, datetime

import dagster as dg
import pytest
import sqlalchemy as sa

from market_pipeline.config.settings import Settings
from market_pipeline.definitions import build_definitions
from market_pipeline.domain.names import MARKET_DATA_JOB
from market_pipeline.observability.mirror import reconcile_instance
from market_pipeline.observability.store import ObservabilityStore
from market_pipeline_tests.support.universes import asset_classes_of, write_universe

pytestmark = pytest.mark.usefixtures("live_instance")

TWO_AM = datetime(2024, 3, 5, 2, 0, tzinfo=UTC)


@pytest.fixture
def intraday_settings(settings, tmp_path) -> Settings:
    """AAPL, BADCO, BTC-USD x 5m, 1h, 1d (BADCO fails at the provider)."""
    write_universe(
        settings.universe_path,
        [("AAPL", "equity"), ("BADCO", "equity"), ("BTC-USD", "crypto")],
        ["5m", "1h", "1d"],
        {"kind": "synthetic", "fail_symbols": ["BADCO"], "history_bars": 300},
    )
    return settings


def _requests(defs, name: str, instance) -> list[dg.RunRequest]:
    context = dg.build_schedule_context(instance=instance, scheduled_execution_time=TWO_AM)
    return list(defs.get_schedule_def(name).evaluate_tick(context).run_requests or [])


def test_the_schedules_run_in_utc_at_the_specified_times(intraday_settings):
    defs = build_definitions(intraday_settings)
    daily = defs.get_schedule_def("daily_backfill_schedule")
    assert (daily.cron_schedule, daily.execution_timezone) == ("0 2 * * *", "UTC")
    intraday = defs.get_schedule_def("intraday_backfill_schedule")
    assert (intraday.cron_schedule, intraday.execution_timezone) == ("*/15 * * * *", "UTC")
    report = defs.get_schedule_def("scheduler_health_report_schedule")
    assert report.cron_schedule == "0 * * * *" and report.job_name == "scheduler_health_report_job"
    for schedule in (daily, intraday, report):
        assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING
        assert schedule.description


def test_the_daily_schedule_launches_one_bulk_run_for_the_whole_universe(intraday_settings):
    defs = build_definitions(intraday_settings)
    with dg.instance_for_test() as instance:
        [request] = _requests(defs, "daily_backfill_schedule", instance)
    assert request.job_name == MARKET_DATA_JOB
    assert request.tags["dagster/asset_partition_range_start"] == "AAPL|5m"
    assert request.tags["dagster/asset_partition_range_end"] == "BTC-USD|1d"
    assert request.tags["market_pipeline/trigger"] == "schedule"
    assert TWO_AM.isoformat() in request.run_key


def test_the_intraday_run_refreshes_exactly_the_short_timeframes_and_is_mirrored_as_scheduled(
    intraday_settings, engine
):
    defs = build_definitions(intraday_settings)
    job = defs.resolve_job_def(MARKET_DATA_JOB)
    with dg.instance_for_test() as instance:
        [request] = _requests(defs, "intraday_backfill_schedule", instance)
        result = job.execute_in_process(instance=instance, tags=request.tags, raise_on_error=False)
        materialized = {
            e.event_specific_data.materialization.partition
            for e in result.all_events
            if e.event_type == dg.DagsterEventType.ASSET_MATERIALIZATION
        }
        reconcile_instance(
            instance, ObservabilityStore(engine), asset_classes=asset_classes_of(intraday_settings)
        )
    assert materialized == {"AAPL|5m", "BTC-USD|5m"}  # BADCO|5m failed; no 1h or 1d pair
    with engine.connect() as conn:
        row = conn.execute(
            sa.text(
                "SELECT run_trigger, total_symbols, failed_symbols FROM scheduler_execution_log"
            )
        ).one()
        timeframes = set(
            conn.execute(
                sa.text("SELECT DISTINCT timeframe FROM symbol_computation_status")
            ).scalars()
        )
    assert tuple(row) == ("schedule", 3, 1)
    assert timeframes == {"5m"}


def test_the_intraday_schedule_skips_a_universe_without_short_timeframes(settings):
    defs = build_definitions(settings)  # 1h and 1d only
    with dg.instance_for_test() as instance:
        context = dg.build_schedule_context(instance=instance, scheduled_execution_time=TWO_AM)
        result = defs.get_schedule_def("intraday_backfill_schedule").evaluate_tick(context)
    assert not result.run_requests
    assert "shorter than 1h" in result.skip_message


def test_the_daily_run_skips_exchange_holidays_of_an_equity_only_universe(settings, live_instance):
    write_universe(settings.universe_path, [("AAPL", "equity")], ["1d"], {"kind": "synthetic"})
    defs = build_definitions(settings)
    daily = defs.get_schedule_def("daily_backfill_schedule")

    def tick(when: datetime):
        context = dg.build_schedule_context(instance=live_instance, scheduled_execution_time=when)
        return daily.evaluate_tick(context)

    # 02:00 UTC Friday 27 Nov 2026 follows Thanksgiving: no XNYS session closed since Thursday's
    # tick. Saturday's follows the early close; Sunday's and Monday's follow no session.
    for day, runs in [(26, True), (27, False), (28, True), (29, False), (30, False)]:
        result = tick(datetime(2026, 11, day, 2, 0, tzinfo=UTC))
        assert bool(result.run_requests) is runs, day
        if not runs:
            assert "no session of XNYS closed" in result.skip_message
    # A universe with crypto has a session closing every UTC day: it runs on holidays.
    write_universe(
        settings.universe_path,
        [("AAPL", "equity"), ("BTC-USD", "crypto")],
        ["1d"],
        {"kind": "synthetic"},
    )
    daily = build_definitions(settings).get_schedule_def("daily_backfill_schedule")
    assert tick(datetime(2026, 11, 27, 2, 0, tzinfo=UTC)).run_requests
