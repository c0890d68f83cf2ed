"""Feature freshness and scheduler health rules (PHASE_1_OBSERVABILITY.md, "Data Freshness Status
Logic"). Pure Python: no database, no Dagster, no clock of its own - callers pass ``now``.

Freshness of one (symbol, timeframe) pair, with ``staleness = now - last_computed_at``:

- ``missing``: never computed (``last_computed_at is None``) or ``data_point_count == 0``;
- ``fresh``:   staleness < 3600 s (``FRESH_SECONDS``);
- ``aging``:   3600 s <= staleness < 86400 s (``STALE_SECONDS``);
- ``stale``:   staleness >= 86400 s.

A ``last_computed_at`` in the future (clock skew between hosts) has staleness 0, so it is fresh.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from market_pipeline.domain.timestamps import ensure_utc

FRESH_SECONDS = 3600
STALE_SECONDS = 86400

FRESHNESS_STATUSES = ("fresh", "aging", "stale", "missing")
HEALTH_STATUSES = ("healthy", "degraded")

NO_EXECUTION_REASON = "no execution recorded yet"


def staleness_seconds(last_computed_at: datetime | None, now: datetime) -> float | None:
    """Seconds elapsed from ``last_computed_at`` to ``now`` (microsecond precision).

    ``None`` when the pair was never computed; 0.0 when ``last_computed_at`` lies after ``now``.
    Both datetimes must be timezone-aware (``NaiveDatetimeError`` otherwise).
    """
    now_utc = ensure_utc(now, name="now")
    if last_computed_at is None:
        return None
    elapsed = now_utc - ensure_utc(last_computed_at, name="last_computed_at")
    return max(elapsed, timedelta(0)).total_seconds()


def freshness_status(
    last_computed_at: datetime | None, data_point_count: int, now: datetime
) -> str:
    """The freshness status of one pair: ``fresh``, ``aging``, ``stale`` or ``missing``."""
    if isinstance(data_point_count, bool) or not isinstance(data_point_count, int):
        raise TypeError(f"data_point_count must be an int, got {type(data_point_count).__name__}")
    if data_point_count < 0:
        raise ValueError(f"data_point_count must be >= 0, got {data_point_count}")
    return status_for(staleness_seconds(last_computed_at, now), data_point_count)


def status_for(seconds: float | None, data_point_count: int) -> str:
    """The status of a pair from checked values: its staleness (``None`` when never computed)
    and its data point count. The rule itself, for callers that have both at hand."""
    if seconds is None or data_point_count == 0:
        return "missing"
    return status_for_staleness(seconds)


def status_for_staleness(seconds: float) -> str:
    """``fresh``/``aging``/``stale`` for a staleness in seconds (the thresholds, nothing else)."""
    if seconds < FRESH_SECONDS:
        return "fresh"
    if seconds < STALE_SECONDS:
        return "aging"
    return "stale"


def freshness_cutoffs(now: datetime) -> tuple[datetime, datetime]:
    """``(fresh_after, stale_at_or_before)`` instants for ``now``, for queries done in SQL.

    A pair with data is fresh when ``last_computed_at > fresh_after``, stale when
    ``last_computed_at <= stale_at_or_before``, aging in between - the same rule as
    :func:`freshness_status`, expressed as timestamp comparisons that are exact on every backend.
    """
    now_utc = ensure_utc(now, name="now")
    return (
        now_utc - timedelta(seconds=FRESH_SECONDS),
        now_utc - timedelta(seconds=STALE_SECONDS),
    )


DEGRADATION_REASONS = (
    "no_execution",
    "last_execution_failed",
    "stale_pairs",
    "missing_pairs",
    "open_failures",
    "late_pairs",
)
"""Codes of the conditions that degrade health, in the order their reasons are listed (bounded,
so they can label a metric)."""


def degradation_reasons(
    *,
    last_execution_status: str | None,
    stale_count: int,
    missing_count: int,
    open_failures_count: int,
    late_count: int = 0,
) -> list[str]:
    """The codes (:data:`DEGRADATION_REASONS`) of the conditions that hold; empty when healthy.

    - ``no_execution``: no execution was ever recorded (``last_execution_status is None``): a
      scheduler that never ran is not known to work;
    - ``last_execution_failed``: the most recent execution failed;
    - ``stale_pairs`` / ``missing_pairs``: a monitored pair is stale or missing (aging pairs do
      not degrade health);
    - ``open_failures``: a feature computation failure is still unresolved;
    - ``late_pairs``: a pair's stored bars are behind the bars due by more than its timeframe's
      tolerance (data time, :mod:`market_pipeline.domain.lag_rules`).

    A most recent execution that is still ``running`` is not by itself a degradation: a stuck run
    shows up through the pairs it leaves stale.
    """
    for name, value in (
        ("stale_count", stale_count),
        ("missing_count", missing_count),
        ("open_failures_count", open_failures_count),
        ("late_count", late_count),
    ):
        if value < 0:
            raise ValueError(f"{name} must be >= 0, got {value}")
    held = {
        "no_execution": last_execution_status is None,
        "last_execution_failed": last_execution_status == "failed",
        "stale_pairs": stale_count > 0,
        "missing_pairs": missing_count > 0,
        "open_failures": open_failures_count > 0,
        "late_pairs": late_count > 0,
    }
    return [code for code in DEGRADATION_REASONS if held[code]]


def health_status(
    *,
    last_execution_status: str | None,
    stale_count: int,
    missing_count: int,
    open_failures_count: int,
    late_pairs: Sequence[str] = (),
) -> tuple[str, list[str]]:
    """The scheduler health (``healthy`` or ``degraded``) and the reasons for a degradation, in
    words: one per code of :func:`degradation_reasons`, in that order. ``late_pairs`` names the
    pairs late beyond tolerance, most lagging first; the reason names the first five."""
    codes = degradation_reasons(
        last_execution_status=last_execution_status,
        stale_count=stale_count,
        missing_count=missing_count,
        open_failures_count=open_failures_count,
        late_count=len(late_pairs),
    )
    noun = "failure" if open_failures_count == 1 else "failures"
    words = {
        "no_execution": NO_EXECUTION_REASON,
        "last_execution_failed": "last execution failed",
        "stale_pairs": f"{stale_count} {_pairs(stale_count)} stale (not computed for >= 24 h)",
        "missing_pairs": f"{missing_count} {_pairs(missing_count)} missing (never computed)",
        "open_failures": f"{open_failures_count} unresolved feature computation {noun}",
        "late_pairs": _late_reason(late_pairs),
    }
    return ("degraded" if codes else "healthy"), [words[code] for code in codes]


def _late_reason(late_pairs: Sequence[str]) -> str:
    count = len(late_pairs)
    named = ", ".join(late_pairs[:5]) + (f" and {count - 5} more" if count > 5 else "")
    verb = "is" if count == 1 else "are"
    return f"{count} {'pair' if count == 1 else 'pairs'} {verb} late beyond tolerance: {named}"


def _pairs(count: int) -> str:
    return "feature pair is" if count == 1 else "feature pairs are"


def count_by_status(statuses: Sequence[str]) -> dict[str, int]:
    """Counts of each freshness status (every status present, zero when absent)."""
    counts = dict.fromkeys(FRESHNESS_STATUSES, 0)
    for status in statuses:
        if status not in counts:
            raise ValueError(f"unknown freshness status {status!r}")
        counts[status] += 1
    return counts
