"""The endpoints: the spec's three, the dashboard's reads, the probes and the OpenAPI document."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from market_pipeline.api.auth import presented_token_is_valid, require_token
from market_pipeline.api.cache import Rendered, cached
from market_pipeline.api.dashboard_api import dashboard_failures, dashboard_pair, dashboard_pairs
from market_pipeline.api.database import Database, db_failure, query_store
from market_pipeline.api.metrics import metrics
from market_pipeline.api.paths import (
    COVERAGE_PATH,
    DASHBOARD_FAILURES_PATH,
    DASHBOARD_PAIR_PATH,
    DASHBOARD_PAIRS_PATH,
    HEALTH_PATH,
    HEALTH_PROBE_PATH,
    HISTORY_DEFAULT_LIMIT,
    HISTORY_PATH,
    LIVENESS_PATH,
    METRICS_PATH,
    OPENAPI_PATH,
    READINESS_PATH,
    STALENESS_DEFAULT_LIMIT,
    STALENESS_PATH,
)
from market_pipeline.api.query import parse_limit, parse_query
from market_pipeline.api.responses import json_response, render_json
from market_pipeline.api.schemas import ALIVE, READY, HealthProbe, Readiness
from market_pipeline.database.engine import DatabaseUnavailableError
from market_pipeline.database.migrations import MigrationError
from market_pipeline.observability.store import ObservabilityStore

logger = logging.getLogger("market_pipeline.api")


async def _spec_body(
    request: Request, key: tuple[Any, ...], read: Callable[[ObservabilityStore], BaseModel]
) -> Response:
    """One of the spec's bodies, read from the store and rendered at most once per cache period."""

    async def produce() -> Rendered:
        return Rendered(200, render_json(await query_store(request, read)))

    return await cached(request, key, produce)


async def scheduler_health(request: Request) -> Response:
    """GET /api/v1/admin/scheduler-health: the spec's health body; 200 even when degraded."""
    require_token(request)
    parse_query(request, ())
    return await _spec_body(request, ("scheduler-health",), lambda s: s.get_scheduler_health())


async def feature_staleness(request: Request) -> Response:
    """GET /api/v1/admin/features/staleness?limit=50: summary and the four status lists."""
    require_token(request)
    limit = parse_limit(parse_query(request, ("limit",)), STALENESS_DEFAULT_LIMIT)
    return await _spec_body(
        request, ("staleness", limit), lambda s: s.get_feature_staleness_report(limit=limit)
    )


async def execution_history(request: Request) -> Response:
    """GET /api/v1/admin/scheduler/execution-history?limit=20: executions, newest first."""
    require_token(request)
    limit = parse_limit(parse_query(request, ("limit",)), HISTORY_DEFAULT_LIMIT)
    return await _spec_body(
        request, ("execution-history", limit), lambda s: s.get_execution_history(limit=limit)
    )


async def feature_coverage(request: Request) -> Response:
    """GET /api/v1/admin/features/coverage: the coverage SLI, burn rates and error budget."""
    require_token(request)
    parse_query(request, ())
    objective = request.app.state.coverage_objective
    return await _spec_body(
        request, ("coverage",), lambda s: s.data_time.coverage_report(objective=objective)
    )


async def health_probe(request: Request) -> Response:
    """GET /healthz: the scheduler health as a status code, 200 healthy and 503 degraded."""
    require_token(request)
    parse_query(request, ())

    async def produce() -> Rendered:
        health = await query_store(request, lambda s: s.get_scheduler_health())
        body = HealthProbe(status=health.status, timestamp=health.timestamp, reasons=health.reasons)
        return Rendered(200 if health.status == "healthy" else 503, render_json(body))

    return await cached(request, ("healthz",), produce)


async def readiness(request: Request) -> Response:
    """GET /readyz: 200 when the database answers and is migrated, else 503 with the reason.

    A success is reused like the other answers (:class:`ResponseCache`); a failure never is, so a
    database that goes away turns readiness to 503 within the cache period.
    """
    parse_query(request, ())
    db: Database = request.app.state.database

    async def produce() -> Rendered:
        await run_in_threadpool(db.check)
        return Rendered(200, render_json(READY, exclude_none=True))

    try:
        return await cached(request, ("readyz",), produce)
    except (sa.exc.SQLAlchemyError, DatabaseUnavailableError, MigrationError) as exc:
        failure = db_failure(db, exc)
        detail = failure.detail
        if not presented_token_is_valid(request, request.app.state.admin_token):
            detail = "the database check failed; present the admin token to see why"
        logger.warning("not ready: %s", failure.detail)
        body = Readiness(status="unavailable", error=failure.error, detail=detail)
        return json_response(render_json(body, exclude_none=True), 503)


async def liveness(request: Request) -> Response:
    """GET /livez: 200 while the process serves HTTP; touches nothing else."""
    parse_query(request, ())
    return json_response(ALIVE)


async def openapi_document(request: Request) -> Response:
    """GET /openapi.json: the OpenAPI document describing every route."""
    parse_query(request, ())
    return json_response(request.app.state.openapi)


ROUTES: tuple[tuple[str, Callable[[Request], Any], bool], ...] = (
    (HEALTH_PATH, scheduler_health, True),
    (STALENESS_PATH, feature_staleness, True),
    (HISTORY_PATH, execution_history, True),
    (COVERAGE_PATH, feature_coverage, True),
    (DASHBOARD_PAIRS_PATH, dashboard_pairs, True),
    (DASHBOARD_FAILURES_PATH, dashboard_failures, True),
    (DASHBOARD_PAIR_PATH, dashboard_pair, True),
    (HEALTH_PROBE_PATH, health_probe, True),
    (READINESS_PATH, readiness, False),
    (LIVENESS_PATH, liveness, False),
    (OPENAPI_PATH, openapi_document, False),
    (METRICS_PATH, metrics, True),
)
"""``(path, handler, needs_token)`` of every API route; :mod:`.openapi` describes each. The
dashboard page and its files are :data:`market_pipeline.api.pages.PAGE_ROUTES`."""
