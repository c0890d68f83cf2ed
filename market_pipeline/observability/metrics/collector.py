"""The Prometheus collector: reads our tables at scrape time, and takes Dagster's state from a
:class:`DagsterWatch` that reads the instance beside it.

It registers on a private ``CollectorRegistry`` (see :func:`metrics_registry`): the default
registry would call ``collect()`` at registration, which reads the database. A scrape never
fails as a whole: a database that cannot be read gives ``market_pipeline_database_up 0``, an
instance that cannot be read ``market_pipeline_dagster_instance_up 0``, and the rest is reported.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import sqlalchemy as sa
from prometheus_client.core import Metric
from prometheus_client.registry import Collector, CollectorRegistry

from market_pipeline.database.engine import DatabaseUnavailableError
from market_pipeline.domain.coverage import CoverageReport
from market_pipeline.observability.metrics import families
from market_pipeline.observability.metrics.dagster_state import FinishedRun
from market_pipeline.observability.metrics.dagster_watch import DagsterWatch
from market_pipeline.observability.metrics.data_time_families import (
    data_time_families,
    late_beyond_tolerance,
)
from market_pipeline.observability.metrics.families import MetricsConfig
from market_pipeline.observability.mirror.reconcile import DEFAULT_WATERMARK_NAME
from market_pipeline.observability.store import ObservabilityStore
from market_pipeline.observability.store.metrics_reads import MetricsReading

logger = logging.getLogger("market_pipeline.metrics")

_DATABASE_ERRORS = (sa.exc.SQLAlchemyError, DatabaseUnavailableError)


class PipelineCollector(Collector):
    def __init__(
        self,
        store: ObservabilityStore,
        config: MetricsConfig,
        dagster: DagsterWatch | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.store = store
        self.config = config
        self.dagster = dagster  # None when no Dagster instance is configured
        self.clock = clock

    def describe(self) -> list[Metric]:
        return []  # so that registering does not read the database

    def collect(self) -> Iterator[Metric]:
        now = self.clock()
        reading, watermark = self._read_store(now)
        coverage = self._read_coverage() if reading is not None else None
        yield families.database_family(reading is not None)
        if reading is not None:
            late = late_beyond_tolerance(coverage)
            yield from families.scheduler_families(reading, self.config, late)
            yield from families.freshness_families(reading, self.config)
            yield from families.failure_families(reading, self.config)
            yield from families.pair_families(reading, self.config)
        if coverage is not None:
            yield from data_time_families(coverage, self.config.provider)
        if self.dagster is None:
            return
        dagster = self.dagster.state(now)
        yield from families.dagster_families(dagster, now)
        if reading is not None and dagster.up and dagster.reading is not None:
            yield from families.mirror_families(
                self._mirror_lag(reading, dagster.reading.newest_finished), watermark
            )

    def _read_store(self, now: datetime) -> tuple[MetricsReading | None, datetime | None]:
        try:
            reading = self.store.metrics_reading(now=now)
            return reading, self.store.mirror.watermark(DEFAULT_WATERMARK_NAME)
        except _DATABASE_ERRORS as exc:
            logger.warning("metrics: cannot read the observability tables: %s", exc)
            return None, None

    def _read_coverage(self) -> CoverageReport | None:
        if self.store.data_lag_rules is None:
            return None
        try:
            return self.store.data_time.coverage_report(objective=self.config.coverage_objective)
        except _DATABASE_ERRORS as exc:
            logger.warning("metrics: cannot read the coverage samples: %s", exc)
            return None

    def _mirror_lag(self, reading: MetricsReading, newest: FinishedRun | None) -> float | None:
        """0 when the newest finished run is mirrored; else how far the newest mirrored run
        ended before it (or, with nothing mirrored, how long it has waited)."""
        if newest is None:
            return None
        try:
            if self.store.mirror.finished_executions([newest.run_id]):
                return 0.0
        except _DATABASE_ERRORS:
            return None
        mirrored = reading.last_finished_completed_at
        if mirrored is not None and mirrored < newest.ended_at:
            return (newest.ended_at - mirrored).total_seconds()
        return max(0.0, (reading.at - newest.ended_at).total_seconds())


def metrics_registry(collector: PipelineCollector) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return registry
