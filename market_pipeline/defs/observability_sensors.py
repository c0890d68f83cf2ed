"""Sensors that mirror every market-data run into the observability tables and keep freshness
current.

Four run-status sensors (started, success, failure, canceled) project a run as soon as Dagster
records the change; they watch every code location and runs started from the command line
(``monitor_all_code_locations``). Dagster may still skip a run (first tick, an error, the daemon
down, a backlog), so ``mirror_reconcile_sensor`` walks the instance's run records every minute and
repairs whatever is missing; both use :mod:`market_pipeline.observability.mirror`, whose
writes are idempotent.
The sensor functions catch every exception and return ``None`` (a return value would make Dagster
process only one run per tick): a database error is logged and left to the reconciler.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import dagster as dg

from market_pipeline.defs.data_lag_check import bars_current_evaluation, changed_statuses
from market_pipeline.defs.resources import DatabaseResource, MarketDataResource
from market_pipeline.domain.lag_rules import count_by_data_status
from market_pipeline.observability.mirror import mirror_run, reconcile_instance


@dataclass(frozen=True)
class SensorIntervals:
    """Seconds between evaluations; the defaults suit production, tests pass shorter ones."""

    run_status: int = 10
    reconcile: int = 60
    freshness: int = 300


def _store(database: DatabaseResource, market_data: MarketDataResource):
    return database.store(market_data.universe())


def _asset_classes(market_data: MarketDataResource) -> dict[str, str]:
    universe = market_data.universe()
    return {symbol: universe.asset_class_of(symbol) for symbol in universe.symbol_names}


def _mirror_from_sensor(
    context: dg.RunStatusSensorContext,
    database: DatabaseResource,
    market_data: MarketDataResource,
) -> None:
    run_id = context.dagster_run.run_id
    try:
        result = mirror_run(
            context.instance,
            _store(database, market_data),
            run_id,
            asset_classes=_asset_classes(market_data),
            logger=context.log,
        )
    except Exception as exc:  # noqa: BLE001 - never lose the tick: the reconciler repairs it
        context.log.warning(
            f"could not mirror run {run_id} now ({type(exc).__name__}: {exc}); "
            "mirror_reconcile_sensor will retry it"
        )
        return
    if result is not None and result.status is not None:
        context.log.info(
            f"mirrored run {run_id} as {result.status}: {result.pairs} pairs, "
            f"{result.failures_logged} failures logged"
        )


_RUN_STATUS_SENSORS = (
    (
        dg.DagsterRunStatus.STARTED,
        "mirror_run_started_sensor",
        "Records a started market-data run as running in scheduler_execution_log.",
    ),
    (
        dg.DagsterRunStatus.SUCCESS,
        "mirror_run_success_sensor",
        "Mirrors a succeeded market-data run into the four observability tables.",
    ),
    (
        dg.DagsterRunStatus.FAILURE,
        "mirror_run_failure_sensor",
        "Mirrors a failed market-data run, with each failed pair's real error, into the "
        "observability tables.",
    ),
    (
        dg.DagsterRunStatus.CANCELED,
        "mirror_run_canceled_sensor",
        "Mirrors a canceled market-data run into the observability tables as failed.",
    ),
)


def _run_status_sensor(
    status: dg.DagsterRunStatus, name: str, description: str, interval: int
) -> dg.RunStatusSensorDefinition:
    def mirror(
        context: dg.RunStatusSensorContext,
        database: DatabaseResource,
        market_data: MarketDataResource,
    ) -> None:
        return _mirror_from_sensor(context, database, market_data)

    return dg.run_status_sensor(
        run_status=status,
        name=name,
        description=description,
        minimum_interval_seconds=interval,
        monitor_all_code_locations=True,
        default_status=dg.DefaultSensorStatus.RUNNING,
    )(mirror)


def _reconcile_sensor(interval: int) -> dg.SensorDefinition:
    @dg.sensor(
        name="mirror_reconcile_sensor",
        description="Repairs the run mirror: projects every Dagster run not yet mirrored in its "
        "final state.",
        minimum_interval_seconds=interval,
        default_status=dg.DefaultSensorStatus.RUNNING,
    )
    def mirror_reconcile_sensor(
        context: dg.SensorEvaluationContext,
        database: DatabaseResource,
        market_data: MarketDataResource,
    ) -> dg.SkipReason:
        """Repairs the run mirror: projects every run not yet mirrored in its final state."""
        try:
            summary = reconcile_instance(
                context.instance,
                _store(database, market_data),
                asset_classes=_asset_classes(market_data),
                logger=context.log,
            )
        except Exception as exc:  # noqa: BLE001 - report on the tick, retry next interval
            context.log.warning(f"reconcile failed: {type(exc).__name__}: {exc}")
            return dg.SkipReason(f"reconcile failed, retrying later: {type(exc).__name__}: {exc}")
        return dg.SkipReason(f"reconciled: {summary}")

    return mirror_reconcile_sensor


def _report_data_status_changes(
    context: dg.SensorEvaluationContext, store, lags: dict | None
) -> str:
    """Re-evaluate bars_current_check between runs: a result for each pair whose data status
    changed since the last one reported (a vendor that stops publishing turns pairs late
    with no run at all). Returns the data statuses counted, for the tick's message."""
    if lags is None:
        return ""
    changed, cursor = changed_statuses(lags, context.cursor)
    for pair, lag in changed:
        context.instance.report_runless_asset_event(
            bars_current_evaluation(pair, lag, store.data_time.tolerance_seconds(pair[1]) or 0)
        )
    context.update_cursor(cursor)
    counts = count_by_data_status(lags.values())
    return (
        f"; data: {counts['current']} current, {counts['late']} late, "
        f"{counts['missing']} missing, {len(changed)} check result(s) reported"
    )


def _freshness_sensor(interval: int) -> dg.SensorDefinition:
    @dg.sensor(
        name="freshness_refresh_sensor",
        description="Recomputes feature_freshness status and staleness so pairs age without runs, "
        "and samples the coverage SLI (data time) between runs.",
        minimum_interval_seconds=interval,
        default_status=dg.DefaultSensorStatus.RUNNING,
    )
    def freshness_refresh_sensor(
        context: dg.SensorEvaluationContext,
        database: DatabaseResource,
        market_data: MarketDataResource,
    ) -> dg.SkipReason:
        """Recomputes feature_freshness status and staleness so pairs age without any run, and
        re-evaluates each pair's data lag into a coverage sample."""
        try:
            store = _store(database, market_data)
            updated = store.refresh_feature_freshness()
            # One read of every pair's newest bar serves the sample and the check results.
            now = datetime.now(UTC)
            lags = store.data_time.lags(now=now)
            store.data_time.record_coverage_sample(
                now=now, retention_days=database.coverage_retention_days, lags=lags
            )
            data_text = _report_data_status_changes(context, store, lags)
            summary = store.get_feature_staleness_report(limit=1).summary
        except Exception as exc:  # noqa: BLE001
            context.log.warning(f"freshness refresh failed: {type(exc).__name__}: {exc}")
            return dg.SkipReason(f"refresh failed, retrying later: {type(exc).__name__}: {exc}")
        return dg.SkipReason(
            f"refreshed {updated} freshness rows: {summary.fresh_count} fresh, "
            f"{summary.aging_count} aging, {summary.stale_count} stale, "
            f"{summary.missing_count} missing of {summary.total_monitored}{data_text}"
        )

    return freshness_refresh_sensor


def build_observability_sensors(
    intervals: SensorIntervals | None = None,
) -> list[dg.SensorDefinition]:
    """The mirror's run-status sensors, the reconcile sensor and the freshness refresh sensor."""
    every = intervals or SensorIntervals()
    return [
        *(_run_status_sensor(*spec, every.run_status) for spec in _RUN_STATUS_SENSORS),
        _reconcile_sensor(every.reconcile),
        _freshness_sensor(every.freshness),
    ]
