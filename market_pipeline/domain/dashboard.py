"""The typed bodies of the dashboard's own reads: every monitored pair, open failures, one pair.

The spec's three bodies (:mod:`market_pipeline.domain.reports`) give counts and capped lists;
the dashboard's heat map needs every monitored pair with its status and open failure at once, and
its pair detail needs a pair's recent status rows and failures. These models are what the store
returns for those reads, what ``/api/v1/admin/dashboard/...`` serves and what the OpenAPI
document describes. Timestamps follow the spec's JSON form (``YYYY-MM-DDTHH:MM:SSZ``).
"""

from __future__ import annotations

from typing import Annotated, Literal
from urllib.parse import quote

from pydantic import BaseModel, ConfigDict, Field, NonNegativeFloat, NonNegativeInt

from market_pipeline.domain.partition_keys import key_of
from market_pipeline.domain.reports import (
    MAX_LIMIT,
    DataStatus,
    ExecutionStatus,
    FreshnessStatus,
    FreshnessSummary,
    LagSeconds,
    StalenessSeconds,
    UtcTimestamp,
)

SymbolStatus = Literal["pending", "in_progress", "completed", "failed"]
CellStatus = Literal["fresh", "aging", "stale", "missing", "failed", "late"]
"""What a heat-map cell shows: ``failed`` when the pair has an open failure, ``late`` when its
newest due bar has been missing beyond its timeframe's tolerance (data time), else its
freshness."""

UNCLASSIFIED = "unclassified"
"""The asset class of a pair whose symbol the universe does not name."""


def cell_status(
    freshness: FreshnessStatus, has_open_failure: bool, late_beyond_tolerance: bool = False
) -> CellStatus:
    """The status a pair's cell shows: an open failure outranks lateness, which outranks any
    freshness status (a late pair is usually fresh: runs succeed, with nothing new)."""
    if has_open_failure:
        return "failed"
    return "late" if late_beyond_tolerance else freshness


def dagster_partition_url(base_url: str, asset: str, symbol: str, timeframe: str) -> str:
    """The Dagster UI page of ``asset`` at the partition of a pair:
    ``<base>/assets/<asset>?partition=<SYMBOL|timeframe>``, the key percent-encoded."""
    key = quote(key_of(symbol, timeframe), safe="")
    return f"{base_url.rstrip('/')}/assets/{quote(asset, safe='')}?partition={key}"


class _Contract(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class OpenFailureInfo(_Contract):
    """A pair's unresolved failure: the newest error and since when the pair has failed."""

    error: str
    retry_count: NonNegativeInt
    first_failed_at: UtcTimestamp
    failed_at: UtcTimestamp
    execution_id: str | None


class DashboardPair(_Contract):
    """One monitored pair: a cell of the heat map."""

    symbol: str
    timeframe: str
    asset_class: str
    cell_status: CellStatus
    status: FreshnessStatus
    last_computed_at: UtcTimestamp | None
    staleness_seconds: StalenessSeconds | None
    data_point_count: NonNegativeInt
    last_bar_at: UtcTimestamp | None
    failure: OpenFailureInfo | None
    data_status: DataStatus | None = None
    expected_last_bar_at: UtcTimestamp | None = None
    bars_behind: NonNegativeInt | None = None
    data_lag_seconds: LagSeconds | None = None


class DashboardPairs(_Contract):
    """Every monitored pair (universe order) with its freshness and open failure."""

    timestamp: UtcTimestamp
    summary: FreshnessSummary
    failed_count: Annotated[NonNegativeInt, Field(description="pairs with an open failure")]
    timeframes: Annotated[list[str], Field(description="the timeframes, shortest first")]
    pairs: list[DashboardPair]


class OpenFailure(_Contract):
    """An unresolved feature computation failure of a pair."""

    symbol: str
    timeframe: str
    error: str
    retry_count: NonNegativeInt
    first_failed_at: UtcTimestamp
    failed_at: UtcTimestamp
    execution_id: str | None


class OpenFailures(_Contract):
    """Open failures, newest first, at most ``limit``; ``total_open`` counts all of them."""

    timestamp: UtcTimestamp
    total_open: NonNegativeInt
    failures: Annotated[list[OpenFailure], Field(max_length=MAX_LIMIT)]


class PairStatusRow(_Contract):
    """A pair's ``symbol_computation_status`` row in one execution."""

    execution_id: str
    execution_status: ExecutionStatus
    status: SymbolStatus
    started_at: UtcTimestamp | None
    completed_at: UtcTimestamp | None
    duration_seconds: NonNegativeFloat | None
    records_processed: NonNegativeInt
    records_inserted: NonNegativeInt
    features_computed: NonNegativeInt
    error_message: str | None


class PairFailureRow(_Contract):
    """A ``feature_computation_failures`` row of a pair, open or resolved."""

    error: str
    retry_count: NonNegativeInt
    first_failed_at: UtcTimestamp
    failed_at: UtcTimestamp
    resolved: bool
    resolved_at: UtcTimestamp | None
    execution_id: str | None


class PairDetail(_Contract):
    """One pair: its freshness, recent status rows and failures (newest first), and its
    partition in the Dagster UI."""

    timestamp: UtcTimestamp
    pair: DashboardPair
    status_rows: Annotated[list[PairStatusRow], Field(max_length=MAX_LIMIT)]
    failures: Annotated[list[PairFailureRow], Field(max_length=MAX_LIMIT)]
    dagster_url: Annotated[
        str | None, Field(description="the pair's partition in the Dagster UI, when configured")
    ]
