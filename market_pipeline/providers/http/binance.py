"""Binance spot klines (public market data, no key): ``GET /api/v3/klines``.

Provider block (every key but ``kind`` is optional; the values shown are the defaults)::

    provider:
      kind: binance
      base_url: https://api.binance.com
      symbols: {BTC-USD: BTCUSDT}  # our symbol -> Binance's; default: ours without - _ . /
      history_start: null         # first fetch of a pair from this date (null: all history)
      overlap_bars: 3             # bars before `since` fetched again to catch revisions
      weight_per_minute: 6000     # client-side limit in Binance request weight (klines cost 2)
      concurrency: 8              # requests in flight at once
      timeout_s: 10
      max_tries: 4                # tries in all, for 5xx, timeouts, 429 (and short 418 bans)
      backoff_s: 0.5              # first backoff ceiling; doubles each try, full jitter
      max_backoff_s: 30
      max_retry_after_s: 60       # a longer Retry-After fails the pair instead of waiting

From the documentation (developers.binance.com, spot REST API, "Kline/Candlestick data" and
"LIMITS"): parameters ``symbol``, ``interval``, ``startTime``, ``endTime`` (milliseconds, UTC,
filtering on the open time), ``limit`` (default 500, max 1000); the answer is an array of
arrays ``[open time, open, high, low, close, volume, close time, quote volume, trades, taker
buy base, taker buy quote, ignore]`` with prices as strings, oldest first. Intervals: 1s, 1m,
3m, 5m, 15m, 30m, 1h, 2h, 4h, 6h, 8h, 12h, 1d, 3d, 1w, 1M; the pipeline's timeframes map onto
those up to 1d and any other is refused when the universe loads. Limits are weights per IP
(``X-MBX-USED-WEIGHT-1M`` reports the use, klines weigh 2); breaking them answers 429 with
``Retry-After``, and going on after 429s gets the IP banned with 418 (2 minutes to 3 days),
also with ``Retry-After``. Errors carry ``{"code": -1121, "msg": "Invalid symbol."}``.

Pages: a window longer than ``limit`` klines is fetched page after page, each starting 1 ms
after the previous page's last open time. Klines still open at ``until`` are not returned.
When an answer's ``X-MBX-USED-WEIGHT-1M`` reaches ``weight_per_minute`` (other clients on the
IP count too), every request of the provider waits for the next minute.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

import httpx
import numpy as np
import pandas as pd

from market_pipeline.domain.timeframes import Timeframe
from market_pipeline.providers.base import ProviderError, register_provider
from market_pipeline.providers.http.limits import RetryPolicy
from market_pipeline.providers.http.vendor import (
    HttpVendorProvider,
    bars_frame,
    check_positive,
    empty_bars,
    numbers,
)

DEFAULT_BASE_URL = "https://api.binance.com"
KLINES_PATH = "/api/v3/klines"
KLINES_WEIGHT = 2
USED_WEIGHT_HEADER = "X-MBX-USED-WEIGHT-1M"
MAX_LIMIT = 1000
INTERVALS = {
    60: "1m",
    180: "3m",
    300: "5m",
    900: "15m",
    1800: "30m",
    3600: "1h",
    7200: "2h",
    14400: "4h",
    21600: "6h",
    28800: "8h",
    43200: "12h",
    86400: "1d",
}
_DROPPED = str.maketrans("", "", "-_./")


def binance_error_text(response: httpx.Response) -> str:
    """``msg (code n)`` from Binance's error body, else the body's start."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:200]
    if isinstance(body, dict) and "msg" in body:
        return f"{body['msg']} (code {body.get('code')})"
    return response.text[:200]


@register_provider
class BinanceProvider(HttpVendorProvider):
    """Binance spot klines (see the module docstring)."""

    kind = "binance"
    vendor = "binance"

    def __init__(
        self,
        *,
        base_url: str = DEFAULT_BASE_URL,
        symbols: dict[str, str] | None = None,
        history_start: str | None = None,
        overlap_bars: int = 3,
        weight_per_minute: float = 6000,
        concurrency: int = 8,
        timeout_s: float = 10.0,
        max_tries: int = 4,
        backoff_s: float = 0.5,
        max_backoff_s: float = 30.0,
        max_retry_after_s: float = 60.0,
        page_limit: int = MAX_LIMIT,
    ) -> None:
        check_positive("weight_per_minute", weight_per_minute)
        check_positive("page_limit", page_limit, whole=True)
        if page_limit > MAX_LIMIT:
            raise ValueError(f"page_limit must be at most {MAX_LIMIT} (Binance's maximum)")
        self.page_limit = page_limit
        self.weight_per_minute = weight_per_minute
        self._set_up(
            base_url=base_url,
            timeout_s=timeout_s,
            concurrency=concurrency,
            per_minute=weight_per_minute,
            retry=RetryPolicy(max_tries, backoff_s, max_backoff_s, max_retry_after_s),
            overlap_bars=overlap_bars,
            history_start=history_start,
            symbols=symbols,
            error_text=binance_error_text,
        )

    def unsupported_timeframe(self, timeframe: Timeframe) -> str | None:
        if timeframe.seconds in INTERVALS:
            return None
        return (
            f"binance has no {timeframe.code} klines; its intervals up to a day are "
            f"{', '.join(INTERVALS.values())}"
        )

    def unsupported_asset_class(self, asset_class: str) -> str | None:
        if asset_class == "crypto":
            return None
        return f"binance spot serves crypto pairs only, not {asset_class}"

    def _watch_weight(self, response: httpx.Response) -> None:
        """Hold every request until the next minute once Binance reports this IP has used the
        minute's weight (other clients on the IP count too, which our own bucket cannot see)."""
        used = response.headers.get(USED_WEIGHT_HEADER, "")
        if used.isdigit() and int(used) >= self.weight_per_minute:
            self.client.limiter.pause(60.0 - time.time() % 60.0)

    def vendor_symbol(self, symbol: str) -> str:
        return self.symbol_map.get(symbol) or symbol.translate(_DROPPED).upper()

    def fetch_bars(
        self,
        symbol: str,
        asset_class: str,
        timeframe: Timeframe,
        *,
        since: datetime | None,
        until: datetime,
    ) -> pd.DataFrame:
        """Klines of one pair, page after page; ``ts`` is the open time in UTC."""
        interval = INTERVALS.get(timeframe.seconds)
        if interval is None:
            raise ProviderError(
                f"binance: {symbol} {timeframe}: {self.unsupported_timeframe(timeframe)}"
            )
        start, last_start = self.window(asset_class, timeframe, since, until)
        params: dict[str, Any] = {
            "symbol": self.vendor_symbol(symbol),
            "interval": interval,
            "endTime": _ms(last_start),
            "limit": self.page_limit,
        }
        cursor = 0 if start is None else max(0, _ms(start))
        rows: list[list[Any]] = []
        while cursor <= params["endTime"]:
            page = self.client.get_json(
                KLINES_PATH,
                {**params, "startTime": cursor},
                cost=KLINES_WEIGHT,
                on_answer=self._watch_weight,
            )
            _check_page(page, symbol)
            rows.extend(page)
            if len(page) < self.page_limit:
                break
            cursor = int(page[-1][0]) + 1
        if not rows:
            return empty_bars()
        return self.finish(_klines_frame(rows, params["endTime"]), since)


def _klines_frame(rows: list[list[Any]], last_open_ms: int) -> pd.DataFrame:
    """The raw frame of checked kline rows, without those opened after ``last_open_ms`` (still
    open at ``until``: Binance answers with the current one)."""
    # One transpose in C, then each column parsed by numpy at once, instead of a Python loop
    # per row and column: the per-pair CPU is what bounds a concurrent fetch.
    columns = list(zip(*rows, strict=False))  # rows have at least 6 fields (_check_page)
    opens = np.array(columns[0], dtype=np.int64)
    values = numbers(columns[1:6])
    done = opens <= last_open_ms
    if not done.all():
        opens, values = opens[done], values[:, done]
    return bars_frame((opens * 1_000_000).view("datetime64[ns]"), values)


def _ms(value: pd.Timestamp) -> int:
    return int(value.as_unit("ns").value // 1_000_000)


def _check_page(page: Any, symbol: str) -> None:
    if not isinstance(page, list) or not all(
        isinstance(row, list) and len(row) >= 6 and isinstance(row[0], int) for row in page
    ):
        raise ProviderError(
            f"binance: {symbol}: {KLINES_PATH} answered {str(page)[:80]!r}, not an array of "
            "klines [open time, open, high, low, close, volume, ...]"
        )
