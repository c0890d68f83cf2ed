"""Numbered, append-only SQL migrations from ``sql/<dialect>/NNNN_name.sql``.

Each file is applied in its own transaction and records itself in ``schema_migrations`` (the files
insert their own row, so a file applied by hand with ``psql -1 -f`` is known here afterwards; its
checksum is then adopted on the next ``migrate``). An applied file that was edited since, or a
database at a version these files do not know, is refused with a message saying which.
"""

from __future__ import annotations

import hashlib
import re
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from market_pipeline.package_data import sql_dir

SQL_DIR = sql_dir()
_FILE_RE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


class MigrationError(RuntimeError):
    """The database schema and the migration files disagree; nothing was changed."""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    path: Path

    @property
    def sql(self) -> str:
        return self.path.read_text(encoding="utf-8")

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.path.read_bytes()).hexdigest()


@dataclass(frozen=True)
class AppliedMigration:
    version: int
    name: str
    checksum: str | None


def discover_migrations(dialect: str, sql_dir: Path = SQL_DIR) -> list[Migration]:
    folder = sql_dir / dialect
    if not folder.is_dir():
        raise MigrationError(f"no migrations for {dialect!r}: folder {folder} does not exist")
    found: list[Migration] = []
    for path in sorted(folder.iterdir()):
        if path.suffix != ".sql":
            continue
        match = _FILE_RE.match(path.name)
        if not match:
            raise MigrationError(f"migration file {path} is not named NNNN_name.sql")
        found.append(Migration(int(match.group(1)), path.stem, path))
    versions = [m.version for m in found]
    if versions != list(range(len(found))):
        raise MigrationError(f"migration files in {folder} are not numbered 0000, 0001, ...")
    return found


def applied_migrations(engine: Engine) -> list[AppliedMigration]:
    with engine.connect() as conn:
        if not sa.inspect(conn).has_table("schema_migrations"):
            return []
        rows = conn.execute(
            sa.text("SELECT version, name, checksum FROM schema_migrations ORDER BY version")
        )
        return [AppliedMigration(r.version, r.name, r.checksum) for r in rows]


def pending_migrations(engine: Engine, sql_dir: Path = SQL_DIR) -> list[Migration]:
    """Files not yet applied, after checking that applied ones are known and unedited."""
    files = discover_migrations(engine.dialect.name, sql_dir)
    by_version = {m.version: m for m in files}
    applied = applied_migrations(engine)
    for row in applied:
        known = by_version.get(row.version)
        if known is None:
            raise MigrationError(
                f"the database is at migration {row.version:04d} ({row.name}), which these files "
                f"do not know (latest is {files[-1].name}): upgrade market_pipeline before "
                "running against this database"
            )
        if known.name != row.name:
            raise MigrationError(
                f"migration {row.version:04d} was applied as {row.name!r} but the file is now "
                f"{known.name!r}: applied migrations are append-only, add a new file instead"
            )
        if row.checksum is not None and row.checksum != known.checksum:
            raise MigrationError(
                f"migration file {known.path.name} was edited after it was applied (checksum "
                "differs): applied migrations are append-only, add a new file instead"
            )
    done = {row.version for row in applied}
    return [m for m in files if m.version not in done]


def _statements(script: str) -> list[str]:
    """Split a migration script into statements (our files end each statement with ';' at a
    line end and put no ';' inside literals)."""
    lines = [ln for ln in script.splitlines() if not ln.strip().startswith("--")]
    parts = "\n".join(lines).split(";\n")
    return [p.strip().rstrip(";") for p in parts if p.strip().rstrip(";").strip()]


def _record(conn, migration: Migration) -> None:
    updated = conn.execute(
        sa.text("UPDATE schema_migrations SET checksum = :c WHERE version = :v"),
        {"c": migration.checksum, "v": migration.version},
    )
    if updated.rowcount == 0:
        conn.execute(
            sa.text("INSERT INTO schema_migrations (version, name, checksum) VALUES (:v, :n, :c)"),
            {"v": migration.version, "n": migration.name, "c": migration.checksum},
        )


def _apply_sqlite(engine: Engine, migration: Migration) -> None:
    # pysqlite does not open a transaction before DDL; drive BEGIN/COMMIT ourselves so a failing
    # file leaves nothing behind.
    raw = engine.raw_connection()
    driver: Any = raw.driver_connection  # the sqlite3 connection
    previous_isolation = driver.isolation_level
    try:
        driver.isolation_level = None
        cursor = driver.cursor()
        cursor.execute("BEGIN")
        try:
            for statement in _statements(migration.sql):
                cursor.execute(statement)
            cursor.execute(
                "UPDATE schema_migrations SET checksum = ? WHERE version = ?",
                (migration.checksum, migration.version),
            )
            if cursor.rowcount == 0:
                cursor.execute(
                    "INSERT INTO schema_migrations (version, name, checksum) VALUES (?, ?, ?)",
                    (migration.version, migration.name, migration.checksum),
                )
            cursor.execute("COMMIT")
        except Exception:
            cursor.execute("ROLLBACK")
            raise
    finally:
        # The connection goes back to the pool: leaving it in autocommit would make every later
        # INSERT its own transaction (one fsync per row).
        driver.isolation_level = previous_isolation
        raw.close()


def migrate(engine: Engine, sql_dir: Path = SQL_DIR) -> list[str]:
    """Apply pending migrations in order; return the names applied (empty when up to date)."""
    pending = pending_migrations(engine, sql_dir)
    for migration in pending:
        try:
            if engine.dialect.name == "sqlite":
                _apply_sqlite(engine, migration)
            else:
                with engine.begin() as conn:
                    conn.exec_driver_sql(migration.sql)
                    _record(conn, migration)
        except (sa.exc.DBAPIError, sqlite3.Error) as exc:
            reason = getattr(exc, "orig", None) or exc
            raise MigrationError(
                f"migration {migration.path.name} failed and was rolled back: {reason}"
            ) from None
    # Adopt checksums of files applied by hand (their own INSERT leaves checksum NULL).
    with engine.begin() as conn:
        for migration in discover_migrations(engine.dialect.name, sql_dir):
            conn.execute(
                sa.text(
                    "UPDATE schema_migrations SET checksum = :c "
                    "WHERE version = :v AND checksum IS NULL"
                ),
                {"c": migration.checksum, "v": migration.version},
            )
    return [m.name for m in pending]


def ensure_current(engine: Engine, sql_dir: Path = SQL_DIR) -> None:
    """Raise a clear error when the database needs ``market-pipeline migrate``."""
    pending = pending_migrations(engine, sql_dir)
    if pending:
        raise MigrationError(
            f"the database is missing migrations {', '.join(m.name for m in pending)}: "
            "run `market-pipeline migrate`"
        )
