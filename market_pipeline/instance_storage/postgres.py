"""Dagster's PostgreSQL instance storage, keeping its connections open between calls.

Stock dagster-postgres gives its run and event-log storage an engine with SQLAlchemy's
``NullPool``: every storage call opens a new PostgreSQL connection (TCP, authentication, a new
server backend) and closes it. A run reports one event per partition it materializes, and each
event takes three to four storage calls, so connection set-up was most of Dagster's bookkeeping
of a range run (figures: README and the bench's backfill case).

:class:`PooledPostgresStorage` is the same storage (same tables, schema migrations and
configuration: ``postgres_url`` or ``postgres_db``) whose run and event-log storage keep
:data:`POOL_SIZE` connection per process open and reuse it:

- a connection the server dropped (restart, ``idle_session_timeout``, ``pg_terminate_backend``,
  a proxy closing it) is replaced at checkout instead of failing a run. The check costs no round
  trip: a server that ends a session sends a message and closes the socket, so an idle
  connection whose socket has anything to read is dead. (SQLAlchemy's ``pool_pre_ping`` sends a
  query per checkout instead: 15% of the event-writing thread's samples in a range run.)
  Connections older than :data:`POOL_RECYCLE_S` are replaced too, before a network path that
  drops idle connections silently can do so;
- concurrent callers (the daemon's threads) get extra connections, closed when returned, as stock;
- a forked child never reuses its parent's sockets: the pool forgets them in the child;
- ``DagsterInstance.dispose()`` closes the kept connections (an instance never disposed keeps
  them until the garbage collector finds it; Dagster and this project always dispose), and so
  does dagster-webserver when it swaps in its own pooled engine.

The schedule storage stays stock: the daemon calls it a few times per tick, never per event, and
the instance never disposes it, so a kept connection there could only leak.

Select it in ``dagster.yaml`` (the committed ``dagster.postgres.yaml`` does)::

    storage:
      custom:
        module: market_pipeline.instance_storage.postgres
        class: PooledPostgresStorage
        config:
          postgres_url: {env: DAGSTER_PG_URL}

Replacing ``custom: ...`` with ``postgres: {postgres_url: ...}`` goes back to stock storage on the
same tables. Deployments with many processes can put PgBouncer in front as well; a kept connection
per process and storage is what this adds to the server's connection count.
"""

from __future__ import annotations

import os
import select
import weakref
from typing import Any

import sqlalchemy as sa
from dagster._core.storage.config import pg_config
from dagster_postgres import DagsterPostgresStorage
from dagster_postgres.event_log import PostgresEventLogStorage
from dagster_postgres.run_storage import PostgresRunStorage
from dagster_postgres.utils import (
    create_pg_engine,
    get_token_provider_from_config,
    pg_url_from_config,
)

POOL_SIZE = 1
"""Connections each run or event-log storage keeps open per process."""
POOL_RECYCLE_S = 300
"""A kept connection older than this is replaced at checkout: below the idle limits of common
NAT gateways and proxies (~350 s), for one new connection per process every five minutes."""

_POOLED_ENGINES: weakref.WeakSet[sa.Engine] = weakref.WeakSet()


def _forget_inherited_connections() -> None:
    """In a forked child: drop the parent's kept connections without closing its sockets."""
    for engine in list(_POOLED_ENGINES):
        engine.dispose(close=False)


if hasattr(os, "register_at_fork"):  # not on Windows, which cannot fork
    os.register_at_fork(after_in_child=_forget_inherited_connections)

KEEPALIVE = {
    "keepalives": 1,
    "keepalives_idle": 30,
    "keepalives_interval": 10,
    "keepalives_count": 3,
}
"""libpq TCP keepalive settings for kept connections, unless the URL sets its own: a peer that
vanished without closing the connection (host lost, NAT entry dropped) shows as an error on the
idle socket after about a minute, which :func:`server_closed` sees, instead of a call hanging
for the operating system's ~15-minute retransmission timeout."""


def server_closed(dbapi_connection: Any) -> bool:
    """True when an idle psycopg2 connection is closed or its socket has something to read or an
    error: the server's goodbye (an error message, then end of file) or a failed keepalive. Asks
    the kernel, not the server. (A NOTIFY would read as closed too, costing one reconnect; Dagster
    never LISTENs.)"""
    if dbapi_connection.closed:
        return True
    fd = dbapi_connection.fileno()
    if hasattr(select, "poll"):
        poller = select.poll()
        poller.register(fd, select.POLLIN | select.POLLERR | select.POLLHUP)
        return bool(poller.poll(0))
    readable, _, broken = select.select([fd], [], [fd], 0)  # Windows
    return bool(readable or broken)


def _replace_if_server_closed(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
    if server_closed(dbapi_connection):
        # The pool discards this connection and checks out a new one.
        raise sa.exc.DisconnectionError("the server closed this kept connection")


def pooled_engine(postgres_url: str, token_provider: Any = None) -> sa.Engine:
    """An engine like dagster-postgres's (autocommit, same URL and token hook) with a small pool."""
    given = sa.engine.make_url(postgres_url).query
    engine = create_pg_engine(
        postgres_url,
        token_provider,
        isolation_level="AUTOCOMMIT",
        pool_size=POOL_SIZE,
        max_overflow=-1,
        pool_recycle=POOL_RECYCLE_S,
        connect_args={k: v for k, v in KEEPALIVE.items() if k not in given},
    )
    sa.event.listen(engine, "checkout", _replace_if_server_closed)
    _POOLED_ENGINES.add(engine)
    return engine


class _KeepsConnections:
    """Swaps a dagster-postgres storage's per-call engine for :func:`pooled_engine`."""

    postgres_url: str
    _engine: sa.Engine
    _token_provider: Any

    def _keep_connections(self) -> None:
        per_call = self._engine
        self._engine = pooled_engine(self.postgres_url, self._token_provider)
        per_call.dispose()

    def optimize_for_webserver(
        self, statement_timeout: int, pool_recycle: int, max_overflow: int
    ) -> None:
        # dagster-webserver swaps in its own pooled engine; close the kept connection first
        # instead of leaving it to the garbage collector.
        kept = self._engine
        super().optimize_for_webserver(  # type: ignore[misc]
            statement_timeout, pool_recycle, max_overflow
        )
        kept.dispose()

    def dispose(self) -> None:
        super().dispose()  # type: ignore[misc]
        self._engine.dispose()


class PooledPostgresRunStorage(_KeepsConnections, PostgresRunStorage):
    """dagster-postgres run storage keeping its connection open between calls."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._keep_connections()


class PooledPostgresEventLogStorage(_KeepsConnections, PostgresEventLogStorage):
    """dagster-postgres event-log storage keeping its connection open between calls."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._keep_connections()


class PooledPostgresStorage(DagsterPostgresStorage):
    """Dagster's PostgreSQL storage whose run and event-log storage keep their connections."""

    def __init__(
        self,
        postgres_url: str,
        should_autocreate_tables: bool = True,
        inst_data: Any = None,
        token_provider: Any = None,
    ) -> None:
        super().__init__(
            postgres_url,
            should_autocreate_tables,
            inst_data=inst_data,
            token_provider=token_provider,
        )
        # The parent built stock storages (and, on a new database, their tables). Its run and
        # event-log storage, which hold no connection (NullPool), give way to ones that keep one.
        self._run_storage = PooledPostgresRunStorage(
            postgres_url, False, token_provider=token_provider
        )
        self._event_log_storage = PooledPostgresEventLogStorage(
            postgres_url, False, token_provider=token_provider
        )

    @classmethod
    def config_type(cls) -> Any:
        return pg_config()

    @classmethod
    def from_config_value(cls, inst_data: Any, config_value: Any) -> PooledPostgresStorage:
        return cls(
            pg_url_from_config(config_value),
            config_value.get("should_autocreate_tables", True),
            inst_data=inst_data,
            token_provider=get_token_provider_from_config(config_value),
        )


def storage_config(postgres_url: Any) -> dict[str, Any]:
    """The ``storage:`` block of a dagster.yaml selecting :class:`PooledPostgresStorage` at
    ``postgres_url`` (a URL, or ``{"env": "DAGSTER_PG_URL"}`` as in dagster.postgres.yaml)."""
    return {
        "custom": {
            "module": __name__,
            "class": PooledPostgresStorage.__name__,
            "config": {"postgres_url": postgres_url},
        }
    }
