"""refresh_pairs: incremental runs store what a full-history run would, bad files fail alone."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd

from market_pipeline.config.universe_file import universe_from_mapping
from market_pipeline.domain.features import FEATURE_COLUMNS, compute_features
from market_pipeline.market_data.refresh import refresh_pairs
from market_pipeline.market_data.repository import MarketDataRepository
from market_pipeline.providers import build_provider

T1 = datetime(2026, 3, 2, 21, 0, tzinfo=UTC)  # a Monday evening after the US close


def _universe(provider: dict, symbols=(("AAPL", "equity"), ("BTC-USD", "crypto"))):
    return universe_from_mapping(
        {
            "provider": provider,
            "symbols": [{"symbol": s, "asset_class": a} for s, a in symbols],
            "timeframes": ["1h", "1d"],
        },
        source="test",
    )


def test_incremental_runs_store_the_values_of_a_full_history_computation(engine):
    universe = _universe({"kind": "synthetic"})
    provider = build_provider(universe.provider)
    repo = MarketDataRepository(engine)
    first = refresh_pairs(
        universe.pairs, universe=universe, provider=provider, repository=repo, now=T1
    )
    assert all(o.ok for o in first)
    second = refresh_pairs(
        universe.pairs,
        universe=universe,
        provider=provider,
        repository=repo,
        now=T1 + timedelta(days=3, hours=5),
    )
    assert all(o.ok for o in second)
    # The second run added bars, and wrote only the tail of the features.
    btc = {o.pair: o for o in second}[("BTC-USD", "1h")]
    assert 0 < btc.features_computed < btc.bar_count

    bars = repo.load_bars(universe.pairs)
    stored = repo.load_features(universe.pairs)
    for symbol, timeframe in universe.pairs:
        expected = compute_features(
            bars[(symbol, timeframe)],
            asset_class=universe.asset_class_of(symbol),
            timeframe=timeframe,
        )
        got = stored[(symbol, timeframe)]
        assert len(got) == len(expected) == len(bars[(symbol, timeframe)])
        np.testing.assert_allclose(
            got[list(FEATURE_COLUMNS)].to_numpy(),
            expected[list(FEATURE_COLUMNS)].to_numpy(),
            rtol=1e-12,
            atol=1e-12,
            equal_nan=True,
            err_msg=f"{symbol} {timeframe}",
        )


def _write_csv(path, n=40, start="2026-02-02 14:30"):
    ts = pd.date_range(start, periods=n, freq="1h", tz="UTC")
    close = 100 + np.sin(np.arange(n))
    pd.DataFrame(
        {
            "timestamp": ts.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "open": close,
            "high": close + 1,
            "low": close - 1,
            "close": close,
            "volume": 1000.0,
        }
    ).to_csv(path, index=False)


def test_a_csv_file_missing_a_column_fails_only_its_pair_naming_file_and_column(engine, tmp_path):
    _write_csv(tmp_path / "AAPL_1h.csv")
    _write_csv(tmp_path / "MSFT_1h.csv")
    frame = pd.read_csv(tmp_path / "MSFT_1h.csv").drop(columns=["volume"])
    frame.to_csv(tmp_path / "MSFT_1h.csv", index=False)
    universe = universe_from_mapping(
        {
            "provider": {"kind": "csv", "path": str(tmp_path)},
            "symbols": [
                {"symbol": "AAPL", "asset_class": "equity"},
                {"symbol": "MSFT", "asset_class": "equity"},
            ],
            "timeframes": ["1h"],
        },
        source="test",
    )
    repo = MarketDataRepository(engine)
    outcomes = {
        o.symbol: o
        for o in refresh_pairs(
            universe.pairs,
            universe=universe,
            provider=build_provider(universe.provider),
            repository=repo,
            now=T1,
        )
    }
    assert outcomes["AAPL"].ok and outcomes["AAPL"].rows_inserted == 40
    assert not outcomes["MSFT"].ok
    assert "MSFT_1h.csv" in outcomes["MSFT"].error and "volume" in outcomes["MSFT"].error
    assert set(repo.load_bars(universe.pairs)) == {("AAPL", "1h")}


def test_bad_rows_are_rejected_counted_and_never_stored(engine):
    universe = _universe({"kind": "synthetic", "bad_row_symbols": ["AAPL"]})
    repo = MarketDataRepository(engine)
    outcomes = {
        o.pair: o
        for o in refresh_pairs(
            universe.pairs,
            universe=universe,
            provider=build_provider(universe.provider),
            repository=repo,
            now=T1,
        )
    }
    bad = outcomes[("AAPL", "1h")]
    assert bad.ok and bad.rows_rejected > 0
    assert bad.rows_inserted == bad.rows_fetched - bad.rows_rejected
    stored = repo.load_bars([("AAPL", "1h")])[("AAPL", "1h")]
    assert len(stored) == bad.rows_inserted
    assert (stored["high"] >= stored[["open", "close"]].max(axis=1)).all()
    assert (stored[["open", "high", "low", "close"]] > 0).all().all()
    assert outcomes[("BTC-USD", "1h")].rows_rejected == 0


def test_a_series_whose_features_raise_fails_alone_in_the_batch():
    from market_pipeline.market_data.refresh import PairOutcome, _features_of

    good = pd.DataFrame(
        {
            "ts": pd.date_range("2026-01-01", periods=30, freq="1D", tz="UTC"),
            "open": 10.0,
            "high": 11.0,
            "low": 9.0,
            "close": np.linspace(10, 11, 30),
            "volume": 100.0,
        }
    )
    bad = good.iloc[::-1].reset_index(drop=True)  # time runs backwards: refused by the kernel
    outcomes = {
        pair: PairOutcome(pair[0], pair[1], "equity", started_at=T1)
        for pair in [("GOOD", "1d"), ("BAD", "1d")]
    }
    out = _features_of({("GOOD", "1d"): good, ("BAD", "1d"): bad}, outcomes, {})
    assert set(out) == {("GOOD", "1d")} and len(out[("GOOD", "1d")]) == 30
    assert outcomes[("GOOD", "1d")].ok
    assert "computing features failed for BAD 1d" in outcomes[("BAD", "1d")].error


def test_chunked_refresh_yields_every_pair_once_in_order_with_failures_kept_per_pair(engine):
    from market_pipeline.market_data.refresh import refresh_in_chunks

    universe = _universe(
        {"kind": "synthetic", "fail_symbols": ["MSFT"]},
        symbols=(("AAPL", "equity"), ("MSFT", "equity"), ("BTC-USD", "crypto")),
    )
    seen_after: list[list[tuple[str, str]]] = []
    chunks = list(
        refresh_in_chunks(
            universe.pairs,
            chunk_size=4,
            after_chunk=lambda outs: seen_after.append([o.pair for o in outs]),
            universe=universe,
            provider=build_provider(universe.provider),
            repository=MarketDataRepository(engine),
            now=T1,
        )
    )
    assert [len(c) for c in chunks] == [4, 2]
    assert [o.pair for c in chunks for o in c] == universe.pairs
    assert seen_after == [[o.pair for o in c] for c in chunks]
    failed = {o.pair for c in chunks for o in c if not o.ok}
    assert failed == {("MSFT", "1h"), ("MSFT", "1d")}
    stored = MarketDataRepository(engine).load_features(universe.pairs)
    assert set(stored) == set(universe.pairs) - failed


def test_chunk_size_must_be_positive():
    import pytest

    from market_pipeline.market_data.refresh import refresh_in_chunks

    with pytest.raises(ValueError, match="chunk_size"):
        list(refresh_in_chunks([("A", "1d")], chunk_size=0))
    with pytest.raises(ValueError, match="first_chunk_size"):
        list(refresh_in_chunks([("A", "1d")], first_chunk_size=0))
    with pytest.raises(ValueError, match="workers must be a positive integer, got 0"):
        list(refresh_in_chunks([("A", "1d")], workers=0))


def test_the_first_chunk_is_small_so_bookkeeping_starts_early():
    from market_pipeline.market_data.refresh import chunked

    pairs = [(f"S{i}", "1d") for i in range(25)]
    chunks = chunked(pairs, chunk_size=10, first_chunk_size=3)
    assert [len(c) for c in chunks] == [3, 10, 10, 2]
    assert [p for c in chunks for p in c] == pairs
    assert [len(c) for c in chunked(pairs, chunk_size=10, first_chunk_size=50)] == [10, 10, 5]
    assert chunked([], chunk_size=10, first_chunk_size=3) == []


def _barrier_run(engine, workers: int):
    """Refresh 3 chunks whose first two each wait in ``after_chunk`` for the other: only
    chunks refreshed at the same time can both get past the barrier."""
    import threading

    from market_pipeline.market_data.refresh import refresh_in_chunks

    universe = _universe(
        {"kind": "synthetic"},
        symbols=(("AAPL", "equity"), ("MSFT", "equity"), ("BTC-USD", "crypto")),
    )
    barrier = threading.Barrier(2, timeout=5)
    met: list[str] = []

    def after_chunk(outcomes):
        if outcomes[0].pair in (universe.pairs[0], universe.pairs[2]):
            barrier.wait()
            met.append(threading.current_thread().name)

    chunks = list(
        refresh_in_chunks(
            universe.pairs,
            chunk_size=2,
            first_chunk_size=2,
            workers=workers,
            after_chunk=after_chunk,
            universe=universe,
            provider=build_provider(universe.provider),
            repository=MarketDataRepository(engine),
            now=T1,
        )
    )
    return universe, chunks, met


def test_two_workers_refresh_two_chunks_at_once_and_yield_in_order(engine):
    universe, chunks, met = _barrier_run(engine, workers=2)
    assert [len(c) for c in chunks] == [2, 2, 2]
    assert [o.pair for c in chunks for o in c] == universe.pairs
    assert all(o.ok for c in chunks for o in c)
    assert len(set(met)) == 2  # two different worker threads met at the barrier
    stored = MarketDataRepository(engine).load_features(universe.pairs)
    assert set(stored) == set(universe.pairs)


def test_one_worker_refreshes_one_chunk_at_a_time(engine):
    import threading

    import pytest

    with pytest.raises(threading.BrokenBarrierError):
        _barrier_run(engine, workers=1)
