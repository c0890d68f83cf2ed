"""Launch bulk refreshes in this process: a universe, or part of it, in as few runs as ranges allow.

The one module outside the Dagster tooling that imports :mod:`market_pipeline.definitions`: it
builds the job it runs from the same assembly the code location serves.
"""

from __future__ import annotations

from collections.abc import Sequence

import dagster as dg

from market_pipeline.cli.backfill_result import BackfillResult
from market_pipeline.config.settings import Settings
from market_pipeline.config.universe_file import load_universe
from market_pipeline.definitions import build_definitions
from market_pipeline.domain.names import (
    MARKET_DATA_JOB,
    RANGE_END_TAG,
    RANGE_START_TAG,
    TRIGGER_TAG,
)
from market_pipeline.domain.partition_keys import partition_ranges


def run_backfill(
    settings: Settings,
    *,
    symbols: Sequence[str] | None = None,
    timeframes: Sequence[str] | None = None,
    trigger: str = "manual",
    instance: dg.DagsterInstance | None = None,
    log_level: str = "INFO",
) -> BackfillResult:
    """Run the market-data job in this process over the chosen pairs, one run per range of at
    most ``settings.partitions_per_run`` pairs, one after another."""
    universe = load_universe(settings.universe_path)
    ranges = partition_ranges(
        universe, symbols, timeframes, max_partitions_per_run=settings.partitions_per_run
    )
    job = build_definitions(settings).resolve_job_def(MARKET_DATA_JOB)
    result = BackfillResult(
        pairs=len(symbols or universe.symbol_names) * len(timeframes or universe.timeframes)
    )
    owned = instance is None
    instance = instance or dg.DagsterInstance.get()
    try:
        for start, end in ranges:
            run = job.execute_in_process(
                instance=instance,
                raise_on_error=False,
                tags={RANGE_START_TAG: start, RANGE_END_TAG: end, TRIGGER_TAG: trigger},
                # The terminal gets the run's own messages (and errors); the per-partition events
                # are in the instance for the UI and the mirror.
                run_config={"loggers": {"console": {"config": {"log_level": log_level}}}},
            )
            result.run_ids.append(run.run_id)
            if not run.success:
                result.failed_runs.append(run.run_id)
    finally:
        if owned:
            instance.dispose()
    return result
