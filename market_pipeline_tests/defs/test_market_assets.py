"""The market-data assets in real Dagster runs on both backends."""

from __future__ import annotations

import gc
import weakref
from datetime import UTC, datetime

import dagster as dg
import pytest
import sqlalchemy as sa

from market_pipeline.cli.launcher import run_backfill
from market_pipeline.database.engine import make_engine
from market_pipeline.definitions import build_definitions
from market_pipeline.defs.market_assets import OHLCV_BARS_KEY, QUANT_FEATURES_KEY, RunTotals
from market_pipeline.domain.names import Metadata
from market_pipeline.market_data.refresh import PairOutcome


def _counts(db_url: str) -> dict[str, int]:
    engine = make_engine(db_url)
    with engine.connect() as conn:
        out = {
            table: conn.execute(sa.text(f"SELECT COUNT(*) FROM {table}")).scalar_one()
            for table in ("ohlcv_bars", "quant_features", "feature_freshness")
        }
    engine.dispose()
    return out


def _status(instance, key: dg.AssetKey, defs: dg.Definitions) -> dict[str, str]:
    partitions = defs.get_assets_def(key).partitions_def
    statuses = instance.get_status_by_partition(key, partitions.get_partition_keys(), partitions)
    return {k: (v.value if v else "MISSING") for k, v in statuses.items()}


def test_range_run_stores_good_pairs_and_fails_only_the_bad_symbol(settings):
    defs = build_definitions(settings)
    with dg.instance_for_test() as instance:
        result = run_backfill(settings, instance=instance)
        assert not result.success and len(result.run_ids) == 1
        bars = _status(instance, OHLCV_BARS_KEY, defs)
        features = _status(instance, QUANT_FEATURES_KEY, defs)
    for statuses in (bars, features):
        assert statuses["BADCO|1h"] == "FAILED" and statuses["BADCO|1d"] == "FAILED"
        good = {k: v for k, v in statuses.items() if not k.startswith("BADCO|")}
        assert set(good.values()) == {"MATERIALIZED"} and len(good) == 4
    counts = _counts(settings.db_url)
    assert counts["ohlcv_bars"] > 0 and counts["quant_features"] == counts["ohlcv_bars"]
    assert counts["feature_freshness"] == 4


def test_failure_event_carries_the_real_error_text_per_partition(settings):
    with dg.instance_for_test() as instance:
        result = run_backfill(settings, instance=instance)
        records = instance.get_records_for_run(
            result.run_ids[0], of_type=dg.DagsterEventType.STEP_FAILURE
        ).records
        failure = records[0].event_log_entry.dagster_event.event_specific_data
        errors = failure.user_failure_data.metadata[Metadata.FAILED_PARTITIONS].value
    assert set(errors) == {"BADCO|1h", "BADCO|1d"}
    assert "injected failure" in errors["BADCO|1h"] and "BADCO" in errors["BADCO|1h"]


def test_materializations_carry_per_partition_metadata_and_validity_check(settings):
    with dg.instance_for_test() as instance:
        run_backfill(settings, symbols=["AAPL"], timeframes=["1d"], instance=instance)
        event = instance.get_latest_materialization_event(OHLCV_BARS_KEY)
        meta = event.asset_materialization.metadata
        assert event.asset_materialization.partition == "AAPL|1d"
        assert meta["rows_fetched"].value > 200
        assert meta["rows_inserted"].value == meta["rows_fetched"].value
        assert meta["rows_rejected"].value == 0
        assert meta["first_bar_at"].value < meta["last_bar_at"].value
        checks = instance.event_log_storage.get_asset_check_execution_history(
            dg.AssetCheckKey(OHLCV_BARS_KEY, "bar_validity_check"), limit=5
        )
        assert checks and checks[0].partition == "AAPL|1d"
        feat = instance.get_latest_materialization_event(QUANT_FEATURES_KEY)
        assert (
            feat.asset_materialization.metadata["features_computed"].value
            == meta["rows_inserted"].value
        )


def test_rerun_is_idempotent_and_writes_no_duplicate_rows(settings):
    with dg.instance_for_test() as instance:
        run_backfill(settings, symbols=["AAPL"], instance=instance)
        first = _counts(settings.db_url)
        run_backfill(settings, symbols=["AAPL"], instance=instance)
        second = _counts(settings.db_url)
    assert second["ohlcv_bars"] >= first["ohlcv_bars"]
    engine = make_engine(settings.db_url)
    with engine.connect() as conn:
        dupes = conn.execute(
            sa.text(
                "SELECT COUNT(*) FROM (SELECT symbol, timeframe, ts FROM ohlcv_bars "
                "GROUP BY symbol, timeframe, ts HAVING COUNT(*) > 1) d"
            )
        ).scalar_one()
        missing = conn.execute(
            sa.text(
                "SELECT COUNT(*) FROM ohlcv_bars b LEFT JOIN quant_features f "
                "ON f.symbol = b.symbol AND f.timeframe = b.timeframe AND f.ts = b.ts "
                "WHERE f.ts IS NULL"
            )
        ).scalar_one()
    engine.dispose()
    assert dupes == 0 and missing == 0


def test_failed_partition_can_be_rematerialized_once_the_provider_recovers(settings, tmp_path):
    defs = build_definitions(settings)
    with dg.instance_for_test() as instance:
        run_backfill(settings, symbols=["BADCO"], instance=instance)
        assert _status(instance, OHLCV_BARS_KEY, defs)["BADCO|1d"] == "FAILED"
        settings.universe_path.write_text(
            settings.universe_path.read_text().replace("fail_symbols:\n  - BADCO\n", "")
        )
        result = run_backfill(settings, symbols=["BADCO"], instance=instance)
        assert result.success
        assert _status(instance, OHLCV_BARS_KEY, build_definitions(settings))["BADCO|1d"] == (
            "MATERIALIZED"
        )


def test_unknown_symbol_in_backfill_is_refused_with_its_name(settings):
    from market_pipeline.domain.universe import UniverseError

    with pytest.raises(UniverseError, match="NOPE"):
        run_backfill(settings, symbols=["NOPE"])


def test_a_bars_only_run_rates_each_pair_s_newest_stored_bar(settings):
    defs = build_definitions(settings)
    market_data = defs.get_assets_def(OHLCV_BARS_KEY)
    with dg.instance_for_test() as instance:
        result = dg.materialize(
            [market_data],
            selection=[OHLCV_BARS_KEY],
            partition_key="AAPL|1d",
            resources=defs.resources,
            instance=instance,
        )
        assert result.success
        (check,) = instance.event_log_storage.get_asset_check_execution_history(
            dg.AssetCheckKey(OHLCV_BARS_KEY, "bars_current_check"), limit=5
        )
        evaluation = check.event.dagster_event.event_specific_data
    # Bars only, no features: the check still sees the bars just stored, not "no bar".
    assert evaluation.passed
    assert evaluation.metadata["data_status"].value == "current"
    assert (
        evaluation.metadata["last_bar_at"].value
        == evaluation.metadata["expected_last_bar_at"].value
    )
    assert _counts(settings.db_url)["quant_features"] == 0


def test_the_steps_totals_keep_no_outcome_of_a_reported_chunk():
    """The step summarises a run from totals: a chunk's outcomes can be freed once reported, so
    a run of 10,000 partitions holds one chunk of them, not all."""
    started = datetime(2026, 12, 2, tzinfo=UTC)

    def outcome(i: int) -> PairOutcome:
        done = PairOutcome(f"S{i}", "1h", "equity", started, rows_inserted=10, features_computed=3)
        if i % 4 == 0:
            done.error = f"fetch failed for S{i} 1h: boom"
        done.revised_bars = 2 if i % 5 == 0 else 0
        return done

    totals = RunTotals()
    alive = []
    for start in range(0, 100, 25):
        chunk = [outcome(i) for i in range(start, start + 25)]
        alive.extend(weakref.ref(o) for o in chunk)
        totals.add(chunk)
        del chunk
    gc.collect()
    assert not any(ref() is not None for ref in alive)
    assert (totals.partitions, totals.refreshed, totals.revised) == (100, 75, 20)
    assert (totals.rows_inserted, totals.features_computed) == (750, 225)
    assert totals.errors["S4|1h"] == "fetch failed for S4 1h: boom" and len(totals.errors) == 25
    assert totals.revised_listed[:2] == ["S0|1h (2 bars)", "S5|1h (2 bars)"]
