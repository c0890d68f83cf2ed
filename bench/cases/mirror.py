"""Case 5, mirror: runs reconciled per second from a backlog, and the lag with the daemon running.

Backlog: 10 real single-partition runs of the market-data job are executed on a PostgreSQL-backed
Dagster instance; each is then replayed 99 times under new run ids (the run record and every one
of its events copied in Dagster's own tables with the run id replaced, see :func:`replay_runs`)
to make a backlog of 1,000 finished runs. ``reconcile_instance`` then mirrors the whole backlog
in one pass. The baseline is the read any projection needs: the same run-record pages plus each
run's events of the types the mirror reads, straight from Dagster's storage, timed just before
the reconcile.

Lag (not in smoke mode): ``dagster-daemon run`` serves the project's definitions (production
sensor intervals) on the same instance; runs are executed one after another and for each the time
from the run's end (its run record) to its ``completed`` row in ``scheduler_execution_log`` is
measured by polling every 50 ms. The baseline is the run-status sensor's minimum interval, which
bounds the lag from below on average (half of it) and from above (all of it) plus evaluation.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import sqlalchemy as sa
import yaml

from bench.cases import mirror_wide
from bench.cases.backfill import dagster_logs_to, postgres_instance
from bench.common import (
    HIGHER_IS_BETTER,
    LOWER_IS_BETTER,
    Result,
    bench_symbols,
    median,
    migrated_engine,
    percentile,
    temp_database,
    write_universe,
)
from market_pipeline.config.settings import Settings
from market_pipeline.config.universe_file import load_universe
from market_pipeline.defs.observability_sensors import SensorIntervals
from market_pipeline.defs.partitions import build_pair_partitions
from market_pipeline.domain.names import MARKET_DATA_JOB
from market_pipeline.instance_storage.postgres import storage_config
from market_pipeline.observability.mirror import MIRRORED_EVENT_TYPES, reconcile_instance
from market_pipeline.observability.store import ObservabilityStore

TIMEFRAMES = ("1h", "1d")
MIRROR_EVENT_TYPES = set(MIRRORED_EVENT_TYPES)
"""The event types the projection reads: the floor reads the same."""


def replay_runs(instance_url: str, run_ids: list[str], copies: int) -> None:
    """Write ``copies`` copies of each finished run under new run ids, in Dagster's own tables.

    Copies the rows of ``runs``, ``run_tags`` and ``event_logs`` with the run id replaced in the
    serialized run body and events, and update timestamps 1 ms apart (as runs ending one after
    another), in a few statements. Writing them through ``DagsterInstance`` would take ~0.7 s per
    run here (a new connection per event in dagster-postgres); the mirror reads only these
    tables, so what it sees is the same. Asset index tables are not copied.
    """
    engine = sa.create_engine(instance_url, poolclass=sa.pool.NullPool)
    try:
        with engine.begin() as conn:
            conn.execute(
                sa.text(
                    "CREATE TEMP TABLE bench_copies AS "
                    "SELECT t.old, gen_random_uuid()::text AS new, "
                    "       row_number() OVER () AS n "
                    "FROM unnest(CAST(:ids AS text[])) AS t(old), generate_series(1, :k)"
                ),
                {"ids": run_ids, "k": copies},
            )
            conn.exec_driver_sql(
                "INSERT INTO runs (run_id, snapshot_id, pipeline_name, mode, status, run_body, "
                "partition, partition_set, create_timestamp, update_timestamp, start_time, "
                "end_time, backfill_id) "
                "SELECT c.new, r.snapshot_id, r.pipeline_name, r.mode, r.status, "
                "replace(r.run_body, r.run_id, c.new), r.partition, r.partition_set, "
                "r.create_timestamp, now() AT TIME ZONE 'UTC' + c.n * interval '1 millisecond', "
                "r.start_time, r.end_time, r.backfill_id "
                "FROM runs r JOIN bench_copies c ON r.run_id = c.old"
            )
            conn.exec_driver_sql(
                "INSERT INTO run_tags (run_id, key, value) SELECT c.new, t.key, t.value "
                "FROM run_tags t JOIN bench_copies c ON t.run_id = c.old"
            )
            conn.exec_driver_sql(
                "INSERT INTO event_logs (run_id, event, dagster_event_type, timestamp, step_key, "
                "asset_key, partition) "
                "SELECT c.new, replace(e.event, e.run_id, c.new), e.dagster_event_type, "
                "e.timestamp, e.step_key, e.asset_key, e.partition "
                "FROM event_logs e JOIN bench_copies c ON e.run_id = c.old ORDER BY c.n, e.id"
            )
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("ANALYZE")
    finally:
        engine.dispose()


def read_floor(instance: dg.DagsterInstance, page_size: int = 500) -> int:
    """Read every run record page and each run's mirrored event types; return the run count."""
    after = None
    count = 0
    while True:
        records = instance.get_run_records(
            filters=dg.RunsFilter(updated_after=after),
            order_by="update_timestamp",
            ascending=True,
            limit=page_size,
        )
        if not records:
            return count
        for record in records:
            instance.get_records_for_run(record.dagster_run.run_id, of_type=MIRROR_EVENT_TYPES)
            count += 1
        after = records[-1].update_timestamp
        if len(records) < page_size:
            return count


def _mirrored(engine: sa.Engine, run_id: str) -> bool:
    with engine.connect() as conn:
        status = conn.execute(
            sa.text("SELECT status FROM scheduler_execution_log WHERE execution_id = :id"),
            {"id": run_id},
        ).scalar()
    return status in ("completed", "failed")


def measure_lag(
    instance_url: str,
    market_url: str,
    universe: Path,
    workdir: Path,
    keys: list[str],
    settings: Settings,
) -> list[float]:
    """Seconds from run end to mirrored row for runs of ``keys``, with the daemon running."""
    home = workdir / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text(
        yaml.safe_dump({"storage": storage_config(instance_url), "telemetry": {"enabled": False}})
    )
    env = dict(os.environ)
    env.update(
        DAGSTER_HOME=str(home),
        MARKET_PIPELINE_DB_URL=market_url,
        MARKET_PIPELINE_UNIVERSE=str(universe),
        MARKET_PIPELINE_HOME=str(workdir),
    )
    daemon_log = workdir / "daemon.log"
    with open(daemon_log, "ab") as sink:
        daemon = subprocess.Popen(
            [
                str(Path(sys.executable).parent / "dagster-daemon"),
                "run",
                "-m",
                "market_pipeline.definitions",
            ],
            env=env,
            stdout=sink,
            stderr=sink,
            start_new_session=True,
        )
    engine = sa.create_engine(market_url, poolclass=sa.pool.NullPool)
    lags: list[float] = []
    try:
        from market_pipeline.definitions import build_definitions

        job = build_definitions(settings).resolve_job_def(MARKET_DATA_JOB)
        instance = dg.DagsterInstance.from_config(str(home))
        with instance, dagster_logs_to(workdir / "lag_runs.log"):
            deadline = time.monotonic() + 120
            while not any(
                h.daemon_type == "SENSOR" for h in instance.get_daemon_heartbeats().values()
            ):
                if daemon.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"dagster-daemon did not start; see {daemon_log}")
                time.sleep(0.5)
            time.sleep(SensorIntervals().run_status + 2)  # first ticks set the sensors' cursors
            for key in keys:
                result = job.execute_in_process(instance=instance, partition_key=key)
                record = instance.get_run_records(
                    filters=dg.RunsFilter(run_ids=[result.run_id]), limit=1
                )[0]
                ended = record.end_time or time.time()
                deadline = time.monotonic() + 90
                while not _mirrored(engine, result.run_id):
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"run {result.run_id} not mirrored within 90 s")
                    time.sleep(0.05)
                lags.append(time.time() - ended)
    finally:
        engine.dispose()
        os.killpg(daemon.pid, 15)
        try:
            daemon.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(daemon.pid, 9)
            daemon.wait()
    return lags


def run(smoke: bool = False) -> list[Result]:
    """Build the backlog, time the read floor and the reconcile, then (full) the daemon lag."""
    templates, backlog = (2, 20) if smoke else (10, 1000)
    lag_runs = 0 if smoke else 5
    workdir = Path(tempfile.mkdtemp(prefix="mp_bench_mirror_"))
    universe_path = write_universe(
        workdir / "universe.yaml",
        bench_symbols(10),
        TIMEFRAMES,
        {"kind": "synthetic", "history_bars": 200},
    )
    universe = load_universe(universe_path)
    partitions = build_pair_partitions(universe)
    keys = partitions.get_partition_keys()
    with temp_database("mirror_dagster") as instance_url, temp_database("mirror") as market_url:
        engine = migrated_engine(market_url)
        settings = Settings(home=workdir, db_url=market_url, universe_path=universe_path)
        try:
            from market_pipeline.definitions import build_definitions

            job = build_definitions(settings).resolve_job_def(MARKET_DATA_JOB)
            with postgres_instance(instance_url) as instance:
                with dagster_logs_to(workdir / "dagster.log"):
                    run_ids = [
                        job.execute_in_process(instance=instance, partition_key=key).run_id
                        for key in keys[:templates]
                    ]
                per_template = backlog // templates - 1
                start = time.perf_counter()
                replay_runs(instance_url, run_ids, per_template)
                replay_s = time.perf_counter() - start
                finished = len(
                    instance.get_run_ids(
                        filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.SUCCESS])
                    )
                )
                if finished != backlog:
                    raise RuntimeError(f"backlog has {finished} finished runs, not {backlog}")
                start = time.perf_counter()
                read = read_floor(instance)
                floor_s = time.perf_counter() - start
                store = ObservabilityStore(engine, monitored_pairs=universe.pairs)
                start = time.perf_counter()
                summary = reconcile_instance(
                    instance,
                    store,
                    partitions_def=partitions,
                    asset_classes={s: universe.asset_class_of(s) for s in universe.symbol_names},
                )
                ours_s = time.perf_counter() - start
            if summary.mirrored != backlog or summary.errors:
                raise RuntimeError(f"reconcile mirrored {summary.mirrored} of {backlog}: {summary}")
            lags = (
                measure_lag(
                    instance_url,
                    market_url,
                    universe_path,
                    workdir,
                    keys[templates : templates + lag_runs],
                    settings,
                )
                if lag_runs
                else []
            )
        finally:
            engine.dispose()

    rate = backlog / ours_s
    floor_rate = read / floor_s
    results = [
        Result(
            name="mirror: runs reconciled per second (backlog)",
            value=rate,
            unit="runs/s",
            baseline=f"reading the same {read} runs' records and mirrored event types",
            baseline_value=floor_rate,
            direction=HIGHER_IS_BETTER,
            note=""
            if smoke
            else (
                f"{1e3 / rate:.1f} ms a run, of which Dagster's reads of its record and events "
                f"are {1e3 / floor_rate:.1f} ms (on the shipped storage, which keeps its "
                "connection); the rest is our writes of each run's projection (execution row, "
                "per-pair statuses, failures: a few statements a run); moved by writing the "
                "projections of a page of runs together"
            ),
            extra={
                "backlog_runs": backlog,
                "template_runs": templates,
                "replay_seconds": replay_s,
                "reconcile_seconds": ours_s,
                "summary": str(summary),
                "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
            },
        )
    ]
    # One run of 10,000 partitions (and of 1,000, for the curve), after the backlog's database
    # is gone.
    results.extend(mirror_wide.run(workdir, smoke))
    if lags:
        interval = SensorIntervals().run_status
        results.append(
            Result(
                name="mirror: lag from run end to mirrored row (daemon)",
                value=median(lags),
                unit="s (median)",
                baseline="run-status sensor minimum interval",
                baseline_value=float(interval),
                direction=LOWER_IS_BETTER,
                note=(
                    "bounded by the run-status sensor's minimum_interval_seconds "
                    f"({interval} s) and the daemon's tick; moved by a shorter interval "
                    "(costs a sensor evaluation per interval) or by writing the row from the "
                    "run itself (a run-end hook), with the sensor as the repair path"
                ),
                extra={"lags_s": lags, "p99_s": percentile(lags, 99), "runs": len(lags)},
            )
        )
    return results
