"""What the metrics report of Dagster itself, read through the instance's public API from outside
the daemon, so a dead daemon shows (its heartbeats age) instead of silencing its own checks."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import dagster as dg

from market_pipeline.observability.mirror.events import may_be_ours

IN_PROGRESS = (
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.CANCELING,
)
FINISHED = (
    dg.DagsterRunStatus.SUCCESS,
    dg.DagsterRunStatus.FAILURE,
    dg.DagsterRunStatus.CANCELED,
)
RECENT_FINISHED = 5
"""Finished runs looked at for the newest one the mirror covers (report runs are skipped)."""


@dataclass(frozen=True)
class FinishedRun:
    run_id: str
    ended_at: datetime


@dataclass(frozen=True)
class DagsterReading:
    read_at: datetime
    heartbeats: dict[str, float]  # daemon type -> timestamp of its newest heartbeat
    queued: int
    in_progress: int
    oldest_queued_at: float | None  # timestamp
    newest_finished: FinishedRun | None  # the newest finished run the mirror should cover


def read_dagster(instance: dg.DagsterInstance, now: datetime) -> DagsterReading:
    heartbeats = instance.get_daemon_heartbeats()
    queued = instance.get_runs_count(dg.RunsFilter(statuses=[dg.DagsterRunStatus.QUEUED]))
    oldest = (
        instance.get_run_records(
            filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.QUEUED]),
            limit=1,
            order_by="create_timestamp",
            ascending=True,
        )
        if queued
        else []
    )
    return DagsterReading(
        read_at=now,
        heartbeats={daemon: beat.timestamp for daemon, beat in heartbeats.items()},
        queued=queued,
        in_progress=instance.get_runs_count(dg.RunsFilter(statuses=list(IN_PROGRESS))),
        oldest_queued_at=_aware(oldest[0].create_timestamp).timestamp() if oldest else None,
        newest_finished=_newest_finished(instance),
    )


def _newest_finished(instance: dg.DagsterInstance) -> FinishedRun | None:
    # Usually the newest finished run is ours: read one, and more only when it is not.
    for limit in (1, RECENT_FINISHED):
        records = instance.get_run_records(
            filters=dg.RunsFilter(statuses=list(FINISHED)),
            limit=limit,
            order_by="update_timestamp",
            ascending=False,
        )
        found = _first_of_ours(records)
        if found is not None or len(records) < limit:
            return found
    return None


def _first_of_ours(records: Sequence[Any]) -> FinishedRun | None:
    for record in records:
        if may_be_ours(record.dagster_run) is False:
            continue
        ended = record.end_time
        at = (
            datetime.fromtimestamp(ended, UTC)
            if ended is not None
            else _aware(record.update_timestamp)
        )
        return FinishedRun(record.dagster_run.run_id, at)
    return None


def _aware(value: datetime) -> datetime:
    # Dagster's run records carry naive UTC datetimes on SQLite.
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
