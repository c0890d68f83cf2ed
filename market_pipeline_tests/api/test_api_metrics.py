"""GET /metrics over a real server: the exposition, its cache, and its own token."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

from prometheus_client.parser import text_string_to_metric_families

from market_pipeline.api.app import create_app
from market_pipeline.observability.store import ObservabilityStore
from market_pipeline_tests.support.api import (
    MONITORED_PAIRS,
    TOKEN,
    http,
    running_server,
    settings_for_store,
)

METRICS_TOKEN = "test-metrics-token-91ab"


def _samples(text: str) -> dict[str, float]:
    return {
        sample.name: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if not sample.labels
    }


def test_exposition_is_prometheus_text_and_cached(engine, tmp_path):
    store = ObservabilityStore(engine, monitored_pairs=MONITORED_PAIRS)
    app = create_app(settings_for_store(str(engine.url), tmp_path), store=store, cache_seconds=60)
    with running_server(app) as url:
        first = http.get(f"{url}/metrics")
        assert first.status_code == 200
        assert first.headers["content-type"].startswith("text/plain; version=0.0.4")
        assert first.headers["cache-control"] == "no-store"
        assert _samples(first.text)["market_pipeline_monitored_pairs"] == len(MONITORED_PAIRS)
        assert _samples(first.text)["market_pipeline_open_failures"] == 0

        store.log_feature_computation_failure(
            symbol="AAPL", timeframe="1h", error_message="boom", failed_at=datetime.now(UTC)
        )
        again = http.get(f"{url}/metrics")
        assert again.content == first.content  # one query set per cache period

    fresh_app = create_app(settings_for_store(str(engine.url), tmp_path), store=store)
    with running_server(fresh_app) as url:
        assert _samples(http.get(f"{url}/metrics").text)["market_pipeline_open_failures"] == 1
        refused = http.get(f"{url}/metrics?format=json")
        assert refused.status_code == 400
        assert "format" in refused.json()["detail"]


def test_metrics_token_opens_metrics_only(engine, tmp_path):
    store = ObservabilityStore(engine, monitored_pairs=MONITORED_PAIRS)
    settings = dataclasses.replace(
        settings_for_store(str(engine.url), tmp_path, token=TOKEN), metrics_token=METRICS_TOKEN
    )
    with running_server(create_app(settings, store=store)) as url:
        scraper = {"Authorization": f"Bearer {METRICS_TOKEN}"}
        admin = {"Authorization": f"Bearer {TOKEN}"}
        assert http.get(f"{url}/metrics").status_code == 401
        assert http.get(f"{url}/metrics", headers={"Authorization": "Bearer nope"}).status_code == (
            401
        )
        assert http.get(f"{url}/metrics", headers=scraper).status_code == 200
        assert http.get(f"{url}/metrics", headers=admin).status_code == 200
        health = f"{url}/api/v1/admin/scheduler-health"
        assert http.get(health, headers=scraper).status_code == 401
        assert http.get(health, headers=admin).status_code == 200


def test_metrics_token_alone_leaves_the_admin_endpoints_open(engine, tmp_path):
    store = ObservabilityStore(engine, monitored_pairs=MONITORED_PAIRS)
    settings = dataclasses.replace(
        settings_for_store(str(engine.url), tmp_path), metrics_token=METRICS_TOKEN
    )
    with running_server(create_app(settings, store=store)) as url:
        assert http.get(f"{url}/metrics").status_code == 401
        assert http.get(f"{url}/api/v1/admin/scheduler-health").status_code == 200
        document = http.get(f"{url}/openapi.json").json()
        assert document["paths"]["/metrics"]["get"]["security"] == [{"bearerAuth": []}]
        assert document["paths"]["/api/v1/admin/scheduler-health"]["get"]["security"] == []
