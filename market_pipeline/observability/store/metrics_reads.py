"""The reads behind ``/metrics``: every monitored pair's status with its open failure, and the
execution totals. Four statements, each built once; statuses come from :func:`status_sql`, as in
the staleness report, so a scrape and the report never disagree."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

import sqlalchemy as sa

from market_pipeline.database.tables import feature_computation_failures as failures_t
from market_pipeline.database.tables import scheduler_execution_log as executions_t
from market_pipeline.observability.store.context import StoreContext
from market_pipeline.observability.store.freshness import monitored_source, read_params

PairRow = tuple[str, str, str, float | None]
"""``(symbol, timeframe, status, last_computed_at as epoch seconds)`` of one monitored pair: plain
tuples and a float, because a scrape of 10,000 pairs reads 10,000 of them."""


class LastExecutionReading(NamedTuple):
    started_at: datetime
    completed_at: datetime | None
    duration_seconds: float | None
    status: str
    successful_symbols: int
    failed_symbols: int


@dataclass(frozen=True)
class MetricsReading:
    """What one scrape reports from our tables."""

    at: datetime
    pairs: list[PairRow]
    consecutive_failures: dict[tuple[str, str], int]  # pairs with an open failure
    executions_by_status: dict[str, int]
    last_execution: LastExecutionReading | None
    last_success_completed_at: datetime | None
    last_finished_completed_at: datetime | None
    open_failures: int
    max_consecutive_failures: int
    failure_alerts: int  # open failures at or over the alert threshold


def metrics_reading(ctx: StoreContext, now: datetime | None = None) -> MetricsReading:
    at = ctx.now() if now is None else now

    def rows(key: str, build: Callable[[], Any], params: dict[str, Any]) -> list[Any]:
        return list(ctx.sql.run(key, build, params, fetch="all", write=False))

    pair_rows = rows(f"metrics_pairs:{_shape(ctx)}", lambda: _pairs_stmt(ctx), read_params(ctx, at))
    failure_rows = rows("metrics_failures", _failures_stmt, {})
    count_rows = rows("metrics_execution_counts", _execution_counts_stmt, {})
    last_rows = rows("metrics_last_execution", _last_execution_stmt, {})
    consecutive = {(symbol, tf): int(n) for symbol, tf, n, _ in failure_rows}
    counts = {status: int(n) for status, n, _ in count_rows}
    ends = {status: end for status, _, end in count_rows}
    finished = [ends[s] for s in ("completed", "failed") if ends.get(s) is not None]
    threshold = ctx.failure_alert_threshold
    return MetricsReading(
        at=at,
        pairs=pair_rows,
        consecutive_failures=consecutive,
        executions_by_status=counts,
        last_execution=LastExecutionReading(*last_rows[0]) if last_rows else None,
        last_success_completed_at=ends.get("completed"),
        last_finished_completed_at=max(finished) if finished else None,
        open_failures=sum(int(open_rows) for *_, open_rows in failure_rows),
        max_consecutive_failures=max(consecutive.values(), default=0),
        failure_alerts=sum(1 for value in consecutive.values() if value >= threshold),
    )


def _shape(ctx: StoreContext) -> str:
    return "monitored" if ctx.monitored is not None else "table"


def _pairs_stmt(ctx: StoreContext) -> Any:
    source, symbol, timeframe, last, _, status = monitored_source(ctx)
    return sa.select(
        symbol.label("symbol"),
        timeframe.label("timeframe"),
        status.label("status"),
        _epoch_seconds(ctx, last).label("last_computed_epoch"),
    ).select_from(source)


def _epoch_seconds(ctx: StoreContext, column: Any) -> Any:
    """``column`` as Unix seconds (a float is far cheaper to fetch than an aware datetime)."""
    if ctx.sql.is_postgres:
        return sa.cast(sa.extract("epoch", column), sa.Float)  # numeric otherwise
    # SQLite stores ISO text; julianday() is exact to about a millisecond at these dates.
    return (sa.func.julianday(column) - 2440587.5) * 86400.0


def _failures_stmt() -> Any:
    """Open failures per pair: how many open rows, and the consecutive failure count."""
    f = failures_t
    return (
        sa.select(
            f.c.symbol,
            f.c.timeframe,
            (sa.func.max(f.c.retry_count) + 1).label("consecutive"),
            sa.func.count().label("open_rows"),
        )
        .where(sa.not_(f.c.resolved))
        .group_by(f.c.symbol, f.c.timeframe)
    )


def _execution_counts_stmt() -> Any:
    e = executions_t
    return sa.select(
        e.c.status,
        sa.func.count().label("executions"),
        sa.func.max(e.c.completed_at).label("completed_at"),
    ).group_by(e.c.status)


def _last_execution_stmt() -> Any:
    e = executions_t
    return (
        sa.select(
            e.c.started_at,
            e.c.completed_at,
            e.c.duration_seconds,
            e.c.status,
            e.c.successful_symbols,
            e.c.failed_symbols,
        )
        .order_by(e.c.started_at.desc(), e.c.execution_id.desc())
        .limit(1)
    )
