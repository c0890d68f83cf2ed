"""The code location loads, and its jobs, schedules and sensors keep their names (the daemon
stores sensor cursors and schedule state by name: a rename silently starts from scratch)."""

from __future__ import annotations

import dagster as dg
import pytest

from market_pipeline import definitions

pytestmark = pytest.mark.usefixtures("live_instance")


def test_the_code_location_loads_from_the_environment_with_pinned_names(settings, monkeypatch):
    monkeypatch.setenv("MARKET_PIPELINE_DB_URL", settings.db_url)
    monkeypatch.setenv("MARKET_PIPELINE_UNIVERSE", str(settings.universe_path))
    defs = definitions.defs()
    dg.Definitions.validate_loadable(defs)
    repo = defs.get_repository_def()
    assert {job.name for job in repo.get_all_jobs() if not job.name.startswith("__")} == {
        "market_data_job",
        "scheduler_health_report_job",
    }
    assert {s.name for s in repo.schedule_defs} == {
        "daily_backfill_schedule",
        "intraday_backfill_schedule",
        "scheduler_health_report_schedule",
    }
    assert {s.name for s in repo.sensor_defs} == {
        "mirror_run_started_sensor",
        "mirror_run_success_sensor",
        "mirror_run_failure_sensor",
        "mirror_run_canceled_sensor",
        "mirror_reconcile_sensor",
        "freshness_refresh_sensor",
    }
    assert {key.to_user_string() for key in repo.asset_graph.get_all_asset_keys()} == {
        "ohlcv_bars",
        "quant_features",
    }
    for item in [*repo.schedule_defs, *repo.sensor_defs]:
        assert item.description, f"{item.name} has no description for the UI"
