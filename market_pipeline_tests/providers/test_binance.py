"""The Binance provider against a local server speaking the klines format: pages, retries,
Retry-After, bans, timeouts, broken and empty answers, and what the universe refuses."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest

from market_pipeline.config.universe_file import universe_from_mapping
from market_pipeline.domain.timeframes import Timeframe
from market_pipeline.domain.universe import UniverseError
from market_pipeline.providers import RAW_COLUMNS, ProviderError, build_provider
from market_pipeline_tests.support.real_bars import real_daily
from market_pipeline_tests.support.vendor_server import Reply, VendorServer

D1 = Timeframe.parse("1d")
UNTIL = datetime(2030, 1, 1, tzinfo=UTC)
FAST = {"backoff_s": 0.01, "max_backoff_s": 0.05}
TOO_MUCH = '{"code":-1003,"msg":"Too much request weight used; current limit is 6000."}'


@pytest.fixture(scope="module")
def sp500() -> pd.DataFrame:
    return real_daily("SP500")


@pytest.fixture
def server(sp500):
    vendor = VendorServer()
    vendor.bars[("BTCUSDT", "1d")] = sp500
    vendor.bars[("ETHUSDT", "1d")] = sp500.iloc[0:0]
    with vendor.serve() as url:
        vendor.url = url
        yield vendor


def _binance(server, **options):
    return build_provider({"kind": "binance", "base_url": server.url, **FAST, **options})


def _fetch(provider, symbol="BTC-USDT", since=None, until=UNTIL):
    return provider.fetch_bars(symbol, "crypto", D1, since=since, until=until)


def test_a_full_history_comes_page_by_page_and_equals_the_served_bars(server, sp500):
    bars = _fetch(_binance(server))
    assert list(bars.columns) == list(RAW_COLUMNS)
    assert list(bars["ts"]) == list(sp500["ts"])
    np.testing.assert_array_equal(bars["close"].to_numpy(), sp500["close"].to_numpy())
    pages = server.requests_for("BTCUSDT")
    assert len(pages) == -(-len(sp500) // 1000)  # 5,031 klines: 6 pages of up to 1,000
    # Each page starts 1 ms after the last open time of the one before.
    second = int(pages[1].params["startTime"])
    assert second == int(sp500["ts"].iloc[999].value // 1_000_000) + 1
    # One connection, reused by every page.
    assert len({r.client_port for r in pages}) == 1


def test_an_incremental_fetch_rereads_the_overlap_bars_before_since(server, sp500):
    since = sp500["ts"].iloc[-10]
    bars = _fetch(_binance(server, overlap_bars=3), since=since.to_pydatetime())
    # Crypto trades around the clock: three bars back is three bar lengths back.
    assert list(bars["ts"]) == list(sp500["ts"][sp500["ts"] >= since - pd.Timedelta(days=3)])
    assert bars["ts"].iloc[0] < since


def test_a_kline_still_open_at_until_is_not_returned(server, sp500):
    until = (sp500["ts"].iloc[100] + pd.Timedelta(hours=12)).to_pydatetime()
    bars = _fetch(_binance(server), until=until)
    assert bars["ts"].iloc[-1] == sp500["ts"].iloc[99]


def test_429_waits_the_retry_after_and_then_succeeds(server, sp500):
    server.script("BTCUSDT", Reply(429, TOO_MUCH, {"Retry-After": "1"}))
    bars = _fetch(_binance(server, page_limit=1000, history_start="2018-01-01"))
    assert len(bars) == len(sp500[sp500["ts"] >= "2018-01-01"])
    first, second = server.requests_for("BTCUSDT")[:2]
    assert second.at - first.at >= 1.0


def test_503_then_success_is_retried(server, sp500):
    server.script("BTCUSDT", Reply(503, "<html>Service Unavailable</html>"))
    bars = _fetch(_binance(server, history_start="2018-01-01"))
    assert len(bars) == len(sp500[sp500["ts"] >= "2018-01-01"])
    assert len(server.requests_for("BTCUSDT")) == 2


def test_429_on_every_try_fails_with_the_status_tries_and_binance_message(server):
    server.script("BTCUSDT", *[Reply(429, TOO_MUCH, {"Retry-After": "0"})] * 4)
    with pytest.raises(ProviderError) as err:
        _fetch(_binance(server))
    assert str(err.value) == (
        "binance 429 after 4 tries: Too much request weight used; current limit is 6000. "
        "(code -1003)"
    )


def test_a_ban_longer_than_max_retry_after_fails_at_once(server):
    body = '{"code":-1003,"msg":"Way too much request weight used; IP banned until 1."}'
    server.script("BTCUSDT", Reply(418, body, {"Retry-After": "7200"}))
    with pytest.raises(ProviderError, match=r"binance 418 after 1 try: Way too much .*7200 s"):
        _fetch(_binance(server))
    assert len(server.requests_for("BTCUSDT")) == 1


def test_other_4xx_are_not_retried(server):
    with pytest.raises(ProviderError) as err:
        _fetch(_binance(server), symbol="NOPE")
    assert str(err.value) == "binance 400 after 1 try: Invalid symbol. (code -1121)"
    assert len(server.requests_for("NOPE")) == 1


def test_a_timeout_on_every_try_fails_naming_the_timeout(server):
    server.script("BTCUSDT", *[Reply(delay_s=1.0, then_real=True)] * 2)
    with pytest.raises(ProviderError) as err:
        _fetch(_binance(server, timeout_s=0.2, max_tries=2))
    assert str(err.value) == "binance timeout after 2 tries: no answer within 0.2 s"


def test_malformed_json_fails_without_retrying_and_shows_the_body_start(server):
    server.script("BTCUSDT", Reply(200, '[[1499040000000,"0.0163'))
    with pytest.raises(ProviderError, match=r"binance 200 after 1 try: the answer to GET "):
        _fetch(_binance(server))
    assert len(server.requests_for("BTCUSDT")) == 1


def test_an_empty_answer_is_an_empty_frame(server):
    bars = _fetch(_binance(server), symbol="ETHUSDT")
    assert bars.empty and list(bars.columns) == list(RAW_COLUMNS)


def test_requests_in_flight_never_exceed_the_concurrency(server):
    server.latency_s = 0.05
    provider = _binance(server, concurrency=3, history_start="2019-06-01")
    threads = [threading.Thread(target=_fetch, args=(provider,)) for _ in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert server.max_in_flight == 3


def test_a_used_weight_at_the_limit_holds_requests_until_the_next_minute(server):
    provider = _binance(server, weight_per_minute=1200, history_start="2018-06-01")
    server.used_weight = 1199
    _fetch(provider)
    assert provider.client.limiter.paused_for() == 0.0
    server.used_weight = 1200
    _fetch(provider)
    assert 0.0 < provider.client.limiter.paused_for() <= 60.0


def test_the_symbol_map_overrides_the_default_mapping(server, sp500):
    provider = _binance(server, symbols={"BTC-USD": "BTCUSDT"})
    assert len(_fetch(provider, symbol="BTC-USD")) == len(sp500)
    assert provider.vendor_symbol("ETH-USDT") == "ETHUSDT"


def _universe(provider: dict, *, timeframes=("1h",), symbols=(("BTC-USDT", "crypto"),)):
    return universe_from_mapping(
        {
            "provider": provider,
            "symbols": [{"symbol": s, "asset_class": a} for s, a in symbols],
            "timeframes": list(timeframes),
        },
        source="u.yaml",
    )


def test_the_universe_refuses_timeframes_binance_does_not_offer():
    assert _universe({"kind": "binance"}, timeframes=("1m", "15m", "4h", "1d")).timeframes
    with pytest.raises(UniverseError) as err:
        _universe({"kind": "binance"}, timeframes=("1h", "10m"))
    assert str(err.value).startswith("u.yaml: timeframes[1]: binance has no 10m klines")


def test_the_universe_refuses_other_asset_classes_and_unknown_mapped_symbols():
    with pytest.raises(UniverseError, match=r"symbols\[1\]: symbol 'AAPL': binance spot serves"):
        _universe({"kind": "binance"}, symbols=(("BTC-USDT", "crypto"), ("AAPL", "equity")))
    with pytest.raises(UniverseError, match=r"names symbol.* not in the universe: ETH-USD"):
        _universe({"kind": "binance", "symbols": {"ETH-USD": "ETHUSDT"}})


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"base_url": "ftp://x"}, "base_url must be an http(s) URL"),
        ({"max_tries": 0}, "max_tries must be from 1 to 20"),
        ({"concurrency": 0}, "concurrency must be a positive whole number"),
        ({"weight_per_minute": -1}, "weight_per_minute must be a positive number"),
        ({"page_limit": 5000}, "page_limit must be at most 1000"),
        ({"history_start": "soon"}, "history_start must be a date"),
        ({"api_key": "x"}, "unknown key(s) 'api_key'"),
    ],
)
def test_bad_options_are_refused_on_load(options, message):
    with pytest.raises(UniverseError) as err:
        _universe({"kind": "binance", **options})
    assert message in str(err.value)
