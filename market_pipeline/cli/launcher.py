"""Launch bulk refreshes: a whole universe, or a part of it, in as few runs as ranges allow."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import dagster as dg

from market_pipeline.config.settings import Settings
from market_pipeline.defs.jobs import MARKET_DATA_JOB
from market_pipeline.domain.universe import Universe, UniverseError, load_universe

RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"
TRIGGER_TAG = "market_pipeline/trigger"


def _contiguous_blocks(chosen: Sequence[str], order: Sequence[str]) -> list[tuple[str, str]]:
    """(first, last) of each run of consecutive items of ``order`` that are all chosen."""
    wanted = set(chosen)
    blocks: list[tuple[str, str]] = []
    start = prev = None
    for item in order:
        if item in wanted:
            start = start or item
            prev = item
        elif start is not None:
            blocks.append((start, prev))
            start = None
    if start is not None:
        blocks.append((start, prev))
    return blocks


def partition_ranges(
    universe: Universe,
    symbols: Sequence[str] | None = None,
    timeframes: Sequence[str] | None = None,
) -> list[tuple[str, str]]:
    """Partition-key ranges (``"A|1d"``, ``"Z|1h"``) covering exactly the chosen pairs."""
    symbols = list(symbols or universe.symbol_names)
    timeframes = list(timeframes or universe.timeframes)
    unknown = sorted(set(symbols) - set(universe.symbol_names))
    if unknown:
        raise UniverseError(f"not in the universe {universe.source}: {', '.join(unknown)}")
    unknown = sorted(set(timeframes) - set(universe.timeframes))
    if unknown:
        raise UniverseError(
            f"timeframes not in the universe {universe.source}: {', '.join(unknown)}"
        )
    return [
        (f"{s0}|{t0}", f"{s1}|{t1}")
        for s0, s1 in _contiguous_blocks(symbols, universe.symbol_names)
        for t0, t1 in _contiguous_blocks(timeframes, universe.timeframes)
    ]


@dataclass
class BackfillResult:
    run_ids: list[str] = field(default_factory=list)
    failed_runs: list[str] = field(default_factory=list)
    pairs: int = 0

    @property
    def success(self) -> bool:
        return not self.failed_runs

    def summary(self) -> str:
        state = "succeeded" if self.success else f"{len(self.failed_runs)} run(s) had failed pairs"
        return f"backfill of {self.pairs} pairs in {len(self.run_ids)} run(s): {state}"


def run_backfill(
    settings: Settings,
    *,
    symbols: Sequence[str] | None = None,
    timeframes: Sequence[str] | None = None,
    trigger: str = "manual",
    instance: dg.DagsterInstance | None = None,
    log_level: str = "INFO",
) -> BackfillResult:
    """Run the market-data job in this process over the chosen pairs, one run per range."""
    from market_pipeline.definitions import build_definitions

    universe = load_universe(settings.universe_path)
    ranges = partition_ranges(universe, symbols, timeframes)
    defs = build_definitions(settings)
    job = defs.resolve_job_def(MARKET_DATA_JOB)
    result = BackfillResult(pairs=len(symbols or universe.symbol_names)
                            * len(timeframes or universe.timeframes))
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
