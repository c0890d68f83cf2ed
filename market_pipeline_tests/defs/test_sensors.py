"""The observability sensors, evaluated as the daemon would (cursor logic included), on both
backends."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import dagster as dg
import pytest
import sqlalchemy as sa

from market_pipeline.cli.launcher import run_backfill
from market_pipeline.database.tables import feature_freshness
from market_pipeline.definitions import build_definitions
from market_pipeline.observability.mirror import reconcile_instance
from market_pipeline.observability.store import ObservabilityStore
from market_pipeline_tests.support.universes import asset_classes_of, write_universe

pytestmark = pytest.mark.usefixtures("live_instance")


@pytest.fixture
def defs(settings):
    return build_definitions(settings)


def _count(engine, table: str, where: str = "") -> int:
    with engine.connect() as conn:
        return conn.execute(sa.text(f"SELECT COUNT(*) FROM {table} {where}")).scalar_one()


def _status(engine) -> list[str]:
    with engine.connect() as conn:
        return list(conn.execute(sa.text("SELECT status FROM scheduler_execution_log")).scalars())


def _run_status_context(defs, instance, run_id: str, sensor_name: str):
    run = instance.get_run_by_id(run_id)
    event = next(
        r.event_log_entry.dagster_event
        for r in instance.get_records_for_run(
            run_id, of_type={dg.DagsterEventType.RUN_FAILURE, dg.DagsterEventType.RUN_SUCCESS}
        ).records
    )
    return dg.build_run_status_sensor_context(
        sensor_name=sensor_name,
        dagster_instance=instance,
        dagster_run=run,
        dagster_event=event,
        resources=defs.resources,
    )


def test_the_failure_sensor_mirrors_a_run_with_a_failed_symbol(defs, settings, engine):
    sensor = defs.get_sensor_def("mirror_run_failure_sensor")
    with dg.instance_for_test() as instance:
        run_id = run_backfill(settings, instance=instance).run_ids[0]
        with _run_status_context(defs, instance, run_id, sensor.name) as context:
            assert sensor(context) is None  # a return value would cut Dagster's batch to one run
    assert _status(engine) == ["completed"]
    assert _count(engine, "symbol_computation_status") == 6
    assert _count(engine, "feature_computation_failures") == 2


def test_a_database_error_is_logged_not_raised_and_the_reconciler_repairs_it(
    defs, settings, engine
):
    sensor = defs.get_sensor_def("mirror_run_failure_sensor")
    with dg.instance_for_test() as instance:
        run_id = run_backfill(settings, instance=instance).run_ids[0]
        with engine.begin() as conn:
            conn.execute(sa.text("ALTER TABLE symbol_computation_status RENAME TO scs_away"))
        with _run_status_context(defs, instance, run_id, sensor.name) as context:
            assert sensor(context) is None
        # What could be written is: the run is known, but not finished in our tables.
        assert _status(engine) == ["running"]
        with engine.begin() as conn:
            conn.execute(sa.text("ALTER TABLE scs_away RENAME TO symbol_computation_status"))
        store = ObservabilityStore(engine)
        summary = reconcile_instance(instance, store, asset_classes=asset_classes_of(settings))
    assert summary.mirrored == 1
    assert _status(engine) == ["completed"]
    assert _count(engine, "symbol_computation_status") == 6
    assert _count(engine, "feature_computation_failures", "WHERE retry_count = 0") == 2


def test_run_status_sensors_pick_up_runs_after_their_first_tick_and_advance_the_cursor(
    defs, settings, engine
):
    sensor = defs.get_sensor_def("mirror_run_failure_sensor")
    with dg.instance_for_test() as instance:
        before = run_backfill(settings, symbols=["BADCO"], instance=instance).run_ids[0]

        def tick(cursor):
            with dg.build_sensor_context(
                instance=instance, cursor=cursor, resources=defs.resources
            ) as context:
                return sensor.evaluate_tick(context)

        first = tick(None)
        assert first.cursor and "Initiating" in (first.skip_message or "")
        assert _count(engine, "scheduler_execution_log") == 0  # history is the reconciler's

        after = run_backfill(settings, instance=instance).run_ids[0]
        second = tick(first.cursor)
        assert second.cursor != first.cursor
        third = tick(second.cursor)
        assert third.cursor == second.cursor  # nothing new: the run is not seen twice
    with engine.connect() as conn:
        ids = set(
            conn.execute(sa.text("SELECT execution_id FROM scheduler_execution_log")).scalars()
        )
    assert {str(i) for i in ids} == {after}
    assert before not in ids


def test_the_reconcile_sensor_mirrors_history_the_run_status_sensors_skip(defs, settings, engine):
    sensor = defs.get_sensor_def("mirror_reconcile_sensor")
    with dg.instance_for_test() as instance:
        run_backfill(settings, symbols=["AAPL"], instance=instance)
        run_backfill(settings, symbols=["BADCO"], instance=instance)
        with dg.build_sensor_context(instance=instance, resources=defs.resources) as context:
            result = sensor.evaluate_tick(context)
    assert "2 mirrored" in result.skip_message
    assert sorted(_status(engine)) == ["completed", "failed"]


def test_the_freshness_sensor_ages_pairs_without_any_run(defs, settings, engine):
    store = ObservabilityStore(engine)
    two_hours_ago = datetime.now(UTC) - timedelta(hours=2)
    store.update_feature_freshness(
        symbol="AAPL",
        timeframe="1h",
        last_computed_at=two_hours_ago,
        data_point_count=10,
        now=two_hours_ago,
    )
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT status FROM feature_freshness")).scalar() == "fresh"
    sensor = defs.get_sensor_def("freshness_refresh_sensor")
    with (
        dg.instance_for_test() as instance,
        dg.build_sensor_context(instance=instance, resources=defs.resources) as context,
    ):
        result = sensor.evaluate_tick(context)
    assert "1 aging" in result.skip_message and "5 missing of 6" in result.skip_message
    with engine.connect() as conn:
        row = conn.execute(sa.text("SELECT status, staleness_seconds FROM feature_freshness")).one()
    assert row.status == "aging"
    assert row.staleness_seconds >= 7200


def test_every_observability_sensor_runs_by_default(defs):
    for name in (
        "mirror_run_started_sensor",
        "mirror_run_success_sensor",
        "mirror_run_failure_sensor",
        "mirror_run_canceled_sensor",
        "mirror_reconcile_sensor",
        "freshness_refresh_sensor",
    ):
        sensor = defs.get_sensor_def(name)
        assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
        assert sensor.description


def _check_results(instance, check_name: str) -> list:
    """The evaluations of ``check_name`` in ``instance``: (partition, passed, data_status)."""
    records = instance.get_event_records(
        dg.EventRecordsFilter(event_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION), limit=1000
    )
    out = []
    for record in records:
        evaluation = record.event_log_entry.dagster_event.event_specific_data
        if evaluation.check_name == check_name:
            status = evaluation.metadata.get("data_status")
            out.append((evaluation.partition, evaluation.passed, status and status.value))
    return sorted(out)


def test_bars_current_check_is_reported_in_runs_and_re_evaluated_between_them(settings, engine):
    # Daily bars only: they become due once a day, so the real clock cannot move a pair's due
    # bar between the run and the sensor ticks (hourly ones could, at the top of an hour).
    write_universe(
        settings.universe_path,
        [("AAPL", "equity"), ("BADCO", "equity"), ("BTC-USD", "crypto")],
        ["1d"],
        {"kind": "synthetic", "fail_symbols": ["BADCO"], "history_bars": 300},
    )
    defs = build_definitions(settings)
    with dg.instance_for_test() as instance:
        result = run_backfill(settings, instance=instance)
        in_run = _check_results(instance, "bars_current_check")
        # Every pair that was refreshed has one result in the run; BADCO failed at the provider.
        assert [(p, ok) for p, ok, _ in in_run] == [("AAPL|1d", True), ("BTC-USD|1d", True)]
        assert not result.success
        sensor = defs.get_sensor_def("freshness_refresh_sensor")
        with dg.build_sensor_context(instance=instance, resources=defs.resources) as context:
            first = sensor.evaluate_tick(context)
            cursor = first.cursor
        assert "1 missing" in first.skip_message  # BADCO's pair has no bar
        between = [r for r in _check_results(instance, "bars_current_check") if r not in in_run]
        assert between == [("BADCO|1d", False, "missing")]
        # The coverage SLI got its sample: per timeframe and asset class.
        assert _count(engine, "data_coverage_samples") == 2
        # The vendor stops: AAPL's stored newest bar is pushed back a week. The next tick
        # reports that pair, and only it (the cursor remembers BADCO's).
        week_ago = datetime.now(UTC) - timedelta(days=7)
        f = feature_freshness
        with engine.begin() as conn:
            conn.execute(
                f.update()
                .where(f.c.symbol == "AAPL", f.c.timeframe == "1d")
                .values(last_bar_at=week_ago)
            )
        seen = _check_results(instance, "bars_current_check")
        with dg.build_sensor_context(
            instance=instance, resources=defs.resources, cursor=cursor
        ) as context:
            sensor.evaluate_tick(context)
        new = [r for r in _check_results(instance, "bars_current_check") if r not in seen]
        assert new == [("AAPL|1d", False, "late")]
