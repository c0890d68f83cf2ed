"""The Prometheus collector: reads our tables and the Dagster instance at scrape time.

It registers on a private ``CollectorRegistry`` (see :func:`metrics_registry`): the default
registry would call ``collect()`` at registration, which reads the database. A scrape never
fails as a whole: a database that cannot be read gives ``market_pipeline_database_up 0``, an
instance that cannot be read ``market_pipeline_dagster_instance_up 0``, and the rest is reported.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from prometheus_client.core import Metric
from prometheus_client.registry import Collector, CollectorRegistry

from market_pipeline.database.engine import DatabaseUnavailableError
from market_pipeline.observability.metrics import families
from market_pipeline.observability.metrics.dagster_state import (
    DagsterReading,
    FinishedRun,
    read_dagster,
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
        instance: Any | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.store = store
        self.config = config
        self.instance = instance  # a DagsterInstance, or None when none is configured
        self.clock = clock

    def describe(self) -> list[Metric]:
        return []  # so that registering does not read the database

    def collect(self) -> Iterator[Metric]:
        now = self.clock()
        dagster_read: Future[DagsterReading | None] | None = None
        if self.instance is not None:
            # Both reads mostly wait on their databases: Dagster's runs beside ours.
            with ThreadPoolExecutor(1, thread_name_prefix="metrics-dagster") as pool:
                dagster_read = pool.submit(self._read_dagster, now)
                reading, watermark = self._read_store(now)
        else:
            reading, watermark = self._read_store(now)
        yield families.database_family(reading is not None)
        if reading is not None:
            yield from families.scheduler_families(reading, self.config)
            yield from families.freshness_families(reading, self.config)
            yield from families.failure_families(reading, self.config)
            yield from families.pair_families(reading, self.config)
        if dagster_read is None:
            return
        dagster = dagster_read.result()
        yield from families.dagster_families(dagster)
        if reading is not None and dagster is not None:
            yield from families.mirror_families(
                self._mirror_lag(reading, dagster.newest_finished), watermark
            )

    def _read_store(self, now: datetime) -> tuple[MetricsReading | None, datetime | None]:
        try:
            reading = self.store.metrics_reading(now=now)
            return reading, self.store.mirror_watermark(DEFAULT_WATERMARK_NAME)
        except _DATABASE_ERRORS as exc:
            logger.warning("metrics: cannot read the observability tables: %s", exc)
            return None, None

    def _read_dagster(self, now: datetime) -> DagsterReading | None:
        try:
            return read_dagster(self.instance, now) if self.instance is not None else None
        except Exception as exc:  # noqa: BLE001 - a broken instance must not end the scrape
            logger.warning("metrics: cannot read the Dagster instance: %s", exc)
            return None

    def _mirror_lag(self, reading: MetricsReading, newest: FinishedRun | None) -> float | None:
        """0 when the newest finished run is mirrored; else how far the newest mirrored run
        ended before it (or, with nothing mirrored, how long it has waited)."""
        if newest is None:
            return None
        try:
            if self.store.finished_executions([newest.run_id]):
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
