"""Case 10, data time: what evaluating every pair's data lag costs at 10,000 pairs, and the
staleness report's p99 with the data-time fields, against the spec's 100 ms.

The universe: 2,000 symbols (80% equities on XNYS, 10% crypto on 24/7, 10% FX) x 5 timeframes.
One pair in ten has a stale newest bar (late, each its own instant), the rest the bar now due,
so both paths of the evaluation run: the shared due bar of a current pair, and the count of
missing bars of a late one.

- **Evaluation** (pure Python, no database): ``DataLagRules.evaluate`` over the 10,000 rows,
  against the goal of 50 ms. The baseline is one pass over the same rows comparing each stored
  bar with a fixed instant: the floor of any per-pair work.
- **Staleness report** (SQLite and PostgreSQL, 10,000 pairs): p99 of
  ``get_feature_staleness_report(limit=50)`` with the data-time fields of the listed pairs,
  against the same report of a store without calendars, and against the spec's 100 ms.
- **Health** (SQLite and PostgreSQL, 10,000 pairs), which rates every pair for its
  ``data_summary`` and ``late_pairs``: against the same health without calendars, and against
  the spec's 50 ms.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench.common import (
    LOWER_IS_BETTER,
    Result,
    bench_symbols,
    interleaved_seconds,
    migrated_engine,
    percentile,
    temp_database,
)
from market_pipeline.domain.lag_rules import DataLagRules, PairSchedule
from market_pipeline.domain.timeframes import Timeframe
from market_pipeline.observability.store import ObservabilityStore

TIMEFRAMES = ("1m", "5m", "15m", "1h", "1d")
NOW = datetime(2026, 12, 2, 20, 47, tzinfo=UTC)  # a Wednesday, XNYS open
CALENDARS = {"equity": "XNYS", "crypto": "24/7", "fx": "FX"}


def _universe(symbols: int) -> tuple[dict, list[tuple[str, str, datetime]]]:
    schedules = {}
    rows = []
    for symbol, asset_class in bench_symbols(symbols):
        for tf in TIMEFRAMES:
            schedules[(symbol, tf)] = PairSchedule(CALENDARS[asset_class], 0, asset_class)
    probe = DataLagRules(schedules)
    due = probe.evaluate(((s, tf, None) for s, tf in schedules), NOW)
    for index, ((symbol, tf), lag) in enumerate(due.items()):
        assert lag is not None
        expected = lag.expected_last_bar_at
        if index % 10 == 0:  # late: each its own number of bars behind
            step = Timeframe.parse(tf).seconds
            rows.append((symbol, tf, expected - timedelta(seconds=step * (1 + index % 97))))
        else:
            rows.append((symbol, tf, expected))
    return schedules, rows


def _all_late(rows: list[tuple[str, str, datetime]]) -> list[tuple[str, str, datetime]]:
    """Every pair late, each with a stored bar of its own (1 to 500 bars behind): nothing is
    shared, the worst case of the evaluation."""
    return [
        (
            symbol,
            tf,
            last - timedelta(seconds=Timeframe.parse(tf).seconds * (1 + i % 500), microseconds=i),
        )
        for i, (symbol, tf, last) in enumerate(rows)
    ]


def _evaluation(smoke: bool, *, worst: bool = False) -> Result:
    symbols = 40 if smoke else 2000
    schedules, rows = _universe(symbols)
    if worst:
        rows = _all_late(rows)
    rules = DataLagRules(schedules)
    rounds = 5 if smoke else 60

    def floor() -> None:
        sum(1 for _, _, last in rows if last >= NOW)

    times = interleaved_seconds({"ours": lambda: rules.evaluate(rows, NOW), "floor": floor}, rounds)
    ours = percentile([t * 1e3 for t in times["ours"]], 99)
    base = percentile([t * 1e3 for t in times["floor"]], 99)
    return Result(
        name=f"data lag of {len(rows):,} pairs{', every one late on its own bar' if worst else ''}"
        ", p99",
        value=ours,
        unit="ms",
        baseline="one comparison per pair (p99)",
        baseline_value=base,
        direction=LOWER_IS_BETTER,
        goal=None if worst else "under 50 ms",
        goal_met=None if worst else ours < 50,
        note="the worst case: one calendar walk per pair" if worst else "10% of pairs late",
        extra={
            "p50_ms": percentile([t * 1e3 for t in times["ours"]], 50),
            "pairs": len(rows),
            "late_pairs": len(rows) if worst else len(rows) // 10,
            "rounds": rounds,
        },
    )


def _seeded_store(url: str, schedules: dict, rows: list):
    engine = migrated_engine(url)
    pairs = list(schedules)
    plain = ObservabilityStore(engine, monitored_pairs=pairs, clock=lambda: NOW)
    plain.update_feature_freshness_many(
        [
            {
                "symbol": symbol,
                "timeframe": tf,
                "last_computed_at": NOW - timedelta(seconds=(i * 37) % 90_000),
                "data_point_count": 500,
                "last_bar_at": last,
            }
            for i, (symbol, tf, last) in enumerate(rows)
        ],
        now=NOW,
    )
    data = ObservabilityStore(
        engine, monitored_pairs=pairs, clock=lambda: NOW, data_lag_rules=DataLagRules(schedules)
    )
    return engine, plain, data


@contextlib.contextmanager
def _database(backend: str) -> Iterator[str]:
    if backend == "postgresql":
        with temp_database("data_lag") as url:
            yield url
        return
    with tempfile.TemporaryDirectory(prefix="bench_data_lag_") as folder:
        yield f"sqlite:///{Path(folder) / 'market_pipeline.db'}"


def _report(backend: str, smoke: bool, read: str = "get_feature_staleness_report") -> Result:
    symbols = 40 if smoke else 2000
    schedules, rows = _universe(symbols)
    rounds = 5 if smoke else 100
    with _database(backend) as url:
        engine, plain, data = _seeded_store(url, schedules, rows)
        try:
            for store in (plain, data):
                for _ in range(3):
                    getattr(store, read)()
            times = interleaved_seconds(
                {"data": getattr(data, read), "plain": getattr(plain, read)}, rounds
            )
        finally:
            engine.dispose()
    ours = percentile([t * 1e3 for t in times["data"]], 99)
    base = percentile([t * 1e3 for t in times["plain"]], 99)
    health = read == "get_scheduler_health"
    limit = 50 if health else 100
    return Result(
        name=f"{'health' if health else 'staleness report'} with data time, {len(rows):,} pairs, "
        f"{backend}, p99",
        value=ours,
        unit="ms",
        baseline=f"the same {'health' if health else 'report'} without calendars (p99)",
        baseline_value=base,
        direction=LOWER_IS_BETTER,
        goal=f"p99 under the spec's {limit} ms",
        goal_met=ours < limit,
        extra={
            "p50_ms": percentile([t * 1e3 for t in times["data"]], 50),
            "baseline_p50_ms": percentile([t * 1e3 for t in times["plain"]], 50),
            "rounds": rounds,
        },
    )


def run(smoke: bool = False) -> list[Result]:
    return [
        _evaluation(smoke),
        _evaluation(smoke, worst=True),
        _report("sqlite", smoke),
        _report("postgresql", smoke),
        # Health rates every pair (data_summary, late_pairs).
        _report("sqlite", smoke, "get_scheduler_health"),
        _report("postgresql", smoke, "get_scheduler_health"),
    ]
