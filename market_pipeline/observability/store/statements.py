"""Running the store's statements: built once, run in one round trip, in the right transaction.

Statements of the hot methods are built once per dialect with named parameters (they hold no
store state, so every store shares them). On PostgreSQL over psycopg2 their compiled text runs on
the direct driver connections of :mod:`market_pipeline.database.direct_pool` (autocommit,
``synchronous_commit = off``, no ping): one round trip per call. Elsewhere they run through
SQLAlchemy.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, ClassVar, Literal

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine

from market_pipeline.database.direct_pool import DirectPool, compile_for, direct_pool

Fetch = Literal["none", "one", "all"]


class Statements:
    """The statement runner of one engine (SQLite or PostgreSQL)."""

    _BUILT: ClassVar[dict[tuple[str, str], Any]] = {}
    _COMPILED: ClassVar[dict[tuple[str, str], tuple[str, Mapping[str, Any]]]] = {}

    def __init__(self, engine: Engine) -> None:
        if engine.dialect.name not in ("sqlite", "postgresql"):
            raise ValueError(f"unsupported database dialect {engine.dialect.name!r}")
        self.engine = engine
        self.dialect = engine.dialect.name
        self._direct = (
            direct_pool(engine)
            if self.dialect == "postgresql" and engine.dialect.driver == "psycopg2"
            else None
        )

    @property
    def direct(self) -> DirectPool | None:
        """The direct driver connections (PostgreSQL over psycopg2), for statements written as
        driver SQL; None elsewhere."""
        return self._direct

    @property
    def is_postgres(self) -> bool:
        return self.dialect == "postgresql"

    def insert(self, table: sa.Table) -> Any:
        """The dialect's ``INSERT`` (both have ``ON CONFLICT``)."""
        return postgresql.insert(table) if self.is_postgres else sqlite.insert(table)

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """A write transaction. On SQLite it takes the write lock up front (BEGIN IMMEDIATE), so
        that a read followed by a write cannot fail with SQLITE_BUSY halfway through."""
        with self.engine.begin() as conn:
            if self.dialect == "sqlite":
                conn.exec_driver_sql("BEGIN IMMEDIATE")
            else:
                # These rows are derived data: the reconciler rebuilds them from Dagster's run
                # storage (the source of truth), so a commit need not wait for the WAL flush.
                # A crash can lose the last few hundred ms of commits, never corrupt or reorder
                # them, and the next reconcile puts the lost rows back. LOCAL: it ends with this
                # transaction and never leaks to other users of the pooled connection.
                conn.exec_driver_sql("SET LOCAL synchronous_commit = off")
            yield conn

    def built(self, key: str, build: Callable[[], Any]) -> Any:
        """The statement ``build()`` makes, built once per dialect and ``key``."""
        cache_key = (self.dialect, key)
        stmt = self._BUILT.get(cache_key)
        if stmt is None:
            stmt = self._BUILT[cache_key] = build()
        return stmt

    def run(
        self,
        key: str,
        build: Callable[[], Any],
        params: Mapping[str, Any],
        *,
        fetch: Fetch = "none",
        write: bool,
        may_repeat: bool = True,
    ) -> Any:
        """Run the statement ``build()`` (cached under ``key``) with ``params``; return the
        first row (``fetch="one"``, ``None`` when there is none), all rows (``"all"``) or the
        row count (``"none"``). Rows unpack as tuples in the statement's column order.

        On the direct path ``params`` must be driver-ready (canonical UUID strings, aware
        datetimes); a dropped connection is replaced and the call repeated once when
        ``may_repeat``. Elsewhere it runs through SQLAlchemy, in a write transaction when
        ``write``.
        """
        if self._direct is not None:
            return self._run_direct(key, build, params, fetch, may_repeat)
        stmt = self.built(key, build)
        with self.write() if write else self.engine.connect() as conn:
            result = conn.execute(stmt, params)
            if fetch == "one":
                return result.first()
            if fetch == "all":
                return result.all()
            return result.rowcount

    def _run_direct(
        self,
        key: str,
        build: Callable[[], Any],
        params: Mapping[str, Any],
        fetch: Fetch,
        may_repeat: bool,
    ) -> Any:
        assert self._direct is not None
        cache_key = (self.dialect, key)
        compiled = self._COMPILED.get(cache_key)
        if compiled is None:
            compiled = self._COMPILED[cache_key] = compile_for(self.engine, self.built(key, build))
        sql, defaults = compiled
        bound = {**defaults, **params}

        def work(cursor: Any) -> Any:
            cursor.execute(sql, bound)
            if fetch == "one":
                return cursor.fetchone()
            if fetch == "all":
                return cursor.fetchall()
            return cursor.rowcount

        return self._direct.run(work, statement=sql, may_repeat=may_repeat)
