"""Fixtures of the admin API tests: a real uvicorn server on a free port over a seeded database.

Every server here is uvicorn serving :func:`market_pipeline.api.app.create_app` in a thread of the
test process (port 0, so the kernel picks a free port), over the ``engine`` fixture's migrated
SQLite file or fresh PostgreSQL database. Data is written through the
:class:`~market_pipeline.observability.store.ObservabilityStore`, as the pipeline writes it.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from market_pipeline.api.app import create_app
from market_pipeline.database.engine import make_engine
from market_pipeline.database.migrations import migrate
from market_pipeline.observability.store import ObservabilityStore
from market_pipeline_tests.support.api import (
    MONITORED_PAIRS,
    TOKEN,
    Api,
    Seeded,
    running_server,
    seed_degraded,
    settings_for_store,
)
from market_pipeline_tests.support.postgres import pg_admin_engine


@pytest.fixture
def store(engine) -> ObservabilityStore:
    """A store over the migrated database of each backend, monitoring :data:`MONITORED_PAIRS`."""
    return ObservabilityStore(engine, monitored_pairs=MONITORED_PAIRS)


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def module_db_url(request, tmp_path_factory) -> Iterator[str]:
    """A migrated database shared by the read-only tests of one module, once per backend.

    Creating a PostgreSQL database and starting a server per test would cost most of the time
    budget of these tests; the tests that use it only read.
    """
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('api') / 'market_pipeline.db'}"
        engine = make_engine(url)
        migrate(engine)
        engine.dispose()
        yield url
        return
    server = request.getfixturevalue("pg_server")
    name = f"mp_test_api_{uuid.uuid4().hex[:12]}"
    admin = pg_admin_engine()
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    try:
        engine = make_engine(f"{server}/{name}")
        migrate(engine)
        engine.dispose()
        yield f"{server}/{name}"
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


@pytest.fixture(scope="module")
def module_store(module_db_url) -> Iterator[ObservabilityStore]:
    """A store over :func:`module_db_url` seeded with :func:`seed_degraded` data."""
    engine = make_engine(module_db_url)
    yield ObservabilityStore(engine, monitored_pairs=MONITORED_PAIRS)
    engine.dispose()


@pytest.fixture(scope="module")
def module_seed(module_store) -> Seeded:
    return seed_degraded(module_store)


@pytest.fixture(scope="module")
def api(module_store, module_seed, module_db_url, tmp_path_factory) -> Iterator[Api]:
    """A server without token over degraded seed data (shared by a module, read only)."""
    settings = settings_for_store(module_db_url, tmp_path_factory.mktemp("settings"))
    with running_server(create_app(settings, store=module_store)) as url:
        yield Api(url=url, token=None, seeded=module_seed)


@pytest.fixture(scope="module")
def secured_api(module_store, module_seed, module_db_url, tmp_path_factory) -> Iterator[Api]:
    """A server requiring :data:`TOKEN` over degraded seed data (shared by a module, read only)."""
    settings = settings_for_store(module_db_url, tmp_path_factory.mktemp("settings"), token=TOKEN)
    with running_server(create_app(settings, store=module_store)) as url:
        yield Api(url=url, token=TOKEN, seeded=module_seed)
