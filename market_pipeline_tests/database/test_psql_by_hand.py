"""The spec's "Or manually": the PostgreSQL migration files applied with the real psql."""

from __future__ import annotations

import shutil
import subprocess

import pytest
from sqlalchemy.engine import make_url

from market_pipeline.database.engine import make_engine
from market_pipeline.database.migrations import (
    applied_migrations,
    discover_migrations,
    ensure_current,
    migrate,
)

pytestmark = pytest.mark.postgres


def test_files_applied_with_psql_are_adopted_by_migrate(pg_database_url):
    psql = shutil.which("psql")
    assert psql, "psql is part of the PostgreSQL client these machines have"
    url = make_url(pg_database_url)
    for migration in discover_migrations("postgresql"):
        subprocess.run(
            [
                psql,
                "-v",
                "ON_ERROR_STOP=1",
                "-q",
                "-1",
                "-h",
                url.host,
                "-p",
                str(url.port or 5432),
                "-U",
                url.username,
                "-d",
                url.database,
                "-f",
                str(migration.path),
            ],
            check=True,
            capture_output=True,
            text=True,
            timeout=60,
        )
    engine = make_engine(pg_database_url)
    try:
        ensure_current(engine)  # nothing pending: every file recorded itself
        assert all(row.checksum is None for row in applied_migrations(engine))
        assert migrate(engine) == []
        files = {m.version: m.checksum for m in discover_migrations("postgresql")}
        assert {row.version: row.checksum for row in applied_migrations(engine)} == files
    finally:
        engine.dispose()
