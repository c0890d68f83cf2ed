"""The reads behind two endpoints: the staleness report and scheduler health (the execution
history's is :mod:`.history`).

Statuses are computed at read time in SQL (:func:`..freshness.status_sql`), never taken from the
cached column, and each read is one or two statements built once.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, NamedTuple

import sqlalchemy as sa

from market_pipeline.database.tables import feature_computation_failures as failures_t
from market_pipeline.database.tables import feature_freshness as freshness_t
from market_pipeline.database.tables import scheduler_execution_log as executions_t
from market_pipeline.database.types import UTCDateTime
from market_pipeline.domain.freshness import FRESHNESS_STATUSES, health_status
from market_pipeline.domain.reports import SchedulerHealth, StalenessReport
from market_pipeline.observability.store import data_lag_reads, data_status_counts
from market_pipeline.observability.store.checks import ZERO, check_limit, id_str
from market_pipeline.observability.store.context import StoreContext
from market_pipeline.observability.store.freshness import monitored_source, read_params


class _HealthSummaryRow(NamedTuple):
    fresh_count: int
    aging_count: int
    stale_count: int
    missing_count: int
    total_monitored: int
    symbols: int
    open_failures: int
    execution_id: Any
    started_at: datetime | None
    completed_at: datetime | None
    status: str | None
    total_symbols: int | None
    successful_symbols: int | None
    failed_symbols: int | None
    error_message: str | None


class _FailureRow(NamedTuple):
    kind: str
    id: int
    symbol: str
    timeframe: str
    error_message: str
    failed_at: datetime
    retry_count: int
    execution_id: Any


def _read_key(ctx: StoreContext, name: str) -> str:
    """Cache key of a read statement: its shape depends on whether pairs are monitored and on
    whether it reads as of an instant."""
    shape = "monitored" if ctx.monitored is not None else "table"
    return f"{name}:{shape}{':as_of' if ctx.as_of else ''}"


def open_as_of(ctx: StoreContext) -> Any:
    """Failures open at ``p_now``: unresolved; as of an instant, failed by then and not yet
    resolved then (a failure keeps only its newest message and count)."""
    f = failures_t
    if not ctx.as_of:
        return sa.not_(f.c.resolved)
    at = sa.bindparam("p_now", type_=UTCDateTime)
    return sa.and_(
        f.c.first_failed_at <= at,
        sa.or_(sa.not_(f.c.resolved), f.c.resolved_at.is_(None), f.c.resolved_at > at),
    )


def _code_point_order(ctx: StoreContext, column: Any) -> Any:
    """``column`` ordered by code point, as Python sorts strings (PostgreSQL would otherwise
    use the database's linguistic collation; SQLite's default BINARY already is)."""
    return column.collate("C") if ctx.sql.is_postgres else column


# -- the staleness report ------------------------------------------------------------------------


def staleness_report(ctx: StoreContext, *, limit: int = 50) -> StalenessReport:
    """See :meth:`ObservabilityStore.get_feature_staleness_report`."""
    check_limit(limit)
    now = ctx.now()
    rows = ctx.sql.run(
        _read_key(ctx, "staleness_report"),
        lambda: _staleness_stmt(ctx),
        {**read_params(ctx, now), "per_status_limit": limit},
        fetch="all",
        write=False,
    )
    # Data time of the listed pairs only (the counts over every pair are health's); as of an
    # instant, from the bars stored by then.
    if ctx.as_of:
        lags = data_lag_reads.read_lags(ctx, now) or {}
    else:
        lags = data_lag_reads.evaluate(ctx, ((r[0], r[1], r[6]) for r in rows), now)
    by_status: dict[str, list[dict[str, Any]]] = {status: [] for status in FRESHNESS_STATUSES}
    counts = dict.fromkeys(FRESHNESS_STATUSES, 0)
    for symbol, timeframe, last, count, status, status_count, last_bar in rows:
        counts[status] = status_count
        lag = lags.get((symbol, timeframe))
        by_status[status].append(
            {
                "symbol": symbol,
                "timeframe": timeframe,
                "last_computed_at": last,
                # Stored times are aware UTC already: no re-check per row.
                "staleness_seconds": None
                if last is None
                else max(now - last, ZERO).total_seconds(),
                "status": status,
                "data_point_count": count,
                **data_lag_reads.item_fields(lag, last_bar),
            }
        )
    summary = {f"{status}_count": counts[status] for status in FRESHNESS_STATUSES}
    summary["total_monitored"] = sum(counts.values())
    return StalenessReport.model_validate(
        {"timestamp": now, "summary": summary, "by_status": by_status}
    )


def _staleness_stmt(ctx: StoreContext) -> Any:
    """The ranked pairs: ``(symbol, timeframe, last_computed_at, data_point_count, status,
    status_count)``, at most ``per_status_limit`` per status, the count over all of them."""
    source, symbol, timeframe, last, count, status = monitored_source(ctx)
    # Most stale first = smallest min(last_computed_at, now): a computation in the future has
    # staleness 0, so those tie and fall back to symbol and timeframe as in Python.
    now_param = sa.bindparam("p_now", type_=UTCDateTime)
    clamped = sa.case((last > now_param, now_param), else_=last)
    order = [
        sa.case((last.is_(None), 0), else_=1),
        clamped,
        _code_point_order(ctx, symbol),
        _code_point_order(ctx, timeframe),
    ]
    ranked = (
        sa.select(
            symbol.label("symbol"),
            timeframe.label("timeframe"),
            last.label("last_computed_at"),
            count.label("data_point_count"),
            status.label("status"),
            sa.func.row_number().over(partition_by=status, order_by=order).label("rank"),
            sa.func.count().over(partition_by=status).label("status_count"),
            freshness_t.c.last_bar_at.label("last_bar_at"),
        )
        .select_from(source)
        .subquery("ranked")
    )
    r = ranked.c
    return (
        sa.select(
            r.symbol,
            r.timeframe,
            r.last_computed_at,
            r.data_point_count,
            r.status,
            r.status_count,
            r.last_bar_at,
        )
        .where(r.rank <= sa.bindparam("per_status_limit", type_=sa.Integer))
        .order_by(r.status, r.rank)
    )


# -- scheduler health ----------------------------------------------------------------------------


def scheduler_health(ctx: StoreContext, *, recent_failures_limit: int = 10) -> SchedulerHealth:
    """See :meth:`ObservabilityStore.get_scheduler_health`."""
    check_limit(recent_failures_limit, "recent_failures_limit")
    now = ctx.now()
    summary = _HealthSummaryRow(
        *ctx.sql.run(
            _read_key(ctx, "health_summary"),
            lambda: _health_summary_stmt(ctx),
            read_params(ctx, now),
            fetch="one",
            write=False,
        )
    )
    failures = [
        _FailureRow(*row)
        for row in ctx.sql.run(
            _read_key(ctx, "health_failures"),
            lambda: _health_failures_stmt(ctx),
            {
                "recent_failures_limit": recent_failures_limit,
                "alert_threshold": ctx.failure_alert_threshold,
                **({"p_now": now} if ctx.as_of else {}),
            },
            fetch="all",
            write=False,
        )
    ]
    data_status = data_status_counts.read(ctx, now)
    data_time: dict[str, Any] = {}
    late: list[dict[str, Any]] = []
    if data_status is not None:
        counts, late = data_status
        data_time = {"data_summary": counts, "late_pairs": late[:recent_failures_limit]}
    return _health(now, summary, failures, late, data_time)


def _health(
    now: datetime,
    summary: _HealthSummaryRow,
    failures: list[_FailureRow],
    late: list[dict[str, Any]],
    data_time: dict[str, Any],
) -> SchedulerHealth:
    counts = {status: int(getattr(summary, f"{status}_count")) for status in FRESHNESS_STATUSES}
    has_last = summary.execution_id is not None
    status, reasons = health_status(
        last_execution_status=summary.status if has_last else None,
        stale_count=counts["stale"],
        missing_count=counts["missing"],
        open_failures_count=int(summary.open_failures),
        late_pairs=[f"{r['symbol']} {r['timeframe']}" for r in late],
    )
    recent = sorted(
        (r for r in failures if r.kind == "recent"), key=lambda r: (r.failed_at, r.id), reverse=True
    )
    alerting = sorted(
        (r for r in failures if r.kind == "alert"),
        key=lambda r: (r.retry_count, r.failed_at, r.id),
        reverse=True,
    )
    return SchedulerHealth.model_validate(
        {
            "status": status,
            "timestamp": now,
            "last_execution": _last_execution(summary) if has_last else None,
            "stale_features_count": counts["stale"] + counts["missing"],
            "recent_failures": [
                {
                    "symbol": r.symbol,
                    "timeframe": r.timeframe,
                    "error": r.error_message,
                    "failed_at": r.failed_at,
                    "retry_count": r.retry_count,
                    "execution_id": id_str(r.execution_id),
                }
                for r in recent
            ],
            "total_symbols_monitored": int(summary.symbols),
            "reasons": reasons,
            "missing_features_count": counts["missing"],
            "open_failures_count": int(summary.open_failures),
            "freshness_summary": {
                **{f"{name}_count": counts[name] for name in FRESHNESS_STATUSES},
                "total_monitored": int(summary.total_monitored),
            },
            "alerts": [
                {
                    "symbol": r.symbol,
                    "timeframe": r.timeframe,
                    "consecutive_failures": r.retry_count + 1,
                    "error": r.error_message,
                    "failed_at": r.failed_at,
                }
                for r in alerting
            ],
            **data_time,
        }
    )


def _last_execution(summary: _HealthSummaryRow) -> dict[str, Any]:
    return {
        "execution_id": id_str(summary.execution_id),
        "started_at": summary.started_at,
        "completed_at": summary.completed_at,
        "status": summary.status,
        "successful_symbols": summary.successful_symbols,
        "failed_symbols": summary.failed_symbols,
        "total_symbols": summary.total_symbols,
        "error_message": summary.error_message,
    }


def _health_summary_stmt(ctx: StoreContext) -> Any:
    """One row: freshness counts of the monitored pairs (statuses computed in SQL), the distinct
    symbol count, the open failure count and the last execution's columns."""
    e = executions_t
    source, symbol, _, _, _, status = monitored_source(ctx)
    counts = (
        sa.select(
            *(
                sa.func.coalesce(sa.func.sum(sa.case((status == name, 1), else_=0)), 0).label(
                    f"{name}_count"
                )
                for name in FRESHNESS_STATUSES
            ),
            sa.func.count().label("total_monitored"),
            sa.func.count(sa.distinct(symbol)).label("symbols"),
        )
        .select_from(source)
        .subquery("counts")
    )
    last = (
        sa.select(
            e.c.execution_id,
            e.c.started_at,
            e.c.completed_at,
            e.c.status,
            e.c.total_symbols,
            e.c.successful_symbols,
            e.c.failed_symbols,
            e.c.error_message,
        )
        .where(
            e.c.started_at <= sa.bindparam("p_now", type_=UTCDateTime) if ctx.as_of else sa.true()
        )
        .order_by(e.c.started_at.desc(), e.c.execution_id.desc())
        .limit(1)
        .subquery("last_execution")
    )
    open_count = (
        sa.select(sa.func.count()).select_from(failures_t).where(open_as_of(ctx)).scalar_subquery()
    )
    return sa.select(
        *(counts.c[f"{name}_count"] for name in FRESHNESS_STATUSES),
        counts.c.total_monitored,
        counts.c.symbols,
        open_count.label("open_failures"),
        *last.c,
    ).select_from(counts.outerjoin(last, sa.true()))


def _health_failures_stmt(ctx: StoreContext) -> Any:
    """The open failures of the health report: the newest ``recent_failures_limit`` (kind
    ``recent``) and those at or over ``alert_threshold`` consecutive failures (kind ``alert``),
    as one UNION ALL."""
    f = failures_t
    open_failure = open_as_of(ctx)
    columns = (
        f.c.id,
        f.c.symbol,
        f.c.timeframe,
        f.c.error_message,
        f.c.failed_at,
        f.c.retry_count,
        f.c.execution_id,
    )
    recent_q = (
        sa.select(sa.literal("recent").label("kind"), *columns)
        .where(open_failure)
        .order_by(f.c.failed_at.desc(), f.c.id.desc())
        .limit(sa.bindparam("recent_failures_limit", type_=sa.Integer))
        .subquery("recent")
    )
    alert_q = sa.select(sa.literal("alert").label("kind"), *columns).where(
        open_failure, f.c.retry_count + 1 >= sa.bindparam("alert_threshold", type_=sa.Integer)
    )
    return sa.union_all(sa.select(recent_q), alert_q)
