"""Engine factory shared by the Dagster resource, the CLI and the admin API."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import URL, Engine, make_url


def normalize_db_url(url: str) -> str:
    """Give PostgreSQL URLs the psycopg2 driver: SQLAlchemy 2.1 maps bare ``postgresql://`` to
    psycopg 3, which is not installed."""
    url = url.strip()
    for bare in ("postgresql://", "postgres://"):
        if url.startswith(bare):
            return "postgresql+psycopg2://" + url[len(bare) :]
    return url


class DatabaseUnavailableError(RuntimeError):
    """The configured database cannot be reached; the message names it, password masked."""


def describe_url(url: str | URL) -> str:
    """A one-line description of a database URL with the password masked."""
    parsed = make_url(normalize_db_url(url) if isinstance(url, str) else url)
    if parsed.get_backend_name() == "sqlite":
        return f"SQLite file {parsed.database or ':memory:'}"
    host = parsed.host or "localhost"
    port = f":{parsed.port}" if parsed.port else ""
    user = f" as user {parsed.username}" if parsed.username else ""
    return f"{parsed.get_backend_name()} database {parsed.database!r} on {host}{port}{user}"


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def make_engine(url: str | URL, *, check: bool = True) -> Engine:
    """Create an engine for ``url`` (SQLite file or PostgreSQL).

    With ``check`` the connection is tried at once, so a wrong URL fails here with a message that
    names host and database rather than deep inside a query.
    """
    try:
        parsed = make_url(normalize_db_url(url) if isinstance(url, str) else url)
    except sa.exc.ArgumentError as exc:
        raise DatabaseUnavailableError(f"not a database URL: {exc}") from None
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(parsed, connect_args={"timeout": 30})
        sa.event.listen(engine, "connect", _sqlite_pragmas)
    elif parsed.get_backend_name() == "postgresql":
        engine = sa.create_engine(parsed, pool_pre_ping=True, connect_args={"connect_timeout": 10})
    else:
        raise DatabaseUnavailableError(
            f"unsupported database {parsed.get_backend_name()!r} in MARKET_PIPELINE_DB_URL: "
            "use a sqlite:/// or postgresql+psycopg2:// URL"
        )
    if check:
        check_connection(engine)
    return engine


def check_connection(engine: Engine) -> None:
    """Open and close one connection; raise DatabaseUnavailableError naming the database."""
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")
    except sa.exc.DBAPIError as exc:
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else type(exc).__name__
        raise DatabaseUnavailableError(
            f"cannot connect to {describe_url(engine.url)}: {reason}"
        ) from None


@contextlib.contextmanager
def temporary_postgres_database(server_url: str, *, prefix: str = "mp_tmp") -> Iterator[str]:
    """A new, empty PostgreSQL database on ``server_url`` (a URL without database) for the
    duration of the block; yields its URL and drops it (forcing connections off) afterwards.

    For tests and benchmarks, which each need a database of their own.
    """
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    server_url = normalize_db_url(server_url).rstrip("/")
    admin = sa.create_engine(
        f"{server_url}/postgres", isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool
    )
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
        try:
            yield f"{server_url}/{name}"
        finally:
            with admin.connect() as conn:
                conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        admin.dispose()
