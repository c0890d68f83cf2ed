"""``data_coverage_samples``: the coverage SLI's samples, written by the freshness refresh, and
the report over them (:mod:`market_pipeline.domain.coverage` holds the arithmetic)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from market_pipeline.database.tables import data_coverage_samples as samples_t
from market_pipeline.database.types import UTCDateTime
from market_pipeline.domain.coverage import (
    WINDOWS,
    CoverageReport,
    error_budget_remaining,
    sample_counts,
    window,
)
from market_pipeline.domain.data_lag import DataLag
from market_pipeline.observability.store import data_lag_reads
from market_pipeline.observability.store.context import Pair, StoreContext


def record_sample(
    ctx: StoreContext,
    now: datetime,
    retention_days: int,
    lags: dict[Pair, DataLag | None] | None = None,
) -> int:
    """Store one sample at ``now`` (one row per timeframe and asset class) and delete samples
    older than ``retention_days``; return the rows written (0 without data-lag rules).
    ``lags``: the pairs' data lag at ``now`` when the caller has read it already."""
    if isinstance(retention_days, bool) or not isinstance(retention_days, int):
        raise TypeError(f"retention_days must be an int, got {type(retention_days).__name__}")
    if retention_days < 1:
        raise ValueError(f"retention_days must be >= 1, got {retention_days}")
    if lags is None:
        lags = data_lag_reads.read_lags(ctx, now)
    if ctx.lag_rules is None or lags is None:
        return 0
    rules = ctx.lag_rules
    counts = sample_counts(lags, rules.asset_classes, rules.is_late_beyond_tolerance)
    rows = [
        {
            "sampled_at": now,
            "timeframe": timeframe,
            "asset_class": asset_class,
            "monitored_count": monitored,
            "current_count": current,
            "late_count": late,
            "late_beyond_tolerance_count": beyond,
        }
        for (timeframe, asset_class), (monitored, current, late, beyond) in sorted(counts.items())
    ]
    t = samples_t
    with ctx.sql.write() as conn:
        conn.execute(t.delete().where(t.c.sampled_at < now - timedelta(days=retention_days)))
        if rows:
            stmt = ctx.sql.insert(t).on_conflict_do_nothing(
                index_elements=[t.c.sampled_at, t.c.timeframe, t.c.asset_class]
            )
            conn.execute(stmt, rows)
    return len(rows)


def report(ctx: StoreContext, objective: float) -> CoverageReport:
    """The SLI over each window of :data:`WINDOWS` ending now, and the newest sample."""
    if isinstance(objective, bool) or not isinstance(objective, int | float):
        raise TypeError(f"objective must be a number, got {type(objective).__name__}")
    if not 0 < objective < 1:
        raise ValueError(f"objective must be between 0 and 1 exclusive, got {objective!r}")
    now = ctx.now()
    params: dict[str, Any] = {
        f"p_since_{name}": now - timedelta(seconds=seconds) for name, seconds in WINDOWS.items()
    }
    params["p_now"] = now
    sums = ctx.sql.run("coverage_windows", _windows_stmt, params, fetch="one", write=False)
    windows = [
        window(
            name,
            int(sums[3 * i] or 0),
            int(sums[3 * i + 1] or 0),
            int(sums[3 * i + 2] or 0),
            objective,
        )
        for i, name in enumerate(WINDOWS)
    ]
    latest = ctx.sql.run("coverage_latest", _latest_stmt, {"p_now": now}, fetch="all", write=False)
    return CoverageReport.model_validate(
        {
            "timestamp": now,
            "objective": objective,
            "windows": windows,
            "error_budget_remaining": error_budget_remaining(windows),
            "latest_sampled_at": latest[0][0] if latest else None,
            "latest": [
                {
                    "timeframe": timeframe,
                    "asset_class": asset_class,
                    "monitored_count": monitored,
                    "current_count": current,
                    "late_count": late,
                    "late_beyond_tolerance_count": beyond,
                    "share": None if monitored == 0 else (current + late - beyond) / monitored,
                }
                for _, timeframe, asset_class, monitored, current, late, beyond in latest
            ],
        }
    )


def _windows_stmt() -> Any:
    """One row: per window, (distinct samples, sum monitored, sum covered) of the samples with
    ``p_since_<window> < sampled_at <= p_now``."""
    t = samples_t
    columns = []
    for name in WINDOWS:
        inside = sa.and_(
            t.c.sampled_at > sa.bindparam(f"p_since_{name}", type_=UTCDateTime),
            t.c.sampled_at <= sa.bindparam("p_now", type_=UTCDateTime),
        )
        columns += [
            sa.func.count(sa.distinct(sa.case((inside, t.c.sampled_at)))),
            sa.func.sum(sa.case((inside, t.c.monitored_count), else_=0)),
            sa.func.sum(
                sa.case(
                    (
                        inside,
                        t.c.current_count + t.c.late_count - t.c.late_beyond_tolerance_count,
                    ),
                    else_=0,
                )
            ),
        ]
    return sa.select(*columns).select_from(t)


def _latest_stmt() -> Any:
    t = samples_t
    newest = (
        sa.select(sa.func.max(t.c.sampled_at))
        .where(t.c.sampled_at <= sa.bindparam("p_now", type_=UTCDateTime))
        .scalar_subquery()
    )
    return (
        sa.select(
            t.c.sampled_at,
            t.c.timeframe,
            t.c.asset_class,
            t.c.monitored_count,
            t.c.current_count,
            t.c.late_count,
            t.c.late_beyond_tolerance_count,
        )
        .where(t.c.sampled_at == newest)
        .order_by(t.c.timeframe, t.c.asset_class)
    )
