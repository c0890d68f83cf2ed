"""The projection rules on hand-made run facts: no Dagster instance, one rule per test."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from market_pipeline.domain.names import OHLCV_BARS, QUANT_FEATURES, TRIGGER_TAG, Metadata
from market_pipeline.observability.mirror.facts import Materialized, RunFacts, StepFailure
from market_pipeline.observability.mirror.projection import MAX_LISTED_ERRORS, project

T0 = datetime(2026, 11, 30, 2, 0, tzinfo=UTC).timestamp()
BOTH = (OHLCV_BARS, QUANT_FEATURES)


def _done(keys: list[str], at: float = T0 + 60) -> dict[str, dict[str, Materialized]]:
    bars = {Metadata.ROWS_FETCHED: 10, Metadata.ROWS_INSERTED: 7, Metadata.BARS_STORED: 300}
    features = {
        Metadata.FEATURES_COMPUTED: 7,
        Metadata.BARS_STORED: 300,
        Metadata.LAST_BAR_AT: "2026-11-27T21:00:00+00:00",
    }
    return {
        OHLCV_BARS: {k: Materialized(at, bars) for k in keys},
        QUANT_FEATURES: {k: Materialized(at + 1, features) for k in keys},
    }


def _facts(status: str, planned: list[str], done: list[str], **changes) -> RunFacts:
    fields = {
        "run_id": "6f1c1e4e-9a4b-4d8e-8f43-1f0e5c7b2a10",
        "job_name": "market_data_job",
        "status": status,
        "tags": {TRIGGER_TAG: "schedule"},
        "started": T0,
        "ended": None if status in ("STARTED", "QUEUED") else T0 + 120,
        "update_timestamp": datetime.fromtimestamp(T0 + 120, tz=UTC),
        "planned": {name: frozenset(planned) for name in BOTH},
        "done": _done(done),
    }
    return RunFacts(**{**fields, **changes})


def _per_pair_failure(keys: list[str]) -> tuple[StepFailure, ...]:
    return (StepFailure(T0 + 90, {k: f"injected failure for {k}" for k in keys}, ""),)


def test_a_success_completes_every_pair_with_its_counts():
    projection = project(_facts("SUCCESS", ["AAPL|1d", "AAPL|1h"], ["AAPL|1d", "AAPL|1h"]))
    assert projection.status == "completed"
    assert projection.error_message is None
    pair = projection.pairs[0]
    assert (pair.status, pair.records_processed, pair.records_inserted) == ("completed", 10, 7)
    assert (pair.features_computed, pair.data_point_count) == (7, 300)
    assert pair.last_bar_at == datetime(2026, 11, 27, 21, 0, tzinfo=UTC)
    assert pair.completed_at == datetime.fromtimestamp(T0 + 61, tz=UTC)
    assert projection.trigger == "schedule"
    assert projection.duration_seconds == 120


def test_45_ok_and_5_failed_symbols_is_a_completed_execution_naming_the_failures():
    good = [f"S{i:02d}|1d" for i in range(45)]
    bad = [f"X{i}|1d" for i in range(5)]
    projection = project(_facts("FAILURE", good + bad, good, step_failures=_per_pair_failure(bad)))
    assert projection.status == "completed"
    assert (projection.successful_symbols, len(projection.failed_symbols)) == (45, 5)
    assert projection.error_message.startswith("5 of 50 pairs failed: X0|1d: injected failure")
    failed = [p for p in projection.pairs if p.status == "failed"]
    assert {p.error for p in failed} == {f"injected failure for {k}" for k in bad}
    assert projection.log_failures


def test_a_symbol_fails_when_any_of_its_timeframes_failed():
    projection = project(
        _facts(
            "FAILURE",
            ["AAPL|1d", "AAPL|1h"],
            ["AAPL|1d"],
            step_failures=_per_pair_failure(["AAPL|1h"]),
        )
    )
    assert projection.failed_symbols == {"AAPL"}
    assert projection.successful_symbols == 0
    assert projection.total_records_processed == 10  # only the completed pair's rows


def test_a_run_failing_as_a_whole_is_failed_with_the_underlying_error():
    projection = project(
        _facts("FAILURE", ["AAPL|1d"], [], run_failure=(T0 + 5, "resource database failed"))
    )
    assert projection.status == "failed"
    assert projection.error_message.startswith("run failed: resource database failed")
    assert projection.pairs[0].error == "resource database failed"
    assert projection.pairs[0].completed_at == datetime.fromtimestamp(T0 + 5, tz=UTC)


def test_a_cancel_is_failed_without_logging_computation_failures():
    projection = project(
        _facts("CANCELED", ["AAPL|1d", "MSFT|1d"], ["AAPL|1d"], canceled_at=T0 + 30)
    )
    assert projection.status == "failed"
    assert projection.error_message == "run canceled; 1 of 2 pairs completed before"
    assert not projection.log_failures
    msft = projection.pairs[1]
    assert msft.error == "the run was canceled before this pair completed"


@pytest.mark.parametrize(("status", "expected"), [("STARTED", "running"), ("QUEUED", None)])
def test_runs_not_finished_are_running_or_not_recorded_yet(status, expected):
    projection = project(_facts(status, ["AAPL|1d", "MSFT|1d"], ["AAPL|1d"]))
    assert projection.status == expected
    assert projection.completed_at is None
    assert [p.status for p in projection.pairs] == ["completed", "in_progress"]


def test_a_success_that_materialized_nothing_it_planned_is_failed():
    projection = project(_facts("SUCCESS", ["AAPL|1d"], []))
    assert projection.status == "failed"
    assert projection.pairs[0].error == "the run ended without materializing this pair"


def test_the_error_message_lists_at_most_twenty_pairs_and_counts_the_rest():
    bad = [f"X{i:02d}|1d" for i in range(MAX_LISTED_ERRORS + 3)]
    projection = project(_facts("FAILURE", bad, [], step_failures=_per_pair_failure(bad)))
    assert projection.error_message.endswith("; and 3 more")
    assert projection.error_message.count("injected failure") == MAX_LISTED_ERRORS


def test_keys_that_are_not_pairs_are_left_out():
    projection = project(_facts("SUCCESS", ["AAPL|1d", "not-a-pair"], ["AAPL|1d"]))
    assert [p.key for p in projection.pairs] == ["AAPL|1d"]


def test_applying_needs_the_asset_classes_and_stores_none_for_a_symbol_it_lacks(engine):
    import sqlalchemy as sa

    from market_pipeline.database.tables import symbol_computation_status as s
    from market_pipeline.observability.mirror import apply_projection
    from market_pipeline.observability.store import ObservabilityStore

    store = ObservabilityStore(engine)
    projection = project(_facts("SUCCESS", ["AAPL|1d", "GONE|1d"], ["AAPL|1d", "GONE|1d"]))
    with pytest.raises(TypeError, match="asset_classes"):
        apply_projection(store, projection)  # type: ignore[call-arg]
    apply_projection(store, projection, asset_classes={"AAPL": "equity"})
    with engine.connect() as conn:
        classes = dict(conn.execute(sa.select(s.c.symbol, s.c.asset_class)).all())
    assert classes == {"AAPL": "equity", "GONE": None}
