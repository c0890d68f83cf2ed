"""A range run of a trivial partitioned asset, for the instance-storage tests.

Run as ``python -m market_pipeline_tests.support.range_runs BASE_DIR BEGIN_FILE END_FILE`` it is
a writer in a process of its own, as a run worker is: it starts :data:`SLOW_JOB` on the
kept-connection SQLite storage under ``BASE_DIR``; once ``BEGIN_FILE`` exists it reports one
partition every :data:`SLOW_STEP_S` seconds, then waits until ``END_FILE`` exists before it ends
the run and disposes (each wait at most :data:`HOLD_MAX_S`).
"""

# No `from __future__ import annotations`: Dagster reads the context annotation at runtime.

import os
import sys
import time

import dagster as dg

PARTITIONS = dg.StaticPartitionsDefinition([f"P{i:02d}" for i in range(20)])
RANGE = {"dagster/asset_partition_range_start": "P00", "dagster/asset_partition_range_end": "P19"}
SLOW_STEP_S = 0.05
HOLD_MAX_S = 60.0


@dg.multi_asset(
    specs=[dg.AssetSpec("reported", skippable=True)],
    partitions_def=PARTITIONS,
    backfill_policy=dg.BackfillPolicy.single_run(),
)
def reported(context: dg.AssetExecutionContext):
    """One materialization event per partition of the run, as the market-data step reports."""
    for key in context.partition_keys:
        yield dg.AssetMaterialization("reported", partition=key)


@dg.multi_asset(
    specs=[dg.AssetSpec("reported", skippable=True)],
    partitions_def=PARTITIONS,
    backfill_policy=dg.BackfillPolicy.single_run(),
)
def reported_slowly(context: dg.AssetExecutionContext):
    """The same, one partition at a time, between two signals from the test."""
    _wait_for_file(os.environ["RANGE_RUNS_BEGIN_FILE"])
    for key in context.partition_keys:
        time.sleep(SLOW_STEP_S)
        yield dg.AssetMaterialization("reported", partition=key)
    _wait_for_file(os.environ["RANGE_RUNS_END_FILE"])


def _wait_for_file(path: str) -> None:
    deadline = time.monotonic() + HOLD_MAX_S
    while not os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.02)


def _job(asset: dg.AssetsDefinition, name: str) -> dg.JobDefinition:
    return dg.Definitions(
        assets=[asset], jobs=[dg.define_asset_job(name, selection=[asset])]
    ).resolve_job_def(name)


JOB = _job(reported, "reported_job")
SLOW_JOB = _job(reported_slowly, "reported_slowly_job")


def main(base_dir: str, begin_file: str, end_file: str) -> int:
    from market_pipeline.instance_storage.sqlite import storage_config

    os.environ["RANGE_RUNS_BEGIN_FILE"] = begin_file
    os.environ["RANGE_RUNS_END_FILE"] = end_file
    overrides = {"storage": storage_config(base_dir)}
    with dg.instance_for_test(overrides=overrides, set_dagster_home=False) as instance:
        return 0 if SLOW_JOB.execute_in_process(instance=instance, tags=RANGE).success else 1


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:4]))
