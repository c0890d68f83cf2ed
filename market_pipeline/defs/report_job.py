"""The scheduler health report as a Dagster job: readable Markdown in the UI, reasons in the log."""

import dagster as dg

from market_pipeline.defs.resources import DatabaseResource, MarketDataResource
from market_pipeline.domain.alerts import format_alert
from market_pipeline.domain.names import HEALTH_TAG, REPORT_JOB, TRIGGER_TAG
from market_pipeline.domain.report_text import render_markdown
from market_pipeline.domain.reports import SchedulerReport
from market_pipeline.observability.report import build_report

# No `from __future__ import annotations`: Dagster checks the op's context annotation at
# definition time and rejects it as a string.


def _log_findings(context: dg.OpExecutionContext, report: SchedulerReport, threshold: int) -> None:
    """What a degraded scheduler shows in the run log: reasons, unfresh pairs, failures, alerts."""
    health = report.health
    if health.status == "degraded":
        for reason in health.reasons:
            context.log.warning(f"scheduler degraded: {reason}")
        by_status = report.staleness.by_status
        for item in by_status.missing + by_status.stale:
            context.log.warning(
                f"{item.status} pair {item.symbol}/{item.timeframe} "
                f"(last computed {item.last_computed_at or 'never'})"
            )
        for failure in health.recent_failures:
            context.log.warning(
                f"open failure {failure.symbol}/{failure.timeframe}: {failure.error}"
            )
    for alert in health.alerts:
        context.log.error(format_alert(alert, threshold))


def _metadata(report: SchedulerReport) -> dict:
    health = report.health
    summary = health.freshness_summary
    last = health.last_execution
    return {
        "report": dg.MetadataValue.md(render_markdown(report)),
        "status": dg.MetadataValue.text(health.status),
        "reasons": dg.MetadataValue.text("; ".join(health.reasons) or "none"),
        "fresh": dg.MetadataValue.int(summary.fresh_count),
        "aging": dg.MetadataValue.int(summary.aging_count),
        "stale": dg.MetadataValue.int(summary.stale_count),
        "missing": dg.MetadataValue.int(summary.missing_count),
        "open_failures": dg.MetadataValue.int(health.open_failures_count),
        "alerts": dg.MetadataValue.int(len(health.alerts)),
        "last_execution": dg.MetadataValue.text(
            f"{last.execution_id} {last.status}" if last else "- -"
        ),
    }


@dg.op(name="scheduler_health_report")
def scheduler_health_report(
    context: dg.OpExecutionContext,
    database: DatabaseResource,
    market_data: MarketDataResource,
) -> dg.Output[str]:
    """Builds the health, staleness and history report and shows it as Markdown."""
    store = database.store(market_data.universe())
    report = build_report(
        store,
        staleness_limit=20,
        history_limit=10,
        coverage_objective=database.coverage_objective,
    )
    _log_findings(context, report, store.failure_alert_threshold)
    context.instance.add_run_tags(context.run_id, {HEALTH_TAG: report.health.status})
    return dg.Output(report.health.status, metadata=_metadata(report))


@dg.job(name=REPORT_JOB, tags={TRIGGER_TAG: "report"})
def scheduler_health_report_job() -> None:
    """Reports scheduler health, feature staleness and recent executions (Markdown in the UI)."""
    scheduler_health_report()
