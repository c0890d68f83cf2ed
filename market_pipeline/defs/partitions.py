"""Partitions: one per (symbol, timeframe) of the universe, keys like ``AAPL|1d``."""

from __future__ import annotations

import warnings

import dagster as dg

from market_pipeline.domain import partition_keys
from market_pipeline.domain.partition_keys import check_partitions_per_run
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


def pair_backfill_policy(partitions_per_run: int | None) -> dg.BackfillPolicy:
    """Dagster's split of a UI or daemon backfill: ``multi_run`` of at most ``partitions_per_run``
    pairs, or one run per key range (``single_run``) when it is ``None``.

    Dagster cuts a multi-partition selection into key ranges of one timeframe each (all of the
    chosen symbols) and then each range into runs of at most that many symbols, so a backfill of
    S symbols x T timeframes becomes T x ceil(S / N) runs, every pair in one of them (tested). Our
    own split (CLI, schedules) keeps a symbol's timeframes together, which makes fewer runs.
    """
    check_partitions_per_run(partitions_per_run)
    if partitions_per_run is None:
        return dg.BackfillPolicy.single_run()
    return dg.BackfillPolicy.multi_run(partitions_per_run)


def partitioned_check_spec(
    name: str, asset: dg.AssetKey, partitions_def: dg.PartitionsDefinition, description: str
) -> dg.AssetCheckSpec:
    """A check of ``asset`` with one result per partition."""
    # Partitioned check specs are a preview feature in Dagster 1.13; they are what gives one
    # check result per (symbol, timeframe) inside a bulk range run, so we use them on purpose.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=dg.PreviewWarning)
        return dg.AssetCheckSpec(
            name, asset=asset, partitions_def=partitions_def, description=description
        )
