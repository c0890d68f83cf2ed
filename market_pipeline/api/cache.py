"""Rendered answers reused for about a second, one computation per key at a time."""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from market_pipeline.api.responses import json_response, plain_response


@dataclass(frozen=True)
class Rendered:
    """A rendered answer: status code and body bytes (JSON unless ``media_type`` says)."""

    status_code: int
    body: bytes
    media_type: str | None = None


class ResponseCache:
    """Rendered answers of the store-backed endpoints, reused for ``ttl`` seconds.

    Under concurrent load every request would otherwise run the same queries and rebuild the
    same report (a few milliseconds of CPU each on the demo universe, which the GIL serialises).
    With the cache one computation per key runs at a time and every request that arrives while
    it runs shares its outcome (single flight), success or failure; a success is then reused for
    ``ttl`` seconds, a failure is not kept. So an answer is at most ``ttl`` seconds old (its
    ``timestamp`` says when it was computed), and a database outage costs one check per key at a
    time rather than one per request. At most ``max_entries`` answers are kept (the oldest go
    first), so a client cycling through every ``limit`` cannot grow memory. Auth and input checks
    run before the cache on every request. ``ttl <= 0`` turns caching off.
    """

    def __init__(self, ttl: float, max_entries: int = 64) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self._entries: OrderedDict[tuple[Any, ...], tuple[float, Rendered]] = OrderedDict()
        self._flights: dict[tuple[Any, ...], asyncio.Future[Rendered]] = {}

    def _fresh(self, key: tuple[Any, ...]) -> Rendered | None:
        entry = self._entries.get(key)
        if entry is not None and entry[0] > time.monotonic():
            return entry[1]
        return None

    async def _compute(
        self, key: tuple[Any, ...], produce: Callable[[], Awaitable[Rendered]]
    ) -> Rendered:
        rendered = await produce()
        self._entries[key] = (time.monotonic() + self.ttl, rendered)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)
        return rendered

    def _land(self, key: tuple[Any, ...], flight: asyncio.Future[Rendered]) -> None:
        if self._flights.get(key) is flight:
            del self._flights[key]
        if not flight.cancelled():
            flight.exception()  # retrieved here, so an outcome nobody awaited logs no warning

    async def get(
        self, key: tuple[Any, ...], produce: Callable[[], Awaitable[Rendered]]
    ) -> Rendered:
        """The kept answer for ``key``, the outcome of the computation in flight for it, or
        that of a new ``produce()``."""
        if self.ttl <= 0:
            return await produce()
        hit = self._fresh(key)
        if hit is not None:
            return hit
        flight = self._flights.get(key)
        if flight is None:
            flight = asyncio.ensure_future(self._compute(key, produce))
            self._flights[key] = flight
            flight.add_done_callback(lambda done: self._land(key, done))
        # Shielded: a client that goes away does not cancel the others' computation.
        return await asyncio.shield(flight)


async def cached(
    request: Request, key: tuple[Any, ...], produce: Callable[[], Awaitable[Rendered]]
) -> Response:
    cache: ResponseCache = request.app.state.cache
    rendered = await cache.get(key, produce)
    if rendered.media_type is None:
        return json_response(rendered.body, rendered.status_code)
    return plain_response(rendered.body, rendered.media_type, rendered.status_code)
