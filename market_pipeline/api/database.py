"""The database behind the API: its checks, and why a query failed (503, never 500)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from market_pipeline.api.paths import READINESS_PATH, SCHEMA_RECHECK_SECONDS
from market_pipeline.api.responses import ApiError
from market_pipeline.database.engine import DatabaseUnavailableError, check_connection
from market_pipeline.database.migrations import MigrationError, ensure_current
from market_pipeline.observability.store import ObservabilityStore

logger = logging.getLogger("market_pipeline.api")


@dataclass
class Database:
    """What the handlers need to reach, check and describe the database."""

    engine: Engine
    description: str
    password: str | None
    schema_checked_at: float | None = None

    def mask(self, text: str) -> str:
        """``text`` with the database password, should a driver message repeat it, masked."""
        if self.password:
            text = text.replace(self.password, "***")
        return text

    def check(self, *, schema_recheck_seconds: float = SCHEMA_RECHECK_SECONDS) -> None:
        """Connect (every time), then check migrations unless that passed within
        ``schema_recheck_seconds``. Raises what the storage layer raises."""
        check_connection(self.engine)
        now = time.monotonic()
        last = self.schema_checked_at
        if last is None or now - last >= schema_recheck_seconds:
            self.schema_checked_at = None
            ensure_current(self.engine)
            self.schema_checked_at = now


def db_failure(db: Database, exc: Exception) -> ApiError:
    """The 503 answer for a database that fails under a request."""
    if isinstance(exc, DatabaseUnavailableError):
        return ApiError(503, "database_unavailable", db.mask(str(exc)))
    if isinstance(exc, MigrationError):
        return ApiError(503, "schema_not_current", db.mask(str(exc)))
    if isinstance(exc, sa.exc.OperationalError | sa.exc.InterfaceError):
        orig = getattr(exc, "orig", None)
        reason = str(orig).strip().splitlines()[0] if orig is not None else type(exc).__name__
        return ApiError(
            503, "database_unavailable", db.mask(f"cannot query {db.description}: {reason}")
        )
    return ApiError(
        503,
        "database_error",
        f"a query on {db.description} failed; see {READINESS_PATH} and the server log",
    )


def diagnose(db: Database, exc: Exception) -> ApiError:
    """Why a query failed: the database is down, not migrated, or (else) the query itself."""
    try:
        db.check(schema_recheck_seconds=0)
    except (sa.exc.SQLAlchemyError, DatabaseUnavailableError, MigrationError) as found:
        return db_failure(db, found)
    return db_failure(db, exc)


async def query_store(request: Request, call: Callable[[ObservabilityStore], Any]) -> Any:
    """Run ``call(store)`` in the threadpool; database failures become a 503 :class:`ApiError`.

    Only a failed query pays for the diagnosis (a connection check and the migration check),
    so the answer says whether the database is down or not migrated.
    """
    store: ObservabilityStore = request.app.state.store
    db: Database = request.app.state.database
    try:
        return await run_in_threadpool(call, store)
    except (sa.exc.SQLAlchemyError, DatabaseUnavailableError, MigrationError) as exc:
        logger.warning("database failure under %s: %s", request.url.path, db.mask(str(exc)))
        raise await run_in_threadpool(diagnose, db, exc) from None
