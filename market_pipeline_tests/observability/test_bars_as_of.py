"""``report --at`` reads each pair's newest bar up to an instant with one index probe per pair.

The read once grouped every bar of a timeframe (``max(ts) ... GROUP BY symbol``): a pass over
millions of rows for a universe's history. It must now give the same bars from one backward
read of the primary key per pair.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from market_pipeline.database.tables import ohlcv_bars as bars_t
from market_pipeline.observability.store import ObservabilityStore
from market_pipeline.observability.store.data_lag_reads import last_bars_as_of, newest_bars_stmt

T0 = datetime(2026, 12, 1, tzinfo=UTC)
PAIRS = [("AAA", "1h"), ("BBB", "1h"), ("CCC", "1h"), ("AAA", "1d"), ("NONE", "1d")]


def _seed(engine) -> None:
    rows = [
        {
            "symbol": s,
            "timeframe": tf,
            "ts": T0 + timedelta(hours=h),
            "open": 1.0,
            "high": 1.0,
            "low": 1.0,
            "close": 1.0,
            "volume": 1.0,
        }
        for s, tf in PAIRS[:4]
        for h in range(0, 48 if tf == "1h" else 24 * 5, 1 if tf == "1h" else 24)
        if not (s == "CCC" and h > 10)  # stopped early
    ]
    with engine.begin() as conn:
        conn.execute(sa.insert(bars_t), rows)


def _grouped(engine, at: datetime) -> dict:
    """The former read: every bar of each timeframe, grouped."""
    b = bars_t
    found: dict = dict.fromkeys(PAIRS)
    with engine.connect() as conn:
        for tf, step in (("1h", 3600), ("1d", 86400)):
            for symbol, last in conn.execute(
                sa.select(b.c.symbol, sa.func.max(b.c.ts))
                .where(b.c.timeframe == tf, b.c.ts <= at - timedelta(seconds=step))
                .group_by(b.c.symbol)
            ):
                if (symbol, tf) in found:
                    found[(symbol, tf)] = last
    return found


def test_newest_bars_as_of_an_instant_equal_the_grouped_read(engine):
    _seed(engine)
    at = T0 + timedelta(hours=30, minutes=20)
    store = ObservabilityStore(engine, monitored_pairs=PAIRS, clock=lambda: at, as_of=True)
    found = dict(last_bars_as_of(store._ctx, at))
    assert found == _grouped(engine, at)
    assert found[("AAA", "1h")] == T0 + timedelta(hours=29)
    assert found[("CCC", "1h")] == T0 + timedelta(hours=10)
    assert found[("NONE", "1d")] is None


def test_each_pairs_newest_bar_is_one_probe_of_the_primary_key(engine):
    postgres = engine.dialect.name == "postgresql"
    compiled = newest_bars_stmt(postgres=postgres).compile(dialect=engine.dialect)
    with engine.connect() as conn:
        if postgres:
            conn.exec_driver_sql("SET enable_seqscan = off")  # the table is empty here
            plan = " ".join(
                row[0]
                for row in conn.exec_driver_sql(
                    "EXPLAIN " + str(compiled),
                    {"p_symbols": '["AAA"]', "p_timeframe": "1h", "p_cutoff": T0},
                )
            )
            assert "ohlcv_bars_pkey" in plan and "Index Cond: ((symbol = " in plan
        else:
            plan = " ".join(
                row[-1]
                for row in conn.exec_driver_sql(
                    "EXPLAIN QUERY PLAN " + str(compiled), ('["AAA"]', "1h", T0.isoformat())
                )
            )
            assert "INDEX" in plan and "(symbol=? AND timeframe=? AND ts<?)" in plan
