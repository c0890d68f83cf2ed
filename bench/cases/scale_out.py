"""Case: the 1,000-partition backfill split into 1, 2 and 4 runs, in this process and over two
Celery workers, against Dagster's empty-body floor split and placed the same way.

All in this invocation, on PostgreSQL (a Dagster instance database and our tables):

- in process: :func:`market_pipeline.cli.launcher.run_backfill` with ``partitions_per_run`` of
  N, N/2 and N/4, its runs one after another (each a first backfill on a fresh database); the
  floor (a job over the same asset keys and partitions whose body only yields the
  materializations, bench/cases/backfill.py) over the same ranges, one after another;
- over Celery: a cluster of the tests' kind (market_pipeline_tests/support/celery_cluster.py):
  the machine's Redis, ``dagster-daemon`` with dagster-celery's run launcher (dagster.celery.yaml)
  and two workers of one run at a time; :func:`market_pipeline.cli.run_queue.submit_backfill`
  queues the same splits (tables truncated between rounds, so each is a first backfill), then the
  floor's code location (a job of the same name, the daemon restarted on it) the same way. A
  Celery figure is the span from the first run's creation to the last run's end, as the instance
  records them (the submitter's own start, a code server, is reported beside it).

Figures: partitions per second, the speed-up against one run in process, the overhead per run in
process ((T_k - T_1) / (k - 1)), and the split backfill against the floor split the same way.
Goals (issue 15, on this 2-core machine): two workers reach at least 1.6x the throughput of one
run; the split backfill stays within 1.5x of the floor split the same way.
"""

# No `from __future__ import annotations`: Dagster reads the context annotation at runtime.

import contextlib
import dataclasses
import io
import os
import tempfile
import time
from pathlib import Path

import dagster as dg
import sqlalchemy as sa

from bench.cases.backfill import (
    TIMEFRAMES,
    _load_1m,
    dagster_logs_to,
    floor_definitions,
    postgres_instance,
)
from bench.common import (
    HIGHER_IS_BETTER,
    LOWER_IS_BETTER,
    PG_SERVER_URL,
    Result,
    bench_symbols,
    migrated_engine,
    temp_database,
    write_universe,
)
from bench.cpu import cpu_now
from market_pipeline.cli.launcher import run_backfill
from market_pipeline.cli.run_queue import submit_backfill
from market_pipeline.config.settings import Settings
from market_pipeline.config.universe_file import load_universe
from market_pipeline.defs.partitions import build_pair_partitions
from market_pipeline.domain.names import MARKET_DATA_JOB, RANGE_END_TAG, RANGE_START_TAG
from market_pipeline.domain.partition_keys import partition_ranges
from market_pipeline_tests.support.celery_cluster import MACHINE_REDIS, cluster, require_redis

SPLITS = (1, 2, 4)
WORKERS = ("w1", "w2")

OURS_DEFS = '''
"""The project's assets and job only (no sensors, no schedules): the bench cluster."""
import dagster as dg

from market_pipeline.config.settings import Settings
from market_pipeline.definitions import build_definitions



def _definitions() -> dg.Definitions:
    full = build_definitions(Settings.from_env())
    return dg.Definitions(
        assets=full.assets, jobs=full.jobs, resources=full.resources,
        executor=dg.in_process_executor,
    )


defs = _definitions()
'''

FLOOR_DEFS = f'''
"""Dagster's empty-body floor as a job named {MARKET_DATA_JOB!r} (the bench cluster)."""
import dagster as dg

from bench.cases.backfill import floor_definitions
from market_pipeline.config.settings import Settings
from market_pipeline.config.universe_file import load_universe
from market_pipeline.defs.partitions import build_pair_partitions

defs = floor_definitions(
    build_pair_partitions(load_universe(Settings.from_env().universe_path)),
    job_name={MARKET_DATA_JOB!r},
    executor=dg.in_process_executor,
)
'''


def _ranges(universe, runs: int) -> list[tuple[str, str]]:
    per_run = -(-len(universe.pairs) // runs)
    return partition_ranges(universe, max_partitions_per_run=per_run)


def _in_process(
    workdir: Path, universe_path: Path, splits: tuple[int, ...]
) -> tuple[dict[str, dict[int, float]], dict[str, dict[str, float]]]:
    """Seconds of our backfill and of the floor, split into 1, 2, 4 runs run one after another,
    and the CPU-seconds (this process, PostgreSQL) of the single run of each."""
    universe = load_universe(universe_path)
    partitions = build_pair_partitions(universe)
    floor = floor_definitions(partitions, executor=dg.in_process_executor).resolve_job_def(
        "bookkeeping_floor_job"
    )
    times: dict[str, dict[int, float]] = {"ours": {}, "floor": {}}
    cpu: dict[str, dict[str, float]] = {}
    with (
        temp_database("scale_dagster") as instance_url,
        postgres_instance(instance_url) as instance,
        dagster_logs_to(workdir / "dagster.log"),
    ):
        floor.execute_in_process(
            instance=instance, partition_key=partitions.get_partition_keys()[0]
        )
        for runs in splits:
            start, cpu_start = time.perf_counter(), cpu_now()
            for first, last in _ranges(universe, runs):
                tags = {RANGE_START_TAG: first, RANGE_END_TAG: last}
                if not floor.execute_in_process(instance=instance, tags=tags).success:
                    raise RuntimeError("a floor run failed")
            times["floor"][runs] = time.perf_counter() - start
            if runs == 1:
                cpu["floor"] = _cpu_figures(cpu_now() - cpu_start, times["floor"][1])
            with temp_database(f"scale_inproc{runs}") as market_url:
                migrated_engine(market_url).dispose()
                settings = Settings(
                    home=workdir,
                    db_url=market_url,
                    universe_path=universe_path,
                    partitions_per_run=-(-len(universe.pairs) // runs),
                )
                start, cpu_start = time.perf_counter(), cpu_now()
                done = run_backfill(settings, instance=instance, trigger="bench")
                times["ours"][runs] = time.perf_counter() - start
                if runs == 1:
                    cpu["ours"] = _cpu_figures(cpu_now() - cpu_start, times["ours"][1])
                if not done.success or len(done.run_ids) != runs:
                    raise RuntimeError(f"in-process backfill: {done.summary()}")
    return times, cpu


def _cpu_figures(used, wall: float) -> dict[str, float]:
    """A run's CPU-seconds and the cores it kept busy: on a machine of C cores, k runs at once
    cannot beat ``total / C`` seconds, so ``C / cores_busy`` bounds their speed-up."""
    return {
        "python_cpu_s": round(used.python, 2),
        "postgres_cpu_s": round(used.postgres, 2),
        "total_cpu_s": round(used.total, 2),
        "cores_busy": round(used.total / wall, 2),
        "speedup_bound_on_this_machine": round((os.cpu_count() or 1) * wall / used.total, 2),
    }


def _truncate(url: str) -> None:
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    with engine.begin() as conn:
        names = conn.execute(
            sa.text(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
                "AND tablename <> 'schema_migrations'"
            )
        ).scalars()
        conn.exec_driver_sql(f"TRUNCATE {', '.join(names)}")
    engine.dispose()


def _span(instance: dg.DagsterInstance, run_ids: list[str]) -> float:
    records = instance.get_run_records(dg.RunsFilter(run_ids=run_ids))
    first = min(r.create_timestamp.timestamp() for r in records)
    last = max(r.end_time or 0.0 for r in records)
    return last - first


def _over_celery(
    workdir: Path, universe_path: Path, splits: tuple[int, ...]
) -> tuple[dict[str, dict[int, float]], dict]:
    """Seconds from first run created to last run ended, ours and the floor, over 2 workers."""
    universe = load_universe(universe_path)
    times: dict[str, dict[int, float]] = {"ours": {}, "floor": {}}
    extra: dict = {"submit_call_s": {}}
    root = workdir / "celery"
    root.mkdir()
    broker = require_redis(MACHINE_REDIS)
    with (
        cluster(
            root,
            PG_SERVER_URL,
            broker,
            universe_path,
            partitions_per_run=1,
            defs_module=OURS_DEFS,
        ) as c,
        contextlib.ExitStack() as env,
    ):
        env.enter_context(_environ(c.env))
        for name in WORKERS:
            c.start_worker(name)
        floor_workspace = c.write_workspace("floor_defs", FLOOR_DEFS)
        with dg.DagsterInstance.get() as instance:
            for label, workspace in (("ours", c.workspace), ("floor", floor_workspace)):
                c.stop_process("daemon")
                c.start_daemon(workspace)
                for runs in splits:
                    _truncate(c.tables_url)
                    settings = dataclasses.replace(
                        Settings.from_env(), partitions_per_run=-(-len(universe.pairs) // runs)
                    )
                    start = time.perf_counter()
                    done = submit_backfill(
                        settings,
                        workspace=workspace,
                        timeout=900,
                        trigger="bench",
                        out=io.StringIO(),
                    )
                    extra["submit_call_s"][f"{label}_{runs}"] = round(
                        time.perf_counter() - start, 2
                    )
                    if not done.success or len(done.run_ids) != runs:
                        raise RuntimeError(f"Celery {label} backfill: {done.summary()}")
                    times[label][runs] = _span(instance, done.run_ids)
    return times, extra


@contextlib.contextmanager
def _environ(values: dict[str, str]):
    """This process's environment replaced by the cluster's for a while (the submitter reads
    DAGSTER_HOME and our settings from it, as the CLI does)."""
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(values)
    try:
        yield None
    finally:
        os.environ.clear()
        os.environ.update(saved)


def run(smoke: bool = False) -> list[Result]:
    n_symbols = 4 if smoke else 200
    workdir = Path(tempfile.mkdtemp(prefix="mp_bench_scale_"))
    universe_path = write_universe(
        workdir / "universe.yaml",
        bench_symbols(n_symbols),
        TIMEFRAMES,
        {"kind": "synthetic", "history_bars": 100 if smoke else 2000},
    )
    n = n_symbols * len(TIMEFRAMES)
    # The smoke run (CI) keeps the suite from rotting in about a minute: two splits only.
    splits = SPLITS[:2] if smoke else SPLITS
    load_before = _load_1m()
    local, cpu = _in_process(workdir, universe_path, splits)
    celery, extra = _over_celery(workdir, universe_path, splits)
    load = {"load_1m_before": load_before, "load_1m_after": _load_1m()}
    one_run = local["ours"][1]
    results = []
    for where, times in (("in process", local), ("2 Celery workers", celery)):
        for runs in splits:
            ours, floor = times["ours"][runs], times["floor"][runs]
            speedup = one_run / ours
            figures = {
                "seconds": round(ours, 2),
                "partitions_per_s": round(n / ours, 1),
                "speedup_vs_one_run_in_process": round(speedup, 2),
                "floor_seconds": round(floor, 2),
                "floor_partitions_per_s": round(n / floor, 1),
                **({"submit_call_s": extra["submit_call_s"]} if where != "in process" else {}),
                **load,
            }
            if where == "in process" and runs > 1:
                figures["overhead_per_run_s"] = round((ours - one_run) / (runs - 1), 2)
            if where == "in process" and runs == 1:
                figures["cpu"] = cpu
            results.append(
                Result(
                    name=f"scale out: backfill of {n} partitions in {runs} run(s), {where}",
                    value=ours,
                    unit="s",
                    baseline=f"Dagster's empty-body floor, {runs} run(s), {where}",
                    baseline_value=floor,
                    direction=LOWER_IS_BETTER,
                    goal="<= 1.5x the floor split the same way" if runs > 1 else None,
                    goal_met=(ours <= 1.5 * floor) if runs > 1 else None,
                    extra=figures,
                )
            )
        if where != "in process":
            best = min(times["ours"][r] for r in splits)
            results.append(
                Result(
                    name=f"scale out: {n} partitions over 2 Celery workers, best split",
                    value=n / best,
                    unit="partitions/s",
                    baseline="one run in process",
                    baseline_value=n / one_run,
                    direction=HIGHER_IS_BETTER,
                    goal=">= 1.6x one run",
                    goal_met=one_run / best >= 1.6,
                    extra={
                        "splits_s": {r: round(times["ours"][r], 2) for r in splits},
                        "one_run_cpu": cpu["ours"],
                        **load,
                    },
                )
            )
    return results
