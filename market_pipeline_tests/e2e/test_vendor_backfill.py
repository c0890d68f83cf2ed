"""A bulk range run of 20 pairs through each HTTP vendor (a local server in its format) stores
the same bars and features as the same data read from Parquet files."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from market_pipeline.cli.launcher import run_backfill
from market_pipeline.config.settings import Settings
from market_pipeline.database.engine import make_engine
from market_pipeline.database.migrations import migrate
from market_pipeline.domain.features import FEATURE_COLUMNS
from market_pipeline.market_data.repository import MarketDataRepository
from market_pipeline_tests.support.real_bars import twenty_series
from market_pipeline_tests.support.universes import write_universe
from market_pipeline_tests.support.vendor_server import VendorServer

KEY, SECRET = "PKE2E", "e2e-secret"
VENDORS = {"binance": "crypto", "alpaca": "equity"}


def _backfill(tmp_path: Path, name: str, provider: dict, symbols, asset_class: str):
    folder = tmp_path / name
    folder.mkdir()
    db_url = f"sqlite:///{folder / 'market.db'}"
    engine = make_engine(db_url)
    migrate(engine)
    universe = write_universe(
        folder / "universe.yaml", [(s, asset_class) for s in symbols], ["1d"], provider
    )
    settings = Settings(home=folder / "home", db_url=db_url, universe_path=universe)
    with dg.instance_for_test() as instance:
        result = run_backfill(settings, instance=instance)
    assert result.success and len(result.run_ids) == 1  # one bulk range run of every pair
    repo = MarketDataRepository(engine)
    pairs = [(s, "1d") for s in symbols]
    out = repo.load_bars(pairs), repo.load_features(pairs)
    engine.dispose()
    return out


@pytest.mark.parametrize("vendor", sorted(VENDORS))
def test_a_range_run_through_the_vendor_equals_the_same_data_from_files(
    tmp_path, monkeypatch, vendor
):
    monkeypatch.setenv("APCA_API_KEY_ID", KEY)
    monkeypatch.setenv("APCA_API_SECRET_KEY", SECRET)
    series = twenty_series()
    files = tmp_path / "files"
    files.mkdir()
    server = VendorServer(key_id=KEY, secret_key=SECRET)
    for symbol, frame in series.items():
        server.bars[(symbol, "1d")] = frame
        pq.write_table(
            pa.Table.from_pandas(frame, preserve_index=False), files / f"{symbol}_1d.parquet"
        )
    asset_class = VENDORS[vendor]
    with server.serve() as url:
        got_bars, got_features = _backfill(
            tmp_path, vendor, {"kind": vendor, "base_url": url}, list(series), asset_class
        )
    want_bars, want_features = _backfill(
        tmp_path,
        "parquet",
        {"kind": "parquet", "path": str(files), "columns": {"timestamp": "ts"}},
        list(series),
        asset_class,
    )
    assert len(got_bars) == len(want_bars) == 20
    for pair, want in want_bars.items():
        got = got_bars[pair]
        assert list(got["ts"]) == list(want["ts"]), pair
        np.testing.assert_array_equal(
            got[["open", "high", "low", "close", "volume"]].to_numpy(),
            want[["open", "high", "low", "close", "volume"]].to_numpy(),
        )
        np.testing.assert_array_equal(
            got_features[pair][list(FEATURE_COLUMNS)].to_numpy(),
            want_features[pair][list(FEATURE_COLUMNS)].to_numpy(),
        )
    assert sum(len(b) for b in got_bars.values()) == sum(len(f) for f in series.values())
