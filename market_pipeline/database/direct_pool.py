"""Direct driver connections for the observability store's hot path on PostgreSQL.

Each store call is one short statement, so its cost is mostly fixed overhead rather than work:
on this class of machine a pooled SQLAlchemy checkout with ``pool_pre_ping`` plus an explicit
transaction (ping, ``SET LOCAL``, statement, ``COMMIT``: four round trips) and the per-call
construction of the statement cost 2-10 ms, while the statement itself takes 0.1-3 ms on the
server. :class:`DirectPool` removes the fixed part:

- connections are psycopg2 connections opened through the engine (same URL, ``connect_args``
  and connect events), detached from its pool and kept in a small LIFO pool of their own, in
  autocommit mode with ``synchronous_commit = off`` and ``TimeZone = 'UTC'`` set once per
  connection, so a one-statement write is one round trip (the store only writes derived data
  that the reconciler can rebuild from Dagster's run storage; see ``ObservabilityStore``);
- there is no ping: a connection the server dropped (restart, network cut) fails on use, is
  discarded, and the call runs once more on a new connection when the caller says the statement
  may run twice (every statement the store sends this way is idempotent, see
  :meth:`DirectPool.run`);
- driver errors are re-raised as SQLAlchemy's ``DBAPIError`` subclasses
  (``OperationalError`` ...), so callers catch the same exceptions as on the pooled path.

The pool belongs to the engine (one per engine, shared by every store over it), closes its
connections when the engine is disposed, and is dropped in a forked child (a connection must
never be shared across processes).
"""

from __future__ import annotations

import contextlib
import os
import threading
import weakref
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Engine

T = TypeVar("T")

MAX_IDLE = 16
"""Idle connections kept per engine (at most as many as were ever in use at once): 16, the admin
API benchmark's concurrency; callers beyond that open extra connections and close them."""

_SESSION_SETUP = "SET synchronous_commit = off; SET TimeZone = 'UTC'"

_pools: weakref.WeakKeyDictionary[Engine, DirectPool] = weakref.WeakKeyDictionary()
_pools_lock = threading.Lock()


def direct_pool(engine: Engine) -> DirectPool:
    """The :class:`DirectPool` of ``engine`` (a PostgreSQL psycopg2 engine), made on first use."""
    with _pools_lock:
        pool = _pools.get(engine)
        if pool is None:
            pool = _pools[engine] = DirectPool(engine)
        return pool


class DirectPool:
    """A LIFO pool of autocommit psycopg2 connections opened through ``engine``."""

    def __init__(self, engine: Engine) -> None:
        if engine.dialect.name != "postgresql" or engine.dialect.driver != "psycopg2":
            raise ValueError(
                f"direct connections need postgresql+psycopg2, not "
                f"{engine.dialect.name}+{engine.dialect.driver}"
            )
        self._engine_ref = weakref.ref(engine)
        self._lock = threading.Lock()
        self._idle: list[Any] = []
        self._generation = 0
        self._pid = os.getpid()
        self._dbapi_error = engine.dialect.loaded_dbapi.Error
        self.calls = 0
        """Calls of :meth:`run` that reached a connection (retries included), for diagnostics."""
        sa.event.listen(engine, "engine_disposed", self._on_engine_disposed)
        weakref.finalize(self, _close_all, self._idle)

    # -- connections ---------------------------------------------------------------------------

    def _open(self) -> Any:
        engine = self._engine_ref()
        if engine is None:
            raise RuntimeError("the engine of this connection pool was garbage-collected")
        proxied = engine.raw_connection()
        proxied.detach()  # ours now: closing it closes the driver connection
        conn: Any = proxied.dbapi_connection  # a psycopg2 connection
        try:
            conn.autocommit = True
            with conn.cursor() as cursor:
                cursor.execute(_SESSION_SETUP)
        except BaseException:
            conn.close()
            raise
        return conn

    def _acquire(self) -> tuple[Any, int]:
        with self._lock:
            if os.getpid() != self._pid:  # forked: the parent's connections are not ours
                self._idle.clear()
                self._pid = os.getpid()
            generation = self._generation
            if self._idle:
                return self._idle.pop(), generation
        return self._open(), generation

    def _release(self, conn: Any, generation: int) -> None:
        with self._lock:
            keep = (
                generation == self._generation
                and os.getpid() == self._pid
                and not conn.closed
                and len(self._idle) < MAX_IDLE
            )
            if keep:
                self._idle.append(conn)
                return
        _close_quietly(conn)

    def _on_engine_disposed(self, _conn: Any) -> None:
        with self._lock:
            self._generation += 1
            idle, self._idle[:] = list(self._idle), []
        for conn in idle:
            _close_quietly(conn)

    def close(self) -> None:
        """Close the idle connections (connections in use close when released)."""
        self._on_engine_disposed(None)

    @property
    def idle_count(self) -> int:
        return len(self._idle)

    # -- running statements --------------------------------------------------------------------

    def run(self, work: Callable[[Any], T], *, statement: str, may_repeat: bool) -> T:
        """``work(cursor)`` on a pooled connection; its result.

        A connection found broken (``conn.closed`` after the error: the server or the network
        dropped it) is discarded; when ``may_repeat`` (running the statement twice has the
        effect of running it once) ``work`` then runs once more on a new connection. Other
        errors leave the connection usable (autocommit: no transaction is left open). Driver
        errors are raised as ``sqlalchemy.exc.DBAPIError`` subclasses naming ``statement``.
        """
        attempts = 2 if may_repeat else 1
        for attempt in range(attempts):
            conn, generation = self._acquire_wrapped(statement)
            self.calls += 1
            try:
                with conn.cursor() as cursor:
                    result = work(cursor)
            except self._dbapi_error as exc:
                broken = bool(conn.closed)
                if broken:
                    _close_quietly(conn)
                else:
                    self._release(conn, generation)
                if broken and attempt + 1 < attempts:
                    continue
                raise self._wrap(exc, statement) from exc
            except BaseException:
                _close_quietly(conn)
                raise
            self._release(conn, generation)
            return result
        raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises

    def _acquire_wrapped(self, statement: str) -> tuple[Any, int]:
        try:
            return self._acquire()
        except sa.exc.DBAPIError:
            raise
        except self._dbapi_error as exc:
            raise self._wrap(exc, statement) from exc

    def _wrap(self, exc: Exception, statement: str) -> sa.exc.StatementError:
        return sa.exc.DBAPIError.instance(
            statement, None, exc, self._dbapi_error, hide_parameters=True
        )


def _close_quietly(conn: Any) -> None:
    # A connection that cannot close is gone anyway.
    with contextlib.suppress(Exception):
        conn.close()


def _close_all(idle: list[Any]) -> None:
    for conn in list(idle):
        _close_quietly(conn)
    idle.clear()


def compile_for(engine: Engine, stmt: sa.ClauseElement) -> tuple[str, Mapping[str, Any]]:
    """``stmt`` compiled once for ``engine``'s dialect: the SQL text (pyformat placeholders) and
    the values of the parameters bound at construction (``bindparam(name, value)``), which
    calls override by name.

    Statements meant for this must take DBAPI-ready values (canonical UUID strings, aware UTC
    datetimes): the compiled text is run directly, without SQLAlchemy's bind processors.
    """
    compiled = stmt.compile(dialect=engine.dialect)
    if "POSTCOMPILE" in compiled.string:
        raise ValueError("expanding IN parameters need SQLAlchemy at run time: use OR of =")
    return compiled.string, dict(compiled.params)
