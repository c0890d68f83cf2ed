"""The assets' backfill policy: a UI or daemon backfill becomes several range runs, and Dagster's
own split of it covers every pair exactly once, as the CLI's and the schedules' split does."""

from __future__ import annotations

import dataclasses
import itertools
from datetime import UTC, datetime

import dagster as dg
import pytest
from dagster._core.definitions.automation_tick_evaluation_context import (
    build_run_requests_with_backfill_policies,
)
from dagster._core.definitions.events import AssetKeyPartitionKey

from market_pipeline.config.settings import Settings
from market_pipeline.config.universe_file import load_universe
from market_pipeline.definitions import build_definitions
from market_pipeline.domain.partition_keys import pair_of, partition_ranges
from market_pipeline_tests.support.universes import write_universe

pytestmark = pytest.mark.usefixtures("live_instance")

SYMBOLS = [(f"S{i:02d}", "equity") for i in range(7)]
TIMEFRAMES = ["5m", "1h", "1d"]
RANGE_START, RANGE_END = "dagster/asset_partition_range_start", "dagster/asset_partition_range_end"


@pytest.fixture
def seven_by_three(tmp_path) -> Settings:
    universe = write_universe(tmp_path / "universe.yaml", SYMBOLS, TIMEFRAMES)
    return Settings(home=tmp_path, db_url=f"sqlite:///{tmp_path / 'mp.db'}", universe_path=universe)


def _covered(universe, start: str, end: str) -> list[tuple[str, str]]:
    """The pairs a range run covers: the cross product of its ends' symbol and timeframe ranges."""
    (s0, t0), (s1, t1) = pair_of(start), pair_of(end)
    names, tfs = universe.symbol_names, universe.timeframes
    return list(
        itertools.product(
            names[names.index(s0) : names.index(s1) + 1], tfs[tfs.index(t0) : tfs.index(t1) + 1]
        )
    )


def _dagster_split(settings, instance) -> list[tuple[str, str]]:
    """The run ranges Dagster's asset backfill makes of the whole universe, by the same function
    its backfill daemon calls."""
    defs = build_definitions(settings)
    graph = defs.resolve_asset_graph()
    keys = defs.resolve_assets_def("ohlcv_bars").partitions_def.get_partition_keys()
    wanted = [
        AssetKeyPartitionKey(dg.AssetKey(asset), key)
        for asset in ("ohlcv_bars", "quant_features")
        for key in keys
    ]
    requests = build_run_requests_with_backfill_policies(wanted, graph, instance)
    return [(r.tags[RANGE_START], r.tags[RANGE_END]) for r in requests]


# Dagster: one key range per timeframe (3), each cut into runs of at most N symbols.
@pytest.mark.parametrize(("per_run", "runs"), [(None, 3), (6, 6), (7, 3), (2, 12), (1, 21)])
def test_a_ui_backfill_is_split_into_runs_covering_each_pair_once(
    seven_by_three, live_instance, per_run, runs
):
    settings = dataclasses.replace(seven_by_three, partitions_per_run=per_run)
    universe = load_universe(settings.universe_path)
    ranges = _dagster_split(settings, live_instance)
    assert len(ranges) == runs
    covered = [pair for start, end in ranges for pair in _covered(universe, start, end)]
    assert sorted(covered) == sorted(universe.pairs)
    assert all(len(_covered(universe, s, e)) <= (per_run or len(covered)) for s, e in ranges)


def test_the_policy_is_single_run_without_a_limit_and_multi_run_with_one(seven_by_three):
    policy = (
        build_definitions(dataclasses.replace(seven_by_three, partitions_per_run=None))
        .resolve_assets_def("ohlcv_bars")
        .backfill_policy
    )
    assert policy == dg.BackfillPolicy.single_run()
    policy = (
        build_definitions(dataclasses.replace(seven_by_three, partitions_per_run=7))
        .resolve_assets_def("ohlcv_bars")
        .backfill_policy
    )
    assert policy == dg.BackfillPolicy.multi_run(7)


def test_the_schedules_split_the_universe_as_the_cli_does(seven_by_three, live_instance):
    settings = dataclasses.replace(seven_by_three, partitions_per_run=6)
    defs = build_definitions(settings)
    context = dg.build_schedule_context(
        instance=live_instance, scheduled_execution_time=datetime(2024, 3, 5, 2, tzinfo=UTC)
    )
    requests = defs.get_schedule_def("daily_backfill_schedule").evaluate_tick(context).run_requests
    ranges = [(r.tags[RANGE_START], r.tags[RANGE_END]) for r in requests or []]
    universe = load_universe(settings.universe_path)
    assert ranges == partition_ranges(universe, max_partitions_per_run=6)
    assert len(ranges) == 4
    assert len({r.run_key for r in requests or []}) == 4
