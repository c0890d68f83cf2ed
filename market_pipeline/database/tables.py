"""SQLAlchemy Core descriptions of the tables that ``sql/`` creates, for building queries.

The DDL lives in the migration files; a test reflects a migrated database and checks it against
these descriptions, so the two cannot drift apart.
"""

from __future__ import annotations

import sqlalchemy as sa

from market_pipeline.database.types import UTCDateTime, UUIDString
from market_pipeline.domain.features import FEATURE_COLUMNS

metadata = sa.MetaData()

BAR_COLUMNS = ("open", "high", "low", "close", "volume")

ohlcv_bars = sa.Table(
    "ohlcv_bars",
    metadata,
    sa.Column("symbol", sa.Text, primary_key=True),
    sa.Column("timeframe", sa.Text, primary_key=True),
    sa.Column("ts", UTCDateTime, primary_key=True),
    *(sa.Column(name, sa.Float, nullable=False) for name in BAR_COLUMNS),
)

quant_features = sa.Table(
    "quant_features",
    metadata,
    sa.Column("symbol", sa.Text, primary_key=True),
    sa.Column("timeframe", sa.Text, primary_key=True),
    sa.Column("ts", UTCDateTime, primary_key=True),
    *(sa.Column(name, sa.Float, nullable=True) for name in FEATURE_COLUMNS),
)

scheduler_execution_log = sa.Table(
    "scheduler_execution_log",
    metadata,
    sa.Column("execution_id", UUIDString, primary_key=True),
    sa.Column("started_at", UTCDateTime, nullable=False),
    sa.Column("completed_at", UTCDateTime),
    sa.Column("total_symbols", sa.Integer, nullable=False),
    sa.Column("successful_symbols", sa.Integer, nullable=False),
    sa.Column("failed_symbols", sa.Integer, nullable=False),
    sa.Column("total_records_processed", sa.BigInteger, nullable=False),
    sa.Column("duration_seconds", sa.Float),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("error_message", sa.Text),
    sa.Column("job_name", sa.Text),
    sa.Column("run_trigger", sa.Text),
    sa.Column("scheduled_for", UTCDateTime),
    sa.Column("updated_at", UTCDateTime, nullable=False),
)

feature_computation_failures = sa.Table(
    "feature_computation_failures",
    metadata,
    sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=True),
    sa.Column("symbol", sa.Text, nullable=False),
    sa.Column("timeframe", sa.Text, nullable=False),
    sa.Column("error_message", sa.Text, nullable=False),
    sa.Column(
        "execution_id",
        UUIDString,
        sa.ForeignKey("scheduler_execution_log.execution_id", ondelete="SET NULL"),
    ),
    sa.Column("retry_count", sa.Integer, nullable=False),
    sa.Column("resolved", sa.Boolean, nullable=False),
    sa.Column("failed_at", UTCDateTime, nullable=False),
    sa.Column("first_failed_at", UTCDateTime, nullable=False),
    sa.Column("resolved_at", UTCDateTime),
    sa.Column("resolved_by_execution_id", UUIDString),
)

feature_freshness = sa.Table(
    "feature_freshness",
    metadata,
    sa.Column("symbol", sa.Text, primary_key=True),
    sa.Column("timeframe", sa.Text, primary_key=True),
    sa.Column("last_computed_at", UTCDateTime),
    sa.Column("data_point_count", sa.Integer, nullable=False),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("staleness_seconds", sa.Float),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.Column("last_bar_at", UTCDateTime),
)

symbol_computation_status = sa.Table(
    "symbol_computation_status",
    metadata,
    sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=True),
    sa.Column(
        "execution_id",
        UUIDString,
        sa.ForeignKey("scheduler_execution_log.execution_id", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("symbol", sa.Text, nullable=False),
    sa.Column("asset_class", sa.Text),
    sa.Column("timeframe", sa.Text, nullable=False),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("records_processed", sa.Integer, nullable=False),
    sa.Column("records_inserted", sa.Integer, nullable=False),
    sa.Column("features_computed", sa.Integer, nullable=False),
    sa.Column("started_at", UTCDateTime),
    sa.Column("completed_at", UTCDateTime),
    sa.Column("duration_seconds", sa.Float),
    sa.Column("error_message", sa.Text),
    sa.UniqueConstraint("execution_id", "symbol", "timeframe"),
)

mirror_watermark = sa.Table(
    "mirror_watermark",
    metadata,
    sa.Column("name", sa.Text, primary_key=True),
    sa.Column("run_updated_at", UTCDateTime, nullable=False),
    sa.Column("runs_mirrored", sa.BigInteger, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
)

data_coverage_samples = sa.Table(
    "data_coverage_samples",
    metadata,
    sa.Column("sampled_at", UTCDateTime, primary_key=True),
    sa.Column("timeframe", sa.Text, primary_key=True),
    sa.Column("asset_class", sa.Text, primary_key=True),
    sa.Column("monitored_count", sa.Integer, nullable=False),
    sa.Column("current_count", sa.Integer, nullable=False),
    sa.Column("late_count", sa.Integer, nullable=False),
    sa.Column("late_beyond_tolerance_count", sa.Integer, nullable=False),
)
