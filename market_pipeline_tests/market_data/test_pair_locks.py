"""Two refreshes of the same pairs at once take turns per pair (PostgreSQL advisory locks), and
what they leave equals a full-history computation."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
import sqlalchemy as sa

from market_pipeline.config.universe_file import universe_from_mapping
from market_pipeline.domain.features import FEATURE_COLUMNS, compute_features
from market_pipeline.market_data.pair_locks import LOCK_NAMESPACE, locked_pairs, pair_lock_key
from market_pipeline.market_data.refresh import refresh_in_chunks
from market_pipeline.market_data.repository import MarketDataRepository
from market_pipeline.providers import build_provider

T1 = datetime(2026, 3, 2, 21, 0, tzinfo=UTC)
WAIT_S = 30.0

pytestmark = pytest.mark.postgres


def _universe():
    return universe_from_mapping(
        {
            "provider": {"kind": "synthetic", "history_bars": 300},
            "symbols": [
                {"symbol": "AAPL", "asset_class": "equity"},
                {"symbol": "BTC-USD", "asset_class": "crypto"},
            ],
            "timeframes": ["1h", "1d"],
        },
        source="test",
    )


class HeldProvider:
    """The synthetic provider, recording its calls; with ``hold`` the first call waits until the
    test releases it (the run is then inside its refresh, holding its pairs)."""

    def __init__(self, inner, *, hold: bool) -> None:
        self.inner, self.hold = inner, hold
        self.fetch_concurrency = inner.fetch_concurrency  # the refresh's concurrent fetch reads it
        self.calls: list[tuple[str, str]] = []
        self.entered, self.release = threading.Event(), threading.Event()

    def fetch_bars(self, symbol, asset_class, timeframe, *, since, until):
        self.calls.append((symbol, str(timeframe)))
        if self.hold and not self.entered.is_set():
            self.entered.set()
            assert self.release.wait(WAIT_S), "the test never released the first run"
        return self.inner.fetch_bars(symbol, asset_class, timeframe, since=since, until=until)


def _advisory_waiters(engine) -> int:
    with engine.connect() as conn:
        return conn.execute(
            sa.text(
                "SELECT COUNT(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted "
                "AND classid = :ns AND database = (SELECT oid FROM pg_database "
                "WHERE datname = current_database())"
            ),
            {"ns": LOCK_NAMESPACE},
        ).scalar_one()


def _refresh(universe, provider, repo, now, errors: list) -> None:
    try:
        for chunk in refresh_in_chunks(
            universe.pairs,
            chunk_size=2,
            first_chunk_size=1,
            workers=2,
            universe=universe,
            provider=provider,
            repository=repo,
            now=now,
        ):
            assert all(o.ok for o in chunk), [o.error for o in chunk]
    except BaseException as exc:  # noqa: BLE001 - reported by the test thread
        errors.append(exc)


def test_a_second_refresh_of_the_same_pairs_waits_for_the_first_and_features_stay_exact(
    pg_engine,
):
    universe = _universe()
    repo = MarketDataRepository(pg_engine)
    synthetic = build_provider(universe.provider)
    first, second = HeldProvider(synthetic, hold=True), HeldProvider(synthetic, hold=False)
    errors: list = []
    a = threading.Thread(target=_refresh, args=(universe, first, repo, T1, errors))
    b = threading.Thread(
        target=_refresh, args=(universe, second, repo, T1 + timedelta(days=2), errors)
    )
    a.start()
    try:
        assert first.entered.wait(WAIT_S)
        b.start()
        deadline = time.monotonic() + WAIT_S
        while _advisory_waiters(pg_engine) == 0:
            assert time.monotonic() < deadline, "the second refresh never waited on a pair lock"
            time.sleep(0.05)
        # The first run is inside its refresh of the held pair. Its other worker thread may have
        # finished the other chunks already, so the second run may have fetched those pairs;
        # never the held one.
        held = first.calls[0]
        assert held not in second.calls
    finally:
        first.release.set()
        a.join(WAIT_S)
        if b.is_alive() or b.ident is not None:
            b.join(WAIT_S)
    assert not errors, errors
    assert not a.is_alive() and not b.is_alive()
    assert sorted(second.calls) == sorted((s, t) for s, t in universe.pairs)

    bars = repo.load_bars(universe.pairs)
    stored = repo.load_features(universe.pairs)
    for symbol, timeframe in universe.pairs:
        pair_bars = bars[(symbol, timeframe)]
        assert pair_bars["ts"].is_unique
        expected = compute_features(
            pair_bars, asset_class=universe.asset_class_of(symbol), timeframe=timeframe
        )
        got = stored[(symbol, timeframe)]
        assert len(got) == len(expected)
        np.testing.assert_allclose(
            got[list(FEATURE_COLUMNS)].to_numpy(),
            expected[list(FEATURE_COLUMNS)].to_numpy(),
            rtol=1e-12,
            atol=1e-12,
            equal_nan=True,
            err_msg=f"{symbol} {timeframe}",
        )


def test_locks_are_released_when_the_block_raises(pg_engine):
    pairs = [("AAPL", "1h"), ("AAPL", "1d")]
    with pytest.raises(RuntimeError), locked_pairs(pg_engine, pairs):
        raise RuntimeError("a chunk failed")
    # Another session can take them at once: nothing was left locked.
    with pg_engine.connect() as conn:
        for pair in pairs:
            assert conn.execute(
                sa.text("SELECT pg_try_advisory_lock(:ns, :k)"),
                {"ns": LOCK_NAMESPACE, "k": pair_lock_key(pair)},
            ).scalar_one()
        conn.execute(sa.text("SELECT pg_advisory_unlock_all()"))


def test_lock_keys_are_stable_signed_int4():
    assert pair_lock_key(("AAPL", "1d")) == pair_lock_key(("AAPL", "1d"))
    assert pair_lock_key(("AAPL", "1d")) != pair_lock_key(("AAPL", "1h"))
    for pair in [("AAPL", "1d"), ("BTC-USD", "5m"), ("ZZZZ", "1w")]:
        assert -(2**31) <= pair_lock_key(pair) < 2**31
