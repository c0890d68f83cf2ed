"""Liveness, readiness and the health probe against a real server, including a database that is
down at startup, goes away while serving, or was never migrated."""

from __future__ import annotations

import time

import pytest
import sqlalchemy as sa

from market_pipeline.api.app import DEFAULT_CACHE_SECONDS, create_app
from market_pipeline.database.engine import make_engine
from market_pipeline.database.migrations import migrate
from market_pipeline.observability.store import ObservabilityStore
from market_pipeline_tests.support.api import (
    MONITORED_PAIRS,
    TOKEN,
    http,
    running_server,
    seed_healthy,
    settings_for_store,
)
from market_pipeline_tests.support.postgres import pg_admin_engine

ADMIN = [
    "/api/v1/admin/scheduler-health",
    "/api/v1/admin/features/staleness",
    "/api/v1/admin/scheduler/execution-history",
]
PASSWORD = "hunter2-not-shown"


def test_liveness_answers_alive(api):
    response = http.get(f"{api.url}/livez")

    assert (response.status_code, response.json()) == (200, {"status": "alive"})


def test_readiness_is_200_on_a_migrated_reachable_database(api):
    response = http.get(f"{api.url}/readyz")

    assert response.status_code == 200
    assert response.json() == {"status": "ready", "checks": {"database": "ok", "schema": "ok"}}


def test_health_probe_is_503_when_degraded_while_the_spec_endpoint_stays_200(api):
    probe = http.get(f"{api.url}/healthz")
    spec = http.get(f"{api.url}/api/v1/admin/scheduler-health")

    assert probe.status_code == 503
    assert spec.status_code == 200
    assert probe.json()["status"] == spec.json()["status"] == "degraded"
    assert probe.json()["reasons"] == spec.json()["reasons"]
    assert "1 unresolved feature computation failure" in probe.json()["reasons"]


def test_health_probe_is_200_when_healthy(engine, db_url, tmp_path):
    store = ObservabilityStore(engine, monitored_pairs=MONITORED_PAIRS)
    seed_healthy(store)

    with running_server(create_app(settings_for_store(db_url, tmp_path), store=store)) as url:
        probe = http.get(f"{url}/healthz")
        spec = http.get(f"{url}/api/v1/admin/scheduler-health")

    assert probe.status_code == 200
    assert probe.json()["status"] == "healthy" and probe.json()["reasons"] == []
    assert spec.json()["status"] == "healthy"


def _unreachable_url(backend: str, tmp_path) -> tuple[str, str]:
    """A database URL that cannot be opened, and the name the 503 reason must give."""
    if backend == "sqlite":
        folder = tmp_path / "a-directory-not-a-database"
        folder.mkdir()
        return f"sqlite:///{folder}", str(folder)
    # Port 1 on loopback: nothing listens, the connection is refused at once.
    return f"postgresql+psycopg2://postgres:{PASSWORD}@127.0.0.1:1/gone_db", "gone_db"


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_database_down_at_startup_leaves_liveness_up_and_readiness_503(backend, tmp_path):
    url, name = _unreachable_url(backend, tmp_path)
    engine = make_engine(url, check=False)
    store = ObservabilityStore(engine, monitored_pairs=MONITORED_PAIRS)

    with running_server(create_app(settings_for_store(url, tmp_path), store=store)) as base:
        live = http.get(f"{base}/livez")
        ready = http.get(f"{base}/readyz")
        admin = [http.get(f"{base}{path}") for path in ADMIN]
        probe = http.get(f"{base}/healthz")
    engine.dispose()

    assert live.status_code == 200
    assert ready.status_code == 503
    assert ready.json()["status"] == "unavailable"
    assert ready.json()["error"] == "database_unavailable"
    assert name in ready.json()["detail"]
    for response in [ready, *admin, probe]:
        assert PASSWORD not in response.text
    for response in [*admin, probe]:
        assert response.status_code == 503
        assert response.json()["error"] == "database_unavailable"
        assert name in response.json()["detail"]


def test_readiness_names_the_database_only_to_token_holders(tmp_path):
    url, name = _unreachable_url("postgresql", tmp_path)
    engine = make_engine(url, check=False)
    store = ObservabilityStore(engine, monitored_pairs=MONITORED_PAIRS)
    app = create_app(settings_for_store(url, tmp_path, token=TOKEN), store=store)

    with running_server(app) as base:
        anonymous = http.get(f"{base}/readyz")
        holder = http.get(f"{base}/readyz", headers={"Authorization": f"Bearer {TOKEN}"})
    engine.dispose()

    assert anonymous.status_code == holder.status_code == 503
    assert name not in anonymous.text and "127.0.0.1" not in anonymous.text
    assert name in holder.json()["detail"]
    assert PASSWORD not in holder.text


def test_an_unmigrated_database_is_not_ready_and_says_to_migrate(db_url, tmp_path):
    engine = make_engine(db_url)
    store = ObservabilityStore(engine, monitored_pairs=MONITORED_PAIRS)

    with running_server(create_app(settings_for_store(db_url, tmp_path), store=store)) as base:
        ready = http.get(f"{base}/readyz")
        admin = [http.get(f"{base}{path}") for path in ADMIN]
    engine.dispose()

    assert ready.status_code == 503
    assert ready.json()["error"] == "schema_not_current"
    assert "market-pipeline migrate" in ready.json()["detail"]
    for response in admin:
        assert response.status_code == 503
        assert response.json()["error"] == "schema_not_current"


def test_failures_are_not_kept_so_a_migration_is_seen_at_once(db_url, tmp_path):
    engine = make_engine(db_url)
    store = ObservabilityStore(engine, monitored_pairs=MONITORED_PAIRS)

    with running_server(create_app(settings_for_store(db_url, tmp_path), store=store)) as base:
        before = [http.get(f"{base}{path}").status_code for path in ["/readyz", *ADMIN]]
        migrate(engine)
        after = [http.get(f"{base}{path}").status_code for path in ["/readyz", *ADMIN]]
    engine.dispose()

    assert before == [503] * 4
    assert after == [200] * 4


@pytest.mark.postgres
def test_a_database_dropped_while_serving_turns_readiness_to_503(pg_database_url, tmp_path):
    engine = make_engine(pg_database_url)
    migrate(engine)
    store = ObservabilityStore(engine, monitored_pairs=MONITORED_PAIRS)
    seed_healthy(store)
    name = sa.engine.make_url(pg_database_url).database

    with running_server(
        create_app(settings_for_store(pg_database_url, tmp_path), store=store)
    ) as url:
        before = http.get(f"{url}/readyz")
        admin = pg_admin_engine()
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE "{name}" WITH (FORCE)')
        admin.dispose()
        history = http.get(f"{url}/api/v1/admin/scheduler/execution-history")
        # A successful readiness answer is reused for the cache period, a failure never.
        time.sleep(DEFAULT_CACHE_SECONDS + 0.1)
        after = http.get(f"{url}/readyz")
        again = http.get(f"{url}/readyz")
        live = http.get(f"{url}/livez")
    engine.dispose()

    assert before.status_code == 200
    assert after.status_code == again.status_code == 503
    assert after.json()["error"] == "database_unavailable"
    assert name in after.json()["detail"]
    assert history.status_code == 503 and history.json()["error"] == "database_unavailable"
    assert live.status_code == 200
