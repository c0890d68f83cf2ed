"""The run mirror: real runs of the market-data job projected into the four tables, both backends.

The universe of ``small_universe`` has AAPL, BADCO and BTC-USD x 1h, 1d; the synthetic provider
fails every fetch of BADCO, so one backfill run succeeds for 4 pairs and fails for 2.
"""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime, timedelta

import dagster as dg
import pytest
import sqlalchemy as sa

from market_pipeline.cli.launcher import run_backfill
from market_pipeline.config.settings import Settings
from market_pipeline.config.universe_file import load_universe
from market_pipeline.definitions import build_definitions
from market_pipeline.defs.report_job import scheduler_health_report_job
from market_pipeline.domain.alerts import REPEATED_FAILURE_MESSAGE
from market_pipeline.domain.names import MARKET_DATA_JOB, RANGE_END_TAG, RANGE_START_TAG
from market_pipeline.observability.mirror import (
    DEFAULT_WATERMARK_NAME,
    MIRRORED_EVENT_TYPES,
    apply_projection,
    project_run,
    reconcile_instance,
)
from market_pipeline.observability.mirror.events import read_run
from market_pipeline.observability.store import ObservabilityStore
from market_pipeline_tests.support.universes import asset_classes_of, write_universe


def _store(engine, settings: Settings, threshold: int = 3) -> ObservabilityStore:
    universe = load_universe(settings.universe_path)
    return ObservabilityStore(
        engine, monitored_pairs=universe.pairs, failure_alert_threshold=threshold
    )


def _rows(engine, table: str, order: str = "") -> list[dict]:
    with engine.connect() as conn:
        result = conn.execute(sa.text(f"SELECT * FROM {table} {order}"))
        return [
            {k: str(v) if isinstance(v, uuid.UUID) else v for k, v in r._mapping.items()}
            for r in result
        ]


def _counts(engine) -> dict[str, int]:
    tables = (
        "scheduler_execution_log",
        "symbol_computation_status",
        "feature_computation_failures",
        "feature_freshness",
    )
    with engine.connect() as conn:
        return {t: conn.execute(sa.text(f"SELECT COUNT(*) FROM {t}")).scalar_one() for t in tables}


def test_a_run_with_one_failing_symbol_is_completed_with_that_symbol_failed(engine, settings):
    with dg.instance_for_test() as instance:
        backfill = run_backfill(settings, instance=instance)
        assert len(backfill.run_ids) == 1
        run_id = backfill.run_ids[0]
        assert instance.get_run_by_id(run_id).status == dg.DagsterRunStatus.FAILURE
        summary = reconcile_instance(
            instance, _store(engine, settings), asset_classes=asset_classes_of(settings)
        )
    assert summary.mirrored == 1 and summary.errors == 0

    [execution] = _rows(engine, "scheduler_execution_log")
    assert execution["execution_id"] == run_id
    assert execution["status"] == "completed"
    assert (execution["total_symbols"], execution["successful_symbols"]) == (3, 2)
    assert execution["failed_symbols"] == 1
    assert execution["total_records_processed"] > 0
    assert execution["duration_seconds"] > 0
    assert execution["completed_at"] > execution["started_at"]
    assert "2 of 6 pairs failed" in execution["error_message"]
    assert execution["run_trigger"] == "manual"
    assert execution["job_name"] == MARKET_DATA_JOB

    statuses = {
        (r["symbol"], r["timeframe"]): r for r in _rows(engine, "symbol_computation_status")
    }
    assert len(statuses) == 6
    for (symbol, _), row in statuses.items():
        assert row["status"] == ("failed" if symbol == "BADCO" else "completed")
        assert row["asset_class"] is None or row["asset_class"] in ("equity", "crypto")
    good = statuses[("AAPL", "1d")]
    assert good["records_processed"] > 0
    assert good["records_inserted"] == good["records_processed"]
    assert good["features_computed"] > 0
    assert good["started_at"] <= good["completed_at"]
    bad = statuses[("BADCO", "1h")]
    assert "BADCO" in bad["error_message"]
    assert "Execution of step" not in bad["error_message"]

    failures = _rows(engine, "feature_computation_failures", "ORDER BY timeframe")
    assert [(f["symbol"], f["timeframe"]) for f in failures] == [("BADCO", "1d"), ("BADCO", "1h")]
    assert all(f["execution_id"] == run_id and not f["resolved"] for f in failures)
    assert all(f["retry_count"] == 0 for f in failures)
    assert failures[0]["error_message"] == bad["error_message"].replace("1h", "1d")

    freshness = {(r["symbol"], r["timeframe"]): r for r in _rows(engine, "feature_freshness")}
    assert set(freshness) == {(s, t) for s in ("AAPL", "BTC-USD") for t in ("1h", "1d")}
    assert all(r["status"] == "fresh" and r["data_point_count"] > 0 for r in freshness.values())


def test_mirroring_a_run_again_doubles_nothing(engine, settings):
    with dg.instance_for_test() as instance:
        run_backfill(settings, instance=instance)
        store = _store(engine, settings)
        reconcile_instance(instance, store, asset_classes=asset_classes_of(settings))
        before = _counts(engine)
        failures_before = _rows(engine, "feature_computation_failures", "ORDER BY id")
        again = reconcile_instance(
            instance, store, full=True, asset_classes=asset_classes_of(settings)
        )
        for run in instance.get_run_records():
            apply_projection(
                store, project_run(instance, run), asset_classes=asset_classes_of(settings)
            )
    assert again.mirrored == 1
    assert _counts(engine) == before
    assert _rows(engine, "feature_computation_failures", "ORDER BY id") == failures_before


def test_a_run_read_a_page_of_events_at_a_time_gives_the_same_facts(settings):
    """The mirror reads a run's events in pages, so a run of 10,000 partitions is never held
    whole as Dagster records; a page of one event must give what one page of all gives."""
    with dg.instance_for_test() as instance:
        [run_id] = run_backfill(settings, instance=instance).run_ids
        events = instance.get_records_for_run(run_id, of_type=set(MIRRORED_EVENT_TYPES)).records
        whole = read_run(instance, run_id, page_size=len(events) + 1)
        paged = read_run(instance, run_id, page_size=1)
        with pytest.raises(ValueError, match="page_size must be a positive integer"):
            read_run(instance, run_id, page_size=0)
    assert len(events) > 6  # planned, materialized and failed pairs: many pages of one
    assert whole is not None and whole.done and whole.step_failures
    assert paged == whole


def test_repeated_failures_count_up_and_alert_at_the_threshold(engine, settings, caplog):
    store = _store(engine, settings, threshold=3)
    with dg.instance_for_test() as instance, caplog.at_level(logging.ERROR):
        for _ in range(3):
            run_backfill(settings, symbols=["BADCO"], timeframes=["1d"], instance=instance)
            reconcile_instance(instance, store, asset_classes=asset_classes_of(settings))
    [failure] = _rows(engine, "feature_computation_failures")
    assert failure["retry_count"] == 2 and not failure["resolved"]
    [execution] = _rows(engine, "scheduler_execution_log", "ORDER BY started_at DESC LIMIT 1")
    assert execution["status"] == "failed"  # no pair of the run succeeded
    assert (execution["successful_symbols"], execution["failed_symbols"]) == (0, 1)
    alerts = [r.getMessage() for r in caplog.records if REPEATED_FAILURE_MESSAGE in r.getMessage()]
    assert len(alerts) == 1
    assert "symbol=BADCO timeframe=1d consecutive_failures=3 threshold=3" in alerts[0]
    health = store.get_scheduler_health().model_dump()
    assert [(a["symbol"], a["timeframe"], a["consecutive_failures"]) for a in health["alerts"]] == [
        ("BADCO", "1d", 3)
    ]


def test_a_later_success_resolves_the_failure(engine, settings, tmp_path):
    store = _store(engine, settings)
    with dg.instance_for_test() as instance:
        run_backfill(settings, symbols=["BADCO"], instance=instance)
        reconcile_instance(instance, store, asset_classes=asset_classes_of(settings))
        write_universe(
            settings.universe_path,
            [("AAPL", "equity"), ("BADCO", "equity"), ("BTC-USD", "crypto")],
            ["1h", "1d"],
            {"kind": "synthetic"},
        )
        fixed = run_backfill(settings, symbols=["BADCO"], instance=instance)
        assert fixed.success
        reconcile_instance(instance, store, asset_classes=asset_classes_of(settings))
    failures = _rows(engine, "feature_computation_failures")
    assert len(failures) == 2
    assert all(f["resolved"] for f in failures)
    assert {f["resolved_by_execution_id"] for f in failures} == {fixed.run_ids[0]}
    assert store.get_scheduler_health().model_dump()["open_failures_count"] == 0


def test_a_run_failing_as_a_whole_is_failed_with_the_underlying_error(engine, settings, tmp_path):
    # Our tables exist in `engine`'s database, but the run's own database was never migrated:
    # the database resource fails to start and no pair is computed.
    broken = Settings(
        home=settings.home,
        db_url=f"sqlite:///{tmp_path / 'unmigrated.db'}",
        universe_path=settings.universe_path,
    )
    with dg.instance_for_test() as instance:
        result = run_backfill(broken, instance=instance)
        projection = project_run(instance, result.run_ids[0])
        apply_projection(
            _store(engine, settings), projection, asset_classes=asset_classes_of(settings)
        )
    assert projection.status == "failed"
    [execution] = _rows(engine, "scheduler_execution_log")
    assert execution["status"] == "failed"
    assert execution["failed_symbols"] == 3 and execution["successful_symbols"] == 0
    assert "market-pipeline migrate" in execution["error_message"]
    failures = _rows(engine, "feature_computation_failures")
    assert len(failures) == 6
    assert all("market-pipeline migrate" in f["error_message"] for f in failures)


def _created_run(instance, settings, status):
    job = build_definitions(settings).resolve_job_def(MARKET_DATA_JOB)
    run = instance.create_run_for_job(
        job, tags={RANGE_START_TAG: "AAPL|1h", RANGE_END_TAG: "BTC-USD|1d"}, status=status
    )
    return run


def test_a_started_run_is_running_and_a_canceled_one_failed_without_failures(engine, settings):
    store = _store(engine, settings)
    with dg.instance_for_test() as instance:
        run = _created_run(instance, settings, dg.DagsterRunStatus.STARTED)
        running = project_run(instance, run.run_id)
        apply_projection(store, running, asset_classes=asset_classes_of(settings))
        [execution] = _rows(engine, "scheduler_execution_log")
        assert execution["status"] == "running" and execution["total_symbols"] == 3
        statuses = _rows(engine, "symbol_computation_status")
        assert len(statuses) == 6 and {s["status"] for s in statuses} == {"in_progress"}

        instance.report_run_canceled(instance.get_run_by_id(run.run_id))
        canceled = project_run(instance, run.run_id)
        apply_projection(store, canceled, asset_classes=asset_classes_of(settings))
        apply_projection(
            store, running, asset_classes=asset_classes_of(settings)
        )  # a late STARTED delivery must not reopen the run
    [execution] = _rows(engine, "scheduler_execution_log")
    assert execution["status"] == "failed"
    assert execution["error_message"].startswith("run canceled")
    statuses = _rows(engine, "symbol_computation_status")
    assert {s["status"] for s in statuses} == {"failed"}
    assert all("canceled" in s["error_message"] for s in statuses)
    assert _rows(engine, "feature_computation_failures") == []


def test_queued_runs_and_other_jobs_are_not_mirrored(engine, settings):
    store = _store(engine, settings)
    with dg.instance_for_test() as instance:
        _created_run(instance, settings, dg.DagsterRunStatus.NOT_STARTED)
        scheduler_health_report_job.execute_in_process(
            instance=instance,
            resources=build_definitions(settings).resources,
        )
        summary = reconcile_instance(instance, store, asset_classes=asset_classes_of(settings))
    assert (summary.scanned, summary.not_started, summary.not_ours) == (2, 1, 1)
    assert _counts(engine)["scheduler_execution_log"] == 0


def test_reconcile_resumes_from_its_watermark_and_retries_what_failed(
    engine, settings, monkeypatch
):
    store = _store(engine, settings)
    with dg.instance_for_test() as instance:
        first = run_backfill(settings, symbols=["AAPL"], instance=instance)
        summary = reconcile_instance(instance, store, asset_classes=asset_classes_of(settings))
        mark = store.mirror.watermark(DEFAULT_WATERMARK_NAME)
        assert summary.mirrored == 1 and mark is not None

        second = run_backfill(settings, symbols=["BTC-USD"], instance=instance)
        third = run_backfill(settings, symbols=["AAPL"], timeframes=["1d"], instance=instance)
        real = store.log_symbol_computation_statuses

        def fail_for_second(rows):
            rows = list(rows)
            if rows and rows[0]["execution_id"] == second.run_ids[0]:
                raise RuntimeError("simulated write error")
            return real(rows)

        monkeypatch.setattr(store, "log_symbol_computation_statuses", fail_for_second)
        summary = reconcile_instance(instance, store, asset_classes=asset_classes_of(settings))
        assert (summary.mirrored, summary.errors, summary.already_mirrored) == (1, 1, 1)
        # The watermark stays before the run that failed to mirror...
        assert (
            store.mirror.watermark(DEFAULT_WATERMARK_NAME)
            < instance.get_run_record_by_id(second.run_ids[0]).update_timestamp
        )
        monkeypatch.undo()
        summary = reconcile_instance(instance, store, asset_classes=asset_classes_of(settings))
        assert summary.mirrored == 1 and summary.errors == 0
        assert (
            store.mirror.watermark(DEFAULT_WATERMARK_NAME)
            >= instance.get_run_record_by_id(third.run_ids[0]).update_timestamp
        )
    executions = {r["execution_id"]: r for r in _rows(engine, "scheduler_execution_log")}
    assert set(executions) == {first.run_ids[0], second.run_ids[0], third.run_ids[0]}
    assert all(r["status"] == "completed" for r in executions.values())


def test_reconcile_since_reaches_back_before_the_watermark(engine, settings):
    store = _store(engine, settings)
    with dg.instance_for_test() as instance:
        run_backfill(settings, symbols=["AAPL"], instance=instance)
        reconcile_instance(instance, store, asset_classes=asset_classes_of(settings))
        with store.engine.begin() as conn:
            conn.execute(sa.text("DELETE FROM symbol_computation_status"))
            conn.execute(sa.text("DELETE FROM scheduler_execution_log"))
        behind = reconcile_instance(
            instance, store, overlap=timedelta(0), asset_classes=asset_classes_of(settings)
        )
        assert behind.mirrored == 0  # the run is behind the watermark
        since = datetime.now(UTC) - timedelta(hours=1)
        assert (
            reconcile_instance(
                instance, store, since=since, asset_classes=asset_classes_of(settings)
            ).mirrored
            == 1
        )
    assert _counts(engine)["symbol_computation_status"] == 2


@pytest.mark.parametrize("trigger", ["schedule", "manual"])
def test_the_trigger_tag_is_recorded(engine, settings, trigger):
    with dg.instance_for_test() as instance:
        run_backfill(settings, symbols=["AAPL"], instance=instance, trigger=trigger)
        reconcile_instance(
            instance, _store(engine, settings), asset_classes=asset_classes_of(settings)
        )
    [execution] = _rows(engine, "scheduler_execution_log")
    assert execution["run_trigger"] == trigger
