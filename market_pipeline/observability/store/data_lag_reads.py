"""Data time over the monitored pairs: each pair's stored newest bar against the bar now due.

The figures come from :class:`~market_pipeline.domain.lag_rules.DataLagRules` (the store's
``lag_rules``, built from the universe); SQL only reads ``last_bar_at``. Without rules (a store
that knows no calendars) every read here answers None, and the reports leave their data-time
fields null.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from market_pipeline.database.tables import feature_freshness as freshness_t
from market_pipeline.database.tables import ohlcv_bars as bars_t
from market_pipeline.domain.data_lag import DataLag
from market_pipeline.domain.lag_rules import DataLagRules, count_by_data_status
from market_pipeline.domain.timeframes import Timeframe
from market_pipeline.observability.store.context import Pair, StoreContext
from market_pipeline.observability.store.freshness import monitored_source, read_params

LateRow = dict[str, Any]


def read_lags(ctx: StoreContext, now: datetime) -> dict[Pair, DataLag | None] | None:
    """Every monitored pair's data lag at ``now`` (None without rules)."""
    rules = ctx.lag_rules
    if rules is None:
        return None
    if ctx.as_of:
        return rules.evaluate(last_bars_as_of(ctx, now).items_rows(), now)
    rows = ctx.sql.run(
        f"last_bars:{'monitored' if ctx.monitored is not None else 'table'}",
        lambda: _last_bars_stmt(ctx),
        read_params(ctx, now),
        fetch="all",
        write=False,
    )
    return rules.evaluate(rows, now)


class LastBars(dict[Pair, datetime | None]):
    """Each monitored pair's newest bar complete by an instant (None: none stored by then)."""

    def items_rows(self) -> list[tuple[str, str, datetime | None]]:
        return [(symbol, tf, last) for (symbol, tf), last in self.items()]


def last_bars_as_of(ctx: StoreContext, at: datetime) -> LastBars:
    """The newest bar of each monitored pair whose whole length had passed by ``at``, read
    from ``ohlcv_bars`` (which keeps the history) one timeframe at a time: what the freshness
    table's ``last_bar_at`` would have said then. For ``report --at``, not for hot paths."""
    pairs = ctx.monitored if ctx.monitored is not None else _stored_pairs(ctx)
    found = LastBars(dict.fromkeys(pairs))
    b = bars_t
    with ctx.engine.connect() as conn:
        for timeframe in sorted({tf for _, tf in pairs}):
            cutoff = at - timedelta(seconds=Timeframe.parse(timeframe).seconds)
            rows = conn.execute(
                sa.select(b.c.symbol, sa.func.max(b.c.ts))
                .where(b.c.timeframe == timeframe, b.c.ts <= cutoff)
                .group_by(b.c.symbol)
            ).all()
            for symbol, last in rows:
                if (symbol, timeframe) in found:
                    found[(symbol, timeframe)] = last
    return found


def _stored_pairs(ctx: StoreContext) -> list[Pair]:
    t = freshness_t
    with ctx.engine.connect() as conn:
        return [(s, tf) for s, tf in conn.execute(sa.select(t.c.symbol, t.c.timeframe)).all()]


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
        late_row((symbol, timeframe), lag, rules)
        for (symbol, timeframe), lag in lags.items()
        if lag is not None
        and lag.data_status == "late"
        and rules.is_late_beyond_tolerance(timeframe, lag)
    ]
    late.sort(key=most_lagging_first)
    return late


def late_row(pair: Pair, lag: DataLag, rules: DataLagRules) -> LateRow:
    """One pair late beyond tolerance, as :class:`~market_pipeline.domain.reports.LatePair`
    fields."""
    symbol, timeframe = pair
    return {
        "symbol": symbol,
        "timeframe": timeframe,
        "last_bar_at": lag.last_bar_at,
        "expected_last_bar_at": lag.expected_last_bar_at,
        "bars_behind": lag.bars_behind,
        "data_lag_seconds": lag.data_lag_seconds,
        "tolerance_seconds": rules.tolerance_seconds(timeframe),
    }


def most_lagging_first(row: LateRow) -> tuple[float, str, str]:
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
