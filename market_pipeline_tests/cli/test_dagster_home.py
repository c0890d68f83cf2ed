"""Dagster's instance: SQLite by default, PostgreSQL when DAGSTER_PG_URL is set, no code edit."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from market_pipeline.cli.dagster_home import prepare_dagster_home
from market_pipeline.config.settings import Settings


def _settings(tmp_path: Path) -> Settings:
    return Settings.from_env({"MARKET_PIPELINE_HOME": str(tmp_path / "mp")})


def test_default_home_is_ours_and_gets_the_committed_sqlite_config(tmp_path):
    env: dict[str, str] = {}
    home = prepare_dagster_home(_settings(tmp_path), env)
    assert home == tmp_path / "mp" / "dagster_home"
    assert env["DAGSTER_HOME"] == str(home)
    text = (home / "dagster.yaml").read_text()
    assert "postgres_url" not in text and "run_monitoring" in text


def test_dagster_pg_url_switches_our_home_to_the_postgres_config(tmp_path):
    env = {"DAGSTER_PG_URL": "postgresql+psycopg2://u@h/d"}
    home = prepare_dagster_home(_settings(tmp_path), env)
    assert "postgres_url" in (home / "dagster.yaml").read_text()


def test_a_users_own_dagster_home_keeps_its_config(tmp_path):
    own = tmp_path / "own"
    own.mkdir()
    (own / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    prepare_dagster_home(_settings(tmp_path), {"DAGSTER_HOME": str(own)})
    assert (own / "dagster.yaml").read_text() == "telemetry:\n  enabled: false\n"


@pytest.mark.postgres
def test_the_postgres_config_stores_dagster_runs_in_postgresql(tmp_path, pg_database_url):
    # A fresh interpreter, as `dagster` or the daemon would start, with only the environment set.
    code = (
        "import dagster as dg\n"
        "@dg.op\n"
        "def noop(): pass\n"
        "@dg.job\n"
        "def probe_job(): noop()\n"
        "with dg.DagsterInstance.get() as instance:\n"
        "    print(type(instance.run_storage).__name__)\n"
        "    print(probe_job.execute_in_process(instance=instance).run_id)\n"
    )
    env = {"DAGSTER_PG_URL": pg_database_url, "PATH": "/usr/bin:/bin"}
    home = prepare_dagster_home(_settings(tmp_path), env)
    result = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    storage, run_id = result.stdout.split()[-2:]
    assert storage == "PooledPostgresRunStorage"  # dagster-postgres, keeping its connection
    import sqlalchemy as sa

    engine = sa.create_engine(pg_database_url)
    with engine.connect() as conn:
        stored = conn.execute(sa.text("SELECT run_id FROM runs")).scalars().all()
    engine.dispose()
    assert stored == [run_id]
    assert not (home / "history").exists()  # nothing went to SQLite under DAGSTER_HOME
