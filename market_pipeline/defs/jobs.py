"""Jobs: the market-data refresh over any set of partitions."""

from __future__ import annotations

import dagster as dg

from market_pipeline.domain.names import MARKET_DATA_JOB, OHLCV_BARS, QUANT_FEATURES


def build_jobs() -> list[dg.UnresolvedAssetJobDefinition]:
    """The market-data job: the two assets, over any subset of their partitions per run."""
    market_data_job = dg.define_asset_job(
        MARKET_DATA_JOB,
        selection=dg.AssetSelection.assets(OHLCV_BARS, QUANT_FEATURES),
        description="Fetch bars and compute features for a range of (symbol, timeframe) pairs.",
    )
    return [market_data_job]
