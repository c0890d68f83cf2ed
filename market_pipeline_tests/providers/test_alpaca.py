"""The Alpaca provider against a local server speaking Market Data v2: pages by token, stocks
and crypto, feed and adjustment, credentials from the environment and never anywhere else."""

from __future__ import annotations

import logging
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
H1 = Timeframe.parse("1h")
UNTIL = datetime(2030, 1, 1, tzinfo=UTC)
KEY, SECRET = "PKTEST1234", "s3cr3t-never-shown-9f1c"
FAST = {"backoff_s": 0.01, "max_backoff_s": 0.05}


@pytest.fixture(scope="module")
def aapl() -> pd.DataFrame:
    return real_daily("AAPL")


@pytest.fixture
def server(aapl, monkeypatch):
    monkeypatch.setenv("APCA_API_KEY_ID", KEY)
    monkeypatch.setenv("APCA_API_SECRET_KEY", SECRET)
    vendor = VendorServer(key_id=KEY, secret_key=SECRET)
    vendor.bars[("AAPL", "1d")] = aapl
    vendor.bars[("BTC/USD", "1d")] = aapl
    hours = pd.date_range("2026-01-05", periods=48, freq="1h", tz="UTC")
    vendor.bars[("BTC/USD", "1h")] = aapl.head(48).assign(ts=hours)
    with vendor.serve() as url:
        vendor.url = url
        yield vendor


def _alpaca(server, **options):
    return build_provider({"kind": "alpaca", "base_url": server.url, **FAST, **options})


def test_stock_bars_come_page_by_token_and_daily_stamps_are_the_utc_date(server, aapl):
    bars = _alpaca(server, page_limit=1000).fetch_bars(
        "AAPL", "equity", D1, since=None, until=UNTIL
    )
    assert list(bars.columns) == list(RAW_COLUMNS)
    # The server stamps days at midnight New York (04:00/05:00 UTC), as Alpaca does.
    assert list(bars["ts"]) == list(aapl["ts"])
    np.testing.assert_array_equal(bars["close"].to_numpy(), aapl["close"].to_numpy())
    pages = server.requests_for("AAPL")
    assert len(pages) == -(-len(aapl) // 1000)
    assert "page_token" not in pages[0].params and "page_token" in pages[1].params
    assert pages[0].params["feed"] == "sip" and pages[0].params["adjustment"] == "raw"
    assert pages[0].params["timeframe"] == "1Day"


def test_feed_and_adjustment_are_sent_as_configured(server):
    _alpaca(server, feed="iex", adjustment="split,dividend").fetch_bars(
        "AAPL", "equity", D1, since=None, until=UNTIL
    )
    sent = server.requests_for("AAPL")[0].params
    assert (sent["feed"], sent["adjustment"]) == ("iex", "split,dividend")


def test_crypto_bars_use_the_crypto_endpoint_and_the_slash_symbol(server):
    bars = _alpaca(server).fetch_bars(
        "BTC-USD", "crypto", H1, since=None, until=datetime(2026, 1, 6, 12, 30, tzinfo=UTC)
    )
    # The 12:00 bar is still open at 12:30: not returned.
    assert bars["ts"].iloc[-1] == pd.Timestamp("2026-01-06 11:00", tz="UTC")
    seen = server.requests_for("BTC/USD")[0]
    assert seen.path == "/v1beta3/crypto/us/bars" and seen.params["timeframe"] == "1Hour"
    assert "feed" not in seen.params


def test_missing_credentials_name_the_vendor_and_the_variable_to_set(server, monkeypatch):
    monkeypatch.delenv("APCA_API_SECRET_KEY")
    with pytest.raises(ProviderError) as err:
        _alpaca(server).fetch_bars("AAPL", "equity", D1, since=None, until=UNTIL)
    assert "alpaca: the environment variable APCA_API_SECRET_KEY is not set" in str(err.value)
    assert server.requests_for("AAPL") == []


def test_a_rejected_key_fails_at_once_naming_the_variables_and_never_the_secret(
    server, monkeypatch, caplog
):
    monkeypatch.setenv("MY_ALPACA_SECRET", "wrong-" + SECRET)
    provider = _alpaca(server, secret_key={"env": "MY_ALPACA_SECRET"})
    with caplog.at_level(logging.DEBUG), pytest.raises(ProviderError) as err:
        provider.fetch_bars("AAPL", "equity", D1, since=None, until=UNTIL)
    message = str(err.value)
    assert message.startswith("alpaca 403 after 1 try: forbidden; check the Alpaca key pair")
    assert "APCA_API_KEY_ID and MY_ALPACA_SECRET" in message
    assert len(server.requests_for("AAPL")) == 1
    for text in (message, caplog.text, repr(provider.config())):
        assert SECRET not in text and KEY not in text
    assert provider.config()["secret_key"] == {"env": "MY_ALPACA_SECRET"}


def test_credentials_are_sent_as_alpaca_headers(server):
    _alpaca(server).fetch_bars("AAPL", "equity", D1, since=None, until=UNTIL)
    headers = server.requests_for("AAPL")[0].headers
    assert (headers["apca-api-key-id"], headers["apca-api-secret-key"]) == (KEY, SECRET)


def test_literal_credentials_in_the_universe_are_refused():
    with pytest.raises(UniverseError) as err:
        _universe({"kind": "alpaca", "secret_key": SECRET})
    assert "secret_key must be a reference to an environment variable" in str(err.value)
    assert SECRET not in str(err.value)


def test_429_with_retry_after_then_success(server, aapl):
    server.script("AAPL", Reply(429, '{"message": "too many requests."}', {"Retry-After": "1"}))
    bars = _alpaca(server).fetch_bars("AAPL", "equity", D1, since=None, until=UNTIL)
    assert len(bars) == len(aapl)
    first, second = server.requests_for("AAPL")[:2]
    assert second.at - first.at >= 1.0


def test_500_on_every_try_fails_with_alpacas_message(server):
    server.script("AAPL", *[Reply(500, '{"message": "internal server error"}')] * 3)
    with pytest.raises(ProviderError) as err:
        _alpaca(server, max_tries=3).fetch_bars("AAPL", "equity", D1, since=None, until=UNTIL)
    assert str(err.value) == "alpaca 500 after 3 tries: internal server error"


def test_an_unknown_symbol_is_an_empty_answer(server):
    bars = _alpaca(server).fetch_bars("ZZZZ", "equity", D1, since=None, until=UNTIL)
    assert bars.empty and list(bars.columns) == list(RAW_COLUMNS)


def test_an_answer_without_bars_is_refused_clearly(server):
    server.script("AAPL", Reply(200, '{"symbol": "AAPL"}'))
    with pytest.raises(ProviderError, match="has no 'bars'"):
        _alpaca(server).fetch_bars("AAPL", "equity", D1, since=None, until=UNTIL)


def test_an_incremental_fetch_reaches_overlap_bars_back_over_a_weekend(server, aapl):
    monday = aapl["ts"][aapl["ts"].dt.day_of_week == 0].iloc[-5]
    bars = _alpaca(server).fetch_bars(
        "AAPL", "equity", D1, since=monday.to_pydatetime(), until=UNTIL
    )
    before = aapl["ts"][aapl["ts"] < monday]
    assert list(bars["ts"]) == list(aapl["ts"][aapl["ts"] >= before.iloc[-3]])


def _universe(provider: dict, *, timeframes=("1h",), symbols=(("AAPL", "equity"),)):
    return universe_from_mapping(
        {
            "provider": provider,
            "symbols": [{"symbol": s, "asset_class": a} for s, a in symbols],
            "timeframes": list(timeframes),
        },
        source="u.yaml",
    )


def test_the_universe_refuses_timeframes_and_asset_classes_alpaca_lacks():
    assert _universe({"kind": "alpaca"}, timeframes=("1m", "45m", "4h", "1d")).timeframes
    with pytest.raises(UniverseError, match=r"timeframes\[1\]: alpaca has no 90m bars"):
        _universe({"kind": "alpaca"}, timeframes=("1h", "90m"))
    with pytest.raises(UniverseError, match=r"symbol 'EURUSD': alpaca serves stocks"):
        _universe({"kind": "alpaca"}, symbols=(("EURUSD", "fx"),))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"feed": "nasdaq"}, "feed must be one of sip, iex"),
        ({"adjustment": "split,bonus"}, "adjustment must be one of raw, split"),
        ({"crypto_location": "mars"}, "crypto_location must be one of us, us-1, eu-1"),
        ({"key_id": {"env": "1BAD"}}, "key_id must be a reference"),
        ({"page_limit": 20000}, "page_limit must be at most 10000"),
    ],
)
def test_bad_options_are_refused_on_load(options, message):
    with pytest.raises(UniverseError) as err:
        _universe({"kind": "alpaca", **options})
    assert message in str(err.value)
