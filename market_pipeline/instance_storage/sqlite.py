"""Dagster's SQLite instance storage, keeping its connections open between calls.

Stock ``DagsterSqliteStorage`` opens a new engine and connection for every storage call (its run
storage's ``connect`` and its event log's ``_connect`` use ``NullPool``), and a range run makes
four or five calls per partition; closing each connection, as the last one to a WAL database,
checkpoints the WAL, and each new engine compiles its SQL again (figures: README and the bench's
``demo_sqlite`` case).

:class:`KeptConnectionSqliteStorage` is the same storage, on the same files and tables (an
existing ``DAGSTER_HOME`` switches back and forth freely), whose run storage and event-log storage
keep their connections (:mod:`market_pipeline.instance_storage.sqlite_files`: WAL checkpoints,
forks, files replaced underneath):

- the run storage keeps one connection to ``history/runs.db``;
- the event log keeps one to the index shard and to each of the :data:`KEPT_RUN_SHARDS` run
  shards (``history/runs/<run_id>.db``) used last; older ones are closed, so a webserver or a
  daemon touching thousands of runs keeps a bounded number of files open;
- run-log subscriptions (the webserver's live run view, ``instance.watch_event_logs``) watch a
  run shard's ``.db`` file for changes, which stock storage made at every call by checkpointing
  on close; a kept connection writes to the WAL and changes the ``.db`` only at checkpoints, so a
  committed write touches the file's modification time instead (a change the WAL file itself
  cannot signal: it is written before the commit is visible to readers);
- ``DagsterInstance.dispose()`` closes everything; ``optimize_for_webserver`` is a no-op on
  SQLite, as stock; the schedule storage stays stock (the daemon calls it a few times per tick,
  and the instance never disposes it).

Select it in ``dagster.yaml`` (the committed one does)::

    storage:
      custom:
        module: market_pipeline.instance_storage.sqlite
        class: KeptConnectionSqliteStorage
        config:
          base_dir: {env: DAGSTER_HOME}

``storage: {sqlite: {base_dir: {env: DAGSTER_HOME}}}`` is the stock equivalent on the same files.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa
from dagster._core.storage.event_log.sqlite.sqlite_event_log import (
    INDEX_SHARD_NAME,
    SqliteEventLogStorage,
)
from dagster._core.storage.runs.sqlite.sqlite_run_storage import SqliteRunStorage
from dagster._core.storage.schedules.sqlite.sqlite_schedule_storage import SqliteScheduleStorage
from dagster._core.storage.sqlite_storage import (
    DagsterSqliteStorage,
    _event_logs_directory,
    _runs_directory,
    _schedule_directory,
)
from dagster._utils import mkdir_p

from market_pipeline.instance_storage.sqlite_files import KeptDatabase

KEPT_RUN_SHARDS = 8
"""Run shards whose connection the event log keeps per process (the index shard comes extra)."""


class KeptConnectionSqliteRunStorage(SqliteRunStorage):
    """Dagster's SQLite run storage keeping its connection to ``runs.db`` between calls."""

    def __init__(self, conn_string: str, inst_data: Any = None) -> None:
        self._kept = KeptDatabase(conn_string)
        super().__init__(conn_string, inst_data)

    @contextmanager
    def connect(self) -> Iterator[sa.Connection]:
        with self._kept.connect() as conn:
            yield conn

    def dispose(self) -> None:
        super().dispose()
        self._kept.dispose()


class KeptConnectionSqliteEventLogStorage(SqliteEventLogStorage):
    """Dagster's run-sharded SQLite event log keeping connections to the index and recent runs."""

    def __init__(self, base_dir: str, inst_data: Any = None) -> None:
        self._kept: OrderedDict[str, KeptDatabase] = OrderedDict()
        super().__init__(base_dir, inst_data)

    def _kept_shard(self, shard: str) -> KeptDatabase:
        """The kept database of ``shard`` (opened, and created when new); under ``_db_lock``."""
        kept = self._kept.get(shard)
        if kept is not None and not kept.is_current():
            self._close_shard(shard)  # removed or replaced: a new file needs its tables
            self._initialized_dbs.discard(shard)
            kept = None
        if kept is None:
            kept = self._kept[shard] = KeptDatabase(self.conn_string_for_shard(shard))
        self._kept.move_to_end(shard)
        if shard not in self._initialized_dbs:
            self._initdb(kept.engine)
            self._initialized_dbs.add(shard)
        run_shards = [s for s in self._kept if s != INDEX_SHARD_NAME]
        for oldest in run_shards[: max(0, len(run_shards) - KEPT_RUN_SHARDS)]:
            self._close_shard(oldest)
        return kept

    def _close_shard(self, shard: str) -> None:
        kept = self._kept.pop(shard, None)
        if kept is not None:
            kept.dispose()

    @contextmanager
    def _connect(self, shard: str) -> Iterator[sa.Connection]:
        # The lock is stock: one storage call at a time per process, so one connection per shard.
        # A write to a run shard touches its file once committed: run-log subscriptions (the
        # webserver's live run view) watch the file for changes, which a kept connection
        # otherwise makes only at checkpoints.
        touch = shard != INDEX_SHARD_NAME
        with self._db_lock, self._kept_shard(shard).connect(touch_after_write=touch) as conn:
            yield conn

    def has_table(self, table_name: str) -> bool:
        # Asked once per asset check event. Not under _db_lock, as stock: it may be asked while
        # this thread holds a shard; the kept index engine then lends an extra connection.
        kept = self._kept.get(INDEX_SHARD_NAME)
        if kept is None:
            return super().has_table(table_name)
        with kept.engine.connect() as conn:
            return bool(conn.dialect.has_table(conn, table_name))

    def wipe(self) -> None:
        with self._db_lock:  # close the run shards before their files are deleted
            for shard in [s for s in self._kept if s != INDEX_SHARD_NAME]:
                self._close_shard(shard)
        super().wipe()

    def dispose(self) -> None:
        super().dispose()
        with self._db_lock:
            for shard in list(self._kept):
                self._close_shard(shard)

    @property
    def kept_shards(self) -> list[str]:
        """Shards with a kept connection, least recently used first (for tests and the bench)."""
        return list(self._kept)


class KeptConnectionSqliteStorage(DagsterSqliteStorage):
    """Dagster's SQLite storage whose run and event-log storage keep their connections."""

    def __init__(self, base_dir: str, inst_data: Any = None) -> None:
        # The stock constructor's own body with our run and event-log storage: building the stock
        # ones first would check every file's schema twice in each process.
        self.base_dir = base_dir
        self._run_storage = KeptConnectionSqliteRunStorage.from_local(_runs_directory(base_dir))
        self._event_log_storage = KeptConnectionSqliteEventLogStorage(
            _event_logs_directory(base_dir)
        )
        self._schedule_storage = SqliteScheduleStorage.from_local(_schedule_directory(base_dir))
        self._inst_data = inst_data
        super(DagsterSqliteStorage, self).__init__()

    @classmethod
    def from_config_value(cls, inst_data: Any, config_value: Any) -> KeptConnectionSqliteStorage:
        return cls.from_local(inst_data=inst_data, **config_value)

    @classmethod
    def from_local(cls, base_dir: str, inst_data: Any = None) -> KeptConnectionSqliteStorage:
        mkdir_p(base_dir)
        return cls(base_dir, inst_data=inst_data)


def storage_config(base_dir: Any) -> dict[str, Any]:
    """The ``storage:`` block of a dagster.yaml selecting :class:`KeptConnectionSqliteStorage`
    under ``base_dir`` (a path, or ``{"env": "DAGSTER_HOME"}`` as in the committed dagster.yaml)."""
    return {
        "custom": {
            "module": __name__,
            "class": KeptConnectionSqliteStorage.__name__,
            "config": {"base_dir": base_dir},
        }
    }
