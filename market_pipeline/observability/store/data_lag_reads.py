"""Data time over the monitored pairs: each pair's stored newest bar against the bar now due.

The figures come from :class:`~market_pipeline.domain.lag_rules.DataLagRules` (the store's
``lag_rules``, built from the universe); SQL only reads ``last_bar_at``. Without rules (a store
that knows no calendars) every read here answers None, and the reports leave their data-time
fields null.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

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
    table's ``last_bar_at`` would have said then. For ``report --at``, not for hot paths; still
    one probe of the bars' primary key per pair (a backward index read of its newest bar up to
    the cutoff), never a pass over every bar."""
    pairs = ctx.monitored if ctx.monitored is not None else _stored_pairs(ctx)
    found = LastBars(dict.fromkeys(pairs))
    by_timeframe: dict[str, list[str]] = {}
    for symbol, timeframe in pairs:
        by_timeframe.setdefault(timeframe, []).append(symbol)
    stmt = newest_bars_stmt(postgres=ctx.sql.is_postgres)
    with ctx.engine.connect() as conn:
        for timeframe, symbols in sorted(by_timeframe.items()):
            cutoff = at - timedelta(seconds=Timeframe.parse(timeframe).seconds)
            params = {
                "p_symbols": json.dumps(symbols),
                "p_timeframe": timeframe,
                "p_cutoff": cutoff,
            }
            for symbol, last in conn.execute(stmt, params).all():
                found[(symbol, timeframe)] = last
    return found


def newest_bars_stmt(*, postgres: bool) -> Any:
    """``(symbol, newest ts <= p_cutoff)`` of each symbol of the JSON array ``p_symbols`` in
    timeframe ``p_timeframe`` (None when it has none), a correlated max per symbol."""
    b = bars_t
    parameter = sa.bindparam("p_symbols", type_=sa.Text)
    symbols = (
        sa.func.jsonb_array_elements_text(sa.cast(parameter, postgresql.JSONB))
        if postgres
        else sa.func.json_each(parameter)
    ).table_valued("value")
    newest = (
        sa.select(sa.func.max(b.c.ts))
        .where(
            b.c.symbol == symbols.c.value,
            b.c.timeframe == sa.bindparam("p_timeframe", type_=sa.Text),
            b.c.ts <= sa.bindparam("p_cutoff", type_=b.c.ts.type),
        )
        .scalar_subquery()
    )
    return sa.select(symbols.c.value, newest)


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
