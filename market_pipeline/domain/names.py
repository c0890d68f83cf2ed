"""Names shared by the Dagster wiring, the run mirror and the launchers, defined once.

They are contracts: the mirror recognises our runs, partitions and per-pair errors by them, and
Dagster keeps sensor cursors and partition status under them, so a rename is a migration.
"""

from __future__ import annotations

from typing import Final

OHLCV_BARS: Final = "ohlcv_bars"
QUANT_FEATURES: Final = "quant_features"
MARKET_DATA_ASSETS: Final = frozenset({OHLCV_BARS, QUANT_FEATURES})
MARKET_DATA_OP: Final = "market_data"
MARKET_DATA_GROUP: Final = "market_data"
BAR_VALIDITY_CHECK: Final = "bar_validity_check"
BARS_CURRENT_CHECK: Final = "bars_current_check"

MARKET_DATA_JOB: Final = "market_data_job"
REPORT_JOB: Final = "scheduler_health_report_job"

TRIGGER_TAG: Final = "market_pipeline/trigger"
"""How a run was started (``schedule``, ``manual``, ``report``...), set by our launchers."""
HEALTH_TAG: Final = "market_pipeline/health"
"""The health status a report run found."""

# Dagster's own run tags that the mirror and the launchers read or set.
PARTITION_TAG: Final = "dagster/partition"
RANGE_START_TAG: Final = "dagster/asset_partition_range_start"
RANGE_END_TAG: Final = "dagster/asset_partition_range_end"
SCHEDULE_NAME_TAG: Final = "dagster/schedule_name"
SENSOR_NAME_TAG: Final = "dagster/sensor_name"
BACKFILL_TAG: Final = "dagster/backfill"
SCHEDULED_TIME_TAG: Final = "dagster/scheduled_execution_time"


class Metadata:
    """Keys of the materialization and failure metadata the assets write and the mirror reads."""

    ROWS_FETCHED: Final = "rows_fetched"
    ROWS_INSERTED: Final = "rows_inserted"
    ROWS_REJECTED: Final = "rows_rejected"
    BARS_STORED: Final = "bars_stored"
    FIRST_BAR_AT: Final = "first_bar_at"
    LAST_BAR_AT: Final = "last_bar_at"
    FEATURES_COMPUTED: Final = "features_computed"
    REVISED_BARS: Final = "revised_bars"
    """Overlap bars the vendor had revised since they were stored (0: none)."""
    HISTORY_REFETCHED: Final = "history_refetched"
    """True when a revision made the run fetch the pair's whole history and rewrite every
    feature row."""
    FAILED_PARTITIONS: Final = "failed_partitions"
    """On the step's ``Failure``: ``{partition key: error text}`` of the pairs that failed."""
