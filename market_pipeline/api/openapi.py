"""The OpenAPI 3.1 document, its schemas generated from the very models the endpoints serve."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from market_pipeline.api.dashboard_api import SYMBOL_PARAMETER, TIMEFRAME_PARAMETER
from market_pipeline.api.paths import (
    API_TITLE,
    API_VERSION,
    COVERAGE_PATH,
    DASHBOARD_FAILURES_PATH,
    DASHBOARD_PAIR_PATH,
    DASHBOARD_PAIRS_PATH,
    FAILURES_DEFAULT_LIMIT,
    HEALTH_PATH,
    HEALTH_PROBE_PATH,
    HISTORY_DEFAULT_LIMIT,
    HISTORY_PATH,
    LIVENESS_PATH,
    MAX_QUERY_BYTES,
    METRICS_PATH,
    OPENAPI_PATH,
    PAIR_DETAIL_DEFAULT_LIMIT,
    READINESS_PATH,
    STALENESS_DEFAULT_LIMIT,
    STALENESS_PATH,
)
from market_pipeline.api.schemas import Error, HealthProbe, Liveness, Readiness
from market_pipeline.domain.coverage import CoverageReport
from market_pipeline.domain.dashboard import DashboardPairs, OpenFailures, PairDetail
from market_pipeline.domain.reports import (
    MAX_LIMIT,
    ExecutionHistory,
    SchedulerHealth,
    StalenessReport,
)

BODY_MODELS: tuple[type[BaseModel], ...] = (
    SchedulerHealth,
    StalenessReport,
    ExecutionHistory,
    CoverageReport,
    DashboardPairs,
    OpenFailures,
    PairDetail,
    HealthProbe,
    Readiness,
    Liveness,
    Error,
)
"""Every body the API serves; their parts (LastExecution, FreshnessItem, ...) come along."""


@dataclass(frozen=True)
class Operation:
    """One ``GET`` of the document: what it answers and how it can fail."""

    operation_id: str
    summary: str
    ok: str  # schema name of the 200 body
    ok_description: str
    admin: bool  # token-protected, and a 503 when the database cannot be reached
    limit: tuple[int, str] | None = None  # (default, what it limits)
    unavailable: dict[str, Any] | None = None  # a 503 of its own
    media_type: str = "application/json"  # of the 200 body
    metrics_auth: bool = False  # the metrics token or the admin token
    pair: bool = False  # takes the required symbol and timeframe; 404 for an unknown pair


_NOT_READY = {"description": "not ready", "schema": "Readiness"}
_DEGRADED = {
    "description": "degraded (HealthProbe) or the database is unreachable (Error)",
    "schema": {
        "anyOf": [
            {"$ref": "#/components/schemas/HealthProbe"},
            {"$ref": "#/components/schemas/Error"},
        ]
    },
}
OPERATIONS: dict[str, Operation] = {
    HEALTH_PATH: Operation(
        "getSchedulerHealth",
        "Scheduler health: last execution, stale features, recent failures",
        "SchedulerHealth",
        "health, degraded or not",
        admin=True,
    ),
    STALENESS_PATH: Operation(
        "getFeatureStaleness",
        "Feature freshness report: summary and pairs by status",
        "StalenessReport",
        "the report",
        admin=True,
        limit=(STALENESS_DEFAULT_LIMIT, "most pairs listed per status"),
    ),
    COVERAGE_PATH: Operation(
        "getFeatureCoverage",
        "Coverage SLI (share of pairs whose newest due bar is stored) over 1 h, 24 h and 30 d, "
        "burn rates and the error budget left",
        "CoverageReport",
        "the SLI; null figures for windows without samples",
        admin=True,
    ),
    HISTORY_PATH: Operation(
        "getExecutionHistory",
        "Recent scheduler executions, newest first",
        "ExecutionHistory",
        "the executions",
        admin=True,
        limit=(HISTORY_DEFAULT_LIMIT, "most executions listed"),
    ),
    DASHBOARD_PAIRS_PATH: Operation(
        "getDashboardPairs",
        "Every monitored pair with its freshness status and open failure (the heat map)",
        "DashboardPairs",
        "the pairs, in universe order",
        admin=True,
    ),
    DASHBOARD_FAILURES_PATH: Operation(
        "getDashboardFailures",
        "Open failures, newest first",
        "OpenFailures",
        "the open failures",
        admin=True,
        limit=(FAILURES_DEFAULT_LIMIT, "most failures listed"),
    ),
    DASHBOARD_PAIR_PATH: Operation(
        "getDashboardPair",
        "One pair: freshness, recent status rows and failures, link to its Dagster partition",
        "PairDetail",
        "the pair",
        admin=True,
        limit=(PAIR_DETAIL_DEFAULT_LIMIT, "most status rows and failures listed"),
        pair=True,
    ),
    HEALTH_PROBE_PATH: Operation(
        "probeSchedulerHealth",
        "Scheduler health as a status code: 200 healthy, 503 degraded",
        "HealthProbe",
        "healthy",
        admin=True,
        unavailable=_DEGRADED,
    ),
    READINESS_PATH: Operation(
        "probeReadiness",
        "Readiness: the database answers and its schema is current",
        "Readiness",
        "ready",
        admin=False,
        unavailable=_NOT_READY,
    ),
    LIVENESS_PATH: Operation(
        "probeLiveness", "Liveness: the process serves HTTP", "Liveness", "alive", admin=False
    ),
    OPENAPI_PATH: Operation("getOpenApi", "This document", "OpenAPI", "OpenAPI 3.1", admin=False),
    METRICS_PATH: Operation(
        "getMetrics",
        "Prometheus metrics: health, freshness, failures, Dagster's daemons and run queue",
        "PrometheusExposition",
        "the exposition (text format 0.0.4); market_pipeline_database_up says whether our "
        "tables could be read",
        admin=False,
        media_type="text/plain",
        metrics_auth=True,
    ),
}


def component_schemas() -> dict[str, Any]:
    """The JSON schemas of :data:`BODY_MODELS` and their parts, as OpenAPI components."""
    _, top = models_json_schema(
        [(model, "serialization") for model in BODY_MODELS],
        ref_template="#/components/schemas/{model}",
    )
    return {
        **top["$defs"],
        "OpenAPI": {"type": "object"},
        "PrometheusExposition": {"type": "string"},
    }


def _content(schema: str | dict[str, Any], media_type: str = "application/json") -> dict[str, Any]:
    ref = {"$ref": f"#/components/schemas/{schema}"} if isinstance(schema, str) else schema
    return {"content": {media_type: {"schema": ref}}}


def _responses(operation: Operation, token_required: bool) -> dict[str, Any]:
    responses: dict[str, Any] = {
        "200": {
            "description": operation.ok_description,
            **_content(operation.ok, operation.media_type),
        },
        "400": {
            "description": "malformed query (unknown or repeated parameter)",
            **_content("Error"),
        },
        "414": {
            "description": f"query string longer than {MAX_QUERY_BYTES} bytes",
            **_content("Error"),
        },
    }
    if operation.admin:
        responses["503"] = {"description": "the database cannot be reached", **_content("Error")}
    if (operation.admin or operation.metrics_auth) and token_required:
        responses["401"] = {"description": "missing or wrong bearer token", **_content("Error")}
    if operation.pair:
        responses["404"] = {"description": "the pair is not monitored", **_content("Error")}
    if operation.unavailable is not None:
        unavailable = operation.unavailable
        responses["503"] = {
            "description": unavailable["description"],
            **_content(unavailable["schema"]),
        }
    return responses


def _operation(operation: Operation, token_required: bool) -> dict[str, Any]:
    document: dict[str, Any] = {
        "operationId": operation.operation_id,
        "summary": operation.summary,
        "responses": _responses(operation, token_required),
        "security": [{"bearerAuth": []}]
        if (operation.admin or operation.metrics_auth) and token_required
        else [],
    }
    parameters: list[dict[str, Any]] = []
    if operation.pair:
        parameters += [
            {
                "name": name,
                "in": "query",
                "required": True,
                "description": description,
                "schema": {"type": "string", "pattern": pattern},
            }
            for name, pattern, description in (
                ("symbol", SYMBOL_PARAMETER, "the symbol, as in the universe"),
                ("timeframe", TIMEFRAME_PARAMETER, "the timeframe, e.g. 1h"),
            )
        ]
    if operation.limit is not None:
        default, what = operation.limit
        parameters += [
            {
                "name": "limit",
                "in": "query",
                "required": False,
                "description": f"{what}; at most {MAX_LIMIT}",
                "schema": {
                    "type": "integer",
                    "minimum": 1,
                    "maximum": MAX_LIMIT,
                    "default": default,
                },
            }
        ]
    if parameters:
        document["parameters"] = parameters
    return document


def openapi_spec(
    paths: list[str], *, token_required: bool, metrics_token_required: bool = False
) -> dict[str, Any]:
    """The OpenAPI 3.1 document of ``paths`` (every served route); admin routes declare bearer
    auth when ``token_required``, ``/metrics`` when either token is set."""
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
        "paths": {
            path: {
                "get": _operation(
                    OPERATIONS[path],
                    token_required or (metrics_token_required and OPERATIONS[path].metrics_auth),
                )
            }
            for path in paths
        },
        "components": {
            "schemas": component_schemas(),
            "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer"}},
        },
    }
