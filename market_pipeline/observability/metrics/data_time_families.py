"""The data-time metric families: the coverage SLI, its burn rates and error budget, and the
newest coverage sample's pairs by data status (the freshness sensor takes a sample every few
minutes; ``coverage_sample_timestamp_seconds`` says when).

They come from ``data_coverage_samples``, a few rows per scrape, not from every pair's bars: a
scrape stays as cheap as before. Per-pair data lag is in the staleness report and the dashboard.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import GaugeMetricFamily, Metric

from market_pipeline.domain.coverage import CoverageReport

PREFIX = "market_pipeline_"


def _gauge(name: str, documentation: str, labels: tuple[str, ...] = ()) -> GaugeMetricFamily:
    return GaugeMetricFamily(PREFIX + name, documentation, labels=list(labels))


def late_beyond_tolerance(report: CoverageReport | None) -> int:
    """Pairs late beyond tolerance in the newest sample (0 without one)."""
    return 0 if report is None else sum(g.late_beyond_tolerance_count for g in report.latest)


def data_time_families(report: CoverageReport, provider: str) -> Iterator[Metric]:
    objective = _gauge("coverage_objective", "The coverage SLO: share of pairs current.")
    objective.add_metric([], report.objective)
    yield objective
    sli = _gauge(
        "coverage_sli",
        "Share of monitored pairs whose newest due bar was stored, over the window's samples.",
        ("window",),
    )
    burn = _gauge(
        "coverage_burn_rate",
        "Bad share of the window over the bad share the objective allows (1 spends the budget "
        "exactly over 30 days).",
        ("window",),
    )
    for window in report.windows:
        if window.sli is not None:
            sli.add_metric([window.window], window.sli)
        if window.burn_rate is not None:
            burn.add_metric([window.window], window.burn_rate)
    yield sli
    yield burn
    if report.error_budget_remaining is not None:
        budget = _gauge(
            "coverage_error_budget_remaining",
            "Share of the 30-day error budget left (1 untouched, 0 spent, below 0 overspent).",
        )
        budget.add_metric([], report.error_budget_remaining)
        yield budget
    if report.latest_sampled_at is None:
        return
    sampled = _gauge(
        "coverage_sample_timestamp_seconds", "When the newest coverage sample was taken."
    )
    sampled.add_metric([], report.latest_sampled_at.timestamp())
    yield sampled
    labels = ("provider", "timeframe", "asset_class", "data_status")
    pairs = _gauge(
        "pairs_by_data_status",
        "Monitored pairs per data status in the newest sample (current: the newest due bar "
        "is stored).",
        labels,
    )
    beyond = _gauge(
        "pairs_late_beyond_tolerance",
        "Late pairs whose data lag exceeds their timeframe's tolerance, in the newest sample.",
        ("provider", "timeframe", "asset_class"),
    )
    for group in report.latest:
        where = [provider, group.timeframe, group.asset_class]
        other = group.monitored_count - group.current_count - group.late_count
        for status, count in (
            ("current", group.current_count),
            ("late", group.late_count),
            ("missing", other),
        ):
            pairs.add_metric([*where, status], float(count))
        beyond.add_metric(where, float(group.late_beyond_tolerance_count))
    yield pairs
    yield beyond
