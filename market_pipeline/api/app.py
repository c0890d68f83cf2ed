"""The admin HTTP API: the three endpoints of PHASE_1_OBSERVABILITY.md, probes and an OpenAPI
document, over the same :class:`~market_pipeline.observability.store.ObservabilityStore` as the
Dagster resource.

Endpoints (all ``GET``; ``HEAD`` is answered too):

=============================================  ====================================  ==========
path                                           answers                               token
=============================================  ====================================  ==========
``/api/v1/admin/scheduler-health``             the spec's health body, always 200    required
``/api/v1/admin/features/staleness``           the spec's staleness report           required
``/api/v1/admin/scheduler/execution-history``  the spec's execution history          required
``/healthz``                                   health status: 200 healthy, 503       required
                                               degraded (for monitors that only
                                               look at the status code)
``/readyz``                                    200 when the database answers and     open
                                               its schema is current, else 503
``/livez``                                     200 while the process serves HTTP     open
``/openapi.json``                              the OpenAPI 3.1 document              open
=============================================  ====================================  ==========

"token required" applies when ``MARKET_PIPELINE_ADMIN_TOKEN`` is set: the request then needs
``Authorization: Bearer <token>`` (compared in constant time); without it the answer is 401 with
``WWW-Authenticate: Bearer`` and a body that holds no data. Liveness and readiness stay open
because orchestrators probe them without credentials; they reveal nothing about the scheduler, and
readiness names the database in its 503 reason only to callers that present the token (or when no
token is configured).

Input rules, so hostile requests get a 4xx JSON ``{"error": code, "detail": message}`` and never
reach the 500 handler: ``limit`` is an integer from 1 to :data:`MAX_LIMIT` (1000; per freshness
status list on the staleness endpoint); unknown, repeated or malformed query parameters are a 400
naming them; a query string longer than :data:`MAX_QUERY_BYTES` is a 414; percent-encoded bytes that
are not UTF-8 are a 400; unknown paths are a 404 and other methods a 405, both as JSON. A database
that cannot be reached is a 503 naming it (password masked), not a 500.

The store-backed answers are rendered once per :data:`DEFAULT_CACHE_SECONDS` (1 s) and key and
reused meanwhile (:class:`ResponseCache`), so concurrent dashboards cost one set of queries per
second; each body's ``timestamp`` says when it was computed. ``/readyz`` reuses a success the
same way, never a failure.

Timestamps are ISO 8601 UTC with ``Z`` (``YYYY-MM-DDTHH:MM:SSZ``, as in the spec);
``staleness_seconds`` is whole seconds (floored, as in the spec's example), ``duration_seconds`` is
kept to the stored precision.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import re
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

import sqlalchemy as sa
from pydantic import BaseModel
from sqlalchemy.engine import Engine, make_url
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from market_pipeline.config.settings import Settings, normalize_db_url
from market_pipeline.database.engine import (
    DatabaseUnavailableError,
    check_connection,
    describe_url,
    make_engine,
)
from market_pipeline.database.migrations import MigrationError, ensure_current
from market_pipeline.domain.freshness import FRESHNESS_STATUSES, HEALTH_STATUSES
from market_pipeline.observability.store import (
    MAX_LIMIT,
    ObservabilityStore,
    to_json_ready,
)

logger = logging.getLogger("market_pipeline.api")

API_TITLE = "market_pipeline admin API"
API_VERSION = "1.0.0"

HEALTH_PATH = "/api/v1/admin/scheduler-health"
STALENESS_PATH = "/api/v1/admin/features/staleness"
HISTORY_PATH = "/api/v1/admin/scheduler/execution-history"
HEALTH_PROBE_PATH = "/healthz"
READINESS_PATH = "/readyz"
LIVENESS_PATH = "/livez"
OPENAPI_PATH = "/openapi.json"

STALENESS_DEFAULT_LIMIT = 50
HISTORY_DEFAULT_LIMIT = 20

MAX_QUERY_BYTES = 2048
"""Longest query string accepted, in bytes; longer ones are answered 414."""

MAX_QUERY_FIELDS = 16
"""Most ``name=value`` pairs parsed from one query string."""

DEFAULT_CACHE_SECONDS = 1.0
"""How long the store-backed endpoints reuse a rendered answer (see :class:`ResponseCache`)."""

SCHEMA_RECHECK_SECONDS = 30.0
"""``/readyz`` connects every time but re-reads the migration state only this often once it was
current (a failed query re-checks at once)."""

MAX_BODY_BYTES = 1024
"""Largest request body declared (``Content-Length``) before a 413; no endpoint reads one."""

_SHOWN_CHARS = 40
_LIMIT_TEXT = re.compile(r"[0-9]{1,10}")
_JSON_HEADERS = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}


class ApiError(Exception):
    """A request the API refuses: answered as ``{"error": code, "detail": detail}``."""

    def __init__(
        self,
        status_code: int,
        error: str,
        detail: str,
        *,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status_code = status_code
        self.error = error
        self.detail = detail
        self.headers = headers or {}


def render_json(body: Any) -> bytes:
    """``body`` (a contract model or plain data) as compact UTF-8 JSON in the spec's formats."""
    data = body.model_dump(mode="json") if isinstance(body, BaseModel) else to_json_ready(body)
    return json.dumps(data, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode(
        "utf-8"
    )


def json_response(
    body: Any, status_code: int = 200, *, headers: dict[str, str] | None = None
) -> Response:
    """A JSON response in the spec's formats (``Z`` timestamps), never cached by proxies."""
    content = body if isinstance(body, bytes) else render_json(body)
    return Response(
        content,
        status_code=status_code,
        media_type="application/json",
        headers={**_JSON_HEADERS, **(headers or {})},
    )


def error_response(
    status_code: int, error: str, detail: str, *, headers: dict[str, str] | None = None
) -> Response:
    """The body of every refusal: ``{"error": code, "detail": message}``."""
    return json_response({"error": error, "detail": detail}, status_code, headers=headers)


def _shown(text: str) -> str:
    """``repr`` of client input, cut so that an error message never echoes a huge value."""
    if len(text) > _SHOWN_CHARS:
        return repr(text[:_SHOWN_CHARS]) + "..."
    return repr(text)


# --------------------------------------------------------------------------------------------
# Request checks
# --------------------------------------------------------------------------------------------


def parse_query(request: Request, allowed: Sequence[str]) -> dict[str, str]:
    """The query parameters of ``request``, each given at most once and all in ``allowed``.

    Raises :class:`ApiError` (414 or 400) for a query string that is too long, holds raw
    non-ASCII bytes or percent-encoded bytes that are not UTF-8, has too many fields, repeats a
    parameter or names one the endpoint does not take.
    """
    raw: bytes = request.scope.get("query_string", b"")
    if len(raw) > MAX_QUERY_BYTES:
        raise ApiError(
            414,
            "query_too_long",
            f"the query string is {len(raw)} bytes long; at most {MAX_QUERY_BYTES} are accepted",
        )
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError:
        raise ApiError(
            400,
            "invalid_query_string",
            "the query string holds raw non-ASCII bytes; percent-encode its UTF-8 bytes",
        ) from None
    try:
        pairs = parse_qsl(
            text,
            keep_blank_values=True,
            encoding="utf-8",
            errors="strict",
            max_num_fields=MAX_QUERY_FIELDS,
        )
    except UnicodeDecodeError:
        raise ApiError(
            400,
            "invalid_query_string",
            "the query string holds percent-encoded bytes that are not UTF-8",
        ) from None
    except ValueError:
        raise ApiError(
            400,
            "invalid_query_string",
            f"the query string has more than {MAX_QUERY_FIELDS} parameters",
        ) from None
    names = [name for name, _ in pairs]
    unknown = sorted({name for name in names if name not in allowed})
    if unknown:
        accepted = ", ".join(allowed) if allowed else "no query parameters"
        raise ApiError(
            400,
            "unknown_parameter",
            f"unknown query parameter(s) {', '.join(_shown(name) for name in unknown)}; "
            f"this endpoint accepts {accepted}",
        )
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ApiError(
            400,
            "repeated_parameter",
            f"query parameter(s) {', '.join(repeated)} given more than once; give each once",
        )
    return dict(pairs)


def parse_limit(params: dict[str, str], default: int) -> int:
    """``limit`` from the query: a decimal integer from 1 to :data:`MAX_LIMIT`, else a 400."""
    text = params.get("limit")
    if text is None:
        return default
    if not _LIMIT_TEXT.fullmatch(text):
        raise ApiError(
            400,
            "invalid_parameter",
            f"limit must be an integer from 1 to {MAX_LIMIT}, got {_shown(text)}",
        )
    value = int(text)
    if not 1 <= value <= MAX_LIMIT:
        raise ApiError(
            400,
            "invalid_parameter",
            f"limit must be from 1 to {MAX_LIMIT}, got {value}",
        )
    return value


def _digest(value: bytes) -> bytes:
    # Comparing fixed-length digests keeps the token's length out of the timing as well.
    return hashlib.sha256(value).digest()


def presented_token_is_valid(request: Request, token: str | None) -> bool:
    """Whether ``request`` carries ``Authorization: Bearer <token>`` (constant-time compare).

    True when no token is configured.
    """
    if token is None:
        return True
    header = request.headers.get("authorization", "")
    scheme, _, credentials = header.strip().partition(" ")
    if scheme.lower() != "bearer":
        return False
    # Header values are decoded as latin-1; encoding back gives the bytes that were sent.
    presented = credentials.strip().encode("latin-1")
    return hmac.compare_digest(_digest(presented), _digest(token.encode("utf-8")))


def require_token(request: Request) -> None:
    """Raise a 401 :class:`ApiError` unless the request presents the configured admin token."""
    token = request.app.state.admin_token
    if presented_token_is_valid(request, token):
        return
    header = request.headers.get("authorization")
    if header is None:
        detail = "this endpoint requires the header 'Authorization: Bearer <admin token>'"
        challenge = 'Bearer realm="market_pipeline"'
    else:
        detail = "the bearer token is missing, malformed or wrong"
        challenge = 'Bearer realm="market_pipeline", error="invalid_token"'
    raise ApiError(401, "unauthorized", detail, headers={"WWW-Authenticate": challenge})


# --------------------------------------------------------------------------------------------
# Store access
# --------------------------------------------------------------------------------------------


@dataclass
class _Database:
    """What the handlers need to reach, check and describe the database."""

    engine: Engine
    description: str
    password: str | None
    schema_checked_at: float | None = None

    def mask(self, text: str) -> str:
        """``text`` with the database password, should a driver message repeat it, masked."""
        if self.password:
            text = text.replace(self.password, "***")
        return text

    def check(self, *, schema_recheck_seconds: float = SCHEMA_RECHECK_SECONDS) -> None:
        """Connect (every time), then check migrations unless that passed within
        ``schema_recheck_seconds``. Raises what the storage layer raises."""
        check_connection(self.engine)
        now = time.monotonic()
        last = self.schema_checked_at
        if last is None or now - last >= schema_recheck_seconds:
            self.schema_checked_at = None
            ensure_current(self.engine)
            self.schema_checked_at = now


def _db_failure(db: _Database, exc: Exception) -> ApiError:
    """The 503 answer for a database that fails under a request."""
    if isinstance(exc, DatabaseUnavailableError):
        return ApiError(503, "database_unavailable", db.mask(str(exc)))
    if isinstance(exc, MigrationError):
        return ApiError(503, "schema_not_current", db.mask(str(exc)))
    if isinstance(exc, sa.exc.OperationalError | sa.exc.InterfaceError):
        orig = getattr(exc, "orig", None)
        reason = str(orig).strip().splitlines()[0] if orig is not None else type(exc).__name__
        return ApiError(
            503, "database_unavailable", db.mask(f"cannot query {db.description}: {reason}")
        )
    return ApiError(
        503,
        "database_error",
        f"a query on {db.description} failed; see {READINESS_PATH} and the server log",
    )


def _diagnose(db: _Database, exc: Exception) -> ApiError:
    """Why a query failed: the database is down, not migrated, or (else) the query itself."""
    try:
        db.check(schema_recheck_seconds=0)
    except (sa.exc.SQLAlchemyError, DatabaseUnavailableError, MigrationError) as found:
        return _db_failure(db, found)
    return _db_failure(db, exc)


async def _query_store(request: Request, call: Callable[[ObservabilityStore], Any]) -> Any:
    """Run ``call(store)`` in the threadpool; database failures become a 503 :class:`ApiError`.

    Only a failed query pays for the diagnosis (a connection check and the migration check),
    so the answer says whether the database is down or not migrated.
    """
    store: ObservabilityStore = request.app.state.store
    db: _Database = request.app.state.database
    try:
        return await run_in_threadpool(call, store)
    except (sa.exc.SQLAlchemyError, DatabaseUnavailableError, MigrationError) as exc:
        logger.warning("database failure under %s: %s", request.url.path, db.mask(str(exc)))
        raise await run_in_threadpool(_diagnose, db, exc) from None




# --------------------------------------------------------------------------------------------
# Handlers
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rendered:
    """A rendered answer: status code and JSON bytes."""

    status_code: int
    body: bytes


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


async def _cached(
    request: Request, key: tuple[Any, ...], produce: Callable[[], Awaitable[Rendered]]
) -> Response:
    cache: ResponseCache = request.app.state.cache
    rendered = await cache.get(key, produce)
    return json_response(rendered.body, rendered.status_code)


async def scheduler_health(request: Request) -> Response:
    """GET /api/v1/admin/scheduler-health: the spec's health body; 200 even when degraded."""
    require_token(request)
    parse_query(request, ())

    async def produce() -> Rendered:
        health = await _query_store(request, lambda s: s.get_scheduler_health())
        return Rendered(200, render_json(health))

    return await _cached(request, ("scheduler-health",), produce)


async def feature_staleness(request: Request) -> Response:
    """GET /api/v1/admin/features/staleness?limit=50: summary and the four status lists."""
    require_token(request)
    limit = parse_limit(parse_query(request, ("limit",)), STALENESS_DEFAULT_LIMIT)

    async def produce() -> Rendered:
        report = await _query_store(request, lambda s: s.get_feature_staleness_report(limit=limit))
        return Rendered(200, render_json(report))

    return await _cached(request, ("staleness", limit), produce)


async def execution_history(request: Request) -> Response:
    """GET /api/v1/admin/scheduler/execution-history?limit=20: executions, newest first."""
    require_token(request)
    limit = parse_limit(parse_query(request, ("limit",)), HISTORY_DEFAULT_LIMIT)

    async def produce() -> Rendered:
        history = await _query_store(request, lambda s: s.get_execution_history(limit=limit))
        return Rendered(200, render_json(history))

    return await _cached(request, ("execution-history", limit), produce)


async def health_probe(request: Request) -> Response:
    """GET /healthz: the scheduler health as a status code, 200 healthy and 503 degraded."""
    require_token(request)
    parse_query(request, ())

    async def produce() -> Rendered:
        health = await _query_store(request, lambda s: s.get_scheduler_health())
        body = {"status": health.status, "timestamp": health.timestamp, "reasons": health.reasons}
        return Rendered(200 if health.status == "healthy" else 503, render_json(body))

    return await _cached(request, ("healthz",), produce)


async def readiness(request: Request) -> Response:
    """GET /readyz: 200 when the database answers and is migrated, else 503 with the reason.

    A success is reused like the other answers (:class:`ResponseCache`); a failure never is, so a
    database that goes away turns readiness to 503 within the cache period.
    """
    parse_query(request, ())
    db: _Database = request.app.state.database

    async def produce() -> Rendered:
        await run_in_threadpool(db.check)
        return Rendered(200, render_json(READY_BODY))

    try:
        return await _cached(request, ("readyz",), produce)
    except (sa.exc.SQLAlchemyError, DatabaseUnavailableError, MigrationError) as exc:
        failure = _db_failure(db, exc)
        detail = failure.detail
        if not presented_token_is_valid(request, request.app.state.admin_token):
            detail = "the database check failed; present the admin token to see why"
        logger.warning("not ready: %s", failure.detail)
        return json_response(
            {"status": "unavailable", "error": failure.error, "detail": detail}, 503
        )


READY_BODY = {"status": "ready", "checks": {"database": "ok", "schema": "ok"}}


async def liveness(request: Request) -> Response:
    """GET /livez: 200 while the process serves HTTP; touches nothing else."""
    parse_query(request, ())
    return json_response({"status": "alive"})


async def openapi_document(request: Request) -> Response:
    """GET /openapi.json: the OpenAPI document describing every route."""
    parse_query(request, ())
    return json_response(request.app.state.openapi)


ROUTES: tuple[tuple[str, Callable[[Request], Any], bool], ...] = (
    (HEALTH_PATH, scheduler_health, True),
    (STALENESS_PATH, feature_staleness, True),
    (HISTORY_PATH, execution_history, True),
    (HEALTH_PROBE_PATH, health_probe, True),
    (READINESS_PATH, readiness, False),
    (LIVENESS_PATH, liveness, False),
    (OPENAPI_PATH, openapi_document, False),
)
"""``(path, handler, needs_token)`` of every route; :func:`openapi_spec` describes each."""


class BodyLimitMiddleware:
    """Refuses a request whose declared body exceeds :data:`MAX_BODY_BYTES` with a JSON 413.

    No endpoint reads a body, so an undeclared (chunked) one is simply never read; this only
    makes the refusal of a large upload explicit and JSON like every other error.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            length = Headers(scope=scope).get("content-length", "0")
            if not length.isdigit() or int(length) > MAX_BODY_BYTES:
                response = error_response(
                    413,
                    "request_too_large",
                    f"request bodies are limited to {MAX_BODY_BYTES} bytes; no endpoint takes one",
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


# --------------------------------------------------------------------------------------------
# Error handlers
# --------------------------------------------------------------------------------------------


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return error_response(exc.status_code, exc.error, exc.detail, headers=exc.headers)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        return error_response(
            404, "not_found", f"no endpoint at this path; the API is described at {OPENAPI_PATH}"
        )
    if exc.status_code == 405:
        allowed = (exc.headers or {}).get("Allow", "GET, HEAD")
        return error_response(
            405,
            "method_not_allowed",
            f"method {request.method[:_SHOWN_CHARS]!r} is not allowed here; use {allowed}",
            headers={"Allow": allowed},
        )
    return error_response(
        exc.status_code, "bad_request", str(exc.detail)[:200], headers=exc.headers
    )


async def _unexpected_error(request: Request, exc: Exception) -> Response:
    # The last resort: the traceback goes to the log, never to the client.
    logger.exception("unhandled error under %s %s", request.method, request.url.path)
    return error_response(500, "internal_error", "the server failed; see its log")


# --------------------------------------------------------------------------------------------
# OpenAPI
# --------------------------------------------------------------------------------------------

_TIMESTAMP = {
    "type": "string",
    "format": "date-time",
    "pattern": r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$",
    "description": "ISO 8601 UTC, seconds precision, ending in Z",
}
_NULLABLE_TIMESTAMP = {"anyOf": [_TIMESTAMP, {"type": "null"}]}
_COUNT = {"type": "integer", "minimum": 0}


def _object(properties: dict[str, Any], description: str = "") -> dict[str, Any]:
    schema: dict[str, Any] = {
        "type": "object",
        "required": list(properties),
        "properties": properties,
        "additionalProperties": False,
    }
    if description:
        schema["description"] = description
    return schema


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _schemas() -> dict[str, Any]:
    freshness_summary = _object(
        {
            "fresh_count": _COUNT,
            "aging_count": _COUNT,
            "stale_count": _COUNT,
            "missing_count": _COUNT,
            "total_monitored": _COUNT,
        },
        "Counts of monitored (symbol, timeframe) pairs per freshness status.",
    )
    return {
        "Error": _object(
            {
                "error": {"type": "string", "description": "machine-readable code"},
                "detail": {"type": "string", "description": "what was wrong, for a person"},
            }
        ),
        "LastExecution": _object(
            {
                "execution_id": {"type": "string", "format": "uuid"},
                "started_at": _TIMESTAMP,
                "completed_at": _NULLABLE_TIMESTAMP,
                "status": {"type": "string", "enum": ["running", "completed", "failed"]},
                "successful_symbols": _COUNT,
                "failed_symbols": _COUNT,
                "total_symbols": _COUNT,
                "error_message": {"type": ["string", "null"]},
            }
        ),
        "RecentFailure": _object(
            {
                "symbol": {"type": "string"},
                "timeframe": {"type": "string"},
                "error": {"type": "string"},
                "failed_at": _TIMESTAMP,
                "retry_count": _COUNT,
                "execution_id": {"type": ["string", "null"]},
            },
            "An unresolved feature computation failure.",
        ),
        "Alert": _object(
            {
                "symbol": {"type": "string"},
                "timeframe": {"type": "string"},
                "consecutive_failures": {"type": "integer", "minimum": 1},
                "error": {"type": "string"},
                "failed_at": _TIMESTAMP,
            },
            "A pair that failed at least the alert threshold of times in a row.",
        ),
        "FreshnessSummary": freshness_summary,
        "SchedulerHealth": _object(
            {
                "status": {"type": "string", "enum": list(HEALTH_STATUSES)},
                "timestamp": _TIMESTAMP,
                "last_execution": {"anyOf": [_ref("LastExecution"), {"type": "null"}]},
                "stale_features_count": {
                    **_COUNT,
                    "description": "monitored pairs that are stale or missing",
                },
                "recent_failures": {"type": "array", "items": _ref("RecentFailure")},
                "total_symbols_monitored": _COUNT,
                "reasons": {"type": "array", "items": {"type": "string"}},
                "missing_features_count": _COUNT,
                "open_failures_count": _COUNT,
                "freshness_summary": _ref("FreshnessSummary"),
                "alerts": {"type": "array", "items": _ref("Alert")},
            },
            "The spec's health body; reasons, missing_features_count, open_failures_count, "
            "freshness_summary and alerts are additions.",
        ),
        "FreshnessItem": _object(
            {
                "symbol": {"type": "string"},
                "timeframe": {"type": "string"},
                "last_computed_at": _NULLABLE_TIMESTAMP,
                "staleness_seconds": {
                    "type": ["integer", "null"],
                    "minimum": 0,
                    "description": "whole seconds since last_computed_at; null when never",
                },
                "status": {"type": "string", "enum": list(FRESHNESS_STATUSES)},
                "data_point_count": _COUNT,
            }
        ),
        "StalenessReport": _object(
            {
                "timestamp": _TIMESTAMP,
                "summary": _ref("FreshnessSummary"),
                "by_status": _object(
                    {
                        status: {
                            "type": "array",
                            "items": _ref("FreshnessItem"),
                            "maxItems": MAX_LIMIT,
                        }
                        for status in FRESHNESS_STATUSES
                    },
                    "Pairs per status, most stale first, at most `limit` per list.",
                ),
            }
        ),
        "Execution": _object(
            {
                "execution_id": {"type": "string", "format": "uuid"},
                "started_at": _TIMESTAMP,
                "completed_at": _NULLABLE_TIMESTAMP,
                "duration_seconds": {"type": ["number", "null"], "minimum": 0},
                "total_symbols": _COUNT,
                "successful_symbols": _COUNT,
                "failed_symbols": _COUNT,
                "total_records_processed": _COUNT,
                "status": {"type": "string", "enum": ["running", "completed", "failed"]},
                "error_message": {"type": ["string", "null"]},
                "success_rate": {
                    "type": ["number", "null"],
                    "minimum": 0,
                    "description": "percent of symbols that succeeded; null when total is 0",
                },
            }
        ),
        "ExecutionHistory": _object(
            {
                "timestamp": _TIMESTAMP,
                "executions": {
                    "type": "array",
                    "items": _ref("Execution"),
                    "maxItems": MAX_LIMIT,
                },
            }
        ),
        "HealthProbe": _object(
            {
                "status": {"type": "string", "enum": list(HEALTH_STATUSES)},
                "timestamp": _TIMESTAMP,
                "reasons": {"type": "array", "items": {"type": "string"}},
            }
        ),
        "Readiness": {
            "type": "object",
            "required": ["status"],
            "properties": {
                "status": {"type": "string", "enum": ["ready", "unavailable"]},
                "checks": {"type": "object", "additionalProperties": {"type": "string"}},
                "error": {"type": "string"},
                "detail": {"type": "string"},
            },
            "additionalProperties": False,
        },
        "Liveness": _object({"status": {"type": "string", "enum": ["alive"]}}),
        "OpenAPI": {"type": "object"},
    }


def _json_content(schema: dict[str, Any]) -> dict[str, Any]:
    return {"content": {"application/json": {"schema": schema}}}


def _limit_parameter(default: int, what: str) -> dict[str, Any]:
    return {
        "name": "limit",
        "in": "query",
        "required": False,
        "description": f"{what}; at most {MAX_LIMIT}",
        "schema": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": default},
    }


def openapi_spec(*, token_required: bool) -> dict[str, Any]:
    """The OpenAPI 3.1 document of :data:`ROUTES`; admin routes declare bearer auth when
    ``token_required``."""
    error = _json_content(_ref("Error"))
    common = {
        "400": {"description": "malformed query (unknown or repeated parameter)", **error},
        "414": {"description": f"query string longer than {MAX_QUERY_BYTES} bytes", **error},
    }
    admin_errors = {
        **common,
        "503": {"description": "the database cannot be reached", **error},
    }
    if token_required:
        admin_errors["401"] = {"description": "missing or wrong bearer token", **error}
    operations: dict[str, dict[str, Any]] = {
        HEALTH_PATH: {
            "operationId": "getSchedulerHealth",
            "summary": "Scheduler health: last execution, stale features, recent failures",
            "responses": {
                "200": {
                    "description": "health, degraded or not",
                    **_json_content(_ref("SchedulerHealth")),
                },
                **admin_errors,
            },
        },
        STALENESS_PATH: {
            "operationId": "getFeatureStaleness",
            "summary": "Feature freshness report: summary and pairs by status",
            "parameters": [
                _limit_parameter(STALENESS_DEFAULT_LIMIT, "most pairs listed per status")
            ],
            "responses": {
                "200": {"description": "the report", **_json_content(_ref("StalenessReport"))},
                **admin_errors,
            },
        },
        HISTORY_PATH: {
            "operationId": "getExecutionHistory",
            "summary": "Recent scheduler executions, newest first",
            "parameters": [_limit_parameter(HISTORY_DEFAULT_LIMIT, "most executions listed")],
            "responses": {
                "200": {
                    "description": "the executions",
                    **_json_content(_ref("ExecutionHistory")),
                },
                **admin_errors,
            },
        },
        HEALTH_PROBE_PATH: {
            "operationId": "probeSchedulerHealth",
            "summary": "Scheduler health as a status code: 200 healthy, 503 degraded",
            "responses": {
                "200": {"description": "healthy", **_json_content(_ref("HealthProbe"))},
                **admin_errors,
                "503": {
                    "description": "degraded (HealthProbe) or the database is unreachable (Error)",
                    **_json_content({"anyOf": [_ref("HealthProbe"), _ref("Error")]}),
                },
            },
        },
        READINESS_PATH: {
            "operationId": "probeReadiness",
            "summary": "Readiness: the database answers and its schema is current",
            "responses": {
                "200": {"description": "ready", **_json_content(_ref("Readiness"))},
                **common,
                "503": {"description": "not ready", **_json_content(_ref("Readiness"))},
            },
        },
        LIVENESS_PATH: {
            "operationId": "probeLiveness",
            "summary": "Liveness: the process serves HTTP",
            "responses": {
                "200": {"description": "alive", **_json_content(_ref("Liveness"))},
                **common,
            },
        },
        OPENAPI_PATH: {
            "operationId": "getOpenApi",
            "summary": "This document",
            "responses": {
                "200": {"description": "OpenAPI 3.1", **_json_content(_ref("OpenAPI"))},
                **common,
            },
        },
    }
    paths: dict[str, Any] = {}
    for path, _handler, needs_token in ROUTES:
        operation = dict(operations[path])
        operation["security"] = [{"bearerAuth": []}] if needs_token and token_required else []
        paths[path] = {"get": operation}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": API_TITLE,
            "version": API_VERSION,
            "description": (
                "Scheduler observability of market_pipeline (PHASE_1_OBSERVABILITY.md). "
                f"limit is an integer from 1 to {MAX_LIMIT}; errors are JSON "
                '{"error": code, "detail": message}.'
            ),
        },
        "paths": paths,
        "components": {
            "schemas": _schemas(),
            "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer"}},
        },
    }


# --------------------------------------------------------------------------------------------
# The application
# --------------------------------------------------------------------------------------------


def create_app(
    settings: Settings | None = None,
    *,
    store: ObservabilityStore | None = None,
    cache_seconds: float = DEFAULT_CACHE_SECONDS,
) -> Starlette:
    """The admin API application.

    Args:
        settings: configuration (default: :meth:`Settings.from_env`, read now, not at import).
            Its ``admin_token`` turns on authentication.
        store: an existing store to serve (its engine stays the caller's). Without one, the
            universe named by ``settings`` is loaded now (a bad file raises here) and the engine
            is created at startup and disposed at shutdown. Startup does not require the
            database: a database that is down makes ``/readyz`` and the admin endpoints answer
            503 until it is back, while ``/livez`` keeps answering 200.
        cache_seconds: how long a rendered answer of the store-backed endpoints is reused
            (see :class:`ResponseCache`); 0 turns the cache off.
    """
    resolved = Settings.from_env() if settings is None else settings
    pairs: list[tuple[str, str]] | None = None
    if store is None:
        from market_pipeline.config.universe_file import load_universe

        pairs = load_universe(resolved.universe_path).pairs
        url = normalize_db_url(resolved.db_url)
        try:
            parsed = make_url(url)
        except sa.exc.ArgumentError as exc:
            raise DatabaseUnavailableError(f"not a database URL: {exc}") from None
        if parsed.get_backend_name() not in ("sqlite", "postgresql"):
            # Refused here, before anything listens, rather than in the lifespan.
            raise DatabaseUnavailableError(
                f"unsupported database {parsed.get_backend_name()!r} in MARKET_PIPELINE_DB_URL: "
                "use a sqlite:/// or postgresql+psycopg2:// URL"
            )
        password = parsed.password
    else:
        url = store.engine.url
        password = store.engine.url.password

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        owned: Engine | None = None
        if store is None:
            owned = make_engine(url, check=False)
            app.state.store = ObservabilityStore(
                owned,
                monitored_pairs=pairs,
                failure_alert_threshold=resolved.failure_alert_threshold,
            )
        else:
            app.state.store = store
        engine = app.state.store.engine
        app.state.database = _Database(
            engine=engine, description=describe_url(engine.url), password=password
        )
        try:
            await run_in_threadpool(app.state.database.check)
        except (sa.exc.SQLAlchemyError, DatabaseUnavailableError, MigrationError) as exc:
            logger.warning(
                "starting without a usable database (%s); /readyz answers 503 until it is",
                app.state.database.mask(str(exc)),
            )
        try:
            yield
        finally:
            if owned is not None:
                owned.dispose()

    app = Starlette(
        routes=[Route(path, handler, methods=["GET"]) for path, handler, _ in ROUTES],
        exception_handlers={
            ApiError: _api_error,
            HTTPException: _http_error,
            Exception: _unexpected_error,
        },
        middleware=[Middleware(BodyLimitMiddleware)],
        lifespan=lifespan,
    )
    # /x/ is not /x: an odd path is a plain 404 rather than a redirect.
    app.router.redirect_slashes = False
    app.state.admin_token = resolved.admin_token
    app.state.cache = ResponseCache(cache_seconds)
    app.state.openapi = openapi_spec(token_required=resolved.admin_token is not None)
    return app
