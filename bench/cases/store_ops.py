"""Case 1, the spec's timing table: the seven observability-store operations with history stored.

PHASE_1_OBSERVABILITY.md, "Performance Characteristics", gives a time per operation; it is the
baseline here, and the goal is a median of at most a tenth of it. The database first receives
realistic history (server-side ``generate_series``, so seeding takes seconds): 100k executions,
1M per-symbol status rows (10 per execution), 100k failures (25 of them open, the rest resolved)
and freshness rows of the 500 monitored pairs (100 symbols x 5 timeframes, mixed fresh, aging and
stale). Then the operations run round-robin (one call of each per round, so noise on the shared
machine spreads over all of them) through :class:`ObservabilityStore`, as the mirror and the
admin API call them.
"""

from __future__ import annotations

import atexit
import contextlib
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from bench.common import (
    LOWER_IS_BETTER,
    Result,
    bench_symbols,
    median,
    migrated_engine,
    percentile,
    temp_database,
    time_ms,
)
from market_pipeline.database.engine import make_engine
from market_pipeline.observability.store import ObservabilityStore

TIMEFRAMES = ("1m", "5m", "15m", "1h", "1d")
SPEC_MS = {
    "create execution log": 1.0,
    "update execution log": 5.0,
    "log failure": 1.0,
    "update freshness (100 pairs)": 20.0,
    "get health": 50.0,
    "get staleness report (500 pairs)": 100.0,
    "get execution history": 50.0,
}
"""The spec's figures in ms ("<1ms" read as 1 ms, "~20ms" as 20 ms)."""

OPEN_FAILURES = 25


def monitored_pairs(n_symbols: int = 100) -> list[tuple[str, str]]:
    """The benchmark's monitored pairs: ``n_symbols`` x the five timeframes."""
    return [(s, tf) for s, _ in bench_symbols(n_symbols) for tf in TIMEFRAMES]


def seed_history(
    engine: sa.Engine,
    *,
    executions: int,
    statuses: int,
    failures: int,
    pairs: list[tuple[str, str]],
) -> None:
    """Fill the four observability tables with realistic history, server-side, then ANALYZE.

    Executions start every 5 minutes back from now (2% failed); each has ``statuses //
    executions`` per-pair rows on distinct pairs; failures cycle over the pairs, the newest
    :data:`OPEN_FAILURES` open (on distinct pairs, some repeated enough to alert); every pair has
    a freshness row, a third each fresh, aging and stale.
    """
    per_exec = max(1, statuses // executions)
    n_pairs = len(pairs)
    if per_exec > n_pairs:
        raise ValueError("more status rows per execution than pairs")
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "CREATE TEMP TABLE bench_pairs (idx int PRIMARY KEY, symbol text, timeframe text)"
        )
        conn.execute(
            sa.text("INSERT INTO bench_pairs VALUES (:i, :s, :t)"),
            [{"i": i, "s": s, "t": t} for i, (s, t) in enumerate(pairs)],
        )
        conn.execute(
            sa.text(
                """
                INSERT INTO scheduler_execution_log (
                    execution_id, started_at, completed_at, total_symbols, successful_symbols,
                    failed_symbols, total_records_processed, duration_seconds, status,
                    error_message, job_name, run_trigger, updated_at)
                SELECT md5('exec' || i)::uuid,
                       now() - i * interval '5 minutes',
                       now() - i * interval '5 minutes' + interval '95 seconds',
                       100,
                       CASE WHEN i % 10 = 0 THEN 97 ELSE 100 END,
                       CASE WHEN i % 10 = 0 THEN 3 ELSE 0 END,
                       200000, 95.0,
                       CASE WHEN i % 50 = 0 THEN 'failed' ELSE 'completed' END,
                       CASE WHEN i % 50 = 0 THEN 'resource database failed to start' END,
                       'market_data_job', 'schedule',
                       now() - i * interval '5 minutes' + interval '95 seconds'
                FROM generate_series(1, :n) AS i
                """
            ),
            {"n": executions},
        )
        # Pair of row j of execution e: ((j % per_exec) * stride + e) % n_pairs, distinct per e.
        conn.execute(
            sa.text(
                """
                INSERT INTO symbol_computation_status (
                    execution_id, symbol, asset_class, timeframe, status, records_processed,
                    records_inserted, features_computed, started_at, completed_at,
                    duration_seconds, error_message)
                SELECT md5('exec' || g.e)::uuid, p.symbol, 'equity', p.timeframe,
                       CASE WHEN g.j % 97 = 0 THEN 'failed' ELSE 'completed' END,
                       2000, 20, 20,
                       now() - g.e * interval '5 minutes',
                       now() - g.e * interval '5 minutes' + interval '2 seconds',
                       2.0,
                       CASE WHEN g.j % 97 = 0 THEN 'provider timed out' END
                FROM (SELECT j, j / :per + 1 AS e FROM generate_series(0, :m - 1) AS j) AS g
                JOIN bench_pairs p
                  ON p.idx = ((g.j % :per) * (:np / :per) + g.e) % :np
                """
            ),
            {"per": per_exec, "m": statuses, "np": n_pairs},
        )
        conn.execute(
            sa.text(
                """
                INSERT INTO feature_computation_failures (
                    symbol, timeframe, error_message, execution_id, retry_count, resolved,
                    failed_at, first_failed_at, resolved_at, resolved_by_execution_id)
                SELECT p.symbol, p.timeframe,
                       'computing features failed for ' || p.symbol || ' ' || p.timeframe
                           || ': provider returned no rows',
                       md5('exec' || (1 + i % :ne))::uuid,
                       i % 5,
                       i > :open,
                       now() - i * interval '1 minute',
                       now() - i * interval '1 minute' - (i % 5) * interval '5 minutes',
                       CASE WHEN i > :open THEN now() - i * interval '1 minute'
                                                + interval '5 minutes' END,
                       CASE WHEN i > :open THEN md5('exec' || (i % :ne))::uuid END
                FROM generate_series(1, :n) AS i
                JOIN bench_pairs p ON p.idx = i % :np
                """
            ),
            {
                "n": failures,
                "ne": executions,
                "open": min(OPEN_FAILURES, n_pairs - 1),
                "np": n_pairs,
            },
        )
        conn.execute(
            sa.text(
                """
                INSERT INTO feature_freshness (
                    symbol, timeframe, last_computed_at, data_point_count, status,
                    staleness_seconds, updated_at, last_bar_at)
                SELECT symbol, timeframe,
                       now() - (idx % 3) * interval '20 hours',
                       2000,
                       (ARRAY['fresh', 'aging', 'stale'])[idx % 3 + 1],
                       (idx % 3) * 72000.0, now(),
                       now() - (idx % 3) * interval '20 hours'
                FROM bench_pairs
                """
            )
        )
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("VACUUM ANALYZE")


_HISTORY_URLS: dict[tuple[int, int, int], str] = {}
_HISTORY_DATABASES = contextlib.ExitStack()
atexit.register(_HISTORY_DATABASES.close)


def history_database(*, executions: int, statuses: int, failures: int) -> str:
    """URL of a migrated database holding :func:`seed_history` of these sizes over
    :func:`monitored_pairs`, seeded once per process: this case and the API case share it
    (seeding 1M rows takes most of a minute). A later user finds the rows an earlier one added
    (a few hundred executions, failures and freshness updates: noise next to the seeded history)
    after a ``VACUUM ANALYZE``. The database is dropped when the process exits."""
    key = (executions, statuses, failures)
    url = _HISTORY_URLS.get(key)
    engine = None
    try:
        if url is None:
            url = _HISTORY_DATABASES.enter_context(temp_database("history"))
            engine = migrated_engine(url)
            seed_history(
                engine,
                executions=executions,
                statuses=statuses,
                failures=failures,
                pairs=monitored_pairs(),
            )
            _HISTORY_URLS[key] = url
        else:
            engine = make_engine(url)
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.exec_driver_sql("VACUUM ANALYZE")
    finally:
        if engine is not None:
            engine.dispose()
    return url


def _operations(store: ObservabilityStore, pairs: list[tuple[str, str]]):
    """The seven operations as zero-argument callables, with the state they carry between calls."""
    created: list[str] = []
    to_update: list[str] = []
    counter = {"failure": 0, "freshness": 0}

    def create() -> None:
        eid = store.create_scheduler_execution_log(
            started_at=datetime.now(UTC),
            total_symbols=100,
            execution_id=uuid.uuid4(),
            job_name="market_data_job",
            run_trigger="bench",
        )
        created.append(eid)
        to_update.append(eid)

    def update() -> None:
        eid = to_update.pop() if to_update else created[-1]
        store.update_scheduler_execution_log(
            execution_id=eid,
            completed_at=datetime.now(UTC) + timedelta(seconds=1),
            successful_symbols=97,
            failed_symbols=3,
            total_records_processed=200_000,
            status="completed",
        )

    def log_failure() -> None:
        i = counter["failure"]
        counter["failure"] += 1
        symbol, timeframe = pairs[(i * 7) % len(pairs)]
        store.log_feature_computation_failure(
            symbol=symbol,
            timeframe=timeframe,
            error_message=f"computing features failed for {symbol} {timeframe}: timeout",
            execution_id=created[-1],
        )

    def freshness() -> None:
        i = counter["freshness"]
        counter["freshness"] += 1
        start = (i * 100) % len(pairs)
        chosen = (pairs + pairs)[start : start + 100]
        now = datetime.now(UTC)
        store.update_feature_freshness_many(
            [
                {
                    "symbol": s,
                    "timeframe": t,
                    "last_computed_at": now,
                    "data_point_count": 2000,
                    "last_bar_at": now,
                }
                for s, t in chosen
            ]
        )

    ops: dict[str, Callable[[], Any]] = {
        "create execution log": create,
        "update execution log": update,
        "log failure": log_failure,
        "update freshness (100 pairs)": freshness,
        "get health": store.get_scheduler_health,
        "get staleness report (500 pairs)": lambda: store.get_feature_staleness_report(limit=500),
        "get execution history": store.get_execution_history,
    }
    return ops


def _miss_note(name: str, p50: float, spec: float, floor_ms: float) -> str:
    """What bounds an operation that missed a tenth of the spec, and what would move it."""
    goal = spec / 10
    if name.startswith("get"):
        return (
            f"a read of {p50:.2f} ms: one or two statements on a direct connection, most of it "
            "server time (the freshness statuses are computed in SQL at read time over the "
            "monitored pairs, never trusted from the cache); moved by caching the answer for a "
            "second, as the admin API does"
        )
    if floor_ms >= goal:
        return (
            f"bounded by the server: a bare one-row INSERT on a driver connection with the "
            f"store's settings (autocommit, synchronous_commit off) takes {floor_ms:.2f} ms "
            f"here, which alone exceeds the goal of {goal:g} ms; only acknowledging writes "
            "before they reach the database (an in-process queue) would move it, and the "
            "spec's methods raise on unknown ids, which a queued write cannot"
        )
    return (
        f"one statement on a direct connection (a bare one-row INSERT: {floor_ms:.2f} ms); "
        "the rest is the server applying the upsert and Python validating the rows"
    )


def run(smoke: bool = False) -> list[Result]:
    """Seed the history, time each operation round-robin and compare medians with the spec."""
    executions, statuses, failures = (100, 1_000, 1_000) if smoke else (100_000, 1_000_000, 100_000)
    rounds = 20 if smoke else 300
    pairs = monitored_pairs()
    url = history_database(executions=executions, statuses=statuses, failures=failures)
    engine = make_engine(url)
    try:
        store = ObservabilityStore(engine, monitored_pairs=pairs)
        ops = _operations(store, pairs)
        for fn in ops.values():  # warm-up: connections, statement caches
            for _ in range(3):
                fn()
        with engine.begin() as conn:
            conn.exec_driver_sql("CREATE TABLE IF NOT EXISTS bench_commit_floor (id int)")
        # The floor of a one-statement write as the store sends it: a bare one-row INSERT
        # on a driver connection with the store's session settings (autocommit,
        # synchronous_commit off), no Python around it.
        raw = engine.raw_connection()
        raw.detach()
        floor_conn = raw.dbapi_connection
        floor_conn.autocommit = True
        floor_cursor = floor_conn.cursor()
        floor_cursor.execute("SET synchronous_commit = off")

        def commit_floor() -> None:
            floor_cursor.execute("INSERT INTO bench_commit_floor VALUES (1)")

        times: dict[str, list[float]] = {name: [] for name in ops}
        floor: list[float] = []
        for _ in range(rounds):
            for name, fn in ops.items():
                times[name].extend(time_ms(fn, 1))
            floor.extend(time_ms(commit_floor, 1))
        floor_conn.close()
    finally:
        engine.dispose()

    floor_ms = median(floor)
    results = []
    history = {
        "executions": executions,
        "symbol_status_rows": statuses,
        "failures": failures,
        "monitored_pairs": len(pairs),
        "calls": rounds,
    }
    for name, samples in times.items():
        p50 = median(samples)
        p99 = percentile(samples, 99)
        spec = SPEC_MS[name]
        result = Result(
            name=f"store: {name}",
            value=p50,
            unit="ms (median)",
            baseline="spec figure",
            baseline_value=spec,
            direction=LOWER_IS_BETTER,
            goal="ratio <= 0.1",
            extra={
                "p50_ms": p50,
                "p99_ms": p99,
                "p99_ratio": p99 / spec,
                "one_row_insert_autocommit_ms": floor_ms,
                **history,
            },
        )
        result.goal_met = result.ratio <= 0.1
        if not result.goal_met:
            result.note = _miss_note(name, p50, spec, floor_ms)
        results.append(result)
    return results
