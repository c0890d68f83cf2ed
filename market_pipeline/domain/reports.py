"""The typed contract of the observability reads: health, staleness report, execution history.

The store returns these models, the admin API, the CLI report and the Dagster report job render
them, and the OpenAPI document is generated from them, so the shapes cannot drift apart. Field
names and order are the spec's (PHASE_1_OBSERVABILITY.md), plus the documented additions.

In Python the models carry aware UTC datetimes and ``staleness_seconds`` at microsecond
precision. Their JSON form is the spec's: timestamps ``YYYY-MM-DDTHH:MM:SSZ`` (sub-second digits
dropped) and ``staleness_seconds`` in whole seconds, floored, as in the spec's example.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeFloat,
    NonNegativeInt,
    PlainSerializer,
    WithJsonSchema,
)

from market_pipeline.domain.timestamps import ensure_utc, format_utc

MAX_LIMIT = 1000
"""Largest ``limit`` any read accepts (per status list on the staleness report)."""

HealthStatus = Literal["healthy", "degraded"]
FreshnessStatus = Literal["fresh", "aging", "stale", "missing"]
ExecutionStatus = Literal["running", "completed", "failed"]
DataStatus = Literal["current", "late", "missing"]

TIMESTAMP_SCHEMA: dict[str, Any] = {
    "type": "string",
    "format": "date-time",
    "pattern": r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$",
    "description": "ISO 8601 UTC, seconds precision, ending in Z",
}


def _aware_utc(value: datetime) -> datetime:
    return ensure_utc(value)


UtcTimestamp = Annotated[
    datetime,
    AfterValidator(_aware_utc),
    PlainSerializer(format_utc, return_type=str, when_used="json"),
    WithJsonSchema(TIMESTAMP_SCHEMA),
]
"""An aware datetime, kept in UTC (naive ones are refused); JSON ``YYYY-MM-DDTHH:MM:SSZ``."""


def _whole_seconds(value: float) -> int:
    return math.floor(value)


StalenessSeconds = Annotated[
    NonNegativeFloat,
    PlainSerializer(_whole_seconds, return_type=int, when_used="json"),
    WithJsonSchema(
        {
            "type": "integer",
            "minimum": 0,
            "description": "whole seconds since last_computed_at (floored)",
        }
    ),
]

LagSeconds = Annotated[
    NonNegativeFloat,
    PlainSerializer(_whole_seconds, return_type=int, when_used="json"),
    WithJsonSchema(
        {
            "type": "integer",
            "minimum": 0,
            "description": "whole seconds the oldest missing due bar has been due (floored)",
        }
    ),
]

ExecutionId = Annotated[str, WithJsonSchema({"type": "string", "format": "uuid"})]


class Contract(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FreshnessSummary(Contract):
    """Counts of monitored (symbol, timeframe) pairs per freshness status."""

    fresh_count: NonNegativeInt
    aging_count: NonNegativeInt
    stale_count: NonNegativeInt
    missing_count: NonNegativeInt
    total_monitored: NonNegativeInt


class LastExecution(Contract):
    """The execution that started most recently."""

    execution_id: ExecutionId
    started_at: UtcTimestamp
    completed_at: UtcTimestamp | None
    status: ExecutionStatus
    successful_symbols: NonNegativeInt
    failed_symbols: NonNegativeInt
    total_symbols: NonNegativeInt
    error_message: str | None


class RecentFailure(Contract):
    """An unresolved feature computation failure."""

    symbol: str
    timeframe: str
    error: str
    failed_at: UtcTimestamp
    retry_count: NonNegativeInt
    execution_id: str | None


class Alert(Contract):
    """A pair that failed at least the alert threshold of times in a row."""

    symbol: str
    timeframe: str
    consecutive_failures: Annotated[int, Field(ge=1)]
    error: str
    failed_at: UtcTimestamp


class DataStatusSummary(Contract):
    """Counts of monitored pairs per data status (data time: is the newest due bar stored?).
    ``unknown``: no calendar known for the pair, or an instant outside its calendar."""

    current_count: NonNegativeInt
    late_count: NonNegativeInt
    missing_count: NonNegativeInt
    unknown_count: NonNegativeInt
    late_beyond_tolerance_count: NonNegativeInt


class LatePair(Contract):
    """A pair whose data lag exceeds its timeframe's tolerance."""

    symbol: str
    timeframe: str
    last_bar_at: UtcTimestamp
    expected_last_bar_at: UtcTimestamp
    bars_behind: NonNegativeInt
    data_lag_seconds: LagSeconds
    tolerance_seconds: NonNegativeInt


class SchedulerHealth(Contract):
    """The spec's health body; reasons, missing_features_count, open_failures_count,
    freshness_summary, alerts, data_summary and late_pairs are additions (the data-time ones
    null or empty when the store knows no calendars)."""

    status: HealthStatus
    timestamp: UtcTimestamp
    last_execution: LastExecution | None
    stale_features_count: Annotated[
        NonNegativeInt, Field(description="monitored pairs that are stale or missing")
    ]
    recent_failures: list[RecentFailure]
    total_symbols_monitored: NonNegativeInt
    reasons: list[str]
    missing_features_count: NonNegativeInt
    open_failures_count: NonNegativeInt
    freshness_summary: FreshnessSummary
    alerts: list[Alert]
    data_summary: DataStatusSummary | None = None
    late_pairs: Annotated[list[LatePair], Field(max_length=MAX_LIMIT)] = []


class FreshnessItem(Contract):
    """One monitored pair: how fresh its features are (the spec's run-time fields), and how far
    its stored bars are behind the bars due (data time; null when no calendar is known)."""

    symbol: str
    timeframe: str
    last_computed_at: UtcTimestamp | None
    staleness_seconds: StalenessSeconds | None
    status: FreshnessStatus
    data_point_count: NonNegativeInt
    last_bar_at: UtcTimestamp | None = None
    expected_last_bar_at: UtcTimestamp | None = None
    bars_behind: NonNegativeInt | None = None
    data_lag_seconds: LagSeconds | None = None
    data_status: DataStatus | None = None


_Listed = Annotated[list[FreshnessItem], Field(max_length=MAX_LIMIT)]


class PairsByStatus(Contract):
    """Pairs per status, most stale first, at most `limit` per list."""

    fresh: _Listed
    aging: _Listed
    stale: _Listed
    missing: _Listed


class StalenessReport(Contract):
    """The spec's feature freshness report: summary and pairs by status."""

    timestamp: UtcTimestamp
    summary: FreshnessSummary
    by_status: PairsByStatus


class Execution(Contract):
    """One scheduler execution (a Dagster run of the market-data assets)."""

    execution_id: ExecutionId
    started_at: UtcTimestamp
    completed_at: UtcTimestamp | None
    duration_seconds: NonNegativeFloat | None
    total_symbols: NonNegativeInt
    successful_symbols: NonNegativeInt
    failed_symbols: NonNegativeInt
    total_records_processed: NonNegativeInt
    status: ExecutionStatus
    error_message: str | None
    success_rate: Annotated[
        NonNegativeFloat | None,
        Field(description="percent of symbols that succeeded; null when total is 0"),
    ]


class ExecutionHistory(Contract):
    """Recent scheduler executions, newest first."""

    timestamp: UtcTimestamp
    executions: Annotated[list[Execution], Field(max_length=MAX_LIMIT)]


Share = Annotated[float, Field(ge=0.0, le=1.0)]


class CoverageGroup(Contract):
    """One (timeframe, asset class) of the newest sample."""

    timeframe: str
    asset_class: str
    monitored_count: NonNegativeInt
    current_count: NonNegativeInt
    late_count: NonNegativeInt
    late_beyond_tolerance_count: NonNegativeInt
    share: Annotated[
        Share | None, Field(description="covered (current, or late within tolerance) / monitored")
    ]


class CoverageWindow(Contract):
    """The SLI over one window ending now; null figures when no sample lies in it."""

    window: str
    window_seconds: NonNegativeInt
    samples: NonNegativeInt
    sli: Share | None
    burn_rate: Annotated[float, Field(ge=0.0)] | None


class CoverageReport(Contract):
    """The coverage SLI over 1 h, 24 h and 30 d, the error budget and the newest sample."""

    timestamp: UtcTimestamp
    objective: Annotated[float, Field(gt=0.0, lt=1.0)]
    windows: list[CoverageWindow]
    error_budget_remaining: float | None
    latest_sampled_at: UtcTimestamp | None
    latest: list[CoverageGroup]


class SchedulerReport(Contract):
    """Health, staleness, history and coverage read at the same moment: the CLI and Dagster
    report (coverage is null when the store knows no calendars)."""

    health: SchedulerHealth
    staleness: StalenessReport
    history: ExecutionHistory
    coverage: CoverageReport | None = None
