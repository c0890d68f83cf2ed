"""The read behind the execution-history endpoint: executions newest first."""

from __future__ import annotations

from datetime import datetime
from typing import Any, NamedTuple

import sqlalchemy as sa

from market_pipeline.database.tables import scheduler_execution_log as executions_t
from market_pipeline.database.types import UTCDateTime
from market_pipeline.domain.reports import ExecutionHistory
from market_pipeline.observability.store.checks import check_limit, id_str
from market_pipeline.observability.store.context import StoreContext


class _HistoryRow(NamedTuple):
    execution_id: Any
    started_at: datetime
    completed_at: datetime | None
    duration_seconds: float | None
    total_symbols: int
    successful_symbols: int
    failed_symbols: int
    total_records_processed: int
    status: str
    error_message: str | None


def execution_history(ctx: StoreContext, *, limit: int = 20) -> ExecutionHistory:
    """See :meth:`ObservabilityStore.get_execution_history`."""
    check_limit(limit)
    now = ctx.now()
    rows = [
        _HistoryRow(*row)
        for row in ctx.sql.run(
            "execution_history:as_of" if ctx.as_of else "execution_history",
            lambda: _history_stmt(as_of=ctx.as_of),
            {"history_limit": limit, **({"p_now": now} if ctx.as_of else {})},
            fetch="all",
            write=False,
        )
    ]
    return ExecutionHistory.model_validate(
        {
            "timestamp": now,
            "executions": [
                {
                    **{name: getattr(r, name) for name in _HistoryRow._fields},
                    "execution_id": id_str(r.execution_id),
                    "success_rate": None
                    if r.total_symbols == 0
                    else round(100 * r.successful_symbols / r.total_symbols, 1),
                }
                for r in rows
            ],
        }
    )


def _history_stmt(*, as_of: bool) -> Any:
    """The newest executions; as of an instant (``p_now``), those started by then."""
    e = executions_t
    started = e.c.started_at <= sa.bindparam("p_now", type_=UTCDateTime)
    return (
        sa.select(*(e.c[name] for name in _HistoryRow._fields))
        .where(started if as_of else sa.true())
        .order_by(e.c.started_at.desc(), e.c.execution_id.desc())
        .limit(sa.bindparam("history_limit", type_=sa.Integer))
    )
