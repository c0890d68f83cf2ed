"""The admin HTTP API: the three endpoints of PHASE_1_OBSERVABILITY.md, probes and an OpenAPI
document, over the same :class:`~market_pipeline.observability.store.ObservabilityStore` as the
Dagster resource. This module assembles the app; each concern has its module (``handlers``,
``query``, ``auth``, ``cache``, ``database``, ``errors``, ``responses``, ``schemas``,
``openapi``, ``paths``).

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
``/api/v1/admin/dashboard/pairs``              every monitored pair, its status and  required
                                               open failure (the dashboard's map)
``/api/v1/admin/dashboard/failures``           open failures, newest first           required
``/api/v1/admin/dashboard/pair``               one pair: freshness, status rows,     required
                                               failures, Dagster UI link
``/dashboard``                                 the dashboard page (HTML, no data)    open
``/dashboard/static/{version}/{name}``         its scripts, style and icon           open
``/``                                          redirects to ``/dashboard``           open
=============================================  ====================================  ==========

The page and its files (:mod:`.pages`) are not API and stay out of the OpenAPI document; the
page carries no data and asks for the token itself (see :mod:`.pages`).

"token required" applies when ``MARKET_PIPELINE_ADMIN_TOKEN`` is set: the request then needs
``Authorization: Bearer <token>`` (compared in constant time); without it the answer is 401 with
``WWW-Authenticate: Bearer`` and a body that holds no data. Liveness and readiness stay open
because orchestrators probe them without credentials; they reveal nothing about the scheduler, and
readiness names the database in its 503 reason only to callers that present the token (or when no
token is configured).

Input rules, so hostile requests get a 4xx JSON ``{"error": code, "detail": message}`` and never
reach the 500 handler: ``limit`` is an integer from 1 to ``MAX_LIMIT`` (1000; per freshness
status list on the staleness endpoint); unknown, repeated or malformed query parameters are a 400
naming them; a query string longer than ``MAX_QUERY_BYTES`` is a 414; percent-encoded bytes that
are not UTF-8 are a 400; unknown paths are a 404 and other methods a 405, both as JSON. A database
that cannot be reached is a 503 naming it (password masked), not a 500.

The store-backed answers are rendered once per ``DEFAULT_CACHE_SECONDS`` (1 s) and key and
reused meanwhile (``ResponseCache``), so concurrent dashboards cost one set of queries per
second; each body's ``timestamp`` says when it was computed. ``/readyz`` reuses a success the
same way, never a failure.

Timestamps are ISO 8601 UTC with ``Z`` (``YYYY-MM-DDTHH:MM:SSZ``, as in the spec);
``staleness_seconds`` is whole seconds (floored, as in the spec's example), ``duration_seconds`` is
kept to the stored precision.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import AsyncIterator, Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import URL, Engine, make_url
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.routing import Route

from market_pipeline.api.cache import ResponseCache
from market_pipeline.api.database import Database
from market_pipeline.api.errors import (
    BodyLimitMiddleware,
    api_error,
    http_error,
    unexpected_error,
)
from market_pipeline.api.handlers import ROUTES
from market_pipeline.api.metrics import metrics_config
from market_pipeline.api.openapi import openapi_spec
from market_pipeline.api.pages import PAGE_ROUTES, DashboardFiles
from market_pipeline.api.paths import DEFAULT_CACHE_SECONDS, MAX_QUERY_BYTES
from market_pipeline.api.responses import ApiError
from market_pipeline.config.settings import Settings
from market_pipeline.config.universe_file import load_universe
from market_pipeline.database.engine import (
    DatabaseUnavailableError,
    describe_url,
    make_engine,
    normalize_db_url,
)
from market_pipeline.database.migrations import MigrationError
from market_pipeline.domain.universe import Universe
from market_pipeline.observability.metrics.collector import PipelineCollector, metrics_registry
from market_pipeline.observability.metrics.dagster_watch import DagsterWatch
from market_pipeline.observability.store import ObservabilityStore

__all__ = ["DEFAULT_CACHE_SECONDS", "MAX_QUERY_BYTES", "ROUTES", "create_app"]

logger = logging.getLogger("market_pipeline.api")


def _checked_url(db_url: str) -> URL:
    """The database URL, refused here (before anything listens) when it cannot work."""
    try:
        parsed = make_url(normalize_db_url(db_url))
    except sa.exc.ArgumentError as exc:
        raise DatabaseUnavailableError(f"not a database URL: {exc}") from None
    if parsed.get_backend_name() not in ("sqlite", "postgresql"):
        raise DatabaseUnavailableError(
            f"unsupported database {parsed.get_backend_name()!r} in MARKET_PIPELINE_DB_URL: "
            "use a sqlite:/// or postgresql+psycopg2:// URL"
        )
    return parsed


def _lifespan(
    settings: Settings,
    store: ObservabilityStore | None,
    universe: Universe | None,
    asset_classes: Mapping[str, str] | None,
    instance: Any | None,
) -> Any:
    """Startup: the store (ours, or the one given), the dashboard reads, the metrics collector
    and a first database check that never stops the start; shutdown: our engine and Dagster
    instance disposed."""
    url = store.engine.url if store is not None else _checked_url(settings.db_url)
    if universe is None and store is None:
        universe = load_universe(settings.universe_path)
    pairs = universe.pairs if universe is not None else None
    if universe is not None and asset_classes is None:
        asset_classes = {spec.symbol: spec.asset_class for spec in universe.symbols}

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        owned: Engine | None = None
        if store is None:
            owned = make_engine(url, check=False)
            app.state.store = ObservabilityStore(
                owned,
                monitored_pairs=pairs,
                failure_alert_threshold=settings.failure_alert_threshold,
                data_lag_rules=None if universe is None else universe.data_lag_rules(),
            )
        else:
            app.state.store = store
        app.state.dashboard = app.state.store.dashboard(
            asset_classes=asset_classes, dagster_ui_url=settings.dagster_ui_url
        )
        engine = app.state.store.engine
        app.state.database = Database(
            engine=engine, description=describe_url(engine.url), password=url.password
        )
        owned_instance = _dagster_instance() if store is None and instance is None else None
        watched = instance if instance is not None else owned_instance
        dagster = (
            DagsterWatch(watched, settings.metrics_dagster_interval_seconds)
            if watched is not None
            else None
        )
        app.state.metrics_registry = metrics_registry(
            PipelineCollector(
                app.state.store,
                metrics_config(settings, universe, app.state.store, asset_classes),
                dagster,
            )
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
            if dagster is not None:
                dagster.stop()
            if owned is not None:
                owned.dispose()
            if owned_instance is not None:
                owned_instance.dispose()

    return lifespan


def _dagster_instance() -> Any | None:
    """The instance of ``DAGSTER_HOME`` when it is set, for the Dagster metrics; else None."""
    if not os.environ.get("DAGSTER_HOME"):
        return None
    import dagster as dg  # only a process that reports Dagster's state pays for the import

    try:
        return dg.DagsterInstance.get()
    except Exception as exc:  # noqa: BLE001 - the API serves without Dagster metrics then
        logger.warning("no Dagster metrics: cannot open the instance of DAGSTER_HOME: %s", exc)
        return None


def create_app(
    settings: Settings | None = None,
    *,
    store: ObservabilityStore | None = None,
    asset_classes: Mapping[str, str] | None = None,
    cache_seconds: float = DEFAULT_CACHE_SECONDS,
    universe: Universe | None = None,
    dagster_instance: Any | None = None,
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
        asset_classes: symbol -> asset class for the dashboard's grouping, with a given
            ``store`` (without one they come from the universe).
        cache_seconds: how long a rendered answer of the store-backed endpoints is reused
            (see :class:`~market_pipeline.api.cache.ResponseCache`); 0 turns the cache off.
        universe: labels of ``/metrics`` (provider, asset classes) and, without a ``store``,
            the monitored pairs (default: the universe file named by ``settings``).
        dagster_instance: the instance ``/metrics`` reports on. Without one, a served app
            (no ``store``) opens the instance of ``DAGSTER_HOME`` when it is set.
    """
    resolved = Settings.from_env() if settings is None else settings
    app = Starlette(
        routes=[
            *(Route(path, handler, methods=["GET"]) for path, handler, _ in ROUTES),
            *(Route(path, handler, methods=["GET"]) for path, handler in PAGE_ROUTES),
        ],
        exception_handlers={
            ApiError: api_error,
            HTTPException: http_error,
            Exception: unexpected_error,
        },
        middleware=[Middleware(BodyLimitMiddleware)],
        lifespan=_lifespan(resolved, store, universe, asset_classes, dagster_instance),
    )
    # /x/ is not /x: an odd path is a plain 404 rather than a redirect.
    app.router.redirect_slashes = False
    app.state.admin_token = resolved.admin_token
    app.state.metrics_token = resolved.metrics_token
    app.state.coverage_objective = resolved.coverage_objective
    app.state.cache = ResponseCache(cache_seconds)
    app.state.dashboard_files = DashboardFiles()
    app.state.openapi = openapi_spec(
        [path for path, _, _ in ROUTES],
        token_required=resolved.admin_token is not None,
        metrics_token_required=resolved.metrics_token is not None,
    )
    return app
