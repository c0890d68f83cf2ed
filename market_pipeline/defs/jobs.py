"""Jobs: the market-data refresh over any set of partitions."""

from __future__ import annotations

import dagster as dg

MARKET_DATA_JOB = "market_data_job"


def build_jobs(partitions: dg.PartitionsDefinition) -> list:
    market_data_job = dg.define_asset_job(
        MARKET_DATA_JOB,
        selection=dg.AssetSelection.assets("ohlcv_bars", "quant_features"),
        partitions_def=partitions,
        description="Fetch bars and compute features for a range of (symbol, timeframe) pairs.",
    )
    return [market_data_job]
