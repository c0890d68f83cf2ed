"""Partitions: one per (symbol, timeframe) of the universe, keys like ``AAPL|1d``."""

from __future__ import annotations

import dagster as dg

from market_pipeline.domain import partition_keys
from market_pipeline.domain.universe import Universe


def build_pair_partitions(universe: Universe) -> dg.MultiPartitionsDefinition:
    """Two dimensions named ``symbol`` and ``timeframe``; Dagster joins them as ``SYMBOL|tf``."""
    return dg.MultiPartitionsDefinition(
        {
            "symbol": dg.StaticPartitionsDefinition(list(universe.symbol_names)),
            "timeframe": dg.StaticPartitionsDefinition(list(universe.timeframes)),
        }
    )


def pair_of(key: str | dg.MultiPartitionKey) -> tuple[str, str]:
    """(symbol, timeframe) of a partition key such as ``AAPL|1d``."""
    if isinstance(key, dg.MultiPartitionKey):
        dims = key.keys_by_dimension
        return dims["symbol"], dims["timeframe"]
    return partition_keys.pair_of(str(key))
