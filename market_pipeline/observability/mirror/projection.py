"""The projection rules: one run's facts -> what the four tables record of it. Pure.

Run status -> ``scheduler_execution_log.status``: queued and starting runs are not recorded
yet; started and canceling runs are ``running``; a success is ``completed`` (``failed`` when it
planned pairs and none succeeded); a failure is ``completed`` when the only failures are per-pair
ones and at least one pair succeeded (the spec's 45 ok / 5 failed), else ``failed``; a canceled
run is ``failed`` with "run canceled". Per pair: ``completed`` when every asset the run planned
for it was materialized, ``in_progress`` while the run runs, else ``failed`` with the pair's own
error, or the step's or run's.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from market_pipeline.domain.names import (
    BACKFILL_TAG,
    OHLCV_BARS,
    QUANT_FEATURES,
    SCHEDULE_NAME_TAG,
    SCHEDULED_TIME_TAG,
    SENSOR_NAME_TAG,
    TRIGGER_TAG,
    Metadata,
)
from market_pipeline.domain.partition_keys import key_of, split_key
from market_pipeline.domain.timestamps import parse_utc
from market_pipeline.observability.mirror.facts import Materialized, RunFacts

NOT_STARTED = frozenset({"QUEUED", "NOT_STARTED", "STARTING", "MANAGED"})
RUNNING = frozenset({"STARTED", "CANCELING", "SUSPENDED"})
MAX_LISTED_ERRORS = 20
"""Pair errors listed in an execution's error message; the rest are counted."""


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
        return key_of(self.symbol, self.timeframe)


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
        """A symbol counts as failed when any of its timeframes failed in the run."""
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


def run_trigger(tags: Mapping[str, str]) -> str:
    """How a run was started, from its tags: ``schedule``, ``sensor``, ``backfill`` or ``manual``.

    Our own tag (``market_pipeline/trigger``, set by our schedules and launchers) wins;
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


def _utc(timestamp: float) -> datetime:
    return datetime.fromtimestamp(timestamp, tz=UTC)


def _count(metadata: Mapping[str, Any], name: str) -> int:
    value = metadata.get(name)
    try:
        return max(0, int(value)) if value is not None else 0
    except (TypeError, ValueError):
        return 0


@dataclass(frozen=True)
class _Failures:
    """Why pairs of a finished run failed: their own errors, or the step's or run's."""

    pair_errors: Mapping[str, str]
    run_error: str | None
    at: float | None


def _failures(facts: RunFacts) -> _Failures:
    pair_errors: dict[str, str] = {}
    run_error: str | None = None
    at: float | None = None
    for failure in facts.step_failures:
        at = failure.timestamp if at is None else max(at, failure.timestamp)
        if failure.failed_partitions:
            pair_errors.update(failure.failed_partitions)
        else:
            run_error = run_error or failure.error
    if facts.status == "FAILURE" and not facts.step_failures:
        run_error = (facts.run_failure[1] if facts.run_failure else "") or "run failed"
        at = facts.run_failure[0] if facts.run_failure else facts.ended
    return _Failures(pair_errors, run_error, at)


def project(facts: RunFacts) -> RunProjection:
    """The projection of one run's facts."""
    started_at = _utc(facts.started)
    completed_at = None if facts.ended is None else max(started_at, _utc(facts.ended))
    finished = facts.status not in NOT_STARTED | RUNNING
    failures = _failures(facts)
    all_keys: set[str] = set().union(*facts.planned.values()) if facts.planned else set()
    pairs = tuple(
        pair
        for key in sorted(all_keys)
        if (pair := _pair(facts, key, started_at, completed_at, finished, failures)) is not None
    )
    status, error_message = _run_status(facts, pairs, failures)
    return RunProjection(
        run_id=facts.run_id,
        job_name=facts.job_name,
        dagster_status=facts.status,
        status=status,
        started_at=started_at,
        completed_at=completed_at if finished else None,
        update_timestamp=facts.update_timestamp,
        trigger=run_trigger(facts.tags),
        scheduled_for=parse_utc(facts.tags.get(SCHEDULED_TIME_TAG)),
        pairs=pairs,
        error_message=error_message,
        log_failures=facts.status != "CANCELED",
    )


def _pair(
    facts: RunFacts,
    key: str,
    started_at: datetime,
    completed_at: datetime | None,
    finished: bool,
    failures: _Failures,
) -> PairProjection | None:
    """What one planned partition did; ``None`` for a key that is not a pair."""
    pair = split_key(key)
    if pair is None:
        return None
    wanted = [name for name, keys in facts.planned.items() if key in keys]
    got: dict[str, Materialized] = {
        name: facts.done[name][key] for name in wanted if key in facts.done.get(name, {})
    }
    bars = got[OHLCV_BARS].metadata if OHLCV_BARS in got else {}
    features = got.get(QUANT_FEATURES)
    feature_meta = features.metadata if features else {}
    counts: dict[str, Any] = {
        "records_processed": _count(bars, Metadata.ROWS_FETCHED),
        "records_inserted": _count(bars, Metadata.ROWS_INSERTED),
        "features_computed": _count(feature_meta, Metadata.FEATURES_COMPUTED),
        "data_point_count": _count(feature_meta or bars, Metadata.BARS_STORED),
    }
    if len(got) == len(wanted):
        at = max(done.timestamp for done in got.values())
        return PairProjection(
            *pair,
            status="completed",
            completed_at=max(started_at, _utc(at)),
            last_bar_at=parse_utc((feature_meta or bars).get(Metadata.LAST_BAR_AT)),
            features_materialized=features is not None,
            **counts,
        )
    if not finished:
        return PairProjection(*pair, status="in_progress")
    if facts.status == "CANCELED":
        error = "the run was canceled before this pair completed"
        failed_at = facts.canceled_at or facts.ended
    else:
        error = (
            failures.pair_errors.get(key)
            or failures.run_error
            or ("the run ended without materializing this pair")
        )
        failed_at = failures.at or facts.ended
    return PairProjection(
        *pair,
        status="failed",
        completed_at=max(started_at, _utc(failed_at)) if failed_at else completed_at,
        error=error,
        **counts,
    )


def _run_status(
    facts: RunFacts, pairs: tuple[PairProjection, ...], failures: _Failures
) -> tuple[str | None, str | None]:
    """The execution status and error message (see the module docstring)."""
    ok = sum(1 for p in pairs if p.status == "completed")
    failed = [p for p in pairs if p.status == "failed"]
    if facts.status in NOT_STARTED:
        return None, None
    if facts.status in RUNNING:
        return "running", None
    if facts.status == "CANCELED":
        return "failed", f"run canceled; {ok} of {len(pairs)} pairs completed before"
    if facts.status == "SUCCESS" and not failed:
        return ("completed" if ok or not pairs else "failed"), None
    whole_run_failed = failures.run_error is not None
    status = "completed" if ok and not whole_run_failed else "failed"
    message = f"run failed: {failures.run_error}" if whole_run_failed else None
    if failed:
        listed = "; ".join(f"{p.key}: {p.error}" for p in failed[:MAX_LISTED_ERRORS])
        more = len(failed) - MAX_LISTED_ERRORS
        summary = f"{len(failed)} of {len(pairs)} pairs failed: {listed}" + (
            f"; and {more} more" if more > 0 else ""
        )
        message = summary if message is None else f"{message}. {summary}"
    elif message is None:
        message = "run failed"
    return status, message
