"""Dagster's own state on /metrics: read from a real instance by the DagsterWatch thread, beside
the scrapes, so a Dagster database that hangs shows as down instead of hanging the scrape."""

from __future__ import annotations

import shutil
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from market_pipeline.observability.metrics.collector import PipelineCollector
from market_pipeline.observability.metrics.dagster_watch import DagsterWatch
from market_pipeline.observability.store import ObservabilityStore
from market_pipeline.package_data import instance_template
from market_pipeline_tests.observability.test_metrics import _config, _scrape, _value

UP = "market_pipeline_dagster_instance_up"
AGE = "market_pipeline_dagster_state_age_seconds"
HEARTBEAT = "market_pipeline_dagster_daemon_heartbeat_age_seconds"


def _heartbeat(instance, seconds_ago: float) -> None:
    from dagster._daemon.types import DaemonHeartbeat  # what the daemon writes, written here

    instance.add_daemon_heartbeat(
        DaemonHeartbeat(time.time() - seconds_ago, "SENSOR", "daemon-1", errors=[])
    )


# -- Dagster's own state, read from a real instance ----------------------------------------------


def _dagster_run(instance, status, *, job_name: str) -> str:
    """A run in ``status``, as the webserver or a schedule would have stored it (a queued run
    carries the origin of its code location)."""
    import uuid

    import dagster as dg
    from dagster._core.remote_origin import (
        InProcessCodeLocationOrigin,
        RemoteJobOrigin,
        RemoteRepositoryOrigin,
    )
    from dagster._core.types.loadable_target_origin import LoadableTargetOrigin

    location = InProcessCodeLocationOrigin(
        loadable_target_origin=LoadableTargetOrigin(module_name="market_pipeline.definitions")
    )
    origin = RemoteJobOrigin(
        repository_origin=RemoteRepositoryOrigin(
            code_location_origin=location, repository_name="__repository__"
        ),
        job_name=job_name,
    )
    run_id = str(uuid.uuid4())
    instance.add_run(
        dg.DagsterRun(job_name=job_name, run_id=run_id, status=status, remote_job_origin=origin)
    )
    return run_id


@pytest.fixture
def watches():
    """Every DagsterWatch a test makes, stopped after it."""
    made: list[DagsterWatch] = []
    yield lambda instance, **kw: made.append(DagsterWatch(instance, **kw)) or made[-1]
    for watch in made:
        watch.stop()


def test_dagster_queue_heartbeats_and_mirror_lag(engine, live_instance, watches):
    import dagster as dg

    from market_pipeline.domain.names import MARKET_DATA_JOB

    instance = live_instance
    store = ObservabilityStore(engine, monitored_pairs=[("AAA", "1h")])
    clock = lambda: datetime.now(UTC)  # noqa: E731 - Dagster stamps runs with the wall clock
    _heartbeat(instance, 42.0)
    _dagster_run(instance, dg.DagsterRunStatus.QUEUED, job_name=MARKET_DATA_JOB)
    _dagster_run(instance, dg.DagsterRunStatus.QUEUED, job_name=MARKET_DATA_JOB)
    _dagster_run(instance, dg.DagsterRunStatus.STARTED, job_name=MARKET_DATA_JOB)
    finished = _dagster_run(instance, dg.DagsterRunStatus.SUCCESS, job_name=MARKET_DATA_JOB)
    _dagster_run(instance, dg.DagsterRunStatus.SUCCESS, job_name="some_other_job")  # not ours
    time.sleep(0.05)

    # Made after the writes: its first reading, at the first scrape, sees them all.
    collector = PipelineCollector(store, _config(), watches(instance), clock=clock)
    metrics = _scrape(collector)
    assert (
        _value(
            metrics["market_pipeline_dagster_instance_up"], "market_pipeline_dagster_instance_up"
        )
        == 1
    )
    age = _value(
        metrics["market_pipeline_dagster_daemon_heartbeat_age_seconds"],
        "market_pipeline_dagster_daemon_heartbeat_age_seconds",
        daemon_type="SENSOR",
    )
    assert 42.0 <= age < 60.0
    assert (
        _value(
            metrics["market_pipeline_dagster_runs_queued"], "market_pipeline_dagster_runs_queued"
        )
        == 2
    )
    assert (
        _value(
            metrics["market_pipeline_dagster_runs_in_progress"],
            "market_pipeline_dagster_runs_in_progress",
        )
        == 1
    )
    assert (
        _value(
            metrics["market_pipeline_dagster_oldest_queued_run_age_seconds"],
            "market_pipeline_dagster_oldest_queued_run_age_seconds",
        )
        > 0
    )
    waiting = _value(
        metrics["market_pipeline_mirror_lag_seconds"], "market_pipeline_mirror_lag_seconds"
    )
    assert waiting > 0  # our finished run is not mirrored yet

    store.create_scheduler_execution_log(
        execution_id=finished, started_at=clock() - timedelta(seconds=5)
    )
    store.update_scheduler_execution_log(
        execution_id=finished, completed_at=clock(), status="completed"
    )
    caught_up = _scrape(collector)
    assert (
        _value(
            caught_up["market_pipeline_mirror_lag_seconds"], "market_pipeline_mirror_lag_seconds"
        )
        == 0
    )


def test_ages_count_to_the_scrape_not_to_the_reading(engine, live_instance, watches):
    store = ObservabilityStore(engine, monitored_pairs=[("AAA", "1h")])
    _heartbeat(live_instance, 42.0)
    watch = watches(live_instance, interval_seconds=3600)
    later = datetime.now(UTC) + timedelta(seconds=100)
    metrics = _scrape(PipelineCollector(store, _config(), watch, clock=lambda: later))
    assert _value(metrics[UP], UP) == 1
    assert 142.0 <= _value(metrics[HEARTBEAT], HEARTBEAT, daemon_type="SENSOR") < 160.0
    assert 80.0 < _value(metrics[AGE], AGE) <= 100.0  # read after `later` was taken


def _postgres_instance(tmp_path, monkeypatch, url: str):
    import dagster as dg

    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copyfile(instance_template(postgres=True), home / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_PG_URL", url)
    return dg.DagsterInstance.from_config(str(home))


class RunsLock:
    """Holds an ACCESS EXCLUSIVE lock on Dagster's `runs` table: every read of it waits, as on a
    database that hangs."""

    def __init__(self, url: str) -> None:
        self.engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
        self.conn: sa.Connection | None = None

    def take(self) -> None:
        self.conn = self.engine.connect()
        self.conn.exec_driver_sql("SET lock_timeout = '10s'")
        self.conn.exec_driver_sql("LOCK TABLE runs IN ACCESS EXCLUSIVE MODE")

    def release(self) -> None:
        if self.conn is not None:
            self.conn.rollback()
            self.conn.close()
            self.conn = None

    def close(self) -> None:
        self.release()
        self.engine.dispose()


def _scrape_within(collector: PipelineCollector, seconds: float = 10.0) -> dict[str, list]:
    """A scrape that must come back while Dagster hangs (else the test fails, not hangs)."""
    box: list[dict] = []
    thread = threading.Thread(target=lambda: box.append(_scrape(collector)), daemon=True)
    thread.start()
    thread.join(seconds)
    assert box, f"the scrape did not return within {seconds} s"
    return box[0]


def _until(collector: PipelineCollector, up: int) -> dict[str, list]:
    deadline = time.monotonic() + 15
    while True:
        metrics = _scrape_within(collector)
        if _value(metrics[UP], UP) == up or time.monotonic() > deadline:
            return metrics
        time.sleep(0.1)


@pytest.mark.postgres
def test_a_hung_dagster_database_does_not_hang_the_scrape(
    pg_engine, tmp_path, monkeypatch, pg_database_url, watches
):
    instance = _postgres_instance(tmp_path, monkeypatch, pg_database_url)
    lock = RunsLock(pg_database_url)
    store = ObservabilityStore(pg_engine, monitored_pairs=[("AAA", "1h")])
    try:
        _heartbeat(instance, 1.0)
        lock.take()  # hung from the start: the first scrape waits briefly, then reports it down
        watch = watches(instance, interval_seconds=0.2)
        collector = PipelineCollector(store, _config(), watch)
        first = _scrape_within(collector)
        assert _value(first[UP], UP) == 0
        assert not first.get(AGE) and not first.get(HEARTBEAT)  # families without samples
        assert _value(first["market_pipeline_database_up"], "market_pipeline_database_up") == 1
        assert "market_pipeline_pairs" in first  # our own families are all there

        lock.release()
        recovered = _until(collector, up=1)
        assert _value(recovered[UP], UP) == 1
        assert recovered.get(HEARTBEAT)

        lock.take()  # hung after a good reading: up turns 0 once that reading is too old
        hung = _until(collector, up=0)
        assert _value(hung[UP], UP) == 0
        assert _value(hung[AGE], AGE) > watch.stale_after_seconds
        assert not hung.get(HEARTBEAT)  # an old reading is not reported as current
        assert not hung.get("market_pipeline_mirror_lag_seconds")
        lock.release()
        assert _value(_until(collector, up=1)[UP], UP) == 1
    finally:
        lock.close()
        instance.dispose()
