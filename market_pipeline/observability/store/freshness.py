"""``feature_freshness``: the cache row of each pair, and the one SQL form of the freshness rule.

The rule lives in :mod:`market_pipeline.domain.freshness`. Rows written from Python get their
status from :func:`~market_pipeline.domain.freshness.status_for`; SQL that must rate many rows at
once (the reads, the periodic refresh) uses :func:`status_sql`, whose cutoffs come from
:func:`~market_pipeline.domain.freshness.freshness_cutoffs`: the same rule as exact timestamp
comparisons on every backend. A test runs the Python rule and every SQL path on the same rows.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from market_pipeline.database.tables import feature_freshness as freshness_t
from market_pipeline.database.types import UTCDateTime
from market_pipeline.domain.freshness import freshness_cutoffs, status_for
from market_pipeline.domain.timestamps import ensure_utc
from market_pipeline.observability.store.checks import (
    ZERO,
    check_count,
    check_fields,
    check_key,
    optional_utc,
)
from market_pipeline.observability.store.context import StoreContext

FIELDS = frozenset({"symbol", "timeframe", "last_computed_at", "data_point_count", "last_bar_at"})
_REQUIRED = ("symbol", "timeframe", "last_computed_at", "data_point_count")


def cutoff_params(now: datetime) -> dict[str, datetime]:
    """The parameters of :func:`status_sql` for ``now``."""
    fresh_after, stale_at = freshness_cutoffs(now)
    return {"p_fresh_after": fresh_after, "p_stale_at": stale_at}


def status_sql(last_computed_at: Any, data_point_count: Any) -> Any:
    """The freshness status of a row as SQL, against the parameters of :func:`cutoff_params`."""
    return sa.case(
        (sa.or_(last_computed_at.is_(None), data_point_count == 0), "missing"),
        (last_computed_at > sa.bindparam("p_fresh_after", type_=UTCDateTime), "fresh"),
        (last_computed_at > sa.bindparam("p_stale_at", type_=UTCDateTime), "aging"),
        else_="stale",
    )


def update_many(
    ctx: StoreContext, rows: Iterable[Mapping[str, Any]], *, now: datetime | None = None
) -> list[dict[str, Any]]:
    """Validate and upsert freshness rows (a pair given twice keeps its newest computation);
    return the rows written. See :meth:`ObservabilityStore.update_feature_freshness_many`."""
    at = ctx.now() if now is None else ensure_utc(now, name="now")
    by_pair: dict[tuple[str, str], dict[str, Any]] = {}
    for index, raw in enumerate(rows):
        try:
            row = _row(raw, at)
        except (TypeError, ValueError) as exc:
            raise type(exc)(f"freshness row {index}: {exc}") from exc
        key = (row["symbol"], row["timeframe"])
        previous = by_pair.get(key)
        if previous is not None and previous["last_computed_at"] is not None:
            if row["last_computed_at"] is None:
                continue
            if row["last_computed_at"] < previous["last_computed_at"]:
                continue
        by_pair[key] = row
    if by_pair:
        _write(ctx, list(by_pair.values()))
    return list(by_pair.values())


def _row(raw: Mapping[str, Any], now: datetime) -> dict[str, Any]:
    check_fields(raw, FIELDS, _REQUIRED)
    last = optional_utc(raw["last_computed_at"], "last_computed_at")
    count = check_count(raw["data_point_count"], "data_point_count")
    seconds = None if last is None else max(now - last, ZERO).total_seconds()
    return {
        "symbol": check_key(raw["symbol"], "symbol"),
        "timeframe": check_key(raw["timeframe"], "timeframe"),
        "last_computed_at": last,
        "data_point_count": count,
        "status": status_for(seconds, count),
        "staleness_seconds": seconds,
        "updated_at": now,
        "last_bar_at": optional_utc(raw.get("last_bar_at"), "last_bar_at"),
    }


def _write(ctx: StoreContext, rows: list[dict[str, Any]]) -> None:
    """Upsert validated rows (one per pair) in one statement."""
    sql = ctx.sql
    if sql.is_postgres:
        # All rows as one JSON parameter expanded by jsonb_to_recordset: one short statement
        # whatever the batch size (psycopg2 would otherwise inline every value as text).
        payload = json.dumps(
            [
                {k: v.isoformat() if isinstance(v, datetime) else v for k, v in row.items()}
                for row in rows
            ]
        )
        sql.run("freshness_upsert", _json_upsert_stmt, {"p_rows": payload}, write=True)
        return
    # RETURNING makes SQLAlchemy 2.1 send an executemany as multi-row INSERTs
    # ("insertmanyvalues"); without it an upsert goes row by row.
    stmt = sql.built(
        "freshness_upsert",
        lambda: _on_conflict(sql.insert(freshness_t)).returning(freshness_t.c.symbol),
    )
    with sql.write() as conn:
        conn.execute(stmt, rows).all()


def _json_upsert_stmt() -> Any:
    """PostgreSQL: the rows of the JSON array parameter ``p_rows`` upserted."""
    t = freshness_t
    names = [c.name for c in t.columns]
    rows = (
        sa.func.jsonb_to_recordset(sa.cast(sa.bindparam("p_rows", type_=sa.Text), postgresql.JSONB))
        .table_valued(*(sa.column(name, t.c[name].type) for name in names))
        .render_derived(name="r", with_types=True)
    )
    stmt = postgresql.insert(t).from_select(names, sa.select(*(rows.c[n] for n in names)))
    return _on_conflict(stmt)


def _on_conflict(stmt: Any) -> Any:
    """``stmt`` (an INSERT into ``feature_freshness``) as an upsert that never moves
    ``last_computed_at`` back and keeps a stored ``last_bar_at`` over a NULL."""
    t = freshness_t
    new = stmt.excluded
    return stmt.on_conflict_do_update(
        index_elements=[t.c.symbol, t.c.timeframe],
        set_={
            "last_computed_at": new.last_computed_at,
            "data_point_count": new.data_point_count,
            "status": new.status,
            "staleness_seconds": new.staleness_seconds,
            "updated_at": new.updated_at,
            "last_bar_at": sa.func.coalesce(new.last_bar_at, t.c.last_bar_at),
        },
        where=sa.or_(t.c.last_computed_at.is_(None), new.last_computed_at >= t.c.last_computed_at),
    )


def refresh(ctx: StoreContext, *, now: datetime | None = None) -> int:
    """Re-rate every cached row against ``now`` in one UPDATE; return the number of rows."""
    at = ctx.now() if now is None else ensure_utc(now, name="now")
    t = freshness_t
    now_param = sa.literal(at, UTCDateTime)
    if ctx.sql.is_postgres:
        elapsed = sa.extract("epoch", now_param - t.c.last_computed_at)
        seconds = sa.func.greatest(sa.cast(0.0, sa.Float), elapsed)
    else:
        # julianday() is a float of days: staleness is good to ~10 us, enough for a cache
        # column; the status compares timestamps and is exact.
        days = sa.func.julianday(now_param) - sa.func.julianday(t.c.last_computed_at)
        seconds = sa.func.max(0.0, days * 86400.0)
    staleness = sa.case((t.c.last_computed_at.is_(None), sa.null()), else_=seconds)
    stmt = t.update().values(
        status=status_sql(t.c.last_computed_at, t.c.data_point_count),
        staleness_seconds=staleness,
        updated_at=at,
    )
    with ctx.sql.write() as conn:
        return int(conn.execute(stmt, cutoff_params(at)).rowcount)


def monitored_source(ctx: StoreContext) -> tuple[Any, Any, Any, Any, Any, Any]:
    """``(from_clause, symbol, timeframe, last_computed_at, data_point_count, status)``: the
    monitored pairs with their status computed in SQL (:func:`status_sql`), never the cached
    column. With monitored pairs they come from one bound JSON parameter (``monitored_pairs``:
    one parameter whatever the universe size, so the statement is cached) LEFT JOINed to the
    table, so a pair without a row is ``missing``; without, every row of the table."""
    t = freshness_t
    last = t.c.last_computed_at
    if ctx.monitored is None:
        count = t.c.data_point_count
        return t, t.c.symbol, t.c.timeframe, last, count, status_sql(last, count)
    pairs = _monitored_pairs(postgres=ctx.sql.is_postgres)
    symbol, timeframe = pairs.c.symbol, pairs.c.timeframe
    source = pairs.outerjoin(t, sa.and_(t.c.symbol == symbol, t.c.timeframe == timeframe))
    count_or_zero = sa.func.coalesce(t.c.data_point_count, 0)
    return source, symbol, timeframe, last, count_or_zero, status_sql(last, count_or_zero)


def _monitored_pairs(*, postgres: bool) -> Any:
    """The ``monitored_pairs`` JSON parameter as a (symbol, timeframe) subquery."""
    parameter = sa.bindparam("monitored_pairs", type_=sa.Text)
    if postgres:
        # One JSON text parameter: psycopg2 inlines parameters into the SQL text, and a
        # 500-element array literal costs the server a parse per element on every call.
        each = sa.func.jsonb_array_elements(sa.cast(parameter, postgresql.JSONB)).table_valued(
            "value"
        )
        return sa.select(
            each.c.value.op("->>")(0).label("symbol"),
            each.c.value.op("->>")(1).label("timeframe"),
        ).subquery("monitored")
    each = sa.func.json_each(parameter).table_valued("value")
    return sa.select(
        sa.func.json_extract(each.c.value, "$[0]").label("symbol"),
        sa.func.json_extract(each.c.value, "$[1]").label("timeframe"),
    ).subquery("monitored")


def read_params(ctx: StoreContext, now: datetime) -> dict[str, Any]:
    """The parameters of statements over :func:`monitored_source`, for ``now``."""
    params: dict[str, Any] = {"p_now": now, **cutoff_params(now)}
    if ctx.monitored is not None:
        params["monitored_pairs"] = ctx.monitored_json
    return params
