"""Schedules: the daily backfill of the universe, an intraday one for short timeframes, the report.

Backfills launch bulk runs through the instance's run queue: one run per contiguous partition-key
range of at most ``MARKET_PIPELINE_PARTITIONS_PER_RUN`` pairs (the split the CLI's backfill and the
assets' backfill policy use), never one run per partition. Their runs carry
``market_pipeline/trigger: schedule`` (and Dagster's ``dagster/schedule_name``), which the mirror
records as ``run_trigger`` so scheduled runs are told apart from manual ones.
"""

from __future__ import annotations

from datetime import timedelta

import dagster as dg

from market_pipeline.domain.bar_schedule import sessions_closed_between
from market_pipeline.domain.calendars import get_calendar
from market_pipeline.domain.names import (
    MARKET_DATA_JOB,
    RANGE_END_TAG,
    RANGE_START_TAG,
    REPORT_JOB,
    TRIGGER_TAG,
)
from market_pipeline.domain.partition_keys import partition_ranges
from market_pipeline.domain.schedule_intervals import INTRADAY_INTERVAL_SECONDS, is_intraday
from market_pipeline.domain.universe import Universe

DAILY_CRON = "0 2 * * *"
# Derived from the interval the metrics expect, so the two cannot drift apart.
INTRADAY_CRON = f"*/{INTRADAY_INTERVAL_SECONDS // 60} * * * *"
REPORT_CRON = "0 * * * *"


def intraday_timeframes(universe: Universe) -> list[str]:
    return [tf for tf in universe.timeframes if is_intraday(tf)]


def backfill_run_requests(
    universe: Universe,
    scheduled_for: str,
    *,
    timeframes: list[str] | None = None,
    schedule: str,
    partitions_per_run: int | None = None,
) -> list[dg.RunRequest]:
    """One run request per partition-key range (of at most ``partitions_per_run`` pairs)
    covering the chosen timeframes of every symbol."""
    return [
        dg.RunRequest(
            run_key=f"{schedule}:{scheduled_for}:{start}...{end}",
            job_name=MARKET_DATA_JOB,
            tags={RANGE_START_TAG: start, RANGE_END_TAG: end, TRIGGER_TAG: "schedule"},
        )
        for start, end in partition_ranges(
            universe, None, timeframes, max_partitions_per_run=partitions_per_run
        )
    ]


def build_schedules(
    universe: Universe, *, partitions_per_run: int | None = None
) -> list[dg.ScheduleDefinition]:
    """The three schedules over ``universe`` (all in UTC, running by default)."""
    calendars = [
        get_calendar(name) for name in {universe.calendar_of(s) for s in universe.symbol_names}
    ]

    @dg.schedule(
        name="daily_backfill_schedule",
        description="Refreshes bars and features of every pair of the universe at 02:00 UTC "
        "(after the New York close), in bulk runs; skipped when none of the universe's "
        "calendars closed a session since the last tick.",
        cron_schedule=DAILY_CRON,
        job_name=MARKET_DATA_JOB,
        execution_timezone="UTC",
        default_status=dg.DefaultScheduleStatus.RUNNING,
    )
    def daily_backfill_schedule(context: dg.ScheduleEvaluationContext):
        """Refreshes bars and features of every pair of the universe at 02:00 UTC in bulk runs,
        unless none of its calendars closed a session since the last tick (weekends, and
        exchange holidays of an equity-only universe)."""
        tick = context.scheduled_execution_time
        if tick is not None and not sessions_closed_between(
            calendars, tick - timedelta(days=1), tick
        ):
            names = ", ".join(sorted({c.name for c in calendars}))
            return dg.SkipReason(f"no session of {names} closed in the 24 h before {tick}")
        when = tick.isoformat() if tick is not None else "manual"
        return backfill_run_requests(
            universe, when, schedule="daily", partitions_per_run=partitions_per_run
        )

    short = intraday_timeframes(universe)

    @dg.schedule(
        name="intraday_backfill_schedule",
        description="Refreshes the timeframes shorter than 1h of every symbol every 15 minutes, "
        "in bulk runs.",
        cron_schedule=INTRADAY_CRON,
        job_name=MARKET_DATA_JOB,
        execution_timezone="UTC",
        default_status=dg.DefaultScheduleStatus.RUNNING,
    )
    def intraday_backfill_schedule(context: dg.ScheduleEvaluationContext):
        """Refreshes the timeframes shorter than 1h of every symbol every 15 minutes, in bulk."""
        if not short:
            return dg.SkipReason("the universe has no timeframe shorter than 1h")
        when = context.scheduled_execution_time.isoformat()
        return backfill_run_requests(
            universe,
            when,
            timeframes=short,
            schedule="intraday",
            partitions_per_run=partitions_per_run,
        )

    scheduler_health_report_schedule = dg.ScheduleDefinition(
        name="scheduler_health_report_schedule",
        cron_schedule=REPORT_CRON,
        job_name=REPORT_JOB,
        execution_timezone="UTC",
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description="Runs the scheduler health report every hour.",
    )
    return [daily_backfill_schedule, intraday_backfill_schedule, scheduler_health_report_schedule]
