"""The kept SQLite storage commits without a sync per commit, and keeps what a killed process
committed.

Dagster commits every event on its own. In WAL mode SQLite's default (``synchronous = FULL``)
syncs the WAL at each of those commits; the kept storage runs at NORMAL, which syncs at
checkpoints only. That is safe against a crash of the writing process, which these tests kill.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import dagster as dg
import sqlalchemy as sa

from market_pipeline.instance_storage import sqlite_files
from market_pipeline.instance_storage.sqlite import storage_config
from market_pipeline_tests.support.range_runs import JOB, RANGE

SYNCHRONOUS_NORMAL, SYNCHRONOUS_FULL = 1, 2
EVENTS = 50


def _synchronous(engine: sa.Engine) -> int:
    with engine.connect() as conn:
        return int(conn.exec_driver_sql("PRAGMA synchronous").scalar_one())


def test_every_kept_database_commits_at_synchronous_normal_where_stock_stays_full(tmp_path):
    with dg.instance_for_test(overrides={"storage": storage_config(str(tmp_path))}) as instance:
        run_id = JOB.execute_in_process(instance=instance, tags=RANGE).run_id
        kept = {Path(str(e.url.database)).name: e for e in sqlite_files._KEPT_ENGINES}
        files = {name for name in kept if name in ("runs.db", "index.db", f"{run_id}.db")}
        assert files == {"runs.db", "index.db", f"{run_id}.db"}
        assert {name: _synchronous(kept[name]) for name in files} == dict.fromkeys(
            files, SYNCHRONOUS_NORMAL
        )
    stock = sa.create_engine(f"sqlite:///{tmp_path / 'history' / 'runs.db'}")
    try:
        assert _synchronous(stock) == SYNCHRONOUS_FULL  # a plain connection: SQLite's default
    finally:
        stock.dispose()


WRITER = textwrap.dedent(
    """
    import sys, time
    import dagster as dg
    from market_pipeline.instance_storage.sqlite import storage_config
    from market_pipeline_tests.support.range_runs import JOB, RANGE

    with dg.instance_for_test(overrides={"storage": storage_config(sys.argv[1])}) as instance:
        run = instance.create_run_for_job(JOB, tags=RANGE)
        for i in range(int(sys.argv[2])):
            instance.report_engine_event(f"event {i}", run)
        print(run.run_id, flush=True)
        time.sleep(600)  # killed here, its connections open and the WAL not checkpointed
    """
)


def test_events_committed_by_a_process_killed_afterwards_are_kept(tmp_path):
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(tmp_path), str(EVENTS)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        run_id = writer.stdout.readline().strip()
        assert run_id, "the writer printed no run id"
        assert list((tmp_path / "history" / "runs").glob(f"{run_id}.db-wal"))  # not checkpointed
    finally:
        os.kill(writer.pid, signal.SIGKILL)
        writer.wait(timeout=30)
        writer.stdout.close()
    stock = {"sqlite": {"base_dir": str(tmp_path)}}
    with dg.instance_for_test(overrides={"storage": stock}) as reader:
        records = reader.get_records_for_run(run_id, limit=10 * EVENTS).records
        messages = [r.event_log_entry.dagster_event.message for r in records]
    assert [m for m in messages if m.startswith("event ")] == [f"event {i}" for i in range(EVENTS)]
