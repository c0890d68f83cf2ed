"""Part of case 5 (mirror): projecting one run of 10,000 partitions, against Dagster's own read of
that run's events.

One range run over every partition of a 2,000 symbols x 5 timeframes universe (and, for the
curve, of a 200 x 5 one) is executed on a PostgreSQL-backed Dagster instance. Its body does no
market work: for each partition it reports the two materializations with the metadata our assets
write, and it ends with the step ``Failure`` our assets raise, naming one pair in ten as failed
with its own error. So the run has what a big backfill's run has: 2 materializations per
partition, a planned partition subset, a step failure with 1,000 per-pair errors.

- **ours**: ``mirror_run`` of that run into a fresh market database (first projection: execution
  row, one status row per pair, the failures, the freshness rows), then once more (the
  reconciler's or a re-delivered sensor's idempotent repeat);
- **the floor**: ``instance.get_records_for_run`` of the event types the mirror reads, the read
  any projection of the run needs; ``instance.all_logs`` of the whole run is kept as an extra.

The figure is the milliseconds per partition beyond the floor: (ours - floor) / partitions,
against the goal of under 1 ms; the same at 1,000 partitions shows whether it stays flat. Peak
Python memory of reading and projecting the run (tracemalloc, timed apart) is an extra, read a
page of events at a time as the mirror does and all at once as it did.
"""

# No `from __future__ import annotations`: Dagster reads the context annotation at runtime.

import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import dagster as dg

from bench.cases.backfill import dagster_logs_to, postgres_instance
from bench.common import (
    LOWER_IS_BETTER,
    Result,
    bench_symbols,
    migrated_engine,
    temp_database,
    write_universe,
)
from market_pipeline.config.universe_file import load_universe
from market_pipeline.defs.market_assets import OHLCV_BARS_KEY, QUANT_FEATURES_KEY
from market_pipeline.defs.partitions import build_pair_partitions
from market_pipeline.domain.names import MARKET_DATA_JOB, RANGE_END_TAG, RANGE_START_TAG, Metadata
from market_pipeline.observability.mirror import MIRRORED_EVENT_TYPES, mirror_run
from market_pipeline.observability.mirror.events import read_run
from market_pipeline.observability.mirror.projection import project
from market_pipeline.observability.store import ObservabilityStore

TIMEFRAMES = ("1m", "5m", "15m", "1h", "1d")
WIDE_JOB = MARKET_DATA_JOB
"""Our job's name: the mirror projects runs of it."""
FAILED_EVERY = 10
"""One partition in this many fails with its own error."""


def _metadata(index: int) -> tuple[dict, dict]:
    last = f"2026-12-02T20:{index % 60:02d}:00+00:00"
    bars = {
        Metadata.ROWS_FETCHED: dg.MetadataValue.int(2000),
        Metadata.ROWS_INSERTED: dg.MetadataValue.int(2000),
        Metadata.ROWS_REJECTED: dg.MetadataValue.int(0),
        Metadata.BARS_STORED: dg.MetadataValue.int(2000),
        Metadata.FIRST_BAR_AT: dg.MetadataValue.text("2026-11-25T14:30:00+00:00"),
        Metadata.LAST_BAR_AT: dg.MetadataValue.text(last),
        Metadata.REVISED_BARS: dg.MetadataValue.int(0),
        Metadata.HISTORY_REFETCHED: dg.MetadataValue.bool(False),
    }
    features = {
        Metadata.FEATURES_COMPUTED: dg.MetadataValue.int(2000),
        Metadata.BARS_STORED: dg.MetadataValue.int(2000),
        Metadata.LAST_BAR_AT: dg.MetadataValue.text(last),
        Metadata.HISTORY_REFETCHED: dg.MetadataValue.bool(False),
    }
    return bars, features


def wide_job(partitions_def: dg.PartitionsDefinition) -> dg.JobDefinition:
    """A range job over our two asset keys that reports what our assets report, doing no work."""

    @dg.multi_asset(
        name="market_data",
        specs=[
            dg.AssetSpec(OHLCV_BARS_KEY, skippable=True),
            dg.AssetSpec(QUANT_FEATURES_KEY, deps=[OHLCV_BARS_KEY], skippable=True),
        ],
        partitions_def=partitions_def,
        backfill_policy=dg.BackfillPolicy.single_run(),
        can_subset=True,
    )
    def market_data(context: dg.AssetExecutionContext) -> Iterator:
        errors = {}
        for index, key in enumerate(context.partition_keys):
            if index % FAILED_EVERY == 0:
                errors[key] = f"provider error for {key}: HTTP 503 (attempt 3 of 3)"
                continue
            bars, features = _metadata(index)
            yield dg.AssetMaterialization(OHLCV_BARS_KEY, partition=key, metadata=bars)
            yield dg.AssetMaterialization(QUANT_FEATURES_KEY, partition=key, metadata=features)
        raise dg.Failure(
            description=f"{len(errors)} of {len(context.partition_keys)} partitions failed",
            metadata={Metadata.FAILED_PARTITIONS: dg.MetadataValue.json(errors)},
            allow_retries=False,
        )

    job = dg.define_asset_job(
        WIDE_JOB,
        selection=dg.AssetSelection.assets(OHLCV_BARS_KEY, QUANT_FEATURES_KEY),
        partitions_def=partitions_def,
    )
    return dg.Definitions(assets=[market_data], jobs=[job]).resolve_job_def(WIDE_JOB)


def _peak_mib(fn) -> float:
    """Peak Python memory of ``fn()`` in MiB (tracemalloc: slows the call, so timed apart)."""
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1] / 2**20
    finally:
        tracemalloc.stop()


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _one_run(workdir: Path, symbols: int, instance: dg.DagsterInstance) -> dict:
    universe = load_universe(
        write_universe(
            workdir / f"universe_{symbols}.yaml",
            bench_symbols(symbols),
            TIMEFRAMES,
            {"kind": "synthetic", "history_bars": 200},
        )
    )
    partitions = build_pair_partitions(universe)
    keys = partitions.get_partition_keys()
    with dagster_logs_to(workdir / "dagster.log"):
        start = time.perf_counter()
        result = wide_job(partitions).execute_in_process(
            instance=instance,
            tags={RANGE_START_TAG: keys[0], RANGE_END_TAG: keys[-1]},
            raise_on_error=False,
        )
        run_s = time.perf_counter() - start
    run_id = result.run_id
    classes = {s: universe.asset_class_of(s) for s in universe.symbol_names}
    with temp_database(f"mirror_wide_{symbols}") as market_url:
        engine = migrated_engine(market_url)
        try:
            store = ObservabilityStore(engine, monitored_pairs=universe.pairs)
            types = set(MIRRORED_EVENT_TYPES)
            floor_s = _timed(lambda: instance.get_records_for_run(run_id, of_type=types))
            all_logs_s = _timed(lambda: instance.all_logs(run_id))
            first_s = _timed(lambda: mirror_run(instance, store, run_id, asset_classes=classes))
            repeat_s = _timed(lambda: mirror_run(instance, store, run_id, asset_classes=classes))
            floor_again_s = _timed(lambda: instance.get_records_for_run(run_id, of_type=types))
            paged_peak = _peak_mib(lambda: project(read_run(instance, run_id)))
            whole_peak = _peak_mib(lambda: project(read_run(instance, run_id, page_size=10**9)))
            history = store.get_execution_history(limit=1).executions
        finally:
            engine.dispose()
    if not history or history[0].failed_symbols == 0:
        raise RuntimeError(f"the wide run {run_id} was not mirrored as expected: {history}")
    floor = min(floor_s, floor_again_s)
    return {
        "partitions": len(keys),
        "run_s": run_s,
        "floor_s": floor,
        "all_logs_s": all_logs_s,
        "first_s": first_s,
        "repeat_s": repeat_s,
        "projection_peak_mib": paged_peak,
        "projection_peak_mib_reading_all_events_at_once": whole_peak,
        "ms_per_partition": (first_s - floor) * 1e3 / len(keys),
        "repeat_ms_per_partition": (repeat_s - floor) * 1e3 / len(keys),
    }


def run(workdir: Path, smoke: bool = False) -> list[Result]:
    sizes = (4, 8) if smoke else (200, 2000)
    with (
        temp_database("mirror_wide_dagster") as instance_url,
        postgres_instance(instance_url) as instance,
    ):
        small, big = (_one_run(workdir, n, instance) for n in sizes)
    flat = big["ms_per_partition"] / small["ms_per_partition"]
    return [
        Result(
            name=f"mirror: one {big['partitions']:,}-partition run, beyond Dagster's read of "
            "its events",
            value=big["ms_per_partition"],
            unit="ms/partition",
            baseline=f"the same at {small['partitions']:,} partitions",
            baseline_value=small["ms_per_partition"],
            direction=LOWER_IS_BETTER,
            goal="under 1 ms per partition",
            goal_met=big["ms_per_partition"] < 1,
            note=(
                f"{big['first_s']:.2f} s for the projection of which Dagster's read of the "
                f"mirrored events is {big['floor_s']:.2f} s (all_logs {big['all_logs_s']:.2f} s); "
                f"per partition {flat:.2f}x the figure at {small['partitions']:,}"
            ),
            extra={"small": small, "big": big},
        )
    ]
