"""GET /metrics: the Prometheus text exposition, rendered at most once per cache period, so many
scrapers cost one set of queries."""

from __future__ import annotations

from collections.abc import Mapping

from prometheus_client import generate_latest
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.registry import CollectorRegistry
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from market_pipeline.api.auth import require_metrics_token
from market_pipeline.api.cache import Rendered, cached
from market_pipeline.api.query import parse_query
from market_pipeline.config.settings import Settings
from market_pipeline.domain.schedule_intervals import expected_execution_interval
from market_pipeline.domain.universe import Universe
from market_pipeline.observability.metrics.families import MetricsConfig
from market_pipeline.observability.store import ObservabilityStore

UNKNOWN_PROVIDER = "unknown"


def metrics_config(
    settings: Settings,
    universe: Universe | None,
    store: ObservabilityStore,
    asset_classes: Mapping[str, str] | None = None,
) -> MetricsConfig:
    """Labels and switches of the exposition: from the universe, or (serving a given store
    without one) from its monitored pairs and the asset classes given."""
    if universe is not None:
        pairs = universe.pairs
        provider = str(universe.provider.get("kind", UNKNOWN_PROVIDER))
        classes = {spec.symbol: spec.asset_class for spec in universe.symbols}
        timeframes = universe.timeframes
    else:
        pairs = list(store.monitored_pairs or ())
        provider, classes = UNKNOWN_PROVIDER, dict(asset_classes or {})
        timeframes = tuple(sorted({tf for _, tf in pairs}))
    return MetricsConfig(
        provider=provider,
        asset_classes=classes,
        timeframes=tuple(timeframes),
        expected_interval_seconds=expected_execution_interval(timeframes),
        failure_alert_threshold=store.failure_alert_threshold,
        per_pair=settings.per_pair_metrics(len(pairs)),
        coverage_objective=settings.coverage_objective,
    )


async def metrics(request: Request) -> Response:
    """GET /metrics: every metric family, in the Prometheus text format."""
    require_metrics_token(request)
    parse_query(request, ())
    registry: CollectorRegistry = request.app.state.metrics_registry

    async def produce() -> Rendered:
        body = await run_in_threadpool(generate_latest, registry)
        # 0.0.4: the text format every Prometheus 2.x reads (our names need no UTF-8 escaping).
        return Rendered(200, body, CONTENT_TYPE_PLAIN_0_0_4)

    return await cached(request, ("metrics",), produce)
