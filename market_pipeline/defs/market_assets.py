"""Market-data assets: OHLCV bars and quant features per (symbol, timeframe) partition.

Both assets are computed by one step per run over all of the run's partitions (a bulk range run,
not one run per partition): bars and features of a thousand pairs take one fetch loop, one bulk
write per table and one feature pass. Each pair still succeeds or fails on its own: good pairs are
reported materialized one by one, and when some pairs failed the step ends with a ``Failure`` that
lists them, so Dagster marks exactly those partitions failed.
"""

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

import dagster as dg

from market_pipeline.defs.data_lag_check import bars_current_check_spec, bars_current_evaluation
from market_pipeline.defs.partitions import pair_of, partitioned_check_spec
from market_pipeline.defs.resources import DatabaseResource, MarketDataResource
from market_pipeline.domain.names import (
    BAR_VALIDITY_CHECK,
    MARKET_DATA_GROUP,
    MARKET_DATA_OP,
    OHLCV_BARS,
    QUANT_FEATURES,
    Metadata,
)
from market_pipeline.domain.partition_keys import key_of
from market_pipeline.market_data.refresh import PairOutcome, refresh_in_chunks

OHLCV_BARS_KEY = dg.AssetKey(OHLCV_BARS)
QUANT_FEATURES_KEY = dg.AssetKey(QUANT_FEATURES)
POSTGRES_REFRESH_WORKERS = 2
"""Chunks refreshed at once on PostgreSQL: one computes while the other's COPY runs on the server
(SQLite has one writer at a time, so it keeps one)."""
_LISTED_FAILURES = 20
_LISTED_REVISIONS = 20


def _iso(value: datetime | None) -> str:
    return value.isoformat() if value else ""


def _bar_metadata(outcome: PairOutcome) -> dict:
    return {
        Metadata.ROWS_FETCHED: dg.MetadataValue.int(outcome.rows_fetched),
        Metadata.ROWS_INSERTED: dg.MetadataValue.int(outcome.rows_inserted),
        Metadata.ROWS_REJECTED: dg.MetadataValue.int(outcome.rows_rejected),
        Metadata.BARS_STORED: dg.MetadataValue.int(outcome.bar_count),
        Metadata.FIRST_BAR_AT: dg.MetadataValue.text(_iso(outcome.first_bar_at)),
        Metadata.LAST_BAR_AT: dg.MetadataValue.text(_iso(outcome.last_bar_at)),
        Metadata.REVISED_BARS: dg.MetadataValue.int(outcome.revised_bars),
        Metadata.HISTORY_REFETCHED: dg.MetadataValue.bool(outcome.history_refetched),
    }


def _feature_metadata(outcome: PairOutcome) -> dict:
    return {
        Metadata.FEATURES_COMPUTED: dg.MetadataValue.int(outcome.features_computed),
        Metadata.BARS_STORED: dg.MetadataValue.int(outcome.bar_count),
        Metadata.LAST_BAR_AT: dg.MetadataValue.text(_iso(outcome.last_bar_at)),
        Metadata.HISTORY_REFETCHED: dg.MetadataValue.bool(outcome.history_refetched),
    }


def _check_evaluation(outcome: PairOutcome) -> dg.AssetCheckEvaluation:
    rejected = outcome.rejected
    return dg.AssetCheckEvaluation(
        asset_key=OHLCV_BARS_KEY,
        check_name=BAR_VALIDITY_CHECK,
        passed=not rejected,
        partition=key_of(*outcome.pair),
        severity=dg.AssetCheckSeverity.WARN,
        description=(
            "all fetched rows were valid"
            if not rejected
            else "invalid rows were rejected and not stored: "
            + ", ".join(f"{k}={v}" for k, v in sorted(rejected.items()))
        ),
        metadata={
            Metadata.ROWS_FETCHED: dg.MetadataValue.int(outcome.rows_fetched),
            Metadata.ROWS_REJECTED: dg.MetadataValue.int(outcome.rows_rejected),
            **{f"rejected_{k}": dg.MetadataValue.int(v) for k, v in rejected.items()},
        },
    )


def bar_validity_check_spec(partitions_def: dg.PartitionsDefinition) -> dg.AssetCheckSpec:
    return partitioned_check_spec(
        BAR_VALIDITY_CHECK,
        OHLCV_BARS_KEY,
        partitions_def,
        "Fetched bars broke no OHLC invariant, had no NaN, non-positive price or "
        "duplicated/unparsable timestamp (bad rows are never stored).",
    )


def _asset_specs() -> list[dg.AssetSpec]:
    return [
        dg.AssetSpec(
            OHLCV_BARS_KEY,
            description="Validated OHLCV bars per symbol and timeframe, from the provider.",
            group_name=MARKET_DATA_GROUP,
            skippable=True,
            kinds={"sql"},
        ),
        dg.AssetSpec(
            QUANT_FEATURES_KEY,
            description="Quant features (returns, volatility, EMAs, RSI, MACD, Bollinger, "
            "ATR, OBV, VWAP, z-score) over the full bar history.",
            deps=[OHLCV_BARS_KEY],
            group_name=MARKET_DATA_GROUP,
            skippable=True,
            kinds={"sql"},
        ),
    ]


def _freshness_rows(outcomes: list[PairOutcome]) -> list[dict]:
    return [
        {
            "symbol": o.symbol,
            "timeframe": o.timeframe,
            "last_computed_at": o.completed_at,
            "data_point_count": o.bar_count,
            "last_bar_at": o.last_bar_at,
        }
        for o in outcomes
        if o.ok
    ]


def _events_of(outcome: PairOutcome, *, fetch: bool, features: bool) -> Iterator:
    """The check result and the materializations one pair's outcome reports."""
    if outcome.validated:
        yield _check_evaluation(outcome)
    if not outcome.ok:
        return
    partition = key_of(*outcome.pair)
    if fetch:
        yield dg.AssetMaterialization(
            OHLCV_BARS_KEY, partition=partition, metadata=_bar_metadata(outcome)
        )
    if features:
        yield dg.AssetMaterialization(
            QUANT_FEATURES_KEY, partition=partition, metadata=_feature_metadata(outcome)
        )


@dataclass
class RunTotals:
    """What the step's summary needs of its pairs, kept as totals and the failed pairs' errors,
    so each chunk's outcomes are let go once reported: a run of 10,000 partitions holds no list
    of them until its end."""

    partitions: int = 0
    refreshed: int = 0
    rows_inserted: int = 0
    features_computed: int = 0
    revised: int = 0
    revised_listed: list[str] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)

    def add(self, chunk: list[PairOutcome]) -> None:
        for outcome in chunk:
            self.partitions += 1
            if outcome.ok:
                self.refreshed += 1
                self.rows_inserted += outcome.rows_inserted
                self.features_computed += outcome.features_computed
            else:
                self.errors[key_of(*outcome.pair)] = str(outcome.error)
            if outcome.revised_bars:
                self.revised += 1
                if len(self.revised_listed) < _LISTED_REVISIONS:
                    self.revised_listed.append(
                        f"{key_of(*outcome.pair)} ({outcome.revised_bars} bars)"
                    )


def _summarize(context: dg.AssetExecutionContext, totals: RunTotals) -> None:
    """Log the run's totals; end the step with a ``Failure`` listing each failed pair's error."""
    context.log.info(
        f"refreshed {totals.refreshed} of {totals.partitions} partitions; "
        f"{totals.rows_inserted} bar rows written, "
        f"{totals.features_computed} feature rows written"
    )
    if totals.revised:
        context.log.warning(
            f"{totals.revised} partition(s) had revised history (whole history re-fetched, all "
            "features recomputed): " + ", ".join(totals.revised_listed)
        )
    errors = totals.errors
    if not errors:
        return
    for key, error in errors.items():
        context.log.error(f"partition {key} failed: {error}")
    raise dg.Failure(
        description=f"{len(errors)} of {totals.partitions} partitions failed: "
        + "; ".join(f"{k}: {v}" for k, v in list(errors.items())[:_LISTED_FAILURES]),
        metadata={Metadata.FAILED_PARTITIONS: dg.MetadataValue.json(errors)},
        allow_retries=False,
    )


def build_market_data_assets(
    partitions_def: dg.PartitionsDefinition,
    backfill_policy: dg.BackfillPolicy | None = None,
) -> dg.AssetsDefinition:
    """The ``ohlcv_bars`` -> ``quant_features`` assets over ``partitions_def``, split into runs by
    ``backfill_policy`` (default: one run per range)."""

    @dg.multi_asset(
        name=MARKET_DATA_OP,
        specs=_asset_specs(),
        check_specs=[
            bar_validity_check_spec(partitions_def),
            bars_current_check_spec(partitions_def),
        ],
        partitions_def=partitions_def,
        backfill_policy=backfill_policy or dg.BackfillPolicy.single_run(),
        can_subset=True,
    )
    def market_data(
        context: dg.AssetExecutionContext,
        database: DatabaseResource,
        market_data: MarketDataResource,
    ) -> Iterator:
        """Fetch, validate and store bars, then compute and store features, for every partition."""
        selected = context.selected_asset_keys
        fetch = OHLCV_BARS_KEY in selected
        features = QUANT_FEATURES_KEY in selected
        store = database.store()
        repository = database.repository()
        universe = market_data.universe()
        lag_rules = universe.data_lag_rules()
        now = datetime.now(UTC)

        def record_freshness(chunk: list[PairOutcome]) -> None:
            if features:
                store.update_feature_freshness_many(_freshness_rows(chunk))

        totals = RunTotals()
        for chunk in refresh_in_chunks(
            [pair_of(key) for key in context.partition_keys],
            workers=POSTGRES_REFRESH_WORKERS if repository.is_postgres else 1,
            after_chunk=record_freshness,
            universe=universe,
            provider=market_data.provider(),
            repository=repository,
            fetch=fetch,
            features=features,
            now=now,
        ):
            totals.add(chunk)
            lags = lag_rules.evaluate(((*o.pair, o.last_bar_at) for o in chunk if o.ok), now)
            for outcome in chunk:
                yield from _events_of(outcome, fetch=fetch, features=features)
                if fetch and outcome.ok:
                    yield bars_current_evaluation(
                        outcome.pair,
                        lags[outcome.pair],
                        lag_rules.tolerance_seconds(outcome.timeframe),
                    )
        _summarize(context, totals)

    return market_data
