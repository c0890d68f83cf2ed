"""Dagster's SQLite instance storage keeps its connections instead of one per call.

Real SQLite files under a real Dagster instance; other processes are real processes.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa
import yaml
from dagster._core.storage.event_log.sqlite.sqlite_event_log import SqliteEventLogStorage
from dagster._core.storage.runs.sqlite.sqlite_run_storage import SqliteRunStorage

from market_pipeline.instance_storage import sqlite as kept_sqlite
from market_pipeline.instance_storage import sqlite_files
from market_pipeline.instance_storage.sqlite import (
    KeptConnectionSqliteEventLogStorage,
    KeptConnectionSqliteRunStorage,
    storage_config,
)
from market_pipeline.package_data import instance_template
from market_pipeline_tests.support.range_runs import JOB, PARTITIONS, RANGE

REPO = Path(__file__).resolve().parents[2]
MATERIALIZATION = dg.DagsterEventType.ASSET_MATERIALIZATION
needs_proc = pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc")


@contextmanager
def _kept_instance(base_dir: Path) -> Iterator[dg.DagsterInstance]:
    with dg.instance_for_test(overrides={"storage": storage_config(str(base_dir))}) as instance:
        yield instance


@contextmanager
def _counting_connects() -> Iterator[list[int]]:
    """Counts new SQLite connections of every engine, made now or later, while open."""
    counter = [0]

    def on_connect(*_):
        counter[0] += 1

    sa.event.listen(sa.pool.Pool, "connect", on_connect)
    try:
        yield counter
    finally:
        sa.event.remove(sa.pool.Pool, "connect", on_connect)


def _open_files_under(folder: Path) -> list[str]:
    """Files under ``folder`` this process has open, from /proc/self/fd."""
    found = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith(str(folder)):
            found.append(target)
    return found


def _materializations(instance: dg.DagsterInstance, run_id: str) -> int:
    return len(instance.get_records_for_run(run_id, of_type=MATERIALIZATION).records)


def test_the_committed_dagster_yaml_selects_the_kept_storage_on_stock_files(tmp_path, monkeypatch):
    template = instance_template(postgres=False)
    assert yaml.safe_load(template.read_text())["storage"] == storage_config(
        {"env": "DAGSTER_HOME"}
    )
    shutil.copyfile(template, tmp_path / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    with dg.DagsterInstance.get() as instance:
        assert isinstance(instance.run_storage, KeptConnectionSqliteRunStorage)
        assert isinstance(instance.event_log_storage, KeptConnectionSqliteEventLogStorage)
        run_id = JOB.execute_in_process(instance=instance, tags=RANGE).run_id
    # Dagster's own layout under DAGSTER_HOME, so stock storage reads the same instance.
    assert (tmp_path / "history" / "runs.db").is_file()
    assert (tmp_path / "history" / "runs" / f"{run_id}.db").is_file()


def test_stock_storage_is_the_one_commented_line_of_the_committed_yaml(tmp_path, monkeypatch):
    text = instance_template(postgres=False).read_text()
    [line] = [s for s in text.splitlines() if s.startswith("#   storage: {sqlite:")]
    (tmp_path / "dagster.yaml").write_text(line.removeprefix("#   ") + "\n")
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    with dg.DagsterInstance.get() as instance:
        assert type(instance.run_storage) is SqliteRunStorage
        assert type(instance.event_log_storage) is SqliteEventLogStorage
        assert JOB.execute_in_process(instance=instance, tags=RANGE).success
    assert (tmp_path / "history" / "runs.db").is_file()


def test_a_range_run_reuses_a_few_connections_where_stock_storage_opens_one_per_call(tmp_path):
    stock = {"sqlite": {"base_dir": str(tmp_path / "stock")}}
    with dg.instance_for_test(overrides={"storage": stock}) as instance, _counting_connects() as n:
        assert JOB.execute_in_process(instance=instance, tags=RANGE).success
    stock_connects = n[0]
    with _kept_instance(tmp_path / "kept") as instance, _counting_connects() as n:
        assert JOB.execute_in_process(instance=instance, tags=RANGE).success
        materialized = instance.get_materialized_partitions(dg.AssetKey("reported"))
    assert materialized == set(PARTITIONS.get_partition_keys())
    # Stock storage connects for every call (20 materializations and the run's own events).
    assert stock_connects > 80
    # Kept: runs.db, the index shard and the run's shard, and the few schedule-storage calls.
    assert n[0] <= 5


def test_disposing_closes_every_file_and_checkpoints_the_wal(tmp_path):
    with _kept_instance(tmp_path) as instance:
        run_id = JOB.execute_in_process(instance=instance, tags=RANGE).run_id
        assert any(p.endswith(f"{run_id}.db") for p in _open_files_under(tmp_path))
    assert _open_files_under(tmp_path) == []
    assert list(tmp_path.rglob("*.db-wal")) == []  # checkpointed into the .db files, removed
    with _kept_instance(tmp_path) as instance:
        assert _materializations(instance, run_id) == 20


@needs_proc
def test_the_event_log_keeps_a_bounded_number_of_run_shards_open(tmp_path):
    kept = kept_sqlite.KEPT_RUN_SHARDS
    with _kept_instance(tmp_path) as instance:
        run_ids = [
            JOB.execute_in_process(instance=instance, tags=RANGE).run_id for _ in range(kept + 3)
        ]
        shards = instance.event_log_storage.kept_shards
        open_shards = {p for p in _open_files_under(tmp_path) if p.endswith(".db")}
        assert [s for s in shards if s != "index"] == run_ids[-kept:]  # and the index shard
        assert len(open_shards - {str(tmp_path / "history" / "runs.db")}) == kept + 1
        assert _materializations(instance, run_ids[0]) == 20  # an evicted shard reopens


def test_the_wal_stays_bounded_over_a_long_run_and_is_checkpointed_at_dispose(tmp_path):
    page = 4096
    message = "x" * (4 * page)  # each event fills a few pages of the run's WAL
    with _kept_instance(tmp_path) as instance:
        run = instance.create_run_for_job(JOB, tags=RANGE)
        wal = tmp_path / "history" / "runs" / f"{run.run_id}.db-wal"
        largest = 0
        for _ in range(600):
            instance.report_engine_event(message, run)
            largest = max(largest, wal.stat().st_size if wal.exists() else 0)
        written = (tmp_path / "history" / "runs" / f"{run.run_id}.db").stat().st_size
    assert written > 2 * sqlite_files.WAL_AUTOCHECKPOINT_PAGES * page  # checkpointed on the way
    assert largest < 1.5 * sqlite_files.WAL_AUTOCHECKPOINT_PAGES * page
    assert not wal.exists()


def test_a_forked_child_opens_its_own_connection_and_the_parent_keeps_its_own(tmp_path):
    with _kept_instance(tmp_path) as instance:
        run_id = JOB.execute_in_process(instance=instance, tags=RANGE).run_id
        with _counting_connects() as n:
            assert _materializations(instance, run_id) == 20  # kept: no new connection
            assert n[0] == 0
            read_end, write_end = os.pipe()
            child = os.fork()
            if child == 0:  # pragma: no cover - runs in the child
                try:
                    seen = _materializations(instance, run_id)
                    os.write(write_end, f"{seen} {n[0]}".encode())
                finally:
                    os._exit(0)
            os.close(write_end)
            seen, child_connects = map(int, os.read(read_end, 64).decode().split())
            os.close(read_end)
            os.waitpid(child, 0)
            assert (seen, child_connects) >= (20, 1)  # the child opened its own connection(s)
            assert _materializations(instance, run_id) == 20  # the parent's still works
            assert n[0] == 0  # and is still the same one


def test_a_shard_file_removed_under_a_kept_connection_is_reopened(tmp_path):
    with _kept_instance(tmp_path) as instance:
        run = instance.create_run_for_job(JOB, tags=RANGE)
        instance.report_engine_event("before", run)
        shard = tmp_path / "history" / "runs" / f"{run.run_id}.db"
        for path in shard.parent.glob(f"{shard.name}*"):
            path.unlink()  # `dagster instance wipe` from another process, `rm -rf`, ...
        instance.report_engine_event("after", run)
    stock = {"sqlite": {"base_dir": str(tmp_path)}}
    with dg.instance_for_test(overrides={"storage": stock}) as reader:
        records = reader.get_records_for_run(run.run_id).records
    messages = [r.event_log_entry.dagster_event.message for r in records]
    assert messages == ["after"]


def test_threads_share_the_storage_without_errors(tmp_path):
    errors: list[BaseException] = []
    with _kept_instance(tmp_path) as instance:
        run = instance.create_run_for_job(JOB, tags=RANGE)

        def work() -> None:
            try:
                for i in range(30):
                    instance.report_engine_event(f"event {i}", run)
                    assert instance.get_run_by_id(run.run_id) is not None
                    instance.get_records_for_run(run.run_id)
            except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
                errors.append(exc)

        threads = [threading.Thread(target=work) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        assert errors == []
        assert len(instance.get_records_for_run(run.run_id, limit=1000).records) >= 120


class Writer:
    """A run in another process on the kept storage under a folder (see range_runs): it writes
    its partitions once :meth:`begin` is called and ends once :meth:`end` is."""

    def __init__(self, base_dir: Path) -> None:
        self._begin, self._end = base_dir / "begin", base_dir / "end"
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "market_pipeline_tests.support.range_runs",
                str(base_dir),
                str(self._begin),
                str(self._end),
            ],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )

    def begin(self) -> None:
        self._begin.touch()

    def end(self) -> None:
        self._begin.touch()
        self._end.touch()


def test_a_threads_transaction_is_neither_seen_nor_committed_by_another_thread(tmp_path):
    """The daemon calls the run storage from several threads: each gets its own connection."""
    with _kept_instance(tmp_path) as instance:
        storage = instance.run_storage
        inside, read = threading.Event(), threading.Event()

        def write_then_roll_back() -> None:
            with contextlib.suppress(RuntimeError), storage.connect() as conn:
                conn.execute(sa.text("INSERT INTO kvs (key, value) VALUES ('a', '1')"))
                inside.set()
                read.wait(10)
                raise RuntimeError("roll back")

        writer = threading.Thread(target=write_then_roll_back)
        writer.start()
        assert inside.wait(10)
        seen = storage.get_cursor_values({"a"})  # a call of this thread, ending in a commit
        read.set()
        writer.join(10)
        assert seen == {}
        assert storage.get_cursor_values({"a"}) == {}


@contextmanager
def _writer_process(tmp_path: Path) -> Iterator[Writer]:
    writer = Writer(tmp_path)
    process = writer.process
    try:
        yield writer
    finally:
        writer.end()
        output = process.communicate(timeout=120)[0].decode(errors="replace")
        assert process.returncode == 0, output[-3000:]
        assert "database is locked" not in output


def _wait_for(what: str, check, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while not (value := check()):
        assert time.monotonic() < deadline, f"no {what} after {timeout} s ({value!r})"
        time.sleep(0.01)
    return value


def test_a_reader_in_another_process_sees_a_run_progress_while_it_writes(tmp_path):
    (tmp_path / "history").mkdir()
    with _kept_instance(tmp_path) as reader, _writer_process(tmp_path) as writer:
        run = _wait_for("run", lambda: reader.get_runs(limit=1))[0]
        writer.begin()
        seen = []
        while not seen or seen[-1] < 20:
            assert writer.process.poll() is None, "the writer ended before the run was read"
            seen.append(_materializations(reader, run.run_id))
            time.sleep(0.01)
        # Still inside the writer's run: its kept connections are open, nothing is checkpointed.
        assert reader.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.STARTED
        assert len(set(seen)) >= 5  # progress, partition by partition
        assert reader.get_materialized_partitions(dg.AssetKey("reported")) == set(
            PARTITIONS.get_partition_keys()
        )
        writer.end()
        _wait_for("run end", lambda: reader.get_run_by_id(run.run_id).is_finished)
    assert reader.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.SUCCESS


@pytest.mark.parametrize("reader_storage", ["kept", "stock"])
def test_a_run_log_subscription_is_woken_by_a_writer_keeping_its_connection(
    tmp_path, reader_storage
):
    """What the webserver's live run view does: ``watch_event_logs`` on a run in progress (the
    webserver on the committed dagster.yaml, or one still on stock storage)."""
    (tmp_path / "history").mkdir()
    received: list[dg.EventLogEntry] = []
    storage = {
        "kept": storage_config(str(tmp_path)),
        "stock": {"sqlite": {"base_dir": str(tmp_path)}},
    }[reader_storage]
    with (
        dg.instance_for_test(overrides={"storage": storage}) as reader,
        _writer_process(tmp_path) as writer,
    ):
        run = _wait_for("run", lambda: reader.get_runs(limit=1))[0]
        reader.watch_event_logs(run.run_id, None, lambda event, _cursor: received.append(event))
        writer.begin()  # the watch wakes on changes made after it started, as Dagster's does
        try:
            _wait_for(
                "20 materializations delivered while the run is in progress",
                lambda: sum(e.dagster_event_type == MATERIALIZATION for e in received) == 20,
                timeout=30,
            )
        finally:
            for callback in list(reader.event_log_storage._watchers[run.run_id]):
                reader.end_watch_event_logs(run.run_id, callback)
