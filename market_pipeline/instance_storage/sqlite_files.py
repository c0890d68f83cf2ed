"""One SQLite database file with its connection kept open, safe across forks and file swaps.

Dagster's SQLite storage creates an engine with ``NullPool`` for every storage call: each call
opens the file, reads the schema, and on closing, as the last connection in WAL mode, checkpoints
the WAL into the database and deletes it (two more fsyncs), and the engine's compiled-SQL cache
goes with it. :class:`KeptDatabase` keeps one engine per file and process instead:

- a ``QueuePool`` of :data:`KEPT_PER_FILE` connection: concurrent callers (the daemon's threads
  on the run storage) get extra connections, closed when returned. A connection is only ever used
  by the thread that checked it out, so SQLAlchemy's ``check_same_thread=False`` for file
  databases is safe;
- pysqlite only opens a transaction for a write and every call ends with a commit or the pool's
  rollback, so an idle kept connection holds no snapshot: other processes' writes are seen at the
  next call, and checkpoints are never held back by it;
- with the connection kept, the WAL is checkpointed by SQLite's automatic checkpoint
  (``wal_autocheckpoint``, set explicitly to SQLite's default of :data:`WAL_AUTOCHECKPOINT_PAGES`)
  instead of at every close, so it stays bounded; :meth:`KeptDatabase.dispose` closes the
  connection, and the last one to close checkpoints and removes it, as stock;
- commits are not synced one by one (``synchronous = NORMAL``, as our own tables on SQLite): in
  WAL mode that keeps the database consistent through an application crash or a power loss, and
  a power loss may roll back the last commits before a checkpoint. Dagster commits every event
  on its own, so the default (FULL, one fsync per commit) cost a sync per event; a deployment
  that needs every event durable runs on PostgreSQL;
- a file removed or replaced under the kept connection (``dagster instance wipe``, a restore,
  ``make clean-data`` while the webserver runs) is noticed at the next call by one ``stat`` and
  the connection reopened, instead of reading and writing a deleted inode;
- a forked child never uses, nor closes, its parent's connections (SQLite forbids both: "Do not
  open an SQLite database connection, then fork(), then try to use that database connection in
  the child process"): the child's engines start new pools and keep the inherited ones, untouched.
"""

from __future__ import annotations

import contextlib
import os
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa
from dagster._core.storage.sqlite import SQLITE_BUSY_TIMEOUT_SECONDS

KEPT_PER_FILE = 1
"""Connections each kept database keeps open per process."""
WAL_AUTOCHECKPOINT_PAGES = 1000
"""SQLite's default: a commit that leaves the WAL over this many pages checkpoints it."""

SYNCHRONOUS = "NORMAL"
"""Commits are not synced to disk one by one (SQLite's default in WAL mode is FULL: one fsync per
commit, and Dagster commits every event on its own); see the module docstring."""

_KEPT_ENGINES: weakref.WeakSet[sa.Engine] = weakref.WeakSet()
_INHERITED_POOLS: list[sa.pool.Pool] = []
"""In a forked child: the parent's pools, kept referenced so their connections are never closed
(closing runs SQLite's checkpoint-on-close from the wrong process)."""


def _forget_inherited_connections() -> None:
    """In a forked child: give every kept engine a new, empty pool."""
    for engine in list(_KEPT_ENGINES):
        _INHERITED_POOLS.append(engine.pool)
        engine.dispose(close=False)


if hasattr(os, "register_at_fork"):  # not on Windows, which cannot fork
    os.register_at_fork(after_in_child=_forget_inherited_connections)


def _file_identity(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return st.st_dev, st.st_ino


def _set_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(f"PRAGMA wal_autocheckpoint = {WAL_AUTOCHECKPOINT_PAGES}")
        cursor.execute(f"PRAGMA synchronous = {SYNCHRONOUS}")
    finally:
        cursor.close()


def _total_changes(conn: sa.Connection) -> int:
    return int(conn.connection.driver_connection.total_changes)  # type: ignore[union-attr]


class KeptDatabase:
    """An engine on one SQLite file that keeps its connection between calls."""

    def __init__(self, conn_string: str) -> None:
        self.path = str(sa.engine.make_url(conn_string).database)
        self.engine = sa.create_engine(
            conn_string,
            poolclass=sa.pool.QueuePool,
            pool_size=KEPT_PER_FILE,
            max_overflow=-1,
            connect_args={"timeout": SQLITE_BUSY_TIMEOUT_SECONDS},
        )
        self._identity: tuple[int, int] | None = None
        sa.event.listen(self.engine, "connect", _set_pragmas)
        sa.event.listen(self.engine, "connect", self._remember_file)
        _KEPT_ENGINES.add(self.engine)

    def _remember_file(self, _dbapi_connection: Any, _record: Any) -> None:
        self._identity = _file_identity(self.path)

    def is_current(self) -> bool:
        """False when the file the kept connections opened was removed or replaced since."""
        return self._identity is None or _file_identity(self.path) == self._identity

    @contextmanager
    def connect(self, *, touch_after_write: bool = False) -> Iterator[sa.Connection]:
        """A connection in a transaction, committed at the end (rolled back on an error); with
        ``touch_after_write``, a committed transaction that changed rows touches the file."""
        if not self.is_current():
            self.engine.dispose()  # the next checkout opens the file now at this path
        with self.engine.connect() as conn:
            with conn.begin():
                before = _total_changes(conn)
                yield conn
                wrote = _total_changes(conn) != before
            if touch_after_write and wrote:
                with contextlib.suppress(FileNotFoundError):
                    os.utime(self.path)

    def dispose(self) -> None:
        """Close the kept connections (the last one to close checkpoints the WAL)."""
        self.engine.dispose()
