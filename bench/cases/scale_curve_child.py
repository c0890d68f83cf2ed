"""The run process of the ``scale_curve`` case: ``python -m bench.cases.scale_curve_child SPEC``.

Each measured backfill (or floor) runs in a fresh process of this module, so the peak resident
set it reports (``VmHWM`` of /proc/self/status, the high-water mark of this process's own memory,
which ``exec`` starts afresh) is the run's own and not the bench's. ``SPEC`` is a JSON object:

- ``steps``: what to run, in order, each one of ``floor``, ``floor_with_checks``, ``first``,
  ``incremental`` (this one first removes the newest :data:`INCREMENTAL_BARS` bars of every
  pair, untimed; the real curve gives each step a process of its own; the smoke run puts a
  size's steps in one process to stay short, and its peak RSS then means nothing);
- ``backend``: ``postgresql`` (``instance_url``: the instance database, on the storage
  dagster.postgres.yaml ships) or ``sqlite`` (``dagster_home``: a home whose dagster.yaml is the
  committed one);
- ``universe``, ``market_url``, ``workdir``, ``log``: the universe file, our database, the
  market-pipeline home and the file Dagster's console log goes to;
- ``partitions_per_run``: the split of ours (``Settings.partitions_per_run``; ``None``: one run
  per contiguous range), and of the floor into the same ranges, run one after another;
- ``output``: the JSON file this process writes: per step its seconds, and the peak RSS at the end.
"""

# No `from __future__ import annotations`: Dagster reads the context annotation at runtime.

import contextlib
import json
import os
import sys
import time
from pathlib import Path

import dagster as dg
import sqlalchemy as sa

from bench.cases.backfill import dagster_logs_to, floor_job, postgres_instance
from market_pipeline.cli.launcher import run_backfill
from market_pipeline.config.settings import Settings
from market_pipeline.config.universe_file import load_universe
from market_pipeline.database.engine import make_engine
from market_pipeline.defs.partitions import build_pair_partitions
from market_pipeline.domain.names import RANGE_END_TAG, RANGE_START_TAG
from market_pipeline.domain.partition_keys import partition_ranges

STEPS = ("floor", "floor_with_checks", "first", "incremental")
INCREMENTAL_BARS = 5
"""New bars per pair of the incremental step: a scheduled update's common case."""

# Either backend: the newest bars (and feature rows) of every pair, by primary key.
_REWIND = """
DELETE FROM {table} WHERE (symbol, timeframe, ts) IN (
    SELECT symbol, timeframe, ts FROM (
        SELECT symbol, timeframe, ts,
               ROW_NUMBER() OVER (PARTITION BY symbol, timeframe ORDER BY ts DESC) AS rn
        FROM {table}
    ) AS newest WHERE rn <= :bars
)
"""


def rewind(db_url: str, bars: int) -> None:
    """Remove the newest ``bars`` bars and feature rows of every pair, so the next backfill
    fetches at least that many new bars per pair (more if a 1m bar completed meanwhile)."""
    engine = make_engine(db_url)
    with engine.begin() as conn:
        for table in ("ohlcv_bars", "quant_features"):
            conn.execute(sa.text(_REWIND.format(table=table)), {"bars": bars})
    engine.dispose()


def peak_rss_mb() -> float:
    """This process's peak resident set in MiB (``VmHWM``, Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM line in /proc/self/status (not Linux?)")


@contextlib.contextmanager
def _instance(spec: dict):
    if spec["backend"] == "postgresql":
        with postgres_instance(spec["instance_url"]) as instance:
            yield instance
        return
    os.environ["DAGSTER_HOME"] = spec["dagster_home"]
    with dg.DagsterInstance.get() as instance:
        yield instance


def _floor(
    instance: dg.DagsterInstance, partitions, ranges: list[tuple[str, str]], *, checks: bool
) -> float:
    """Seconds of the floor over ``ranges``, one run after another, after an untimed
    one-partition warm-up run (imports, code paths and the instance's first connections)."""
    job = floor_job(partitions, with_checks=checks)
    job.execute_in_process(instance=instance, partition_key=partitions.get_partition_keys()[0])
    start = time.perf_counter()
    for first, last in ranges:
        tags = {RANGE_START_TAG: first, RANGE_END_TAG: last}
        if not job.execute_in_process(instance=instance, tags=tags).success:
            raise RuntimeError(f"the floor run of {first}..{last} failed")
    return time.perf_counter() - start


def _ours(spec: dict, instance: dg.DagsterInstance, partitions, runs: int) -> float:
    """Seconds of our backfill over the whole universe (``runs`` runs), after an untimed
    one-partition run of the floor (Dagster's code paths and the instance's first connections,
    as the floor's own warm-up), which writes nothing to our tables."""
    warm_key = partitions.get_partition_keys()[0]
    floor_job(partitions).execute_in_process(instance=instance, partition_key=warm_key)
    settings = Settings(
        home=Path(spec["workdir"]),
        db_url=spec["market_url"],
        universe_path=Path(spec["universe"]),
        partitions_per_run=spec["partitions_per_run"],
    )
    start = time.perf_counter()
    outcome = run_backfill(settings, instance=instance, trigger="bench")
    seconds = time.perf_counter() - start
    if not outcome.success or len(outcome.run_ids) != runs:
        raise RuntimeError(f"the backfill did not succeed in {runs} runs: {outcome.summary()}")
    return seconds


def main(argv: list[str]) -> int:
    [raw] = argv
    spec = json.loads(raw)
    unknown = set(spec["steps"]) - set(STEPS)
    if unknown:
        raise ValueError(f"unknown steps {sorted(unknown)}; expected some of {STEPS}")
    universe = load_universe(Path(spec["universe"]))
    partitions = build_pair_partitions(universe)
    ranges = partition_ranges(universe, max_partitions_per_run=spec["partitions_per_run"])
    seconds: dict[str, float] = {}
    with _instance(spec) as instance, dagster_logs_to(Path(spec["log"])):
        for step in spec["steps"]:
            if step.startswith("floor"):
                checks = step == "floor_with_checks"
                seconds[step] = _floor(instance, partitions, ranges, checks=checks)
            else:
                if step == "incremental":
                    rewind(spec["market_url"], INCREMENTAL_BARS)
                seconds[step] = _ours(spec, instance, partitions, len(ranges))
    Path(spec["output"]).write_text(
        json.dumps(
            {
                "seconds": seconds,
                "peak_rss_mb": peak_rss_mb(),
                "partitions": len(universe.pairs),
                "runs": len(ranges),
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
