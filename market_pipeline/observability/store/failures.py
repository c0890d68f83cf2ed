"""``feature_computation_failures``: at most one open failure per pair, counted per execution.

Logging a failure has the same rules on both backends, as one statement on PostgreSQL (CTEs on
one snapshot: one round trip) and as a few statements in one write transaction on SQLite, which
has no data-modifying CTEs:

1. the execution must exist;
2. this execution's failure of the pair already recorded and resolved: return it;
3. a later recorded success of the pair (a ``completed`` status with ``completed_at >=
   failed_at``) supersedes it: store it resolved by that success;
4. otherwise fold it into the pair's open failure (``retry_count`` + 1 unless the same
   execution; message, time and execution of the newest failure).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Connection

from market_pipeline.database.tables import feature_computation_failures as failures_t
from market_pipeline.database.tables import scheduler_execution_log as executions_t
from market_pipeline.database.tables import symbol_computation_status as symbol_status_t
from market_pipeline.domain.identifiers import canonical_uuid
from market_pipeline.domain.timestamps import ensure_utc
from market_pipeline.observability.store.checks import (
    UnknownExecutionError,
    check_key,
    sanitize_error_message,
)
from market_pipeline.observability.store.context import StoreContext
from market_pipeline.observability.store.executions import require_executions

_NAMES = (
    "symbol",
    "timeframe",
    "error_message",
    "execution_id",
    "retry_count",
    "failed_at",
    "first_failed_at",
)


def log(
    ctx: StoreContext,
    *,
    symbol: str,
    timeframe: str,
    error_message: str,
    execution_id: str | uuid.UUID | None = None,
    failed_at: datetime | None = None,
) -> int:
    """See :meth:`ObservabilityStore.log_feature_computation_failure`."""
    eid = None if execution_id is None else canonical_uuid(execution_id)
    failed = ctx.now() if failed_at is None else ensure_utc(failed_at, name="failed_at")
    values = {
        "symbol": check_key(symbol, "symbol"),
        "timeframe": check_key(timeframe, "timeframe"),
        "error_message": sanitize_error_message(error_message),
        "execution_id": eid,
        "retry_count": 0,
        "failed_at": failed,
        "first_failed_at": failed,
    }
    if ctx.sql.is_postgres:
        return _log_postgres(ctx, values)
    return _log_sqlite(ctx, values)


def _log_postgres(ctx: StoreContext, values: dict[str, Any]) -> int:
    with_execution = values["execution_id"] is not None
    known, failure_id = ctx.sql.run(
        "log_failure" if with_execution else "log_failure_no_execution",
        lambda: _log_stmt(with_execution=with_execution),
        {f"p_{name}": value for name, value in values.items()},
        fetch="one",
        write=True,
        # Counted once per execution, so a repeat is harmless; without an execution id a
        # repeat would count the failure twice.
        may_repeat=with_execution,
    )
    if not known:
        raise UnknownExecutionError(values["execution_id"])
    return int(failure_id)


def _log_sqlite(ctx: StoreContext, values: dict[str, Any]) -> int:
    with ctx.sql.write() as conn:
        if values["execution_id"] is not None:
            require_executions(conn, [values["execution_id"]])
        return log_on(conn, ctx, values)[1]


def log_on(conn: Connection, ctx: StoreContext, values: dict[str, Any]) -> tuple[bool, int]:
    """Log one validated failure on ``conn`` (a SQLite write transaction; the execution is
    known): ``(already recorded, failure id)``. The statements are built once, with bound
    parameters: building them per failure cost more than running them."""
    sql = ctx.sql
    params = {f"p_{name}": value for name, value in values.items()}
    if values["execution_id"] is not None:
        recorded = conn.execute(
            sql.built("failure_recorded", lambda: _recorded_select(_params(*_NAMES))), params
        ).scalar()
        if recorded is not None:
            return True, int(recorded)
    superseding = conn.execute(
        sql.built("failure_superseding", lambda: _superseding_select(*_pair_params())), params
    ).first()
    if superseding is not None:
        resolved = {
            **params,
            "p_resolved_at": superseding.completed_at,
            "p_resolved_by_execution_id": superseding.execution_id,
        }
        stmt = sql.built("failure_resolved_insert", _resolved_insert_stmt)
        return False, int(conn.execute(stmt, resolved).scalar_one())
    stmt = sql.built("failure_open_upsert", lambda: _open_upsert_stmt(ctx))
    return False, int(conn.execute(stmt, params).scalar_one())


def _params(*names: str) -> dict[str, Any]:
    f = failures_t
    return {name: sa.bindparam(f"p_{name}", type_=f.c[name].type) for name in names}


def _pair_params() -> tuple[Any, Any, Any]:
    p = _params("symbol", "timeframe", "failed_at")
    return p["symbol"], p["timeframe"], p["failed_at"]


def _recorded_select(p: dict[str, Any]) -> Any:
    """The newest resolved failure of the pair already logged for the execution, by the bound
    parameters ``p``."""
    f = failures_t
    return (
        sa.select(f.c.id)
        .where(
            f.c.execution_id == p["execution_id"],
            f.c.symbol == p["symbol"],
            f.c.timeframe == p["timeframe"],
            f.c.resolved,
        )
        .order_by(f.c.id.desc())
        .limit(1)
    )


def _resolved_insert_stmt() -> Any:
    f = failures_t
    p = _params(*_NAMES, "resolved_at", "resolved_by_execution_id")
    return f.insert().values(**p, resolved=True).returning(f.c.id)


def _open_upsert_stmt(ctx: StoreContext) -> Any:
    f = failures_t
    stmt = ctx.sql.insert(f).values(**_params(*_NAMES), resolved=False)
    return open_failure_upsert(stmt).returning(f.c.id)


def _superseding_select(symbol: Any, timeframe: Any, failed_at: Any) -> Any:
    """The earliest completed status of the pair at or after ``failed_at``."""
    s = symbol_status_t
    return (
        sa.select(s.c.execution_id, s.c.completed_at)
        .where(
            s.c.symbol == symbol,
            s.c.timeframe == timeframe,
            s.c.status == "completed",
            s.c.completed_at >= failed_at,
        )
        .order_by(s.c.completed_at)
        .limit(1)
    )


def open_failure_upsert(stmt: Any) -> Any:
    """``stmt`` (an INSERT of one open failure) folding into the pair's open failure."""
    f = failures_t
    new = stmt.excluded
    is_newer = new.failed_at >= f.c.failed_at
    same_execution = sa.and_(new.execution_id.is_not(None), f.c.execution_id == new.execution_id)
    return stmt.on_conflict_do_update(
        index_elements=[f.c.symbol, f.c.timeframe],
        index_where=sa.not_(f.c.resolved),
        set_={
            "retry_count": sa.case((same_execution, f.c.retry_count), else_=f.c.retry_count + 1),
            "error_message": sa.case((is_newer, new.error_message), else_=f.c.error_message),
            "execution_id": sa.case((is_newer, new.execution_id), else_=f.c.execution_id),
            "failed_at": sa.case((is_newer, new.failed_at), else_=f.c.failed_at),
            "first_failed_at": sa.case(
                (new.failed_at < f.c.first_failed_at, new.failed_at), else_=f.c.first_failed_at
            ),
        },
    )


def _log_stmt(*, with_execution: bool) -> sa.Select[Any]:
    """The PostgreSQL statement, returning ``(known, id)``; ``known`` is false when the
    execution id has no row, and then nothing was written. The two INSERTs have mutually
    exclusive conditions, so exactly one of recorded, resolved insert and upsert yields the id."""
    f = failures_t
    p = _params(*_NAMES)
    known: Any = sa.true()
    not_recorded: Any = sa.true()
    recorded_id: Any = sa.null()
    if with_execution:
        known = sa.exists().where(executions_t.c.execution_id == p["execution_id"])
        recorded = _recorded_select(p).cte("recorded")
        not_recorded = ~sa.exists().select_from(recorded)
        recorded_id = sa.select(recorded.c.id).scalar_subquery()
    superseding = _superseding_select(p["symbol"], p["timeframe"], p["failed_at"]).cte(
        "superseding"
    )
    columns = [p[name].label(name) for name in _NAMES]
    resolved_insert = (
        postgresql.insert(f)
        .from_select(
            [*_NAMES, "resolved", "resolved_at", "resolved_by_execution_id"],
            sa.select(
                *columns, sa.true(), superseding.c.completed_at, superseding.c.execution_id
            ).where(known, not_recorded),
        )
        .returning(f.c.id)
        .cte("resolved_insert")
    )
    upsert = (
        open_failure_upsert(
            postgresql.insert(f).from_select(
                [*_NAMES, "resolved"],
                sa.select(*columns, sa.false()).where(
                    known, not_recorded, ~sa.exists().select_from(superseding)
                ),
            )
        )
        .returning(f.c.id)
        .cte("upsert")
    )
    failure_id = sa.func.coalesce(
        recorded_id,
        sa.select(resolved_insert.c.id).scalar_subquery(),
        sa.select(upsert.c.id).scalar_subquery(),
    )
    return sa.select(known.label("known"), failure_id.label("id"))


def resolve(
    ctx: StoreContext,
    *,
    symbol: str,
    timeframe: str,
    execution_id: str | uuid.UUID | None = None,
    resolved_at: datetime | None = None,
) -> int:
    """See :meth:`ObservabilityStore.resolve_feature_computation_failures`."""
    pair = (check_key(symbol, "symbol"), check_key(timeframe, "timeframe"))
    eid = None if execution_id is None else canonical_uuid(execution_id)
    when = ctx.now() if resolved_at is None else ensure_utc(resolved_at, name="resolved_at")
    f = failures_t
    with ctx.sql.write() as conn:
        if eid is not None:
            require_executions(conn, [eid])
        result = conn.execute(
            f.update()
            .where(
                f.c.symbol == pair[0],
                f.c.timeframe == pair[1],
                sa.not_(f.c.resolved),
                f.c.failed_at <= when,
            )
            .values(resolved=True, resolved_at=when, resolved_by_execution_id=eid)
        )
        return int(result.rowcount)
