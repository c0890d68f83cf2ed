"""The dashboard's JSON reads: every monitored pair, the open failures, one pair's detail.

Read-only, token-protected and cached like the spec's endpoints (:mod:`.handlers`); the bodies
are the models of :mod:`market_pipeline.domain.dashboard`, served by
:class:`~market_pipeline.observability.store.DashboardReads` (``app.state.dashboard``).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import Response

from market_pipeline.api.auth import require_token
from market_pipeline.api.cache import Rendered, cached
from market_pipeline.api.database import query_store
from market_pipeline.api.paths import FAILURES_DEFAULT_LIMIT, PAIR_DETAIL_DEFAULT_LIMIT
from market_pipeline.api.query import parse_limit, parse_query
from market_pipeline.api.responses import ApiError, render_json, shown
from market_pipeline.observability.store import DashboardReads

SYMBOL_PARAMETER = r"^[A-Za-z0-9._-]{1,32}$"
"""A symbol as the universe allows it (:data:`market_pipeline.domain.universe.SYMBOL_PATTERN`)."""
TIMEFRAME_PARAMETER = r"^[0-9]{1,4}[mhd]$"

_PARAMETERS = {"symbol": re.compile(SYMBOL_PARAMETER), "timeframe": re.compile(TIMEFRAME_PARAMETER)}


async def _read(
    request: Request, key: tuple[Any, ...], read: Callable[[DashboardReads], BaseModel | None]
) -> Response:
    """``read`` of the app's dashboard reads, rendered at most once per cache period; a
    ``None`` answer (an unknown pair) is a 404 that is not kept."""
    reads: DashboardReads = request.app.state.dashboard

    async def produce() -> Rendered:
        body = await query_store(request, lambda _store: read(reads))
        if body is None:
            raise ApiError(
                404,
                "unknown_pair",
                "the dashboard does not monitor this (symbol, timeframe) pair; "
                "the monitored pairs are listed by /api/v1/admin/dashboard/pairs",
            )
        return Rendered(200, render_json(body))

    return await cached(request, key, produce)


def _required(params: dict[str, str], name: str) -> str:
    value = params.get(name)
    if value is None:
        raise ApiError(400, "missing_parameter", f"the query parameter {name!r} is required")
    if not _PARAMETERS[name].fullmatch(value):
        raise ApiError(
            400,
            "invalid_parameter",
            f"{name} must match {_PARAMETERS[name].pattern}, got {shown(value)}",
        )
    return value


async def dashboard_pairs(request: Request) -> Response:
    """GET /api/v1/admin/dashboard/pairs: every monitored pair with its status and open failure."""
    require_token(request)
    parse_query(request, ())
    return await _read(request, ("dashboard-pairs",), lambda reads: reads.pairs())


async def dashboard_failures(request: Request) -> Response:
    """GET /api/v1/admin/dashboard/failures?limit=100: open failures, newest first."""
    require_token(request)
    limit = parse_limit(parse_query(request, ("limit",)), FAILURES_DEFAULT_LIMIT)
    return await _read(
        request, ("dashboard-failures", limit), lambda reads: reads.open_failures(limit=limit)
    )


async def dashboard_pair(request: Request) -> Response:
    """GET /api/v1/admin/dashboard/pair?symbol=AAPL&timeframe=1d: one pair's detail."""
    require_token(request)
    params = parse_query(request, ("symbol", "timeframe", "limit"))
    symbol, timeframe = _required(params, "symbol"), _required(params, "timeframe")
    limit = parse_limit(params, PAIR_DETAIL_DEFAULT_LIMIT)
    return await _read(
        request,
        ("dashboard-pair", symbol, timeframe, limit),
        lambda reads: reads.pair_detail(symbol, timeframe, limit=limit),
    )
