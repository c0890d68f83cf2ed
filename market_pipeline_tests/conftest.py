"""Shared fixtures: a fresh database per test on each backend.

Tests taking ``db_url`` (or ``engine``) run twice: on a SQLite file and on a fresh PostgreSQL
database created for the test and dropped after it. PostgreSQL is found at
``MARKET_PIPELINE_TEST_PG`` (a server URL without database; default
``postgresql+psycopg2://postgres@127.0.0.1:5432``). Outside CI an unreachable server skips those
tests; with ``CI`` set, it fails them, because in CI nothing is skipped.
"""

from __future__ import annotations

import os

import pytest
import sqlalchemy as sa

from market_pipeline.storage.engine import make_engine, temporary_postgres_database
from market_pipeline.storage.migrations import migrate

PG_SERVER_URL = os.environ.get(
    "MARKET_PIPELINE_TEST_PG", "postgresql+psycopg2://postgres@127.0.0.1:5432"
)


def _pg_admin_engine() -> sa.Engine:
    return sa.create_engine(
        f"{PG_SERVER_URL}/postgres", isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool
    )


def _pg_available() -> str | None:
    try:
        with _pg_admin_engine().connect() as conn:
            conn.exec_driver_sql("SELECT 1")
        return None
    except sa.exc.DBAPIError as exc:
        return str(exc.orig).strip().splitlines()[0]


@pytest.fixture(scope="session")
def pg_server() -> str:
    """URL of the PostgreSQL server (no database); skips locally, fails in CI, when it is down."""
    problem = _pg_available()
    if problem:
        message = f"PostgreSQL at {PG_SERVER_URL} is not reachable: {problem}"
        if os.environ.get("CI"):
            pytest.fail(message + " (in CI the PostgreSQL tests must run)")
        pytest.skip(message)
    return PG_SERVER_URL


@pytest.fixture
def pg_database_url(pg_server):
    """A fresh, empty PostgreSQL database for one test, dropped afterwards."""
    with temporary_postgres_database(pg_server, prefix="mp_test") as url:
        yield url


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request, tmp_path):
    """An empty database URL, once per backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'market_pipeline.db'}"
    return request.getfixturevalue("pg_database_url")


def _migrated_engine(url: str):
    eng = make_engine(url)
    migrate(eng)
    yield eng
    eng.dispose()


@pytest.fixture
def engine(db_url):
    """A migrated engine on each backend."""
    yield from _migrated_engine(db_url)


@pytest.fixture
def pg_engine(pg_database_url):
    """A migrated engine on a fresh PostgreSQL database: for behaviour only PostgreSQL has."""
    yield from _migrated_engine(pg_database_url)


_skipped_postgres: list[str] = []


def pytest_runtest_logreport(report):
    if report.skipped and "postgres" in report.keywords:
        _skipped_postgres.append(report.nodeid)


def pytest_sessionfinish(session, exitstatus):
    if os.environ.get("CI") and _skipped_postgres:
        print(f"\nCI: {len(_skipped_postgres)} PostgreSQL test(s) were skipped; failing the run")
        session.exitstatus = 1
