"""The report job: the health report as Markdown metadata, and why the system is degraded."""

from __future__ import annotations

import dagster as dg
import pytest

from market_pipeline.cli.launcher import run_backfill
from market_pipeline.definitions import build_definitions
from market_pipeline.domain.names import HEALTH_TAG, REPORT_JOB
from market_pipeline.observability.mirror import reconcile_instance
from market_pipeline.observability.store import ObservabilityStore
from market_pipeline_tests.support.universes import asset_classes_of

pytestmark = pytest.mark.usefixtures("live_instance")


def _report_run(defs, instance):
    result = defs.resolve_job_def(REPORT_JOB).execute_in_process(instance=instance)
    [output] = [e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_OUTPUT]
    metadata = output.event_specific_data.metadata
    messages = [entry.user_message for entry in instance.all_logs(result.run_id)]
    return result, metadata, messages


def test_the_report_says_why_the_system_is_degraded(settings, engine):
    defs = build_definitions(settings)
    with dg.instance_for_test() as instance:
        run_backfill(settings, symbols=["AAPL", "BADCO"], timeframes=["1d"], instance=instance)
        reconcile_instance(
            instance, ObservabilityStore(engine), asset_classes=asset_classes_of(settings)
        )
        result, metadata, messages = _report_run(defs, instance)
        tags = instance.get_run_by_id(result.run_id).tags
    assert result.output_for_node("scheduler_health_report") == "degraded"
    assert tags[HEALTH_TAG] == "degraded"
    report = metadata["report"].value
    assert report.startswith("## Scheduler health: DEGRADED")
    assert "| BADCO | 1d |" in report  # open failure, as a Markdown table row
    assert "| BTC-USD | 1h | missing |" in report
    assert metadata["open_failures"].value == 1 and metadata["fresh"].value == 1
    assert metadata["missing"].value == 5
    assert any(
        "scheduler degraded: 1 unresolved feature computation failure" in m for m in messages
    )
    assert any("missing pair AAPL/1h" in m for m in messages)
    assert any("open failure BADCO/1d" in m and "BADCO" in m for m in messages)


def test_the_report_of_a_healthy_system_names_no_reason(settings, engine):
    defs = build_definitions(settings)
    with dg.instance_for_test() as instance:
        run_backfill(settings, symbols=["AAPL", "BTC-USD"], instance=instance)
        # BADCO's pairs are expected but never computed: degraded until it is taken out.
        reconcile_instance(
            instance, ObservabilityStore(engine), asset_classes=asset_classes_of(settings)
        )
        _, degraded, _ = _report_run(defs, instance)
        assert degraded["reasons"].value == "2 feature pairs are missing (never computed)"
        healthy_defs = build_definitions(_without_badco(settings))
        result, metadata, messages = _report_run(healthy_defs, instance)
    assert result.output_for_node("scheduler_health_report") == "healthy"
    assert metadata["reasons"].value == "none"
    assert "Scheduler health: HEALTHY" in metadata["report"].value
    assert not any("degraded" in m for m in messages)


def _without_badco(settings):
    from market_pipeline_tests.support.universes import write_universe

    path = settings.universe_path.with_name("healthy.yaml")
    write_universe(path, [("AAPL", "equity"), ("BTC-USD", "crypto")], ["1h", "1d"])
    return type(settings)(home=settings.home, db_url=settings.db_url, universe_path=path)
