"""The scheduler report: health, staleness and history read from the store at one moment."""

from __future__ import annotations

from typing import TYPE_CHECKING

from market_pipeline.domain.reports import SchedulerReport

if TYPE_CHECKING:
    from market_pipeline.observability.store import ObservabilityStore


def build_report(
    store: ObservabilityStore,
    *,
    staleness_limit: int = 20,
    history_limit: int = 10,
    coverage_objective: float = 0.99,
) -> SchedulerReport:
    """Health, staleness, history and (when the store knows calendars) the coverage SLI from
    ``store``, read one after the other."""
    return SchedulerReport(
        health=store.get_scheduler_health(),
        staleness=store.get_feature_staleness_report(limit=staleness_limit),
        history=store.get_execution_history(limit=history_limit),
        coverage=None
        if store.data_lag_rules is None
        else store.data_time.coverage_report(objective=coverage_objective),
    )
