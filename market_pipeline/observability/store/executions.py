"""``scheduler_execution_log``: one row per execution (a Dagster run of the market-data assets)."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from market_pipeline.database.tables import scheduler_execution_log as executions_t
from market_pipeline.domain.identifiers import canonical_uuid
from market_pipeline.domain.timestamps import ensure_utc
from market_pipeline.observability.store.checks import (
    EXECUTION_STATUSES,
    TERMINAL_STATUSES,
    UnknownExecutionError,
    check_count,
    check_duration,
    check_status,
    duration_between,
    optional_utc,
    sanitize_error_message,
)
from market_pipeline.observability.store.context import StoreContext

_FIELDS = (
    "execution_id",
    "started_at",
    "completed_at",
    "total_symbols",
    "successful_symbols",
    "failed_symbols",
    "total_records_processed",
    "duration_seconds",
    "status",
    "error_message",
    "job_name",
    "run_trigger",
    "scheduled_for",
    "updated_at",
)
_COUNTS = ("total_symbols", "successful_symbols", "failed_symbols", "total_records_processed")


def require_executions(conn: Connection, execution_ids: Iterable[str]) -> None:
    """Raise :class:`UnknownExecutionError` for the first id without an execution row."""
    wanted = set(execution_ids)
    if not wanted:
        return
    found = set(
        conn.execute(
            sa.select(executions_t.c.execution_id).where(
                executions_t.c.execution_id.in_(sorted(wanted))
            )
        ).scalars()
    )
    missing = sorted(wanted - found)
    if missing:
        raise UnknownExecutionError(missing[0])


def create(
    ctx: StoreContext,
    *,
    started_at: datetime,
    total_symbols: int = 0,
    status: str = "running",
    execution_id: str | uuid.UUID | None = None,
    job_name: str | None = None,
    run_trigger: str | None = None,
    scheduled_for: datetime | None = None,
) -> str:
    """See :meth:`ObservabilityStore.create_scheduler_execution_log`."""
    eid = str(uuid.uuid4()) if execution_id is None else canonical_uuid(execution_id)
    values = {
        "execution_id": eid,
        "started_at": ensure_utc(started_at, name="started_at"),
        "completed_at": None,
        "total_symbols": check_count(total_symbols, "total_symbols"),
        "successful_symbols": 0,
        "failed_symbols": 0,
        "total_records_processed": 0,
        "duration_seconds": None,
        "status": check_status(status, EXECUTION_STATUSES, "execution"),
        "error_message": None,
        "job_name": job_name,
        "run_trigger": run_trigger,
        "scheduled_for": optional_utc(scheduled_for, "scheduled_for"),
        "updated_at": ctx.now(),
    }
    sql = ctx.sql
    sql.run("create_execution", lambda: _create_stmt(sql.insert(executions_t)), values, write=True)
    return eid


def _create_stmt(insert: Any) -> Any:
    """Insert one execution; an existing row only gets its blanks filled (and a ``running`` one
    the given status), so a re-delivered start changes no recorded fact."""
    t = executions_t
    stmt = insert.values({name: sa.bindparam(name, type_=t.c[name].type) for name in _FIELDS})
    new = stmt.excluded
    return stmt.on_conflict_do_update(
        index_elements=[t.c.execution_id],
        set_={
            "job_name": sa.func.coalesce(t.c.job_name, new.job_name),
            "run_trigger": sa.func.coalesce(t.c.run_trigger, new.run_trigger),
            "scheduled_for": sa.func.coalesce(t.c.scheduled_for, new.scheduled_for),
            "total_symbols": sa.case(
                (t.c.total_symbols == 0, new.total_symbols), else_=t.c.total_symbols
            ),
            "status": sa.case((t.c.status == "running", new.status), else_=t.c.status),
            "updated_at": new.updated_at,
        },
    )


def update(
    ctx: StoreContext,
    *,
    execution_id: str | uuid.UUID,
    completed_at: datetime | None = None,
    status: str | None = None,
    error_message: str | None = None,
    duration_seconds: float | None = None,
    **counts: int | None,
) -> None:
    """See :meth:`ObservabilityStore.update_scheduler_execution_log`."""
    eid = canonical_uuid(execution_id)
    completed = optional_utc(completed_at, "completed_at")
    duration = check_duration(duration_seconds)
    params: dict[str, Any] = {
        "p_execution_id": eid,
        "p_updated_at": ctx.now(),
        "p_completed_at": completed,
        "p_duration_seconds": duration,
        "p_error_message": None if error_message is None else sanitize_error_message(error_message),
        "p_status": None
        if status is None
        else check_status(status, EXECUTION_STATUSES, "execution"),
    }
    for name in _COUNTS:
        value = counts.pop(name, None)
        params[f"p_{name}"] = None if value is None else check_count(value, name)
    if counts:
        raise TypeError(f"unexpected keyword argument(s) {', '.join(sorted(counts))}")
    sql = ctx.sql
    if sql.is_postgres:
        # One statement: the duration is computed, and a completion before the start refused,
        # in SQL. No row back: unknown id or such a completion; both raise below.
        row = sql.run(
            "update_execution",
            lambda: _update_stmt(postgres=True),
            params,
            fetch="one",
            write=True,
        )
        if row is None:
            _raise_update_refused(ctx, eid, completed)
        return
    # SQLite: the duration needs the stored start, so it is a second statement in the same
    # transaction (its timestamps are text; julianday() arithmetic would round the seconds).
    with sql.write() as conn:
        row = conn.execute(
            sql.built("update_execution", lambda: _update_stmt(postgres=False)), params
        ).first()
        if row is None:
            raise UnknownExecutionError(eid)
        if completed is not None and duration is None:
            seconds = duration_between(row.started_at, completed, f"execution {eid}")
            t = executions_t
            conn.execute(t.update().where(t.c.execution_id == eid).values(duration_seconds=seconds))


def _update_stmt(*, postgres: bool) -> Any:
    """``UPDATE`` of one execution where every ``p_*`` parameter left NULL keeps the stored
    value; ``RETURNING started_at``. On PostgreSQL it also sets the duration from
    ``p_completed_at`` and skips the row (returning nothing) when that precedes the start."""
    t = executions_t
    p = {
        name: sa.bindparam(f"p_{name}", type_=t.c[name].type)
        for name in (
            "execution_id",
            "updated_at",
            "completed_at",
            "duration_seconds",
            "error_message",
            "status",
            *_COUNTS,
        )
    }
    duration = sa.func.coalesce(p["duration_seconds"], t.c.duration_seconds)
    where = [t.c.execution_id == p["execution_id"]]
    if postgres:
        elapsed = sa.extract("epoch", p["completed_at"] - t.c.started_at)
        duration = sa.func.coalesce(
            p["duration_seconds"],
            sa.case((p["completed_at"].is_(None), t.c.duration_seconds), else_=elapsed),
        )
        where.append(
            sa.or_(
                p["completed_at"].is_(None),
                p["duration_seconds"].is_not(None),
                p["completed_at"] >= t.c.started_at,
            )
        )
    reopening = sa.and_(
        p["status"] == "running", sa.or_(*(t.c.status == name for name in TERMINAL_STATUSES))
    )
    status = sa.case(
        (p["status"].is_(None), t.c.status), (reopening, t.c.status), else_=p["status"]
    )
    keep = {
        name: sa.func.coalesce(p[name], t.c[name])
        for name in ("completed_at", "error_message", *_COUNTS)
    }
    return (
        t.update()
        .where(*where)
        .values(updated_at=p["updated_at"], duration_seconds=duration, status=status, **keep)
        .returning(t.c.started_at)
    )


def _raise_update_refused(ctx: StoreContext, eid: str, completed: datetime | None) -> None:
    """Why the PostgreSQL update of ``eid`` changed nothing: unknown id, or a completion before
    the start (the same errors as on SQLite)."""
    t = executions_t
    with ctx.engine.connect() as conn:
        started = conn.execute(sa.select(t.c.started_at).where(t.c.execution_id == eid)).scalar()
    if started is None:
        raise UnknownExecutionError(eid)
    duration_between(started, completed, f"execution {eid}")
    raise AssertionError(f"update of execution {eid} changed no row")  # pragma: no cover
