"""Alpaca Market Data v2 historical bars: stocks (``/v2/stocks/bars``) and crypto
(``/v1beta3/crypto/{loc}/bars``).

Provider block (every key but ``kind`` is optional; the values shown are the defaults)::

    provider:
      kind: alpaca
      key_id: {env: APCA_API_KEY_ID}          # the variables holding the credentials; the
      secret_key: {env: APCA_API_SECRET_KEY}  # values are read at fetch time, never stored
      feed: sip                   # stocks: sip, iex, boats, otc, delayed_sip
      adjustment: raw             # stocks: raw, split, dividend, spin-off, all, or a
                                  # comma list such as split,dividend
      crypto_location: us         # crypto: us, us-1, eu-1
      symbols: {BTC-USD: BTC/USD} # our symbol -> Alpaca's; default: stocks as they are,
                                  # crypto with - as / (BTC-USD -> BTC/USD)
      base_url: https://data.alpaca.markets
      history_start: null         # first fetch of a pair from this date (null: 1970, i.e. all)
      overlap_bars: 3
      requests_per_minute: 200    # Alpaca's Basic plan; Algo Trader Plus allows 10,000
      concurrency: 8
      timeout_s: 10
      max_tries: 4
      backoff_s: 0.5
      max_backoff_s: 30
      max_retry_after_s: 60

From the documentation (docs.alpaca.markets, "Historical bars" of stocks and crypto): the
headers ``APCA-API-KEY-ID`` and ``APCA-API-SECRET-KEY`` authenticate (crypto data needs none,
so they are sent only when set); parameters ``symbols`` (comma list), ``timeframe``
(``[1-59]Min``, ``[1-23]Hour``, ``1Day``, ``1Week``, ``[1,2,3,4,6,12]Month``), ``start`` and
``end`` (RFC 3339, inclusive), ``limit`` (1-10,000, counted over all symbols), ``page_token``,
``sort``, and for stocks ``feed`` and ``adjustment``. The answer is ``{"bars": {"AAPL": [{"t":
"2022-01-03T09:00:00Z", "o", "h", "l", "c", "v", "n", "vw"}, ...]}, "next_page_token": ...}``;
a non-null token means more pages. Errors are ``{"message": "..."}`` with 400/422 for bad
parameters, 401/403 for missing or wrong keys and 429 for the rate limit.

Daily bars: Alpaca stamps a stock's day at midnight New York time (04:00 or 05:00 UTC); the
pipeline stamps daily bars 00:00 UTC of their date, so daily timestamps are floored to the UTC
day. Bars still in progress at ``until`` are not returned.
"""

from __future__ import annotations

import os
from datetime import datetime
from typing import Any

import httpx
import pandas as pd

from market_pipeline.domain.timeframes import Timeframe
from market_pipeline.providers.base import ProviderError, register_provider
from market_pipeline.providers.http.client import VendorHttpError
from market_pipeline.providers.http.limits import RetryPolicy
from market_pipeline.providers.http.vendor import (
    HttpVendorProvider,
    bars_frame,
    check_positive,
    empty_bars,
    env_reference,
    numbers,
    read_env,
)

DEFAULT_BASE_URL = "https://data.alpaca.markets"
FEEDS = ("sip", "iex", "boats", "otc", "delayed_sip")
ADJUSTMENTS = ("raw", "split", "dividend", "spin-off", "all")
CRYPTO_LOCATIONS = ("us", "us-1", "eu-1")
MAX_LIMIT = 10_000
DEFAULT_HISTORY_START = pd.Timestamp("1970-01-01", tz="UTC")
_AUTH_STATUSES = (401, 403)


def alpaca_timeframe(timeframe: Timeframe) -> str | None:
    """Alpaca's name for ``timeframe`` (``5Min``, ``1Hour``, ``1Day``), or None."""
    seconds = timeframe.seconds
    if seconds == 86400:
        return "1Day"
    if seconds % 3600 == 0 and seconds // 3600 <= 23:
        return f"{seconds // 3600}Hour"
    if seconds % 60 == 0 and seconds // 60 <= 59:
        return f"{seconds // 60}Min"
    return None


def alpaca_error_text(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:200]
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        return body["message"]
    return response.text[:200]


@register_provider
class AlpacaProvider(HttpVendorProvider):
    """Alpaca historical bars (see the module docstring)."""

    kind = "alpaca"
    vendor = "alpaca"

    def __init__(
        self,
        *,
        key_id: dict[str, str] | None = None,
        secret_key: dict[str, str] | None = None,
        feed: str = "sip",
        adjustment: str = "raw",
        crypto_location: str = "us",
        symbols: dict[str, str] | None = None,
        base_url: str = DEFAULT_BASE_URL,
        history_start: str | None = None,
        overlap_bars: int = 3,
        requests_per_minute: float = 200,
        concurrency: int = 8,
        timeout_s: float = 10.0,
        max_tries: int = 4,
        backoff_s: float = 0.5,
        max_backoff_s: float = 30.0,
        max_retry_after_s: float = 60.0,
        page_limit: int = MAX_LIMIT,
    ) -> None:
        self.key_id_env = env_reference(key_id, name="key_id", default="APCA_API_KEY_ID")
        self.secret_key_env = env_reference(
            secret_key, name="secret_key", default="APCA_API_SECRET_KEY"
        )
        if feed not in FEEDS:
            raise ValueError(f"feed must be one of {', '.join(FEEDS)}, got {feed!r}")
        parts = adjustment.split(",") if isinstance(adjustment, str) else [adjustment]
        if not parts or any(part not in ADJUSTMENTS for part in parts):
            raise ValueError(
                f"adjustment must be one of {', '.join(ADJUSTMENTS)} or a comma list of them, "
                f"got {adjustment!r}"
            )
        if crypto_location not in CRYPTO_LOCATIONS:
            raise ValueError(
                f"crypto_location must be one of {', '.join(CRYPTO_LOCATIONS)}, got "
                f"{crypto_location!r}"
            )
        check_positive("requests_per_minute", requests_per_minute)
        check_positive("page_limit", page_limit, whole=True)
        if page_limit > MAX_LIMIT:
            raise ValueError(f"page_limit must be at most {MAX_LIMIT} (Alpaca's maximum)")
        self.feed, self.adjustment, self.crypto_location = feed, adjustment, crypto_location
        self.page_limit = page_limit
        self._set_up(
            base_url=base_url,
            timeout_s=timeout_s,
            concurrency=concurrency,
            per_minute=requests_per_minute,
            retry=RetryPolicy(max_tries, backoff_s, max_backoff_s, max_retry_after_s),
            overlap_bars=overlap_bars,
            history_start=history_start,
            symbols=symbols,
            error_text=alpaca_error_text,
        )
        if self.history_start is None:
            self.history_start = DEFAULT_HISTORY_START

    def unsupported_timeframe(self, timeframe: Timeframe) -> str | None:
        if alpaca_timeframe(timeframe) is not None:
            return None
        return (
            f"alpaca has no {timeframe.code} bars; it offers 1-59 minutes, 1-23 hours and "
            "1 day (e.g. 5m, 90m is not one)"
        )

    def unsupported_asset_class(self, asset_class: str) -> str | None:
        if asset_class in ("equity", "crypto"):
            return None
        return f"alpaca serves stocks (equity) and crypto, not {asset_class}"

    def vendor_symbol(self, symbol: str, asset_class: str) -> str:
        if symbol in self.symbol_map:
            return self.symbol_map[symbol]
        return symbol.replace("-", "/") if asset_class == "crypto" else symbol

    def fetch_bars(
        self,
        symbol: str,
        asset_class: str,
        timeframe: Timeframe,
        *,
        since: datetime | None,
        until: datetime,
    ) -> pd.DataFrame:
        """Bars of one pair, following ``next_page_token``; ``ts`` is the bar start in UTC."""
        code = alpaca_timeframe(timeframe)
        if code is None or asset_class not in ("equity", "crypto"):
            problem = self.unsupported_timeframe(timeframe) or self.unsupported_asset_class(
                asset_class
            )
            raise ProviderError(f"alpaca: {symbol} {timeframe}: {problem}")
        start, last_start = self.window(asset_class, timeframe, since, until)
        theirs = self.vendor_symbol(symbol, asset_class)
        path, params = self._request(asset_class, theirs, code, start, last_start)
        headers = self._headers(required=asset_class == "equity")
        bars: list[dict[str, Any]] = []
        token: str | None = None
        while True:
            page_params = {**params, **({"page_token": token} if token else {})}
            try:
                body = self.client.get_json(path, page_params, headers=headers)
            except VendorHttpError as exc:
                raise self._explained(exc) from None
            page, token = _page_bars(body, theirs, symbol)
            bars.extend(page)
            if not token:
                break
        return self.finish(_frame(bars, timeframe, last_start), since)

    def _request(
        self,
        asset_class: str,
        theirs: str,
        code: str,
        start: pd.Timestamp | None,
        last_start: pd.Timestamp,
    ) -> tuple[str, dict[str, Any]]:
        params: dict[str, Any] = {
            "symbols": theirs,
            "timeframe": code,
            "start": _rfc3339(start if start is not None else DEFAULT_HISTORY_START),
            "end": _rfc3339(last_start),
            "limit": self.page_limit,
            "sort": "asc",
        }
        if asset_class == "crypto":
            return f"/v1beta3/crypto/{self.crypto_location}/bars", params
        return "/v2/stocks/bars", {**params, "feed": self.feed, "adjustment": self.adjustment}

    def _headers(self, *, required: bool) -> dict[str, str]:
        if not required:
            key, secret = os.environ.get(self.key_id_env), os.environ.get(self.secret_key_env)
            if not key or not secret:
                return {}
            return {"APCA-API-KEY-ID": key, "APCA-API-SECRET-KEY": secret}
        return {
            "APCA-API-KEY-ID": read_env(self.key_id_env, vendor="alpaca", option="key_id"),
            "APCA-API-SECRET-KEY": read_env(
                self.secret_key_env, vendor="alpaca", option="secret_key"
            ),
        }

    def _explained(self, exc: VendorHttpError) -> VendorHttpError:
        if exc.status not in _AUTH_STATUSES:
            return exc
        return VendorHttpError(
            f"{exc}; check the Alpaca key pair in the environment variables "
            f"{self.key_id_env} and {self.secret_key_env}",
            status=exc.status,
            tries=exc.tries,
        )


def _rfc3339(value: pd.Timestamp) -> str:
    return value.tz_convert("UTC").strftime("%Y-%m-%dT%H:%M:%SZ")


def _page_bars(body: Any, theirs: str, ours: str) -> tuple[list[dict[str, Any]], str | None]:
    if not isinstance(body, dict) or "bars" not in body:
        raise ProviderError(
            f"alpaca: {ours}: the answer {str(body)[:80]!r} has no 'bars'; expected "
            '{"bars": {...}, "next_page_token": ...}'
        )
    per_symbol = body.get("bars") or {}
    token = body.get("next_page_token")
    if not isinstance(per_symbol, dict) or not (token is None or isinstance(token, str)):
        raise ProviderError(f"alpaca: {ours}: unexpected answer {str(body)[:80]!r}")
    page = per_symbol.get(theirs) or []
    if not isinstance(page, list) or not all(isinstance(bar, dict) for bar in page):
        raise ProviderError(f"alpaca: {ours}: bars of {theirs} are not a list of objects")
    return page, token


def _frame(bars: list[dict[str, Any]], timeframe: Timeframe, last_start: pd.Timestamp):
    if not bars:
        return empty_bars()
    ts = pd.DatetimeIndex(
        pd.to_datetime(
            pd.Series([bar.get("t") for bar in bars], dtype=object),
            utc=True,
            errors="coerce",
            format="ISO8601",
        )
    ).as_unit("ns")
    if not timeframe.is_intraday:
        ts = ts.floor("D")
    values = numbers([[bar.get(key) for bar in bars] for key in ("o", "h", "l", "c", "v")])
    frame = bars_frame(ts, values)
    complete = (frame["ts"].isna() | (frame["ts"] <= last_start)).to_numpy()
    return frame if complete.all() else frame.loc[complete].reset_index(drop=True)
