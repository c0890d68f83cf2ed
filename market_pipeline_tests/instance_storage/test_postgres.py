"""Dagster's instance storage on PostgreSQL keeps its connections instead of one per call."""

# No `from __future__ import annotations`: Dagster reads the context annotation at runtime.

import os
import time

import dagster as dg
import pytest
import sqlalchemy as sa
import yaml

from market_pipeline.instance_storage.postgres import (
    PooledPostgresEventLogStorage,
    PooledPostgresRunStorage,
    storage_config,
)
from market_pipeline.package_data import instance_template

pytestmark = pytest.mark.postgres

PARTITIONS = dg.StaticPartitionsDefinition([f"P{i:02d}" for i in range(20)])


@dg.multi_asset(
    specs=[dg.AssetSpec("reported", skippable=True)],
    partitions_def=PARTITIONS,
    backfill_policy=dg.BackfillPolicy.single_run(),
)
def reported(context: dg.AssetExecutionContext):
    """One materialization event per partition of the run, as the market-data step reports."""
    for key in context.partition_keys:
        yield dg.AssetMaterialization("reported", partition=key)


JOB = dg.Definitions(
    assets=[reported], jobs=[dg.define_asset_job("reported_job", selection=[reported])]
).resolve_job_def("reported_job")
RANGE = {"dagster/asset_partition_range_start": "P00", "dagster/asset_partition_range_end": "P19"}


def _count_connects(engine: sa.Engine) -> list[int]:
    counter = [0]

    def on_connect(*_):
        counter[0] += 1

    sa.event.listen(engine, "connect", on_connect)
    return counter


def _other_sessions(url: str, what: str = "count(*)") -> int:
    """``what`` over the other sessions on ``url``'s database (by default: how many there are)."""
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    with engine.connect() as conn:
        value = conn.exec_driver_sql(
            f"SELECT {what} FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).scalar_one()
    engine.dispose()
    return int(value)


def _no_other_sessions_soon(url: str) -> int:
    """Other sessions on ``url``'s database, once closed sockets have left pg_stat_activity."""
    deadline = time.monotonic() + 10
    while _other_sessions(url) and time.monotonic() < deadline:
        time.sleep(0.05)  # a backend leaves pg_stat_activity just after its socket closes
    return _other_sessions(url)


def test_the_committed_postgres_config_selects_the_pooled_storage():
    config = yaml.safe_load(instance_template(postgres=True).read_text())
    assert config["storage"] == storage_config({"env": "DAGSTER_PG_URL"})


def test_a_range_run_reuses_one_connection_where_stock_storage_opens_one_per_call(
    pg_database_url,
):
    stock = {"postgres": {"postgres_url": pg_database_url}}
    with dg.instance_for_test(overrides={"storage": stock}) as instance:
        stock_connects = _count_connects(instance.event_log_storage._engine)
        assert JOB.execute_in_process(instance=instance, tags=RANGE).success
    with dg.instance_for_test(overrides={"storage": storage_config(pg_database_url)}) as instance:
        assert isinstance(instance.run_storage, PooledPostgresRunStorage)
        assert isinstance(instance.event_log_storage, PooledPostgresEventLogStorage)
        connects = _count_connects(instance.event_log_storage._engine)
        run = JOB.execute_in_process(instance=instance, tags=RANGE)
        assert run.success
        materialized = instance.get_materialized_partitions(dg.AssetKey("reported"))
    assert materialized == set(PARTITIONS.get_partition_keys())
    # Stock storage connects for every event (20 materializations and the run's own events).
    assert stock_connects[0] > 40
    assert connects[0] <= 2


def test_a_connection_the_server_dropped_is_replaced_before_the_next_call(pg_database_url):
    with dg.instance_for_test(overrides={"storage": storage_config(pg_database_url)}) as instance:
        assert JOB.execute_in_process(instance=instance, tags=RANGE).success
        connects = _count_connects(instance.event_log_storage._engine)
        killed = _other_sessions(pg_database_url, "count(pg_terminate_backend(pid))")
        assert killed >= 1  # the kept connection was alive, and is now dead
        # pg_terminate_backend only signals: wait until the backend has said goodbye and gone.
        assert _no_other_sessions_soon(pg_database_url) == 0
        assert JOB.execute_in_process(instance=instance, tags=RANGE).success
        assert connects[0] >= 1
        assert len(instance.get_runs()) == 2


def test_disposing_the_instance_closes_the_kept_connections(pg_database_url):
    with dg.instance_for_test(overrides={"storage": storage_config(pg_database_url)}) as instance:
        assert JOB.execute_in_process(instance=instance, tags=RANGE).success
        assert _other_sessions(pg_database_url) >= 1
    assert _no_other_sessions_soon(pg_database_url) == 0


def test_a_forked_child_opens_its_own_connection(pg_database_url):
    def backend_pid(instance) -> int:
        with instance.event_log_storage._engine.connect() as conn:
            return int(conn.exec_driver_sql("SELECT pg_backend_pid()").scalar_one())

    with dg.instance_for_test(overrides={"storage": storage_config(pg_database_url)}) as instance:
        parent_pid = backend_pid(instance)
        assert backend_pid(instance) == parent_pid  # kept between calls
        read_end, write_end = os.pipe()
        child = os.fork()
        if child == 0:  # pragma: no cover - runs in the child
            try:
                os.write(write_end, str(backend_pid(instance)).encode())
            finally:
                os._exit(0)
        os.close(write_end)
        child_pid = int(os.read(read_end, 64).decode())
        os.close(read_end)
        os.waitpid(child, 0)
        assert child_pid != parent_pid
        # The parent's kept connection still works after the child exited.
        assert backend_pid(instance) == parent_pid


def test_the_webservers_engine_swap_closes_the_kept_connection(pg_database_url):
    with dg.instance_for_test(overrides={"storage": storage_config(pg_database_url)}) as instance:
        assert JOB.execute_in_process(instance=instance, tags=RANGE).success
        assert _other_sessions(pg_database_url) >= 1
        instance.optimize_for_webserver(15000, 3600, 20)  # what dagster-webserver does at start
        assert _no_other_sessions_soon(pg_database_url) == 0
        assert len(instance.get_runs()) == 1  # and the swapped-in engine works


def test_kept_connections_use_tcp_keepalives_unless_the_url_sets_them(pg_database_url):
    def dsn(url: str) -> dict:
        with dg.instance_for_test(overrides={"storage": storage_config(url)}) as instance:
            raw = instance.event_log_storage._engine.raw_connection()
            try:
                return raw.driver_connection.get_dsn_parameters()
            finally:
                raw.close()

    assert dsn(pg_database_url)["keepalives_idle"] == "30"
    assert dsn(pg_database_url + "?keepalives_idle=7")["keepalives_idle"] == "7"
