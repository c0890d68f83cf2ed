"""Writing one run's projection into the four tables, idempotently and in a crash-safe order."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from market_pipeline.domain.alerts import format_alert
from market_pipeline.domain.identifiers import canonical_uuid
from market_pipeline.domain.reports import Alert
from market_pipeline.observability.mirror.projection import PairProjection, RunProjection
from market_pipeline.observability.store import ObservabilityStore

log = logging.getLogger("market_pipeline.observability.mirror")


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
    asset_classes: Mapping[str, str],
    logger: logging.Logger | Any | None = None,
) -> ApplyResult:
    """Write ``projection`` into the four tables; safe to repeat and to race with itself.

    Order matters for crash safety: execution row (``running``), failures, symbol statuses
    (completed ones resolve open failures), freshness, and last the execution row's final
    status, so a finished row means everything else of the run is written. ``asset_classes``
    (symbol -> class, the universe's) fills ``symbol_computation_status.asset_class``; a symbol
    it lacks (no longer in the universe) is stored with none. A pair that failed
    ``failure_alert_threshold`` times in a row is logged at ERROR level as
    ``REPEATED_FEATURE_FAILURE symbol=... timeframe=... consecutive_failures=N ...``.
    """
    result = ApplyResult(projection.run_id, projection.status, pairs=len(projection.pairs))
    if projection.status is None:
        return result
    run_id = canonical_uuid(projection.run_id)
    store.create_scheduler_execution_log(
        execution_id=run_id,
        started_at=projection.started_at,
        total_symbols=projection.total_symbols,
        status="running",
        job_name=projection.job_name,
        run_trigger=projection.trigger,
        scheduled_for=projection.scheduled_for,
    )
    newly_failed = _log_failures(store, projection, run_id)
    result.failures_logged = len(newly_failed)
    store.log_symbol_computation_statuses(_status_rows(projection, run_id, asset_classes))
    store.update_feature_freshness_many(_freshness_rows(projection))
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
        result.alerts = store.mirror.alerts_for([(p.symbol, p.timeframe) for p in newly_failed])
        _log_alerts(result.alerts, store.failure_alert_threshold, logger)
    return result


def _log_failures(
    store: ObservabilityStore, projection: RunProjection, run_id: str
) -> list[PairProjection]:
    """Log each failed pair's failure once per run (a cancellation is no computation failure),
    all of the run's in one statement."""
    if not (projection.finished and projection.log_failures):
        return []
    already = store.mirror.failed_pairs_of(run_id)
    logged = [
        pair
        for pair in projection.pairs
        if pair.status == "failed" and (pair.symbol, pair.timeframe) not in already
    ]
    store.mirror.log_failures(
        run_id,
        (
            {
                "symbol": pair.symbol,
                "timeframe": pair.timeframe,
                "error_message": pair.error or "failed",
                "failed_at": pair.completed_at or projection.completed_at,
            }
            for pair in logged
        ),
    )
    return logged


def _status_rows(
    projection: RunProjection, run_id: str, asset_classes: Mapping[str, str]
) -> list[dict[str, Any]]:
    return [
        {
            "execution_id": run_id,
            "symbol": p.symbol,
            "timeframe": p.timeframe,
            "status": p.status,
            "asset_class": asset_classes.get(p.symbol),
            "records_processed": p.records_processed,
            "records_inserted": p.records_inserted,
            "features_computed": p.features_computed,
            "started_at": projection.started_at,
            "completed_at": p.completed_at,
            "error_message": p.error,
        }
        for p in projection.pairs
    ]


def _freshness_rows(projection: RunProjection) -> list[dict[str, Any]]:
    return [
        {
            "symbol": p.symbol,
            "timeframe": p.timeframe,
            "last_computed_at": p.completed_at,
            "data_point_count": p.data_point_count,
            "last_bar_at": p.last_bar_at,
        }
        for p in projection.pairs
        if p.status == "completed" and p.features_materialized
    ]


def _log_alerts(alerts: list[Alert], threshold: int, logger: logging.Logger | Any | None) -> None:
    for alert in alerts:
        line = format_alert(alert, threshold)
        log.error(line)  # the process log (daemon output, CLI), whatever ``logger`` is
        if logger is not None and logger is not log:
            logger.error(line)
