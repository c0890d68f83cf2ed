"""The test PostgreSQL server: where it is, whether it answers, migrated engines on it."""

from __future__ import annotations

import os
from collections.abc import Iterator

import sqlalchemy as sa

from market_pipeline.database.engine import make_engine
from market_pipeline.database.migrations import migrate

PG_SERVER_URL = os.environ.get(
    "MARKET_PIPELINE_TEST_PG", "postgresql+psycopg2://postgres@127.0.0.1:5432"
)
"""Server URL without a database (``MARKET_PIPELINE_TEST_PG``)."""


def pg_admin_engine() -> sa.Engine:
    """An autocommit engine on the server's ``postgres`` database, for admin queries."""
    return sa.create_engine(
        f"{PG_SERVER_URL}/postgres", isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool
    )


def pg_unavailable_reason() -> str | None:
    """Why the test server cannot be reached, or ``None`` when it answers."""
    try:
        with pg_admin_engine().connect() as conn:
            conn.exec_driver_sql("SELECT 1")
        return None
    except sa.exc.DBAPIError as exc:
        return str(exc.orig).strip().splitlines()[0]


def migrated_engine(url: str) -> Iterator[sa.Engine]:
    """A migrated engine on ``url``, disposed when the generator closes (for fixtures)."""
    eng = make_engine(url)
    migrate(eng)
    yield eng
    eng.dispose()
