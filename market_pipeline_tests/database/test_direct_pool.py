"""The direct driver connections of the observability store (PostgreSQL only)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from market_pipeline.database.direct_pool import DirectPool, direct_pool
from market_pipeline.database.engine import make_engine
from market_pipeline.observability.store import ObservabilityStore

pytestmark = pytest.mark.postgres

T0 = datetime(2024, 11, 13, 19, 30, tzinfo=UTC)


def backend_pid(pool: DirectPool) -> int:
    def pid(cursor):
        cursor.execute("SELECT pg_backend_pid()")
        return cursor.fetchone()[0]

    return pool.run(pid, statement="SELECT pg_backend_pid()", may_repeat=True)


def terminate(engine: sa.Engine, pid: int) -> None:
    with engine.connect() as conn:
        assert conn.exec_driver_sql(f"SELECT pg_terminate_backend({pid})").scalar() is True


def test_one_pool_per_engine_reusing_its_connection(pg_engine):
    assert direct_pool(pg_engine) is direct_pool(pg_engine)
    pool = direct_pool(pg_engine)
    assert backend_pid(pool) == backend_pid(pool)
    assert pool.idle_count == 1


def test_a_connection_dropped_by_the_server_is_replaced_and_the_call_repeated(pg_engine):
    store = ObservabilityStore(pg_engine)
    pool = direct_pool(pg_engine)
    eid = store.create_scheduler_execution_log(started_at=T0)
    terminate(pg_engine, backend_pid(pool))

    store.update_scheduler_execution_log(execution_id=eid, status="completed")

    assert (
        store.get_execution_history(limit=1).model_dump()["executions"][0]["status"] == "completed"
    )


def test_a_call_that_must_not_repeat_raises_on_a_dropped_connection_then_recovers(pg_engine):
    """Without an execution id a repeated failure write would count twice, so the broken
    connection surfaces as SQLAlchemy's OperationalError; the next call opens a new one."""
    store = ObservabilityStore(pg_engine)
    terminate(pg_engine, backend_pid(direct_pool(pg_engine)))
    with pytest.raises(sa.exc.OperationalError):
        store.log_feature_computation_failure(symbol="AAPL", timeframe="1d", error_message="x")
    store.log_feature_computation_failure(symbol="AAPL", timeframe="1d", error_message="x")
    with pg_engine.connect() as conn:
        assert (
            conn.exec_driver_sql(
                "SELECT retry_count FROM feature_computation_failures"
            ).scalar_one()
            == 0
        )


def test_driver_errors_are_sqlalchemy_errors_and_leave_the_connection_usable(pg_engine):
    pool = direct_pool(pg_engine)
    pid = backend_pid(pool)

    def bad(cursor):
        cursor.execute("SELECT no_such_column FROM feature_freshness")

    with pytest.raises(sa.exc.ProgrammingError, match="no_such_column"):
        pool.run(bad, statement="bad", may_repeat=True)
    assert backend_pid(pool) == pid  # the same connection, not left in an aborted transaction


def test_disposing_the_engine_closes_the_idle_connections(pg_engine):
    pool = direct_pool(pg_engine)
    pid = backend_pid(pool)
    pg_engine.dispose()
    assert pool.idle_count == 0
    with pg_engine.connect() as conn:
        alive = conn.exec_driver_sql(
            f"SELECT count(*) FROM pg_stat_activity WHERE pid = {pid}"
        ).scalar()
    assert alive == 0
    assert backend_pid(pool) != pid  # still usable: a new connection


def test_unreachable_database_raises_sqlalchemy_operational_error(pg_server):
    engine = make_engine(f"{pg_server}/no_such_database_for_direct", check=False)
    try:
        with pytest.raises(sa.exc.OperationalError, match="no_such_database_for_direct"):
            ObservabilityStore(engine).get_execution_history().model_dump()
    finally:
        engine.dispose()


def test_only_postgresql_psycopg2_engines_get_a_pool(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'x.db'}")
    with pytest.raises(ValueError, match="postgresql\\+psycopg2"):
        DirectPool(engine)
