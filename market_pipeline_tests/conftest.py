"""Shared fixtures: a fresh database per test on each backend, and a small universe.

Tests taking ``db_url`` (or ``engine``) run twice: on a SQLite file and on a fresh PostgreSQL
database created for the test and dropped after it. PostgreSQL is found at
``MARKET_PIPELINE_TEST_PG`` (a server URL without database; default
``postgresql+psycopg2://postgres@127.0.0.1:5432``). Outside CI an unreachable server skips those
tests; with ``CI`` set, it fails them, because in CI nothing is skipped.

Helpers shared by test modules live in :mod:`market_pipeline_tests.support`, never here.
"""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg
import pytest

from market_pipeline.config.settings import Settings
from market_pipeline.database.engine import make_engine, temporary_postgres_database
from market_pipeline.database.migrations import migrate
from market_pipeline_tests.support.postgres import (
    PG_SERVER_URL,
    migrated_engine,
    pg_unavailable_reason,
)
from market_pipeline_tests.support.universes import write_universe


@pytest.fixture(scope="session")
def pg_server() -> str:
    """URL of the PostgreSQL server (no database); skips locally, fails in CI, when it is down."""
    problem = pg_unavailable_reason()
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


@pytest.fixture
def engine(db_url):
    """A migrated engine on each backend."""
    yield from migrated_engine(db_url)


@pytest.fixture
def pg_engine(pg_database_url):
    """A migrated engine on a fresh PostgreSQL database: for behaviour only PostgreSQL has."""
    yield from migrated_engine(pg_database_url)


@pytest.fixture
def live_instance():
    """Building a repository reads the defs-state storage of Dagster's current instance, and a
    test instance closed earlier in the session can be left current: give the test a live one."""
    with dg.instance_for_test() as instance:
        yield instance


@pytest.fixture
def small_universe(tmp_path) -> Path:
    """Three symbols x two timeframes; BADCO always fails at the provider."""
    return write_universe(
        tmp_path / "universe.yaml",
        [("AAPL", "equity"), ("BADCO", "equity"), ("BTC-USD", "crypto")],
        ["1h", "1d"],
        {"kind": "synthetic", "fail_symbols": ["BADCO"]},
    )


@pytest.fixture
def settings(tmp_path, db_url, small_universe) -> Settings:
    """Settings over a migrated test database and :func:`small_universe`."""
    engine = make_engine(db_url)
    migrate(engine)
    engine.dispose()
    return Settings(home=tmp_path / "home", db_url=db_url, universe_path=small_universe)


_skipped_postgres: list[str] = []


def pytest_runtest_logreport(report):
    if report.skipped and "postgres" in report.keywords:
        _skipped_postgres.append(report.nodeid)


def pytest_sessionfinish(session, exitstatus):
    if os.environ.get("CI") and _skipped_postgres:
        print(f"\nCI: {len(_skipped_postgres)} PostgreSQL test(s) were skipped; failing the run")
        session.exitstatus = 1
