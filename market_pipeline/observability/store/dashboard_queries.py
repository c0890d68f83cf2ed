"""The dashboard's reads: every monitored pair with its status, open failures, one pair's detail.

Like the spec's reads (:mod:`.queries`), statuses are computed at read time in SQL
(:func:`..freshness.status_sql`) and every statement is built once and bound with parameters, so
the same text runs on SQLite and PostgreSQL. The pairs read is one statement whatever the
universe size: the monitored pairs LEFT JOINed to their freshness row and their open failure
(at most one per pair, a unique partial index guarantees it). The statements are in
:mod:`.dashboard_statements`.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from market_pipeline.domain.dashboard import (
    UNCLASSIFIED,
    DashboardPair,
    DashboardPairs,
    OpenFailures,
    PairDetail,
    cell_status,
    dagster_partition_url,
)
from market_pipeline.domain.data_lag import DataLag
from market_pipeline.domain.freshness import FRESHNESS_STATUSES
from market_pipeline.domain.names import QUANT_FEATURES
from market_pipeline.domain.timeframes import Timeframe, TimeframeError
from market_pipeline.observability.store import data_lag_reads
from market_pipeline.observability.store.checks import ZERO, check_key, check_limit, id_str
from market_pipeline.observability.store.context import Pair, StoreContext
from market_pipeline.observability.store.dashboard_statements import (
    FAILURE_COLUMNS,
    FRESHNESS_COLUMNS,
    OPEN_FAILURE_COLUMNS,
    PAIR_COLUMNS,
    PAIR_FAILURE_COLUMNS,
    STATUS_COLUMNS,
    open_failures_stmt,
    pair_failures_stmt,
    pair_freshness_stmt,
    pair_statuses_stmt,
    pairs_stmt,
)
from market_pipeline.observability.store.freshness import cutoff_params, read_params


def _dicts(rows: Any, names: tuple[str, ...]) -> list[dict[str, Any]]:
    """Rows (tuples in statement order: the direct PostgreSQL path returns driver tuples) as
    dicts, execution ids as strings."""
    out = []
    for row in rows:
        item = dict(zip(names, row, strict=True))
        item["execution_id"] = id_str(item["execution_id"])
        out.append(item)
    return out


def _timeframe_order(code: str) -> tuple[int, int, str]:
    """Shortest first; a code that is not a timeframe (a stray table row) goes last."""
    try:
        return (0, Timeframe.parse(code).seconds, code)
    except TimeframeError:
        return (1, 0, code)


def _staleness(now: datetime, last: datetime | None) -> float | None:
    return None if last is None else max(now - last, ZERO).total_seconds()


class DashboardReads:
    """The dashboard's reads over one store's context.

    Args:
        ctx: the store's context (engine, clock, monitored pairs).
        asset_classes: symbol -> asset class (the universe's); other symbols are
            :data:`~market_pipeline.domain.dashboard.UNCLASSIFIED`.
        dagster_ui_url: base URL of the Dagster UI, for each pair's partition link; ``None``
            leaves the link out.
    """

    def __init__(
        self,
        ctx: StoreContext,
        *,
        asset_classes: Mapping[str, str] | None = None,
        dagster_ui_url: str | None = None,
    ) -> None:
        self._ctx = ctx
        self._classes = dict(asset_classes or {})
        self._dagster_ui_url = dagster_ui_url
        monitored = ctx.monitored
        self._order: dict[Pair, int] | None = (
            None if monitored is None else {pair: i for i, pair in enumerate(monitored)}
        )

    def _key(self, name: str) -> str:
        return f"dashboard_{name}:{'monitored' if self._order is not None else 'table'}"

    def _pair(self, now: datetime, row: Mapping[str, Any], lag: DataLag | None) -> DashboardPair:
        last = row["last_computed_at"]
        failure = None
        if row["failed_at"] is not None:
            failure = {name: row[name] for name in FAILURE_COLUMNS}
        rules = self._ctx.lag_rules
        late = rules is not None and rules.is_late_beyond_tolerance(row["timeframe"], lag)
        return DashboardPair.model_validate(
            {
                "symbol": row["symbol"],
                "timeframe": row["timeframe"],
                "asset_class": self._classes.get(row["symbol"], UNCLASSIFIED),
                "cell_status": cell_status(row["status"], failure is not None, late),
                "status": row["status"],
                "last_computed_at": last,
                "staleness_seconds": _staleness(now, last),
                "data_point_count": row["data_point_count"],
                "failure": failure,
                **data_lag_reads.item_fields(lag, row["last_bar_at"]),
            }
        )

    # -- every monitored pair -------------------------------------------------------------------

    def pairs(self) -> DashboardPairs:
        """Every monitored pair (universe order; without monitored pairs, every freshness row
        by symbol and timeframe) with its freshness status and open failure, in one query."""
        ctx = self._ctx
        now = ctx.now()
        rows = ctx.sql.run(
            self._key("pairs"),
            lambda: pairs_stmt(ctx),
            read_params(ctx, now),
            fetch="all",
            write=False,
        )
        found = list(_dicts(rows, PAIR_COLUMNS))
        lags = data_lag_reads.evaluate(
            ctx, ((r["symbol"], r["timeframe"], r["last_bar_at"]) for r in found), now
        )
        pairs = [self._pair(now, row, lags.get((row["symbol"], row["timeframe"]))) for row in found]
        order = self._order
        if order is None:
            pairs.sort(key=lambda p: (p.symbol, p.timeframe))
        else:
            pairs.sort(key=lambda p: order[(p.symbol, p.timeframe)])
        counts = dict.fromkeys(FRESHNESS_STATUSES, 0)
        for pair in pairs:
            counts[pair.status] += 1
        return DashboardPairs.model_validate(
            {
                "timestamp": now,
                "summary": {
                    **{f"{name}_count": counts[name] for name in FRESHNESS_STATUSES},
                    "total_monitored": len(pairs),
                },
                "failed_count": sum(1 for p in pairs if p.failure is not None),
                "timeframes": sorted({p.timeframe for p in pairs}, key=_timeframe_order),
                "pairs": pairs,
            }
        )

    # -- open failures --------------------------------------------------------------------------

    def open_failures(self, *, limit: int = 100) -> OpenFailures:
        """Unresolved failures, newest first (by last failure), at most ``limit``; ``total_open``
        counts every open failure."""
        check_limit(limit)
        ctx = self._ctx
        now = ctx.now()
        rows = ctx.sql.run(
            "dashboard_open_failures",
            open_failures_stmt,
            {"failures_limit": limit},
            fetch="all",
            write=False,
        )
        total = rows[0][-1] if rows else 0
        failures = _dicts((row[:-1] for row in rows), OPEN_FAILURE_COLUMNS)
        return OpenFailures.model_validate(
            {"timestamp": now, "total_open": total, "failures": failures}
        )

    # -- one pair -------------------------------------------------------------------------------

    def pair_detail(self, symbol: str, timeframe: str, *, limit: int = 20) -> PairDetail | None:
        """A pair's freshness, its ``limit`` most recent status rows (by execution start) and
        failures (by last failure), newest first; ``None`` when the dashboard does not show the
        pair (not monitored, or, without monitored pairs, no freshness row)."""
        check_key(symbol, "symbol")
        check_key(timeframe, "timeframe")
        check_limit(limit)
        ctx = self._ctx
        if self._order is not None and (symbol, timeframe) not in self._order:
            return None
        now = ctx.now()
        params = {"p_symbol": symbol, "p_timeframe": timeframe, "detail_limit": limit}
        fresh = ctx.sql.run(
            "dashboard_pair_freshness",
            pair_freshness_stmt,
            {**params, **cutoff_params(now)},
            fetch="one",
            write=False,
        )
        if fresh is None and self._order is None:
            return None
        statuses = ctx.sql.run(
            "dashboard_pair_statuses", pair_statuses_stmt, params, fetch="all", write=False
        )
        failures = ctx.sql.run(
            "dashboard_pair_failures", pair_failures_stmt, params, fetch="all", write=False
        )
        return self._detail(
            now,
            symbol,
            timeframe,
            None if fresh is None else dict(zip(FRESHNESS_COLUMNS, fresh, strict=True)),
            _dicts(statuses, STATUS_COLUMNS),
            _dicts(failures, PAIR_FAILURE_COLUMNS),
        )

    def _lag_of(
        self, symbol: str, timeframe: str, cell: Mapping[str, Any], now: datetime
    ) -> DataLag | None:
        rows = [(symbol, timeframe, cell["last_bar_at"])]
        return data_lag_reads.evaluate(self._ctx, rows, now).get((symbol, timeframe))

    def _detail(
        self,
        now: datetime,
        symbol: str,
        timeframe: str,
        fresh: dict[str, Any] | None,
        statuses: list[dict[str, Any]],
        failures: list[dict[str, Any]],
    ) -> PairDetail:
        cell: dict[str, Any] = {
            "symbol": symbol,
            "timeframe": timeframe,
            **(fresh or {"last_computed_at": None, "data_point_count": 0, "status": "missing"}),
            **dict.fromkeys(FAILURE_COLUMNS),
        }
        cell.setdefault("last_bar_at", None)
        open_row = next((row for row in failures if not row["resolved"]), None)
        if open_row is not None:
            cell.update({name: open_row[name] for name in FAILURE_COLUMNS})
        base = self._dagster_ui_url
        return PairDetail.model_validate(
            {
                "timestamp": now,
                "pair": self._pair(now, cell, self._lag_of(symbol, timeframe, cell, now)),
                "status_rows": statuses,
                "failures": failures,
                "dagster_url": None
                if base is None
                else dagster_partition_url(base, QUANT_FEATURES, symbol, timeframe),
            }
        )
