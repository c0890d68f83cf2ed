"""Data time over the monitored pairs: each pair's stored newest bar against the bar now due.

The figures come from :class:`~market_pipeline.domain.lag_rules.DataLagRules` (the store's
``lag_rules``, built from the universe); SQL only reads ``last_bar_at``. Without rules (a store
that knows no calendars) every read here answers None, and the reports leave their data-time
fields null.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from market_pipeline.database.tables import feature_freshness as freshness_t
from market_pipeline.domain.data_lag import DataLag
from market_pipeline.domain.lag_rules import count_by_data_status
from market_pipeline.observability.store.context import Pair, StoreContext
from market_pipeline.observability.store.freshness import monitored_source, read_params

LateRow = dict[str, Any]


def read_lags(ctx: StoreContext, now: datetime) -> dict[Pair, DataLag | None] | None:
    """Every monitored pair's data lag at ``now`` (None without rules)."""
    rules = ctx.lag_rules
    if rules is None:
        return None
    rows = ctx.sql.run(
        f"last_bars:{'monitored' if ctx.monitored is not None else 'table'}",
        lambda: _last_bars_stmt(ctx),
        read_params(ctx, now),
        fetch="all",
        write=False,
    )
    return rules.evaluate(rows, now)


def _last_bars_stmt(ctx: StoreContext) -> Any:
    source, symbol, timeframe, *_ = monitored_source(ctx)
    return sa.select(symbol, timeframe, freshness_t.c.last_bar_at).select_from(source)


def evaluate(
    ctx: StoreContext, rows: Iterable[tuple[str, str, datetime | None]], now: datetime
) -> dict[Pair, DataLag | None]:
    """The data lag of the given ``(symbol, timeframe, last_bar_at)`` rows (empty without
    rules)."""
    return {} if ctx.lag_rules is None else ctx.lag_rules.evaluate(rows, now)


def summary(lags: dict[Pair, DataLag | None], late: list[LateRow]) -> dict[str, int]:
    """The :class:`~market_pipeline.domain.reports.DataStatusSummary` fields of ``lags``, with
    ``late`` the pairs of :func:`late_beyond_tolerance`."""
    counts = count_by_data_status(lags.values())
    return {
        **{f"{status}_count": count for status, count in counts.items()},
        "late_beyond_tolerance_count": len(late),
    }


def late_beyond_tolerance(ctx: StoreContext, lags: dict[Pair, DataLag | None]) -> list[LateRow]:
    """The pairs late beyond their timeframe's tolerance, most lagging first (then by symbol and
    timeframe), as :class:`~market_pipeline.domain.reports.LatePair` fields."""
    rules = ctx.lag_rules
    if rules is None:
        return []
    late = [
        {
            "symbol": symbol,
            "timeframe": timeframe,
            "last_bar_at": lag.last_bar_at,
            "expected_last_bar_at": lag.expected_last_bar_at,
            "bars_behind": lag.bars_behind,
            "data_lag_seconds": lag.data_lag_seconds,
            "tolerance_seconds": rules.tolerance_seconds(timeframe),
        }
        for (symbol, timeframe), lag in lags.items()
        if lag is not None
        and lag.data_status == "late"
        and rules.is_late_beyond_tolerance(timeframe, lag)
    ]
    late.sort(key=_most_lagging_first)
    return late


def _most_lagging_first(row: LateRow) -> tuple[float, str, str]:
    return (-row["data_lag_seconds"], row["symbol"], row["timeframe"])


def item_fields(lag: DataLag | None, last_bar_at: datetime | None) -> dict[str, Any]:
    """The data-time fields of a staleness report item."""
    if lag is None:
        return {"last_bar_at": last_bar_at}
    return {
        "last_bar_at": lag.last_bar_at,
        "expected_last_bar_at": lag.expected_last_bar_at,
        "bars_behind": lag.bars_behind,
        "data_lag_seconds": lag.data_lag_seconds,
        "data_status": lag.data_status,
    }
