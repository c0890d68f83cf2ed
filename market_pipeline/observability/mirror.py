"""Mirror Dagster runs of the market-data assets into the four scheduler observability tables.

Dagster's run storage is the source of truth; our tables are a projection of it. Two paths write
the projection with the same code, so they can overlap freely:

- the run-status sensors (:mod:`market_pipeline.defs.observability_sensors`) project a run as
  soon as it starts or ends;
- the reconciler (:func:`reconcile_instance`, run by a sensor every minute and by
  ``market-pipeline reconcile``) walks the instance's run records since a stored watermark and
  projects every run that is not yet mirrored in its final state. It repairs what the sensors
  cannot see or drop: runs from before the sensors were enabled, runs that ended while the daemon
  was down or our database unreachable, runs a sensor tick skipped after an error.

Every write is an idempotent upsert keyed by run id and pair, and the finished status of the
execution row is written last, so "the row is completed/failed" means "everything else of the run
is written"; the reconciler skips exactly those runs.

Run status -> ``scheduler_execution_log.status``:

======================  ==================================================================
Dagster run status      execution status
======================  ==================================================================
QUEUED, NOT_STARTED,    not mirrored yet (the run has not started; it is picked up when it
STARTING                does, because its update time changes)
STARTED, CANCELING      ``running``
SUCCESS                 ``completed`` (``failed`` when it planned pairs and none succeeded)
FAILURE                 ``completed`` when the only failures are per-pair ones (the step's
                        ``failed_partitions``) and at least one pair succeeded, as in the spec's
                        example with 45 symbols ok and 5 failed; ``failed`` when no pair
                        succeeded or the run failed as a whole (an unexpected exception, a
                        resource that could not start, a crashed run worker)
CANCELED                ``failed`` (``error_message`` says it was canceled)
======================  ==================================================================

Counts: ``total_symbols`` is the number of distinct symbols the run planned, a symbol counts as
failed when any of its timeframes failed in the run, ``successful_symbols`` is the rest, and
``total_records_processed`` sums the bar rows fetched (``rows_fetched``) of the succeeded pairs.

Per pair (``symbol_computation_status``): ``completed`` when every asset the run selected was
materialized for the pair, ``failed`` when the run finished without that, ``in_progress`` while
the run is running. A failed pair of a run that failed (not of a canceled one: a cancellation is
no computation failure) is logged in ``feature_computation_failures`` with the real error text
(the pair's entry in ``failed_partitions``, else the underlying exception of the step or run),
once per (run, pair); a completed pair resolves the pair's open failure; and a pair whose
features were materialized gets its ``feature_freshness`` row from the materialization.
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
from dagster import DagsterEventType, DagsterRunStatus

from market_pipeline.domain.alerts import format_alert
from market_pipeline.domain.identifiers import canonical_uuid
from market_pipeline.domain.reports import Alert
from market_pipeline.domain.names import (
    BACKFILL_TAG,
    MARKET_DATA_ASSETS,
    MARKET_DATA_JOB,
    OHLCV_BARS,
    PARTITION_TAG,
    QUANT_FEATURES,
    RANGE_END_TAG,
    RANGE_START_TAG,
    SCHEDULE_NAME_TAG,
    SCHEDULED_TIME_TAG,
    SENSOR_NAME_TAG,
    TRIGGER_TAG,
    Metadata,
)
from market_pipeline.observability.store import ObservabilityStore

log = logging.getLogger(__name__)

MIRRORED_ASSETS = MARKET_DATA_ASSETS


DEFAULT_WATERMARK_NAME = "dagster"
WATERMARK_OVERLAP = timedelta(minutes=2)
"""How far before the watermark each reconcile looks again: run updates that commit out of order
(a slow transaction) are still seen; runs already mirrored cost only one indexed lookup."""

_NOT_STARTED = {
    DagsterRunStatus.QUEUED,
    DagsterRunStatus.NOT_STARTED,
    DagsterRunStatus.STARTING,
    DagsterRunStatus.MANAGED,
}
_RUNNING = {DagsterRunStatus.STARTED, DagsterRunStatus.CANCELING, DagsterRunStatus.SUSPENDED}
_EVENT_TYPES = {
    DagsterEventType.ASSET_MATERIALIZATION_PLANNED,
    DagsterEventType.ASSET_MATERIALIZATION,
    DagsterEventType.STEP_FAILURE,
    DagsterEventType.RUN_FAILURE,
    DagsterEventType.RUN_CANCELED,
}
_MAX_LISTED_ERRORS = 20



# --------------------------------------------------------------------------------------------
# Projection: Dagster run -> rows (pure reads of the instance)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PairProjection:
    """What one (symbol, timeframe) partition did in one run."""

    symbol: str
    timeframe: str
    status: str  # completed | failed | in_progress
    records_processed: int = 0
    records_inserted: int = 0
    features_computed: int = 0
    data_point_count: int = 0
    completed_at: datetime | None = None
    last_bar_at: datetime | None = None
    features_materialized: bool = False
    error: str | None = None

    @property
    def key(self) -> str:
        return f"{self.symbol}|{self.timeframe}"


@dataclass(frozen=True)
class RunProjection:
    """A run of the market-data assets as the observability tables see it."""

    run_id: str
    job_name: str
    dagster_status: str
    status: str | None  # running | completed | failed; None: not started, nothing to write
    started_at: datetime
    completed_at: datetime | None
    update_timestamp: datetime
    trigger: str
    scheduled_for: datetime | None
    pairs: tuple[PairProjection, ...]
    error_message: str | None = None
    log_failures: bool = True

    @property
    def finished(self) -> bool:
        return self.status in ("completed", "failed")

    @property
    def symbols(self) -> set[str]:
        return {p.symbol for p in self.pairs}

    @property
    def failed_symbols(self) -> set[str]:
        return {p.symbol for p in self.pairs if p.status == "failed"}

    @property
    def total_symbols(self) -> int:
        return len(self.symbols)

    @property
    def successful_symbols(self) -> int:
        return self.total_symbols - len(self.failed_symbols)

    @property
    def total_records_processed(self) -> int:
        return sum(p.records_processed for p in self.pairs if p.status == "completed")

    @property
    def duration_seconds(self) -> float | None:
        if self.completed_at is None:
            return None
        return max(0.0, (self.completed_at - self.started_at).total_seconds())


def _utc(timestamp: float) -> datetime:
    return datetime.fromtimestamp(timestamp, tz=UTC)


def _error_text(error: Any) -> str:
    """The innermost exception of a SerializableErrorInfo: the user's error, not the wrapper."""
    while error is not None and getattr(error, "cause", None) is not None:
        error = error.cause
    if error is None:
        return ""
    return str(error.message).strip()


def _metadata_value(metadata: Mapping[str, Any], name: str) -> Any:
    entry = metadata.get(name)
    return None if entry is None else getattr(entry, "value", entry)


def _int(metadata: Mapping[str, Any], name: str) -> int:
    value = _metadata_value(metadata, name)
    try:
        return max(0, int(value)) if value is not None else 0
    except (TypeError, ValueError):
        return 0


def _parse_time(value: Any) -> datetime | None:
    if not value or not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def _split_key(key: str) -> tuple[str, str] | None:
    symbol, sep, timeframe = str(key).partition("|")
    return (symbol, timeframe) if sep and symbol and timeframe else None


def run_trigger(tags: Mapping[str, str]) -> str:
    """How a run was started, from its tags: ``schedule``, ``sensor``, ``backfill`` or ``manual``.

    Our own tag (``market_pipeline/trigger``, set by our schedules and ``run_backfill``) wins;
    otherwise Dagster's schedule/sensor/backfill tags decide; anything else is manual.
    """
    if tags.get(TRIGGER_TAG):
        return tags[TRIGGER_TAG]
    if tags.get(SCHEDULE_NAME_TAG):
        return "schedule"
    if tags.get(SENSOR_NAME_TAG):
        return "sensor"
    if tags.get(BACKFILL_TAG):
        return "backfill"
    return "manual"


def _may_be_ours(run: dg.DagsterRun) -> bool | None:
    """True/False when the run's job tells; None when only its events can (ad-hoc asset jobs)."""
    if run.job_name == MARKET_DATA_JOB:
        return True
    selection = {key.to_user_string() for key in (run.asset_selection or ())}
    if selection:
        return bool(selection & MIRRORED_ASSETS)
    if run.job_name.startswith("__"):
        return None
    return False


def _run_record(instance: dg.DagsterInstance, run: Any) -> Any:
    if isinstance(run, str):
        records = instance.get_run_records(filters=dg.RunsFilter(run_ids=[run]), limit=1)
        if not records:
            raise LookupError(f"no Dagster run with id {run!r}")
        return records[0]
    return run


def project_run(
    instance: dg.DagsterInstance,
    run: Any,
    *,
    partitions_def: dg.PartitionsDefinition | None = None,
) -> RunProjection | None:
    """Read one run (a ``RunRecord`` or a run id) and its events; ``None`` when it is not ours.

    ``partitions_def`` is only used for runs that logged no planned-materialization events (they
    normally do: Dagster logs one per planned partition, or one with the partition subset), to
    expand a partition-range tag; without it such a run has no pairs.
    """
    record = _run_record(instance, run)
    dagster_run: dg.DagsterRun = record.dagster_run
    ours = _may_be_ours(dagster_run)
    if ours is False:
        return None
    events = instance.get_records_for_run(dagster_run.run_id, of_type=_EVENT_TYPES).records
    planned: dict[str, set[str]] = {}
    done: dict[str, dict[str, tuple[float, Mapping[str, Any]]]] = {}
    step_failures: list[tuple[float, Any]] = []
    run_failure: tuple[float, str] | None = None
    canceled_at: float | None = None
    for event_record in events:
        entry = event_record.event_log_entry
        event = entry.dagster_event
        if event is None:
            continue
        kind = event.event_type
        if kind == DagsterEventType.ASSET_MATERIALIZATION_PLANNED:
            data = event.event_specific_data
            name = data.asset_key.to_user_string()
            if name not in MIRRORED_ASSETS:
                continue
            keys = planned.setdefault(name, set())
            if data.partition is not None:
                keys.add(str(data.partition))
            elif data.partitions_subset is not None:
                keys.update(str(k) for k in data.partitions_subset.get_partition_keys())
        elif kind == DagsterEventType.ASSET_MATERIALIZATION:
            materialization = event.event_specific_data.materialization
            name = materialization.asset_key.to_user_string()
            if name in MIRRORED_ASSETS and materialization.partition is not None:
                done.setdefault(name, {})[str(materialization.partition)] = (
                    entry.timestamp,
                    materialization.metadata,
                )
        elif kind == DagsterEventType.STEP_FAILURE:
            step_failures.append((entry.timestamp, event.event_specific_data))
        elif kind == DagsterEventType.RUN_FAILURE:
            data = event.event_specific_data
            error = getattr(data, "error", None)
            run_failure = (entry.timestamp, _error_text(error) or (event.message or ""))
        elif kind == DagsterEventType.RUN_CANCELED:
            canceled_at = entry.timestamp
    if ours is None and not planned and not done:
        return None

    if not planned:
        planned = _planned_from_tags(dagster_run.tags, partitions_def)

    status_enum = dagster_run.status
    started = record.start_time or record.create_timestamp.timestamp()
    started_at = _utc(started)
    ended = record.end_time
    if ended is None and status_enum not in _NOT_STARTED | _RUNNING:
        ended = record.update_timestamp.timestamp()
    completed_at = None if ended is None else max(started_at, _utc(ended))

    # Per-pair errors of the per-pair Failure; anything else fails the run as a whole.
    pair_errors: dict[str, str] = {}
    run_error: str | None = None
    failure_time: float | None = None
    for timestamp, data in step_failures:
        failure_time = timestamp if failure_time is None else max(failure_time, timestamp)
        user = getattr(data, "user_failure_data", None)
        failed = _metadata_value(user.metadata, Metadata.FAILED_PARTITIONS) if user else None
        if isinstance(failed, Mapping) and failed:
            pair_errors.update({str(k): str(v) for k, v in failed.items()})
        else:
            text = (user.description if user and user.description else None) or _error_text(
                data.error
            )
            run_error = run_error or text or "step failed"
    if status_enum == DagsterRunStatus.FAILURE and not step_failures:
        run_error = (run_failure[1] if run_failure else "") or "run failed"
        failure_time = run_failure[0] if run_failure else ended

    all_keys: set[str] = set().union(*planned.values()) if planned else set()
    finished = status_enum not in _NOT_STARTED | _RUNNING
    canceled = status_enum == DagsterRunStatus.CANCELED
    pairs: list[PairProjection] = []
    for key in sorted(all_keys):
        pair = _split_key(key)
        if pair is None:
            continue
        wanted = [name for name, keys in planned.items() if key in keys]
        got = {name: done[name][key] for name in wanted if key in done.get(name, {})}
        bars = got.get(OHLCV_BARS, (0.0, {}))[1]
        features = got.get(QUANT_FEATURES)
        feature_meta = features[1] if features else {}
        last_bar = _parse_time(_metadata_value(feature_meta or bars, Metadata.LAST_BAR_AT))
        counts = {
            "records_processed": _int(bars, Metadata.ROWS_FETCHED),
            "records_inserted": _int(bars, Metadata.ROWS_INSERTED),
            Metadata.FEATURES_COMPUTED: _int(feature_meta, Metadata.FEATURES_COMPUTED),
            "data_point_count": _int(feature_meta or bars, Metadata.BARS_STORED),
        }
        if len(got) == len(wanted):
            at = max(timestamp for timestamp, _ in got.values())
            pairs.append(
                PairProjection(
                    *pair,
                    status="completed",
                    completed_at=max(started_at, _utc(at)),
                    last_bar_at=last_bar,
                    features_materialized=features is not None,
                    **counts,
                )
            )
        elif not finished:
            pairs.append(PairProjection(*pair, status="in_progress"))
        else:
            if canceled:
                error = "the run was canceled before this pair completed"
                at = canceled_at or ended
            else:
                error = pair_errors.get(key) or run_error or (
                    "the run ended without materializing this pair"
                )
                at = failure_time or ended
            pairs.append(
                PairProjection(
                    *pair,
                    status="failed",
                    completed_at=max(started_at, _utc(at)) if at else completed_at,
                    error=error,
                    **counts,
                )
            )

    ok = sum(1 for p in pairs if p.status == "completed")
    failed_pairs = [p for p in pairs if p.status == "failed"]
    status: str | None
    error_message: str | None = None
    if status_enum in _NOT_STARTED:
        status = None
    elif status_enum in _RUNNING:
        status = "running"
    elif canceled:
        status = "failed"
        error_message = f"run canceled; {ok} of {len(pairs)} pairs completed before"
    elif status_enum == DagsterRunStatus.SUCCESS and not failed_pairs:
        status = "completed" if ok or not pairs else "failed"
    else:
        whole_run_failed = run_error is not None
        status = "completed" if ok and not whole_run_failed else "failed"
        if whole_run_failed:
            error_message = f"run failed: {run_error}"
        if failed_pairs:
            listed = "; ".join(f"{p.key}: {p.error}" for p in failed_pairs[:_MAX_LISTED_ERRORS])
            more = len(failed_pairs) - _MAX_LISTED_ERRORS
            summary = f"{len(failed_pairs)} of {len(pairs)} pairs failed: {listed}" + (
                f"; and {more} more" if more > 0 else ""
            )
            error_message = summary if error_message is None else f"{error_message}. {summary}"
        elif error_message is None:
            error_message = "run failed"
    scheduled = _parse_time(dagster_run.tags.get(SCHEDULED_TIME_TAG))
    return RunProjection(
        run_id=dagster_run.run_id,
        job_name=dagster_run.job_name,
        dagster_status=status_enum.value,
        status=status,
        started_at=started_at,
        completed_at=completed_at if finished else None,
        update_timestamp=record.update_timestamp,
        trigger=run_trigger(dagster_run.tags),
        scheduled_for=scheduled,
        pairs=tuple(pairs),
        error_message=error_message,
        log_failures=not canceled,
    )


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
    return {name: set(keys) for name in MIRRORED_ASSETS}


# --------------------------------------------------------------------------------------------
# Apply: projection -> the four tables (idempotent)
# --------------------------------------------------------------------------------------------


@dataclass
class ApplyResult:
    """What :func:`apply_projection` wrote for one run."""

    run_id: str
    status: str | None
    pairs: int = 0
    failures_logged: int = 0
    alerts: list[Alert] = field(default_factory=list)


def apply_projection(
    store: ObservabilityStore,
    projection: RunProjection,
    *,
    asset_classes: Mapping[str, str] | None = None,
    logger: logging.Logger | Any | None = None,
) -> ApplyResult:
    """Write ``projection`` into the four tables; safe to repeat and to race with itself.

    Order matters for crash safety: execution row (``running``), failures, symbol statuses
    (completed ones resolve open failures), freshness, and last the execution row's final status.
    A pair that failed ``failure_alert_threshold`` times in a row is logged at ERROR level as
    ``REPEATED_FEATURE_FAILURE symbol=... timeframe=... consecutive_failures=N ...``.
    """
    logger = logger or log
    result = ApplyResult(projection.run_id, projection.status, pairs=len(projection.pairs))
    if projection.status is None:
        return result
    run_id = canonical_uuid(projection.run_id)
    classes = asset_classes or {}
    store.create_scheduler_execution_log(
        execution_id=run_id,
        started_at=projection.started_at,
        total_symbols=projection.total_symbols,
        status="running",
        job_name=projection.job_name,
        run_trigger=projection.trigger,
        scheduled_for=projection.scheduled_for,
    )
    newly_failed: list[PairProjection] = []
    if projection.finished and projection.log_failures:
        already = store.failed_pairs_of(run_id)
        for pair in projection.pairs:
            if pair.status != "failed" or (pair.symbol, pair.timeframe) in already:
                continue
            store.log_feature_computation_failure(
                symbol=pair.symbol,
                timeframe=pair.timeframe,
                error_message=pair.error or "failed",
                execution_id=run_id,
                failed_at=pair.completed_at or projection.completed_at,
            )
            newly_failed.append(pair)
            result.failures_logged += 1
    store.log_symbol_computation_statuses(
        [
            {
                "execution_id": run_id,
                "symbol": p.symbol,
                "timeframe": p.timeframe,
                "status": p.status,
                "asset_class": classes.get(p.symbol),
                "records_processed": p.records_processed,
                "records_inserted": p.records_inserted,
                Metadata.FEATURES_COMPUTED: p.features_computed,
                "started_at": projection.started_at,
                "completed_at": p.completed_at,
                "error_message": p.error,
            }
            for p in projection.pairs
        ]
    )
    store.update_feature_freshness_many(
        [
            {
                "symbol": p.symbol,
                "timeframe": p.timeframe,
                "last_computed_at": p.completed_at,
                "data_point_count": p.data_point_count,
                Metadata.LAST_BAR_AT: p.last_bar_at,
            }
            for p in projection.pairs
            if p.status == "completed" and p.features_materialized
        ]
    )
    if projection.finished:
        store.update_scheduler_execution_log(
            execution_id=run_id,
            completed_at=projection.completed_at,
            total_symbols=projection.total_symbols,
            successful_symbols=projection.successful_symbols,
            failed_symbols=len(projection.failed_symbols),
            total_records_processed=projection.total_records_processed,
            status=projection.status,
            error_message=projection.error_message,
            duration_seconds=projection.duration_seconds,
        )
    if newly_failed:
        result.alerts = store.alerts_for([(p.symbol, p.timeframe) for p in newly_failed])
        for alert in result.alerts:
            line = format_alert(alert, store.failure_alert_threshold)
            log.error(line)  # the process log (daemon output, CLI), whatever ``logger`` is
            if logger is not log:
                logger.error(line)
    return result







def mirror_run(
    instance: dg.DagsterInstance,
    store: ObservabilityStore,
    run: Any,
    *,
    asset_classes: Mapping[str, str] | None = None,
    partitions_def: dg.PartitionsDefinition | None = None,
    logger: logging.Logger | Any | None = None,
) -> ApplyResult | None:
    """Project one run (record or id) and apply it; ``None`` when the run is not ours."""
    projection = project_run(instance, run, partitions_def=partitions_def)
    if projection is None:
        return None
    return apply_projection(store, projection, asset_classes=asset_classes, logger=logger)


# --------------------------------------------------------------------------------------------
# Reconcile: walk the instance's runs since the watermark
# --------------------------------------------------------------------------------------------








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


def reconcile_instance(
    instance: dg.DagsterInstance,
    store: ObservabilityStore,
    *,
    since: datetime | None = None,
    full: bool = False,
    page_size: int = 500,
    asset_classes: Mapping[str, str] | None = None,
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
    goes on with the other runs. The watermark never moves backwards. Each pass looks
    ``overlap`` before the watermark again (see :data:`WATERMARK_OVERLAP`).
    """
    logger = logger or log
    started = clock()
    summary = ReconcileSummary()
    stored = store.mirror_watermark(name)
    start = since if since is not None else stored
    after = None if start is None else start - overlap
    watermark = stored
    blocked = False  # a run failed to mirror: the watermark stays before it
    seen: set[str] = set()
    while not summary.database_unavailable:
        records = instance.get_run_records(
            filters=dg.RunsFilter(updated_after=after.astimezone(UTC) if after else None),
            order_by="update_timestamp",
            ascending=True,
            limit=page_size,
        )
        fresh = [r for r in records if r.dagster_run.run_id not in seen]
        if not fresh:
            if len(records) == page_size:  # a whole page of equal update times: step over it
                after = records[-1].update_timestamp
                continue
            break
        ids = [r.dagster_run.run_id for r in fresh]
        finished = set() if full else store.finished_executions(ids)
        mirrored = 0
        for record in fresh:
            run = record.dagster_run
            seen.add(run.run_id)
            summary.scanned += 1
            try:
                if run.run_id in finished and run.is_finished:
                    summary.already_mirrored += 1
                else:
                    projection = project_run(instance, record, partitions_def=partitions_def)
                    if projection is None:
                        summary.not_ours += 1
                    elif projection.status is None:
                        summary.not_started += 1
                    else:
                        applied = apply_projection(
                            store, projection, asset_classes=asset_classes, logger=logger
                        )
                        summary.mirrored += 1
                        mirrored += 1
                        summary.failures_logged += applied.failures_logged
            except Exception as exc:  # noqa: BLE001 - one bad run must not stop the pass
                summary.errors += 1
                blocked = True
                message = f"could not mirror run {run.run_id}: {type(exc).__name__}: {exc}"
                summary.error_messages.append(message)
                logger.warning(message)
                if _is_connection_error(exc):
                    summary.database_unavailable = True
                    break
            if not blocked and (watermark is None or record.update_timestamp > watermark):
                watermark = record.update_timestamp
        if summary.database_unavailable:
            break
        if watermark is not None:
            store.advance_mirror_watermark(name, watermark, mirrored)
        after = records[-1].update_timestamp - timedelta(microseconds=1)
    summary.watermark = watermark
    summary.seconds = clock() - started
    return summary


def _is_connection_error(exc: BaseException) -> bool:
    return isinstance(exc, sa.exc.OperationalError | sa.exc.InterfaceError) or (
        type(exc).__name__ == "DatabaseUnavailableError"
    )
