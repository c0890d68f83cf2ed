"""Reading one run from Dagster: its record and events, as plain facts for the projection.

The only module of the mirror that walks Dagster's event objects; everything after it works on
:class:`RunFacts`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import dagster as dg
from dagster import DagsterEventType

from market_pipeline.domain.names import (
    MARKET_DATA_ASSETS,
    MARKET_DATA_JOB,
    PARTITION_TAG,
    RANGE_END_TAG,
    RANGE_START_TAG,
    Metadata,
)
from market_pipeline.observability.mirror.facts import Materialized, RunFacts, StepFailure

MIRRORED_EVENT_TYPES = frozenset(
    {
        DagsterEventType.ASSET_MATERIALIZATION_PLANNED,
        DagsterEventType.ASSET_MATERIALIZATION,
        DagsterEventType.STEP_FAILURE,
        DagsterEventType.RUN_FAILURE,
        DagsterEventType.RUN_CANCELED,
    }
)
"""The event types the mirror reads of a run."""

EVENT_PAGE_SIZE = 1000
"""Events read per query: a run of 10,000 partitions has 20,000 materializations, and only one
page of Dagster's records (its stored JSON and the objects built from it) is held at a time."""


_UNFINISHED = {
    "QUEUED",
    "NOT_STARTED",
    "STARTING",
    "MANAGED",
    "STARTED",
    "CANCELING",
    "SUSPENDED",
}


def error_text(error: Any) -> str:
    """The innermost exception of a SerializableErrorInfo: the user's error, not the wrapper."""
    while error is not None and getattr(error, "cause", None) is not None:
        error = error.cause
    if error is None:
        return ""
    return str(error.message).strip()


def _plain(metadata: Mapping[str, Any]) -> dict[str, Any]:
    return {name: getattr(entry, "value", entry) for name, entry in metadata.items()}


def may_be_ours(run: dg.DagsterRun) -> bool | None:
    """True/False when the run's job tells; None when only its events can (ad-hoc asset jobs)."""
    if run.job_name == MARKET_DATA_JOB:
        return True
    selection = {key.to_user_string() for key in (run.asset_selection or ())}
    if selection:
        return bool(selection & MARKET_DATA_ASSETS)
    if run.job_name.startswith("__"):
        return None
    return False


def run_record(instance: dg.DagsterInstance, run: Any) -> Any:
    """The run record of ``run`` (a record already, or a run id)."""
    if isinstance(run, str):
        records = instance.get_run_records(filters=dg.RunsFilter(run_ids=[run]), limit=1)
        if not records:
            raise LookupError(f"no Dagster run with id {run!r}")
        return records[0]
    return run


def read_run(
    instance: dg.DagsterInstance,
    run: Any,
    *,
    partitions_def: dg.PartitionsDefinition | None = None,
    page_size: int = EVENT_PAGE_SIZE,
) -> RunFacts | None:
    """The facts of one run (a ``RunRecord`` or a run id); ``None`` when it is not ours.

    ``partitions_def`` is only used for runs that logged no planned-materialization events (they
    normally do: Dagster logs one per planned partition, or one with the partition subset), to
    expand a partition-range tag; without it such a run has no pairs. The events are read
    ``page_size`` at a time.
    """
    record = run_record(instance, run)
    dagster_run: dg.DagsterRun = record.dagster_run
    ours = may_be_ours(dagster_run)
    if ours is False:
        return None
    events = _Events()
    for entry in _mirrored_events(instance, dagster_run.run_id, page_size):
        events.add(entry)
    if ours is None and not events.planned and not events.done:
        return None
    planned = events.planned or _planned_from_tags(dagster_run.tags, partitions_def)
    status = dagster_run.status.value
    ended = record.end_time
    if ended is None and status not in _UNFINISHED:
        ended = record.update_timestamp.timestamp()
    return RunFacts(
        run_id=dagster_run.run_id,
        job_name=dagster_run.job_name,
        status=status,
        tags=dict(dagster_run.tags),
        started=record.start_time or record.create_timestamp.timestamp(),
        ended=ended,
        update_timestamp=record.update_timestamp,
        planned={name: frozenset(keys) for name, keys in planned.items()},
        done=events.done,
        step_failures=tuple(events.step_failures),
        run_failure=events.run_failure,
        canceled_at=events.canceled_at,
    )


def _mirrored_events(instance: dg.DagsterInstance, run_id: str, page_size: int) -> Iterator[Any]:
    """The run's events of the mirrored types, in order, read a page at a time (by storage id,
    along Dagster's (run_id, id) index)."""
    if isinstance(page_size, bool) or not isinstance(page_size, int) or page_size < 1:
        raise ValueError(f"page_size must be a positive integer, got {page_size!r}")
    cursor = None
    while True:
        page = instance.get_records_for_run(
            run_id, cursor=cursor, of_type=set(MIRRORED_EVENT_TYPES), limit=page_size
        )
        for record in page.records:
            yield record.event_log_entry
        if not page.has_more:
            return
        cursor = page.cursor


class _Events:
    """The mirrored events of one run, gathered by kind."""

    def __init__(self) -> None:
        self.planned: dict[str, set[str]] = {}
        self.done: dict[str, dict[str, Materialized]] = {}
        self.step_failures: list[StepFailure] = []
        self.run_failure: tuple[float, str] | None = None
        self.canceled_at: float | None = None

    def add(self, entry: Any) -> None:
        event = entry.dagster_event
        if event is None:
            return
        kind = event.event_type
        data = event.event_specific_data
        if kind == DagsterEventType.ASSET_MATERIALIZATION_PLANNED:
            self._planned(data)
        elif kind == DagsterEventType.ASSET_MATERIALIZATION:
            materialization = data.materialization
            name = materialization.asset_key.to_user_string()
            if name in MARKET_DATA_ASSETS and materialization.partition is not None:
                self.done.setdefault(name, {})[str(materialization.partition)] = Materialized(
                    entry.timestamp, _plain(materialization.metadata)
                )
        elif kind == DagsterEventType.STEP_FAILURE:
            self.step_failures.append(_step_failure(entry.timestamp, data))
        elif kind == DagsterEventType.RUN_FAILURE:
            error = getattr(data, "error", None)
            self.run_failure = (entry.timestamp, error_text(error) or (event.message or ""))
        elif kind == DagsterEventType.RUN_CANCELED:
            self.canceled_at = entry.timestamp

    def _planned(self, data: Any) -> None:
        name = data.asset_key.to_user_string()
        if name not in MARKET_DATA_ASSETS:
            return
        keys = self.planned.setdefault(name, set())
        if data.partition is not None:
            keys.add(str(data.partition))
        elif data.partitions_subset is not None:
            keys.update(str(k) for k in data.partitions_subset.get_partition_keys())


def _step_failure(timestamp: float, data: Any) -> StepFailure:
    user = getattr(data, "user_failure_data", None)
    failed = _plain(user.metadata).get(Metadata.FAILED_PARTITIONS) if user else None
    if isinstance(failed, Mapping) and failed:
        return StepFailure(timestamp, {str(k): str(v) for k, v in failed.items()}, "")
    text = (user.description if user and user.description else None) or error_text(data.error)
    return StepFailure(timestamp, {}, text or "step failed")


def _planned_from_tags(
    tags: Mapping[str, str], partitions_def: dg.PartitionsDefinition | None
) -> dict[str, set[str]]:
    if tags.get(PARTITION_TAG):
        keys = {tags[PARTITION_TAG]}
    elif tags.get(RANGE_START_TAG) and tags.get(RANGE_END_TAG) and partitions_def is not None:
        keys = set(
            partitions_def.get_partition_keys_in_range(
                dg.PartitionKeyRange(tags[RANGE_START_TAG], tags[RANGE_END_TAG])
            )
        )
    else:
        return {}
    return {name: set(keys) for name in MARKET_DATA_ASSETS}
