"""refresh_pairs over the HTTP vendors: concurrent fetches, a failing pair failing alone with
the vendor's words, and revised history (a 2:1 split in adjusted prices) re-fetched whole."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest

from market_pipeline.config.universe_file import universe_from_mapping
from market_pipeline.domain.features import FEATURE_COLUMNS, compute_features
from market_pipeline.market_data.refresh import refresh_pairs
from market_pipeline.market_data.repository import MarketDataRepository
from market_pipeline.providers import build_provider
from market_pipeline_tests.support.real_bars import real_daily
from market_pipeline_tests.support.vendor_server import Reply, VendorServer

KEY, SECRET = "PKTEST", "refresh-secret"
T1 = datetime(2010, 5, 1, tzinfo=UTC)
SPLIT = pd.Timestamp("2010-06-01", tz="UTC")
T2 = datetime(2011, 1, 1, tzinfo=UTC)


def _universe(provider: dict, symbols: list[tuple[str, str]]):
    return universe_from_mapping(
        {
            "provider": provider,
            "symbols": [{"symbol": s, "asset_class": a} for s, a in symbols],
            "timeframes": ["1d"],
        },
        source="test",
    )


def _assert_features_are_a_full_history_computation(repo, pair, asset_class):
    bars = repo.load_bars([pair])[pair]
    stored = repo.load_features([pair])[pair]
    expected = compute_features(bars, asset_class=asset_class, timeframe=pair[1])
    assert len(stored) == len(bars)
    np.testing.assert_allclose(
        stored[list(FEATURE_COLUMNS)].to_numpy(),
        expected[list(FEATURE_COLUMNS)].to_numpy(),
        rtol=1e-9,
        atol=1e-9,
        equal_nan=True,
    )


@pytest.fixture
def alpaca_server(monkeypatch):
    monkeypatch.setenv("APCA_API_KEY_ID", KEY)
    monkeypatch.setenv("APCA_API_SECRET_KEY", SECRET)
    server = VendorServer(key_id=KEY, secret_key=SECRET)
    server.bars[("AAPL", "1d")] = real_daily("AAPL")
    server.bars[("MSFT", "1d")] = real_daily("MSFT")
    with server.serve() as url:
        server.url = url
        yield server


def test_a_split_in_adjusted_prices_refetches_the_whole_history_and_all_features(
    engine, alpaca_server
):
    universe = _universe(
        {"kind": "alpaca", "base_url": alpaca_server.url, "adjustment": "split"},
        [("AAPL", "equity"), ("MSFT", "equity")],
    )
    provider = build_provider(universe.provider)
    repo = MarketDataRepository(engine)
    first = refresh_pairs(
        universe.pairs, universe=universe, provider=provider, repository=repo, now=T1
    )
    assert all(o.ok and not o.revised_bars for o in first)

    # AAPL splits 2:1: Alpaca's split-adjusted history halves every earlier price.
    alpaca_server.splits["AAPL"] = [(SPLIT, 2.0)]
    second = {
        o.pair: o
        for o in refresh_pairs(
            universe.pairs, universe=universe, provider=provider, repository=repo, now=T2
        )
    }
    aapl, msft = second[("AAPL", "1d")], second[("MSFT", "1d")]
    assert aapl.ok and msft.ok
    # The newest stored bar and the three before it were re-read, and all four had changed.
    assert aapl.revised_bars == 4 and aapl.history_refetched
    assert aapl.features_computed == aapl.bar_count  # every feature row rewritten
    assert msft.revised_bars == 0 and not msft.history_refetched
    assert 0 < msft.features_computed < msft.bar_count

    served = real_daily("AAPL")
    served = served[served["ts"] <= pd.Timestamp(T2) - pd.Timedelta(days=1)].reset_index(drop=True)
    before = (served["ts"] < SPLIT).to_numpy()
    served.loc[before, ["open", "high", "low", "close"]] /= 2.0
    stored = repo.load_bars([("AAPL", "1d")])[("AAPL", "1d")]
    assert list(stored["ts"]) == list(served["ts"])
    np.testing.assert_allclose(stored["close"].to_numpy(), served["close"].to_numpy(), rtol=1e-12)
    _assert_features_are_a_full_history_computation(repo, ("AAPL", "1d"), "equity")


def test_a_correction_within_the_tolerance_is_no_revision(engine, alpaca_server):
    universe = _universe(
        {"kind": "alpaca", "base_url": alpaca_server.url, "revision_tolerance": 0.01},
        [("AAPL", "equity")],
    )
    provider = build_provider(universe.provider)
    repo = MarketDataRepository(engine)
    refresh_pairs(universe.pairs, universe=universe, provider=provider, repository=repo, now=T1)
    bars = alpaca_server.bars[("AAPL", "1d")].copy()
    bars.loc[bars["ts"] < pd.Timestamp(T1), "close"] *= 1.001  # 0.1 %: within 1 %
    alpaca_server.bars[("AAPL", "1d")] = bars
    (outcome,) = refresh_pairs(
        universe.pairs, universe=universe, provider=provider, repository=repo, now=T2
    )
    assert outcome.ok and outcome.revised_bars == 0 and not outcome.history_refetched


def test_pairs_are_fetched_concurrently_and_a_failing_pair_fails_alone(engine):
    server = VendorServer(latency_s=0.05)
    symbols = [f"C{i}USDT" for i in range(6)]
    for index, symbol in enumerate(symbols):
        series = real_daily(("AAPL", "IBM", "MSFT")[index % 3])
        server.bars[(symbol, "1d")] = series[series["ts"] < pd.Timestamp(T1)].tail(300)
    server.script("C3USDT", *[Reply(429, '{"code":-1003,"msg":"Too many requests."}')] * 4)
    with server.serve() as url:
        universe = _universe(
            {"kind": "binance", "base_url": url, "concurrency": 3, "backoff_s": 0.01},
            [(s, "crypto") for s in symbols],
        )
        outcomes = refresh_pairs(
            universe.pairs,
            universe=universe,
            provider=build_provider(universe.provider),
            repository=MarketDataRepository(engine),
            now=T2,
        )
    assert server.max_in_flight == 3
    failed = [o for o in outcomes if not o.ok]
    assert [o.symbol for o in failed] == ["C3USDT"]
    assert failed[0].error == (
        "fetching bars failed for C3USDT 1d: binance 429 after 4 tries: Too many requests. "
        "(code -1003)"
    )
    assert all(o.bar_count == 300 for o in outcomes if o.ok)
