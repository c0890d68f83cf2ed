"""The metric families of one scrape, built from what was read: names by Prometheus conventions
(base units, ``_seconds``, ``_timestamp_seconds``, ``_total`` on counters only), each with HELP.

Pair-level families carry ``provider`` (the universe's provider kind) so Alertmanager can group
one provider outage into one notification. Per-pair series (``symbol`` label) are only built when
``MetricsConfig.per_pair`` is on; the aggregates are always there.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from market_pipeline.domain.freshness import DEGRADATION_REASONS, FRESHNESS_STATUSES
from market_pipeline.domain.freshness import degradation_reasons as degradation_codes
from market_pipeline.observability.metrics.dagster_watch import DagsterState
from market_pipeline.observability.store.metrics_reads import MetricsReading

PREFIX = "market_pipeline_"
EXECUTION_STATUSES = ("running", "completed", "failed")
FINISHED_EXECUTION_STATUSES = ("completed", "failed")
UNKNOWN_ASSET_CLASS = "unknown"
_NEVER = float("inf")


@dataclass(frozen=True)
class MetricsConfig:
    provider: str
    asset_classes: Mapping[str, str]  # symbol -> asset class
    timeframes: tuple[str, ...]
    expected_interval_seconds: int
    failure_alert_threshold: int
    per_pair: bool
    coverage_objective: float = 0.99


def _gauge(name: str, documentation: str, labels: tuple[str, ...] = ()) -> GaugeMetricFamily:
    return GaugeMetricFamily(PREFIX + name, documentation, labels=list(labels))


def _ts(value: datetime) -> float:
    return value.timestamp()


def database_family(up: bool) -> Metric:
    family = _gauge("database_up", "1 when our tables could be read for this scrape, else 0.")
    family.add_metric([], 1.0 if up else 0.0)
    return family


def scheduler_families(
    reading: MetricsReading, config: MetricsConfig, late_count: int = 0
) -> Iterator[Metric]:
    counts = Counter(status for _, _, status, _ in reading.pairs)
    last = reading.last_execution
    codes = set(
        degradation_codes(
            last_execution_status=None if last is None else last.status,
            stale_count=counts["stale"],
            missing_count=counts["missing"],
            open_failures_count=reading.open_failures,
            late_count=late_count,
        )
    )
    healthy = _gauge("scheduler_healthy", "1 when the scheduler health is healthy, 0 degraded.")
    healthy.add_metric([], 0.0 if codes else 1.0)
    yield healthy
    reason = _gauge(
        "scheduler_degraded_reason", "1 for each condition that degrades health.", ("reason",)
    )
    for code in DEGRADATION_REASONS:
        reason.add_metric([code], 1.0 if code in codes else 0.0)
    yield reason
    yield from _last_execution_families(reading)
    interval = _gauge(
        "expected_execution_interval_seconds",
        "Seconds between two scheduled executions of this universe.",
    )
    interval.add_metric([], float(config.expected_interval_seconds))
    yield interval
    executions = CounterMetricFamily(
        PREFIX + "executions", "Finished scheduler executions, by status.", labels=["status"]
    )
    for status in FINISHED_EXECUTION_STATUSES:
        executions.add_metric([status], float(reading.executions_by_status.get(status, 0)))
    yield executions
    running = _gauge("executions_running", "Scheduler executions recorded as running.")
    running.add_metric([], float(reading.executions_by_status.get("running", 0)))
    yield running


def _last_execution_families(reading: MetricsReading) -> Iterator[Metric]:
    last = reading.last_execution
    status = _gauge(
        "last_execution_status", "1 for the status of the newest execution.", ("status",)
    )
    symbols = _gauge(
        "last_execution_symbols", "Symbols of the newest execution, by outcome.", ("outcome",)
    )
    start = _gauge("last_execution_start_timestamp_seconds", "When the newest execution started.")
    end = _gauge("last_execution_end_timestamp_seconds", "When the newest execution ended.")
    duration = _gauge("last_execution_duration_seconds", "How long the newest execution took.")
    success = _gauge(
        "last_successful_execution_end_timestamp_seconds",
        "When the newest completed execution ended.",
    )
    if last is not None:
        for name in EXECUTION_STATUSES:
            status.add_metric([name], 1.0 if last.status == name else 0.0)
        symbols.add_metric(["successful"], float(last.successful_symbols))
        symbols.add_metric(["failed"], float(last.failed_symbols))
        start.add_metric([], _ts(last.started_at))
        if last.completed_at is not None:
            end.add_metric([], _ts(last.completed_at))
        if last.duration_seconds is not None:
            duration.add_metric([], float(last.duration_seconds))
    if reading.last_success_completed_at is not None:
        success.add_metric([], _ts(reading.last_success_completed_at))
    yield from (status, symbols, start, end, duration, success)


def freshness_families(reading: MetricsReading, config: MetricsConfig) -> Iterator[Metric]:
    classes = config.asset_classes
    labels = ("status", "timeframe", "asset_class", "provider")
    pairs = _gauge("pairs", "Monitored pairs by freshness status.", labels)
    # Every status of every (timeframe, asset class) is present, so a zero is not an absence.
    cells = {(tf, ac) for tf in config.timeframes for ac in set(classes.values())}
    counts = Counter(
        (status, timeframe, classes.get(symbol, UNKNOWN_ASSET_CLASS))
        for symbol, timeframe, status, _ in reading.pairs
    )
    cells.update((timeframe, asset_class) for _, timeframe, asset_class in counts)
    oldest: dict[str, float] = {}
    for _, timeframe, _, last in reading.pairs:
        if last is not None and last < oldest.get(timeframe, _NEVER):
            oldest[timeframe] = last
    for timeframe, asset_class in sorted(cells):
        for status in FRESHNESS_STATUSES:
            value = float(counts[(status, timeframe, asset_class)])
            pairs.add_metric([status, timeframe, asset_class, config.provider], value)
    yield pairs
    monitored = _gauge("monitored_pairs", "Pairs the pipeline is expected to keep fresh.")
    monitored.add_metric([], float(len(reading.pairs)))
    yield monitored
    staleness = _gauge(
        "oldest_staleness_seconds",
        "Staleness of the least recently computed pair, per timeframe.",
        ("timeframe",),
    )
    at = reading.at.timestamp()
    for timeframe in sorted(oldest):
        staleness.add_metric([timeframe], max(0.0, at - oldest[timeframe]))
    yield staleness


def failure_families(reading: MetricsReading, config: MetricsConfig) -> Iterator[Metric]:
    for name, documentation, value in (
        ("open_failures", "Unresolved feature computation failures.", reading.open_failures),
        (
            "max_consecutive_failures",
            "Highest consecutive-failure count of an open failure.",
            reading.max_consecutive_failures,
        ),
        (
            "failure_alerts",
            "Open failures at or over the alert threshold.",
            reading.failure_alerts,
        ),
        (
            "failure_alert_threshold",
            "Consecutive failures of one pair that raise an alert.",
            config.failure_alert_threshold,
        ),
    ):
        family = _gauge(name, documentation)
        family.add_metric([], float(value))
        yield family


def pair_families(reading: MetricsReading, config: MetricsConfig) -> Iterator[Metric]:
    enabled = _gauge(
        "metrics_per_pair_enabled", "1 when per-pair series (symbol label) are exported."
    )
    enabled.add_metric([], 1.0 if config.per_pair else 0.0)
    yield enabled
    if not config.per_pair:
        return
    monitored = {(symbol, timeframe) for symbol, timeframe, _, _ in reading.pairs}
    # The one family with a series per pair carries only the pair: two more labels would double
    # its formatting cost, and the `pairs` aggregate already counts by asset class and provider.
    staleness = _gauge(
        "pair_staleness_seconds",
        "Seconds since the pair's features were computed.",
        ("symbol", "timeframe"),
    )
    failures = _gauge(
        "pair_consecutive_failures",
        "Consecutive failures of a pair with an open failure (absent: none open).",
        ("symbol", "timeframe", "asset_class", "provider"),
    )
    at = reading.at.timestamp()
    for symbol, timeframe, _, last in reading.pairs:
        if last is not None:
            staleness.add_metric([symbol, timeframe], max(0.0, at - last))
    classes, provider = config.asset_classes, config.provider
    for (symbol, timeframe), count in sorted(reading.consecutive_failures.items()):
        if (symbol, timeframe) in monitored:
            labels = [symbol, timeframe, classes.get(symbol, UNKNOWN_ASSET_CLASS), provider]
            failures.add_metric(labels, float(count))
    yield staleness
    yield failures


def dagster_families(state: DagsterState, now: datetime) -> Iterator[Metric]:
    up = _gauge(
        "dagster_instance_up",
        "1 when the Dagster instance was read successfully within the last few seconds.",
    )
    up.add_metric([], 1.0 if state.up else 0.0)
    yield up
    reading = state.reading
    age = _gauge(
        "dagster_state_age_seconds", "Seconds since Dagster's state reported here was read."
    )
    if reading is not None:
        age.add_metric([], max(0.0, (now - reading.read_at).total_seconds()))
    yield age
    if reading is None or not state.up:
        return
    at = now.timestamp()
    heartbeat = _gauge(
        "dagster_daemon_heartbeat_age_seconds",
        "Seconds since each Dagster daemon's newest heartbeat.",
        ("daemon_type",),
    )
    for daemon in sorted(reading.heartbeats):
        heartbeat.add_metric([daemon], max(0.0, at - reading.heartbeats[daemon]))
    yield heartbeat
    for name, documentation, value in (
        ("dagster_runs_queued", "Dagster runs waiting in the run queue.", reading.queued),
        (
            "dagster_runs_in_progress",
            "Dagster runs starting, started or canceling.",
            reading.in_progress,
        ),
    ):
        family = _gauge(name, documentation)
        family.add_metric([], float(value))
        yield family
    oldest = _gauge(
        "dagster_oldest_queued_run_age_seconds", "Seconds the oldest queued run has waited."
    )
    if reading.oldest_queued_at is not None:
        oldest.add_metric([], max(0.0, at - reading.oldest_queued_at))
    yield oldest


def mirror_families(lag_seconds: float | None, watermark: datetime | None) -> Iterator[Metric]:
    lag = _gauge(
        "mirror_lag_seconds",
        "How far the newest mirrored run is behind the newest finished run (0: caught up).",
    )
    if lag_seconds is not None:
        lag.add_metric([], lag_seconds)
    yield lag
    mark = _gauge(
        "mirror_watermark_timestamp_seconds",
        "Run update time up to which the reconciler mirrored every run.",
    )
    if watermark is not None:
        mark.add_metric([], _ts(watermark))
    yield mark
