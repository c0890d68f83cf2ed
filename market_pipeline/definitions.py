"""Assembles the Dagster definitions of market_pipeline from the settings of this process."""

from __future__ import annotations

import os

import dagster as dg
from sqlalchemy.engine import make_url

from market_pipeline.config.settings import DB_URL_ENV, Settings
from market_pipeline.config.universe_file import load_universe
from market_pipeline.database.engine import normalize_db_url
from market_pipeline.defs.jobs import build_jobs
from market_pipeline.defs.market_assets import build_market_data_assets
from market_pipeline.defs.observability_sensors import SensorIntervals, build_observability_sensors
from market_pipeline.defs.partitions import build_pair_partitions, pair_backfill_policy
from market_pipeline.defs.report_job import scheduler_health_report_job
from market_pipeline.defs.resources import DatabaseResource, MarketDataResource
from market_pipeline.defs.schedules import build_schedules


def _database_url_config(settings: Settings) -> str | dg.EnvVar:
    """The URL as the resource's config: a URL carrying a password that came from the
    environment stays an ``EnvVar`` reference, so the Dagster UI never shows the password."""
    from_env = os.environ.get(DB_URL_ENV)
    same_url = bool(from_env) and normalize_db_url(from_env or "") == settings.db_url
    if same_url and make_url(settings.db_url).password is not None:
        return dg.EnvVar(DB_URL_ENV)
    return settings.db_url


def build_definitions(
    settings: Settings, *, sensor_intervals: SensorIntervals | None = None
) -> dg.Definitions:
    """Definitions for one universe and database; tests build their own."""
    universe = load_universe(settings.universe_path)
    partitions = build_pair_partitions(universe)
    market_data = build_market_data_assets(
        partitions, pair_backfill_policy(settings.partitions_per_run)
    )
    return dg.Definitions(
        assets=[market_data],
        jobs=[*build_jobs(), scheduler_health_report_job],
        schedules=build_schedules(universe, partitions_per_run=settings.partitions_per_run),
        sensors=build_observability_sensors(sensor_intervals),
        # Every run is one step (the bulk refresh), so a step process of its own would only add
        # a process start to each run: steps run in the run's process, wherever it is launched.
        executor=dg.in_process_executor,
        resources={
            "database": DatabaseResource(
                url=_database_url_config(settings),
                failure_alert_threshold=settings.failure_alert_threshold,
                coverage_retention_days=settings.coverage_retention_days,
                coverage_objective=settings.coverage_objective,
            ),
            "market_data": MarketDataResource(universe_path=str(settings.universe_path)),
        },
    )


@dg.definitions
def defs() -> dg.Definitions:
    return build_definitions(Settings.from_env())
