"""The statements of the dashboard's reads (:mod:`.dashboard_queries`) and their column order.

Each is built once per dialect (:meth:`Statements.built`) with bound parameters only; rows come
back as tuples in the order of the ``*_COLUMNS`` tuples here (the direct PostgreSQL path returns
driver tuples, not SQLAlchemy rows).
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from market_pipeline.database.tables import feature_computation_failures as failures_t
from market_pipeline.database.tables import feature_freshness as freshness_t
from market_pipeline.database.tables import scheduler_execution_log as executions_t
from market_pipeline.database.tables import symbol_computation_status as symbol_status_t
from market_pipeline.observability.store.context import StoreContext
from market_pipeline.observability.store.freshness import monitored_source, status_sql

FAILURE_COLUMNS = ("error", "retry_count", "first_failed_at", "failed_at", "execution_id")
FRESHNESS_COLUMNS = ("last_computed_at", "data_point_count", "status", "last_bar_at")
PAIR_COLUMNS = ("symbol", "timeframe", *FRESHNESS_COLUMNS, *FAILURE_COLUMNS)
OPEN_FAILURE_COLUMNS = ("symbol", "timeframe", *FAILURE_COLUMNS)
STATUS_COLUMNS = (
    "execution_id",
    "execution_status",
    "status",
    "started_at",
    "completed_at",
    "duration_seconds",
    "records_processed",
    "records_inserted",
    "features_computed",
    "error_message",
)
PAIR_FAILURE_COLUMNS = (*FAILURE_COLUMNS, "resolved", "resolved_at")


def failure_columns() -> list[Any]:
    f = failures_t
    return [
        f.c.error_message.label("error"),
        f.c.retry_count,
        f.c.first_failed_at,
        f.c.failed_at,
        f.c.execution_id,
    ]


def pairs_stmt(ctx: StoreContext) -> Any:
    """The monitored pairs (:func:`monitored_source`) with their open failure, if any."""
    source, symbol, timeframe, last, count, status = monitored_source(ctx)
    f = failures_t
    open_failure = sa.and_(f.c.symbol == symbol, f.c.timeframe == timeframe, sa.not_(f.c.resolved))
    return sa.select(
        symbol.label("symbol"),
        timeframe.label("timeframe"),
        last.label("last_computed_at"),
        count.label("data_point_count"),
        status.label("status"),
        freshness_t.c.last_bar_at,
        *failure_columns(),
    ).select_from(source.outerjoin(f, open_failure))


def open_failures_stmt() -> Any:
    f = failures_t
    return (
        sa.select(
            f.c.symbol,
            f.c.timeframe,
            *failure_columns(),
            sa.func.count().over().label("total"),
        )
        .where(sa.not_(f.c.resolved))
        .order_by(f.c.failed_at.desc(), f.c.id.desc())
        .limit(sa.bindparam("failures_limit", type_=sa.Integer))
    )


def _is_pair(table: sa.Table) -> Any:
    return sa.and_(
        table.c.symbol == sa.bindparam("p_symbol", type_=sa.Text),
        table.c.timeframe == sa.bindparam("p_timeframe", type_=sa.Text),
    )


def pair_freshness_stmt() -> Any:
    t = freshness_t
    return sa.select(
        t.c.last_computed_at,
        t.c.data_point_count,
        status_sql(t.c.last_computed_at, t.c.data_point_count).label("status"),
        t.c.last_bar_at,
    ).where(_is_pair(t))


def pair_statuses_stmt() -> Any:
    s, e = symbol_status_t, executions_t
    return (
        sa.select(
            s.c.execution_id,
            e.c.status.label("execution_status"),
            s.c.status,
            s.c.started_at,
            s.c.completed_at,
            s.c.duration_seconds,
            s.c.records_processed,
            s.c.records_inserted,
            s.c.features_computed,
            s.c.error_message,
        )
        .select_from(s.join(e, e.c.execution_id == s.c.execution_id))
        .where(_is_pair(s))
        .order_by(e.c.started_at.desc(), s.c.id.desc())
        .limit(sa.bindparam("detail_limit", type_=sa.Integer))
    )


def pair_failures_stmt() -> Any:
    f = failures_t
    return (
        sa.select(*failure_columns(), f.c.resolved, f.c.resolved_at)
        .where(_is_pair(f))
        .order_by(f.c.failed_at.desc(), f.c.id.desc())
        .limit(sa.bindparam("detail_limit", type_=sa.Integer))
    )
