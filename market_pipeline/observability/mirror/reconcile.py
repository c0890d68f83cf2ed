"""The reconciler: walk the instance's runs from a stored watermark and mirror what is missing.

It repairs what the run-status sensors cannot see or drop: runs from before the sensors were
enabled, runs that ended while the daemon was down or our database unreachable, runs a sensor
tick skipped after an error.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import dagster as dg
import sqlalchemy as sa

from market_pipeline.observability.mirror.apply import apply_projection, log
from market_pipeline.observability.mirror.events import read_run
from market_pipeline.observability.mirror.projection import project
from market_pipeline.observability.store import ObservabilityStore

DEFAULT_WATERMARK_NAME = "dagster"
WATERMARK_OVERLAP = timedelta(minutes=2)
"""How far before the watermark each reconcile looks again: run updates that commit out of order
(a slow transaction) are still seen; runs already mirrored cost only one indexed lookup."""


@dataclass
class ReconcileSummary:
    """Counts of one reconcile pass."""

    scanned: int = 0
    mirrored: int = 0
    already_mirrored: int = 0
    not_ours: int = 0
    not_started: int = 0
    errors: int = 0
    failures_logged: int = 0
    database_unavailable: bool = False
    watermark: datetime | None = None
    seconds: float = 0.0
    error_messages: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        mark = self.watermark.isoformat(timespec="seconds") if self.watermark else "none"
        return (
            f"{self.scanned} runs scanned in {self.seconds:.1f} s: {self.mirrored} mirrored, "
            f"{self.already_mirrored} already mirrored, {self.not_ours} not market-data runs, "
            f"{self.not_started} not started, {self.errors} errors; watermark {mark}"
            + ("; stopped: the database is unreachable" if self.database_unavailable else "")
        )


@dataclass
class _Pass:
    """One reconcile pass: what it needs, and where it stands."""

    instance: dg.DagsterInstance
    store: ObservabilityStore
    asset_classes: Mapping[str, str]
    partitions_def: dg.PartitionsDefinition | None
    full: bool
    logger: Any
    watermark: datetime | None
    summary: ReconcileSummary = field(default_factory=ReconcileSummary)
    blocked: bool = False  # a run failed to mirror: the watermark stays before it
    seen: set[str] = field(default_factory=set)

    def page(self, records: list[Any]) -> int:
        """Mirror a page of run records; return how many were mirrored."""
        ids = [r.dagster_run.run_id for r in records]
        finished = set() if self.full else self.store.mirror.finished_executions(ids)
        mirrored = 0
        for record in records:
            self.seen.add(record.dagster_run.run_id)
            self.summary.scanned += 1
            try:
                mirrored += self._one(record, finished)
            except Exception as exc:  # noqa: BLE001 - one bad run must not stop the pass
                self._failed(record.dagster_run.run_id, exc)
                if self.summary.database_unavailable:
                    break
            if not self.blocked and (
                self.watermark is None or record.update_timestamp > self.watermark
            ):
                self.watermark = record.update_timestamp
        return mirrored

    def _one(self, record: Any, finished: set[str]) -> int:
        run = record.dagster_run
        if run.run_id in finished and run.is_finished:
            self.summary.already_mirrored += 1
            return 0
        facts = read_run(self.instance, record, partitions_def=self.partitions_def)
        projection = None if facts is None else project(facts)
        if projection is None:
            self.summary.not_ours += 1
            return 0
        if projection.status is None:
            self.summary.not_started += 1
            return 0
        applied = apply_projection(
            self.store, projection, asset_classes=self.asset_classes, logger=self.logger
        )
        self.summary.mirrored += 1
        self.summary.failures_logged += applied.failures_logged
        return 1

    def _failed(self, run_id: str, exc: Exception) -> None:
        self.summary.errors += 1
        self.blocked = True
        message = f"could not mirror run {run_id}: {type(exc).__name__}: {exc}"
        self.summary.error_messages.append(message)
        self.logger.warning(message)
        if _is_connection_error(exc):
            self.summary.database_unavailable = True


def reconcile_instance(
    instance: dg.DagsterInstance,
    store: ObservabilityStore,
    *,
    asset_classes: Mapping[str, str],
    since: datetime | None = None,
    full: bool = False,
    page_size: int = 500,
    partitions_def: dg.PartitionsDefinition | None = None,
    name: str = DEFAULT_WATERMARK_NAME,
    overlap: timedelta = WATERMARK_OVERLAP,
    logger: logging.Logger | Any | None = None,
    clock: Callable[[], float] = time.perf_counter,
) -> ReconcileSummary:
    """Mirror every run updated since the watermark (or ``since``) that is not yet mirrored.

    Runs are read in pages in order of their update time. A run whose execution row is already
    ``completed``/``failed`` is skipped unless ``full`` (re-project everything in the window,
    e.g. after a fix of the projection). A run that cannot be mirrored (database error) is
    counted in ``errors`` and holds the watermark back, so the next pass retries it; the pass
    goes on with the other runs, and stops when the database is unreachable. The watermark never
    moves backwards. Each pass looks ``overlap`` before the watermark again.
    """
    started = clock()
    stored = store.mirror.watermark(name)
    start = since if since is not None else stored
    after = None if start is None else start - overlap
    walk = _Pass(instance, store, asset_classes, partitions_def, full, logger or log, stored)
    while not walk.summary.database_unavailable:
        records = instance.get_run_records(
            filters=dg.RunsFilter(updated_after=after.astimezone(UTC) if after else None),
            order_by="update_timestamp",
            ascending=True,
            limit=page_size,
        )
        fresh = [r for r in records if r.dagster_run.run_id not in walk.seen]
        if not fresh:
            if len(records) == page_size:  # a whole page of equal update times: step over it
                after = records[-1].update_timestamp
                continue
            break
        mirrored = walk.page(fresh)
        if walk.summary.database_unavailable:
            break
        if walk.watermark is not None:
            store.mirror.advance_watermark(name, walk.watermark, mirrored)
        after = records[-1].update_timestamp - timedelta(microseconds=1)
    walk.summary.watermark = walk.watermark
    walk.summary.seconds = clock() - started
    return walk.summary


def _is_connection_error(exc: BaseException) -> bool:
    return isinstance(exc, sa.exc.OperationalError | sa.exc.InterfaceError) or (
        type(exc).__name__ == "DatabaseUnavailableError"
    )
