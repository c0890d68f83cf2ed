"""A local stand-in for the Binance and Alpaca market-data APIs, for tests and the bench.

It implements the documented endpoints (``GET /api/v3/klines``, ``GET /v2/stocks/bars``,
``GET /v1beta3/crypto/{loc}/bars``) with their parameters, answer formats, pagination, error
bodies and rate-limit headers, over bars the test puts in (real data from bokeh-sampledata and
arch). Scripted replies (429 with ``Retry-After``, 503, a slow answer, broken JSON) can be
queued per vendor symbol; every request is recorded.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from market_pipeline_tests.support.api import running_server

BINANCE_INTERVALS = {
    "1m": 60, "3m": 180, "5m": 300, "15m": 900, "30m": 1800, "1h": 3600, "2h": 7200,
    "4h": 14400, "6h": 21600, "8h": 28800, "12h": 43200, "1d": 86400,
}  # fmt: skip
_ALPACA_TIMEFRAME = re.compile(r"^([0-9]+)(Min|T|Hour|H|Day|D)$")
_ALPACA_UNITS = {"Min": 60, "T": 60, "Hour": 3600, "H": 3600, "Day": 86400, "D": 86400}


@dataclass
class Reply:
    """An answer served instead of the real one (``delay_s`` first, for timeouts)."""

    status: int = 200
    body: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0
    then_real: bool = False
    """After the delay, serve the real answer instead of ``body``."""


@dataclass
class Seen:
    """One request as the server received it."""

    at: float
    client_port: int
    path: str
    params: dict[str, str]
    headers: dict[str, str]


class VendorServer:
    """State of the fake vendor; :meth:`serve` runs it on 127.0.0.1."""

    def __init__(self, *, key_id: str = "", secret_key: str = "", latency_s: float = 0.0):
        self.key_id = key_id
        self.secret_key = secret_key
        self.latency_s = latency_s
        self.bars: dict[tuple[str, str], pd.DataFrame] = {}
        """(vendor symbol, our timeframe code) -> frame of ts (UTC), open...volume."""
        self.splits: dict[str, list[tuple[pd.Timestamp, float]]] = {}
        """Alpaca symbol -> (effective date, ratio): bars before it are divided when adjusted."""
        self.scripts: dict[str, deque[Reply]] = {}
        self.requests: list[Seen] = []
        self.used_weight: int | None = None
        """The X-MBX-USED-WEIGHT-1M to report (None: 2 per request so far)."""
        self.in_flight = 0
        self.max_in_flight = 0
        """Most requests seen at once (counted over each request's added latency)."""
        self._lock = threading.Lock()
        self._kline_rows: dict[tuple[str, str], tuple[pd.DataFrame, np.ndarray, list[list]]] = {}

    def script(self, symbol: str, *replies: Reply) -> None:
        self.scripts.setdefault(symbol, deque()).extend(replies)

    def requests_for(self, symbol: str) -> list[Seen]:
        return [
            r
            for r in self.requests
            if symbol in r.params.get("symbol", r.params.get("symbols", ""))
        ]

    @contextmanager
    def serve(self) -> Iterator[str]:
        app = Starlette(
            routes=[
                Route("/api/v3/klines", self._klines),
                Route("/v2/stocks/bars", self._stock_bars),
                Route("/v1beta3/crypto/{loc}/bars", self._crypto_bars),
            ]
        )
        with running_server(app) as url:
            yield url

    async def _start(self, request: Request, symbol: str) -> Reply | None:
        with self._lock:
            self.requests.append(
                Seen(time.monotonic(), request.client.port if request.client else 0,
                     request.url.path, dict(request.query_params),
                     dict(request.headers))
            )  # fmt: skip
            queue = self.scripts.get(symbol)
            reply = queue.popleft() if queue else None
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.latency_s:
                await asyncio.sleep(self.latency_s)
        finally:
            with self._lock:
                self.in_flight -= 1
        if reply is not None and reply.delay_s:
            await asyncio.sleep(reply.delay_s)
        return None if reply is None or reply.then_real else reply

    # ---------------------------------------------------------------- Binance
    async def _klines(self, request: Request) -> Response:
        params = request.query_params
        symbol = params.get("symbol", "")
        reply = await self._start(request, symbol)
        if reply is not None:
            return Response(reply.body, reply.status, reply.headers, "application/json")
        used = self.used_weight if self.used_weight is not None else 2 * len(self.requests)
        headers = {"X-MBX-USED-WEIGHT-1M": str(used)}
        code = params.get("interval", "")
        frame = self.bars.get((symbol, code))
        if code not in BINANCE_INTERVALS:
            return _binance_error(-1120, "Invalid interval.")
        if frame is None:
            return _binance_error(-1121, "Invalid symbol.")
        limit = int(params.get("limit", 500))
        if not 1 <= limit <= 1000:
            return _binance_error(-1130, "Invalid data sent for a parameter.")
        opens, rows = self._klines_of(symbol, code)
        first = (
            0
            if "startTime" not in params
            else int(np.searchsorted(opens, int(params["startTime"])))
        )
        end = len(opens)
        if "endTime" in params:
            end = int(np.searchsorted(opens, int(params["endTime"]), side="right"))
        rows = rows[first : min(end, first + limit)]
        return JSONResponse(rows, headers=headers)

    def prepare(self) -> None:
        """Build every answer's rows now (else on first request), so that serving is cheap."""
        for symbol, code in list(self.bars):
            self._klines_of(symbol, code)

    def _klines_of(self, symbol: str, code: str) -> tuple[np.ndarray, list[list]]:
        """Open times (ms) and kline rows of a pair, oldest first, built once."""
        key = (symbol, code)
        cached = self._kline_rows.get(key)
        frame = self.bars[key]
        if cached is not None and cached[0] is frame:
            return cached[1], cached[2]
        opens = (frame["ts"].astype("int64") // 1_000_000).to_numpy()
        length_ms = BINANCE_INTERVALS.get(code, 60) * 1000
        rows = [
            [int(t), repr(o), repr(h), repr(lo), repr(c), repr(v), int(t) + length_ms - 1,
             repr(v * c), 1, "0", "0", "0"]
            for t, o, h, lo, c, v in zip(
                opens, frame["open"], frame["high"], frame["low"], frame["close"],
                frame["volume"], strict=True,
            )
        ]  # fmt: skip
        self._kline_rows[key] = (frame, opens, rows)
        return opens, rows

    # ---------------------------------------------------------------- Alpaca
    async def _stock_bars(self, request: Request) -> Response:
        return await self._alpaca(request, crypto=False)

    async def _crypto_bars(self, request: Request) -> Response:
        return await self._alpaca(request, crypto=True)

    async def _alpaca(self, request: Request, *, crypto: bool) -> Response:
        params = request.query_params
        symbols = [s for s in params.get("symbols", "").split(",") if s]
        reply = await self._start(request, ",".join(symbols))
        if reply is not None:
            return Response(reply.body, reply.status, reply.headers, "application/json")
        if not crypto:
            key, secret = (
                request.headers.get("APCA-API-KEY-ID"),
                request.headers.get("APCA-API-SECRET-KEY"),
            )
            if not key or not secret:
                return JSONResponse({"message": "unauthorized."}, 401)
            if (key, secret) != (self.key_id, self.secret_key):
                return JSONResponse({"message": "forbidden"}, 403)
        match = _ALPACA_TIMEFRAME.match(params.get("timeframe", ""))
        if not symbols or match is None:
            return JSONResponse({"message": "invalid timeframe or symbols"}, 422)
        seconds = int(match.group(1)) * _ALPACA_UNITS[match.group(2)]
        code = _our_code(seconds)
        limit = int(params.get("limit", 1000))
        if not 1 <= limit <= 10000:
            return JSONResponse({"message": "invalid limit: must be between 1 and 10000"}, 422)
        start = pd.Timestamp(params.get("start", "1970-01-01T00:00:00Z"))
        end = pd.Timestamp(params.get("end", "2100-01-01T00:00:00Z"))
        adjust = params.get("adjustment", "raw")
        flat: list[tuple[str, dict]] = []
        for symbol in symbols:
            frame = self.bars.get((symbol, code))
            if frame is None:
                continue
            frame = self._adjusted(symbol, frame, adjust)
            frame = frame[((frame["ts"] >= start) & (frame["ts"] <= end)).to_numpy()]
            flat += [(symbol, _alpaca_bar(row, code, crypto)) for row in frame.itertuples()]
        offset = int(base64.b64decode(params["page_token"])) if "page_token" in params else 0
        page = flat[offset : offset + limit]
        bars: dict[str, list[dict]] = {}
        for symbol, bar in page:
            bars.setdefault(symbol, []).append(bar)
        more = offset + limit < len(flat)
        token = base64.b64encode(str(offset + limit).encode()).decode() if more else None
        return Response(
            json.dumps({"bars": bars, "next_page_token": token}),
            200,
            {"X-RateLimit-Limit": "200", "X-RateLimit-Remaining": "199"},
            "application/json",
        )

    def _adjusted(self, symbol: str, frame: pd.DataFrame, adjustment: str) -> pd.DataFrame:
        if not ({"split", "all"} & set(adjustment.split(","))):
            return frame
        frame = frame.copy()
        for effective, ratio in self.splits.get(symbol, []):
            before = (frame["ts"] < effective).to_numpy()
            for column in ("open", "high", "low", "close"):
                frame.loc[before, column] = frame.loc[before, column] / ratio
            frame.loc[before, "volume"] = frame.loc[before, "volume"] * ratio
        return frame


def _our_code(seconds: int) -> str:
    if seconds % 86400 == 0:
        return f"{seconds // 86400}d"
    if seconds % 3600 == 0:
        return f"{seconds // 3600}h"
    return f"{seconds // 60}m"


def _alpaca_bar(row, code: str, crypto: bool) -> dict:
    ts = pd.Timestamp(row.ts)
    if code == "1d" and not crypto:
        # Alpaca stamps a stock's daily bar at midnight New York time (04:00 or 05:00 UTC).
        ts = pd.Timestamp(ts.date(), tz="America/New_York").tz_convert("UTC")
    return {
        "t": ts.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "o": row.open,
        "h": row.high,
        "l": row.low,
        "c": row.close,
        "v": row.volume,
        "n": 1,
        "vw": row.close,
    }


def _binance_error(code: int, msg: str) -> Response:
    return JSONResponse({"code": code, "msg": msg}, 400)
