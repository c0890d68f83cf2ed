"""The failures of one execution logged as a batch land exactly as logged one by one.

The same seven cases are set up twice in one database, under two symbol prefixes, and one set is
logged pair by pair, the other as one batch: a first failure, a repeat of another execution's,
a re-delivery of the same execution's, an older failure arriving late, a failure already
recorded and resolved, one a later recorded success supersedes, and one an earlier success does
not. The stored failure rows must be the same but for their ids.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from market_pipeline.database.direct_pool import direct_pool
from market_pipeline.database.tables import feature_computation_failures as failures_t
from market_pipeline.observability.store import ObservabilityStore, UnknownExecutionError
from market_pipeline_tests.observability.test_store import FixedClock

T0 = datetime(2026, 12, 2, 12, tzinfo=UTC)
CASES = ("first", "repeat", "redelivered", "late", "recorded", "superseded", "earlier_success")


def _executions(store: ObservabilityStore) -> tuple[str, str, str]:
    older, this, later = (
        store.create_scheduler_execution_log(started_at=T0 + timedelta(minutes=m))
        for m in (0, 10, 20)
    )
    return older, this, later


def _arrange(store: ObservabilityStore, prefix: str, older: str, this: str, later: str) -> None:
    def fail(case: str, execution: str, at: datetime, message: str = "before") -> None:
        store.log_feature_computation_failure(
            symbol=prefix + case,
            timeframe="1h",
            error_message=message,
            execution_id=execution,
            failed_at=at,
        )

    def done(case: str, execution: str, at: datetime) -> None:
        store.log_symbol_computation_status(
            execution_id=execution,
            symbol=prefix + case,
            timeframe="1h",
            status="completed",
            completed_at=at,
        )

    fail("repeat", older, T0 + timedelta(minutes=1))
    fail("redelivered", this, T0 + timedelta(minutes=11))
    fail("late", older, T0 + timedelta(minutes=30), "newer")  # newer than the batch's
    fail("recorded", this, T0 + timedelta(minutes=11))
    store.resolve_feature_computation_failures(
        symbol=prefix + "recorded", timeframe="1h", resolved_at=T0 + timedelta(minutes=12)
    )
    done("superseded", later, T0 + timedelta(minutes=25))
    done("earlier_success", older, T0 + timedelta(minutes=2))


def _failure(prefix: str, case: str) -> dict:
    return {
        "symbol": prefix + case,
        "timeframe": "1h",
        "error_message": f"{case}: HTTP 503",
        "failed_at": T0 + timedelta(minutes=15),
    }


def _stored(engine, prefix: str) -> list[tuple]:
    f = failures_t
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(f).where(f.c.symbol.startswith(prefix)).order_by(f.c.symbol, f.c.id)
        ).all()
    return [
        (
            r.symbol.removeprefix(prefix),
            *(v for k, v in r._mapping.items() if k not in ("id", "symbol")),
        )
        for r in rows
    ]


def test_a_batch_stores_what_logging_each_failure_alone_stores(engine):
    store = ObservabilityStore(engine, clock=FixedClock(T0 + timedelta(hours=1)))
    older, this, later = _executions(store)
    for prefix in ("one_", "many_"):
        _arrange(store, prefix, older, this, later)
    for case in CASES:
        store.log_feature_computation_failure(**_failure("one_", case), execution_id=this)

    written = store.mirror.log_failures(this, [_failure("many_", case) for case in CASES])

    one_by_one = _stored(engine, "one_")
    assert _stored(engine, "many_") == one_by_one
    assert written == len(CASES) - 1  # the recorded one was kept as it was
    by_case = {row[0]: row for row in one_by_one}
    assert {case for case in CASES if case in by_case} == set(CASES)


def test_a_batch_of_an_unknown_execution_or_with_a_pair_twice_writes_nothing(engine):
    store = ObservabilityStore(engine, clock=FixedClock(T0))
    with pytest.raises(UnknownExecutionError):
        store.mirror.log_failures("00000000-0000-4000-8000-000000000000", [_failure("x_", "first")])
    this = store.create_scheduler_execution_log(started_at=T0)
    with pytest.raises(ValueError, match="failure row 1: x_first 1h is given twice"):
        store.mirror.log_failures(this, [_failure("x_", "first"), _failure("x_", "first")])
    with pytest.raises(ValueError, match="failure row 0: symbol"):
        store.mirror.log_failures(this, [{**_failure("x_", "first"), "symbol": ""}])
    assert _stored(engine, "x_") == []


@pytest.mark.postgres
def test_a_batch_of_a_thousand_failures_is_one_statement_on_postgresql(pg_engine):
    store = ObservabilityStore(pg_engine, clock=FixedClock(T0))
    this = store.create_scheduler_execution_log(started_at=T0)
    pool = direct_pool(pg_engine)
    before = pool.calls
    written = store.mirror.log_failures(this, [_failure("p_", f"{i:04d}") for i in range(1000)])
    assert (written, pool.calls - before) == (1000, 1)
    assert len(_stored(pg_engine, "p_")) == 1000


RECORDED_LOOKUP = (
    "SELECT id FROM feature_computation_failures WHERE execution_id = :e AND symbol = :s "
    "AND timeframe = :t AND resolved ORDER BY id DESC LIMIT 1"
)


def test_the_recorded_failure_lookup_probes_execution_and_pair_in_one_index(engine):
    """Logging the k-th failure of a run must not walk the k - 1 before it: the lookup of the
    execution's failure of the pair is one index probe of the pair."""
    store = ObservabilityStore(engine, clock=FixedClock(T0))
    this = store.create_scheduler_execution_log(started_at=T0)
    store.mirror.log_failures(this, [_failure("q_", f"{i:03d}") for i in range(200)])
    params = {"e": this, "s": "q_007", "t": "1h"}
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            plan = " ".join(
                row[-1]
                for row in conn.execute(sa.text("EXPLAIN QUERY PLAN " + RECORDED_LOOKUP), params)
            )
            assert (
                "ix_feature_computation_failures_execution_pair "
                "(execution_id=? AND symbol=? AND timeframe=?)" in plan
            )
        else:
            conn.exec_driver_sql("SET enable_seqscan = off")  # the table is small here
            plan = " ".join(
                row[0]
                for row in conn.execute(
                    sa.text("EXPLAIN " + RECORDED_LOOKUP.replace(":e", "CAST(:e AS UUID)")), params
                )
            )
            # A probe of the pair (with the execution, or then filtered by it), never a walk
            # of the execution's failures along its own index.
            assert "Index Cond: ((" in plan and "symbol = " in plan and "timeframe = " in plan
            assert "using ix_feature_computation_failures_execution on" not in plan


PAIR_FAILURES = (
    "SELECT id FROM feature_computation_failures WHERE symbol = :s AND timeframe = :t "
    "ORDER BY failed_at DESC, id DESC LIMIT 20"
)


def test_one_pairs_failure_history_is_read_along_a_pair_index(engine):
    """The dashboard's pair detail reads a pair's failures newest first: along an index of the
    pair, not along every failure's time."""
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            plan = " ".join(
                row[-1]
                for row in conn.execute(
                    sa.text("EXPLAIN QUERY PLAN " + PAIR_FAILURES), {"s": "A", "t": "1h"}
                )
            )
            assert (
                "ix_feature_computation_failures_pair_failed_at (symbol=? AND timeframe=?)" in plan
            )
            assert "TEMP B-TREE" not in plan  # no sort: the index gives the order
        else:
            conn.exec_driver_sql("SET enable_seqscan = off")
            plan = " ".join(
                row[0]
                for row in conn.execute(sa.text("EXPLAIN " + PAIR_FAILURES), {"s": "A", "t": "1h"})
            )
            assert "ix_feature_computation_failures_pair_failed_at" in plan
            assert "Sort" not in plan
