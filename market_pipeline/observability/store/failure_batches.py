"""Many pairs' failures of one execution logged at once: what the run mirror writes for a run.

The rules are those of :func:`.failures.log` for each pair, in the same order (the execution
must exist; its failure of the pair already recorded and resolved is kept; a later recorded
success supersedes it; otherwise it folds into the pair's open failure). The pairs of a batch
are distinct, so each one's outcome depends only on what is stored, never on another pair of the
batch, and the batch is one set-based statement on PostgreSQL (one plan, one round trip,
whatever the number of pairs) and one write transaction on SQLite.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

from market_pipeline.domain.identifiers import canonical_uuid
from market_pipeline.domain.timestamps import ensure_utc
from market_pipeline.observability.store import failures
from market_pipeline.observability.store.checks import (
    UnknownExecutionError,
    check_fields,
    check_key,
    sanitize_error_message,
)
from market_pipeline.observability.store.context import StoreContext
from market_pipeline.observability.store.executions import require_executions

_FIELDS = frozenset({"symbol", "timeframe", "error_message", "failed_at"})

# Each input row as it would be logged alone; "fresh" drops those already recorded and
# resolved for this execution, "superseded" pairs them with the earliest later success.
_LOG_MANY_SQL = """
WITH input AS (
    SELECT r.symbol, r.timeframe, r.error_message, r.failed_at
    FROM jsonb_to_recordset(CAST(%(p_rows)s AS JSONB))
        AS r(symbol TEXT, timeframe TEXT, error_message TEXT, failed_at TIMESTAMPTZ)
),
known AS (
    SELECT EXISTS (
        SELECT 1 FROM scheduler_execution_log
        WHERE execution_id = CAST(%(p_execution_id)s AS UUID)
    ) AS known
),
fresh AS (
    SELECT i.* FROM input i
    WHERE (SELECT known FROM known) AND NOT EXISTS (
        SELECT 1 FROM feature_computation_failures f
        WHERE f.execution_id = CAST(%(p_execution_id)s AS UUID)
          AND f.symbol = i.symbol AND f.timeframe = i.timeframe AND f.resolved
    )
),
superseded AS (
    SELECT i.*, s.execution_id AS by_execution, s.completed_at
    FROM fresh i CROSS JOIN LATERAL (
        SELECT s.execution_id, s.completed_at FROM symbol_computation_status s
        WHERE s.symbol = i.symbol AND s.timeframe = i.timeframe
          AND s.status = 'completed' AND s.completed_at >= i.failed_at
        ORDER BY s.completed_at LIMIT 1
    ) s
),
resolved_insert AS (
    INSERT INTO feature_computation_failures (symbol, timeframe, error_message, execution_id,
        retry_count, failed_at, first_failed_at, resolved, resolved_at, resolved_by_execution_id)
    SELECT symbol, timeframe, error_message, CAST(%(p_execution_id)s AS UUID), 0, failed_at,
        failed_at, TRUE, completed_at, by_execution
    FROM superseded
    RETURNING id
),
upsert AS (
    INSERT INTO feature_computation_failures AS f (symbol, timeframe, error_message,
        execution_id, retry_count, failed_at, first_failed_at, resolved)
    SELECT i.symbol, i.timeframe, i.error_message, CAST(%(p_execution_id)s AS UUID), 0,
        i.failed_at, i.failed_at, FALSE
    FROM fresh i
    WHERE NOT EXISTS (
        SELECT 1 FROM superseded x WHERE x.symbol = i.symbol AND x.timeframe = i.timeframe
    )
    ON CONFLICT (symbol, timeframe) WHERE NOT resolved DO UPDATE SET
        retry_count = CASE WHEN f.execution_id = EXCLUDED.execution_id
            THEN f.retry_count ELSE f.retry_count + 1 END,
        error_message = CASE WHEN EXCLUDED.failed_at >= f.failed_at
            THEN EXCLUDED.error_message ELSE f.error_message END,
        execution_id = CASE WHEN EXCLUDED.failed_at >= f.failed_at
            THEN EXCLUDED.execution_id ELSE f.execution_id END,
        failed_at = CASE WHEN EXCLUDED.failed_at >= f.failed_at
            THEN EXCLUDED.failed_at ELSE f.failed_at END,
        first_failed_at = CASE WHEN EXCLUDED.failed_at < f.first_failed_at
            THEN EXCLUDED.failed_at ELSE f.first_failed_at END
    RETURNING id
)
SELECT (SELECT known FROM known),
    (SELECT count(*) FROM resolved_insert) + (SELECT count(*) FROM upsert)
"""


def log_many(
    ctx: StoreContext, execution_id: str | uuid.UUID, rows: Iterable[Mapping[str, Any]]
) -> int:
    """Log the failures of ``execution_id``, one per pair (mappings with ``symbol``,
    ``timeframe``, ``error_message`` and optionally ``failed_at``, default the clock's now);
    return how many were written (the rest were recorded already). All rows are validated
    first; a bad row or a pair given twice raises ``ValueError`` naming it, and nothing is
    written."""
    eid = canonical_uuid(execution_id)
    batch = _validated(ctx, rows)
    if not batch:
        return 0
    if not ctx.sql.is_postgres:
        return _log_many_sqlite(ctx, eid, batch)
    payload = json.dumps([{**row, "failed_at": row["failed_at"].isoformat()} for row in batch])
    known, written = _run_postgres(ctx, eid, payload)
    if not known:
        raise UnknownExecutionError(eid)
    return int(written)


def _validated(ctx: StoreContext, rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    now = ctx.now()
    batch: dict[tuple[str, str], dict[str, Any]] = {}
    for index, raw in enumerate(rows):
        try:
            check_fields(raw, _FIELDS, ("symbol", "timeframe", "error_message"))
            failed_at = raw.get("failed_at")
            pair = (check_key(raw["symbol"], "symbol"), check_key(raw["timeframe"], "timeframe"))
            row: dict[str, Any] = {
                "symbol": pair[0],
                "timeframe": pair[1],
                "error_message": sanitize_error_message(raw["error_message"]),
                "failed_at": now if failed_at is None else ensure_utc(failed_at, name="failed_at"),
            }
        except (TypeError, ValueError) as exc:
            raise type(exc)(f"failure row {index}: {exc}") from exc
        if pair in batch:
            raise ValueError(f"failure row {index}: {pair[0]} {pair[1]} is given twice")
        batch[pair] = row
    return list(batch.values())


def _run_postgres(ctx: StoreContext, eid: str, payload: str) -> tuple[bool, int]:
    params = {"p_rows": payload, "p_execution_id": eid}
    direct = ctx.sql.direct
    if direct is not None:
        return direct.run(
            lambda cursor: _fetch(cursor, params),
            statement="log_failures_many",
            # A repeat finds the rows recorded: the same execution counts once.
            may_repeat=True,
        )
    with ctx.sql.write() as conn:
        return _fetch(conn.connection.cursor(), params)


def _fetch(cursor: Any, params: Mapping[str, Any]) -> tuple[bool, int]:
    cursor.execute(_LOG_MANY_SQL, params)
    known, written = cursor.fetchone()
    return bool(known), int(written or 0)


def _log_many_sqlite(ctx: StoreContext, eid: str, batch: list[dict[str, Any]]) -> int:
    with ctx.sql.write() as conn:
        require_executions(conn, [eid])
        written = 0
        for row in batch:
            values = {
                **row,
                "execution_id": eid,
                "retry_count": 0,
                "first_failed_at": row["failed_at"],
            }
            recorded, _ = failures.log_on(conn, ctx, values)
            written += not recorded
        return written
