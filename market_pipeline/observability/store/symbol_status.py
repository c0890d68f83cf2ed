"""``symbol_computation_status``: one row per (execution, symbol, timeframe).

A ``completed`` status also resolves the pair's open failure that failed at or before it; a
re-delivered status never moves a ``completed``/``failed`` row back to ``pending`` or
``in_progress``.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from market_pipeline.database.tables import feature_computation_failures as failures_t
from market_pipeline.database.tables import symbol_computation_status as symbol_status_t
from market_pipeline.database.types import UTCDateTime
from market_pipeline.domain.identifiers import canonical_uuid
from market_pipeline.observability.store.checks import (
    SYMBOL_STATUSES,
    TERMINAL_STATUSES,
    check_count,
    check_duration,
    check_fields,
    check_key,
    check_status,
    duration_between,
    optional_message,
    optional_utc,
)
from market_pipeline.observability.store.context import StoreContext
from market_pipeline.observability.store.executions import require_executions

FIELDS = frozenset(
    {
        "execution_id",
        "symbol",
        "timeframe",
        "status",
        "asset_class",
        "records_processed",
        "records_inserted",
        "features_computed",
        "started_at",
        "completed_at",
        "duration_seconds",
        "error_message",
    }
)
_KEPT_WHEN_NONE = ("asset_class", "started_at", "completed_at", "duration_seconds")


def log_many(ctx: StoreContext, rows: Iterable[Mapping[str, Any]]) -> int:
    """See :meth:`ObservabilityStore.log_symbol_computation_statuses`."""
    batch = _merged(rows)
    if not batch:
        return 0
    completed_executions = sorted(
        {row["execution_id"] for row in batch if row["status"] == "completed"}
    )
    now = ctx.now()
    with ctx.sql.write() as conn:
        require_executions(conn, {row["execution_id"] for row in batch})
        conn.execute(_upsert_stmt(ctx.sql.insert(symbol_status_t)), batch).all()
        for eid in completed_executions:
            conn.execute(_resolve_by_execution_stmt(eid, now))
    return len(batch)


def _merged(rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Validated rows, one per key; a key repeated in the batch is merged in order, as
    re-deliveries would be."""
    merged: dict[tuple[str, str, str], dict[str, Any]] = {}
    canonical_ids: dict[Any, str] = {}  # a batch mostly repeats one execution id
    for index, raw in enumerate(rows):
        try:
            row = _row(raw, canonical_ids)
        except (TypeError, ValueError) as exc:
            raise type(exc)(f"symbol status row {index}: {exc}") from exc
        key = (row["execution_id"], row["symbol"], row["timeframe"])
        previous = merged.get(key)
        if previous is not None:
            if previous["status"] in TERMINAL_STATUSES and row["status"] not in TERMINAL_STATUSES:
                continue
            for name in _KEPT_WHEN_NONE:
                if row[name] is None:
                    row[name] = previous[name]
        merged[key] = row
    return list(merged.values())


def _row(raw: Mapping[str, Any], canonical_ids: dict[Any, str]) -> dict[str, Any]:
    check_fields(raw, FIELDS, ("execution_id", "symbol", "timeframe", "status"))
    started = optional_utc(raw.get("started_at"), "started_at")
    completed = optional_utc(raw.get("completed_at"), "completed_at")
    duration = check_duration(raw.get("duration_seconds"))
    if duration is None:
        duration = duration_between(started, completed, "symbol status")
    given_id = raw["execution_id"]
    try:
        execution_id = canonical_ids[given_id]
    except (KeyError, TypeError):
        execution_id = canonical_uuid(given_id)
        if isinstance(given_id, str | uuid.UUID):
            canonical_ids[given_id] = execution_id
    return {
        "execution_id": execution_id,
        "symbol": check_key(raw["symbol"], "symbol"),
        "timeframe": check_key(raw["timeframe"], "timeframe"),
        "status": check_status(raw["status"], SYMBOL_STATUSES, "symbol"),
        "asset_class": raw.get("asset_class"),
        "records_processed": check_count(raw.get("records_processed", 0), "records_processed"),
        "records_inserted": check_count(raw.get("records_inserted", 0), "records_inserted"),
        "features_computed": check_count(raw.get("features_computed", 0), "features_computed"),
        "started_at": started,
        "completed_at": completed,
        "duration_seconds": duration,
        "error_message": optional_message(raw.get("error_message")),
    }


def _upsert_stmt(insert: Any) -> Any:
    s = symbol_status_t
    new = insert.excluded
    # RETURNING: SQLAlchemy then sends the executemany as multi-row INSERTs.
    return insert.on_conflict_do_update(
        index_elements=[s.c.execution_id, s.c.symbol, s.c.timeframe],
        set_={
            "status": new.status,
            "asset_class": sa.func.coalesce(new.asset_class, s.c.asset_class),
            "records_processed": new.records_processed,
            "records_inserted": new.records_inserted,
            "features_computed": new.features_computed,
            "started_at": sa.func.coalesce(new.started_at, s.c.started_at),
            "completed_at": sa.func.coalesce(new.completed_at, s.c.completed_at),
            "duration_seconds": sa.func.coalesce(new.duration_seconds, s.c.duration_seconds),
            "error_message": new.error_message,
        },
        # Plain comparisons, not IN: expanding IN parameters cannot be used with executemany.
        where=sa.or_(
            sa.and_(*(s.c.status != status for status in TERMINAL_STATUSES)),
            sa.or_(*(new.status == status for status in TERMINAL_STATUSES)),
        ),
    ).returning(s.c.id)


def _resolve_by_execution_stmt(execution_id: str, now: datetime) -> sa.Update:
    """Resolve every open failure of a pair that ``execution_id`` completed at or after the
    failure (one statement for the whole execution, via the (execution, pair) unique key)."""
    f = failures_t
    s = symbol_status_t.alias("done")
    done_at = sa.func.coalesce(s.c.completed_at, sa.literal(now, UTCDateTime))
    same = sa.and_(
        s.c.execution_id == execution_id,
        s.c.symbol == f.c.symbol,
        s.c.timeframe == f.c.timeframe,
        s.c.status == "completed",
    )
    return (
        f.update()
        .where(sa.not_(f.c.resolved), sa.exists().where(same, done_at >= f.c.failed_at))
        .values(
            resolved=True,
            resolved_at=sa.select(done_at).where(same).scalar_subquery(),
            resolved_by_execution_id=execution_id,
        )
    )
