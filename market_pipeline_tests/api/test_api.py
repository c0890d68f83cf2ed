"""The spec's three admin endpoints over a real server, field for field, on SQLite and PostgreSQL.

Shapes are from PHASE_1_OBSERVABILITY.md ("Admin API Endpoints"); the server adds documented
fields, which are pinned here as well so that any change of the body is deliberate.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest
import requests

from market_pipeline.api.app import ROUTES, create_app
from market_pipeline.api.openapi import component_schemas
from market_pipeline.api.pages import PAGE_ROUTES
from market_pipeline.api.responses import render_json
from market_pipeline.api.schemas import Error, HealthProbe, Liveness, Readiness
from market_pipeline.domain.reports import ExecutionHistory, SchedulerHealth, StalenessReport
from market_pipeline.observability.store import MAX_LIMIT, ObservabilityStore
from market_pipeline_tests.support.api import (
    SPEC_PYTHON_EXAMPLE,
    http,
    running_server,
    settings_for_store,
)

Z_TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")

SPEC_HEALTH_FIELDS = {
    "status",
    "timestamp",
    "last_execution",
    "stale_features_count",
    "recent_failures",
    "total_symbols_monitored",
}
HEALTH_ADDITIONS = {
    "reasons",
    "missing_features_count",
    "open_failures_count",
    "freshness_summary",
    "alerts",
    "data_summary",
    "late_pairs",
}
SPEC_LAST_EXECUTION_FIELDS = {
    "execution_id",
    "started_at",
    "completed_at",
    "status",
    "successful_symbols",
    "failed_symbols",
}
SPEC_FAILURE_FIELDS = {"symbol", "timeframe", "error", "failed_at"}
SPEC_SUMMARY_FIELDS = {
    "fresh_count",
    "aging_count",
    "stale_count",
    "missing_count",
    "total_monitored",
}
SPEC_FRESHNESS_ITEM_FIELDS = {
    "symbol",
    "timeframe",
    "last_computed_at",
    "staleness_seconds",
    "status",
    "data_point_count",
}
DATA_TIME_ITEM_FIELDS = {
    "last_bar_at",
    "expected_last_bar_at",
    "bars_behind",
    "data_lag_seconds",
    "data_status",
}
SPEC_EXECUTION_FIELDS = {
    "execution_id",
    "started_at",
    "completed_at",
    "duration_seconds",
    "total_symbols",
    "successful_symbols",
    "failed_symbols",
    "total_records_processed",
    "status",
    "error_message",
    "success_rate",
}


def _is_z_timestamp(value: object) -> bool:
    return isinstance(value, str) and bool(Z_TIMESTAMP.match(value))


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def test_scheduler_health_has_the_spec_fields_with_their_types(api):
    response = http.get(f"{api.url}/api/v1/admin/scheduler-health")

    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == SPEC_HEALTH_FIELDS | HEALTH_ADDITIONS
    assert body["status"] == "degraded"
    assert _is_z_timestamp(body["timestamp"])
    last = body["last_execution"]
    assert set(last) >= SPEC_LAST_EXECUTION_FIELDS
    assert set(last) - SPEC_LAST_EXECUTION_FIELDS == {"total_symbols", "error_message"}
    assert last["execution_id"] == api.seeded.latest_execution_id
    assert str(uuid.UUID(last["execution_id"])) == last["execution_id"]
    assert _is_z_timestamp(last["started_at"]) and _is_z_timestamp(last["completed_at"])
    assert (last["status"], last["successful_symbols"], last["failed_symbols"]) == (
        "completed",
        45,
        5,
    )
    # MSFT/1h is stale, MSFT/1d and BTC-USD/1h are missing: the spec's count covers both.
    assert body["stale_features_count"] == 3
    assert body["total_symbols_monitored"] == 3
    [failure] = body["recent_failures"]
    assert set(failure) >= SPEC_FAILURE_FIELDS
    assert (failure["symbol"], failure["timeframe"], failure["error"]) == (
        "MSFT",
        "1h",
        "Division by zero in volatility",
    )
    assert _is_z_timestamp(failure["failed_at"])
    assert all(_is_count(body[name]) for name in ("missing_features_count", "open_failures_count"))
    assert set(body["freshness_summary"]) == SPEC_SUMMARY_FIELDS
    assert body["reasons"] and all(isinstance(reason, str) for reason in body["reasons"])


def test_scheduler_health_timestamps_are_utc_seconds_with_z(api):
    body = http.get(f"{api.url}/api/v1/admin/scheduler-health").json()

    # The latest execution started two hours before the seed's "now" (a whole second, UTC).
    expected = api.seeded.now - timedelta(hours=2)
    assert body["last_execution"]["started_at"] == expected.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert body["last_execution"]["completed_at"] == (expected + timedelta(seconds=930)).strftime(
        "%Y-%m-%dT%H:%M:%SZ"
    )


def test_staleness_report_has_summary_and_all_four_status_lists(api):
    response = http.get(f"{api.url}/api/v1/admin/features/staleness", params={"limit": 50})

    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"timestamp", "summary", "by_status"}
    assert _is_z_timestamp(body["timestamp"])
    assert body["summary"] == {
        "fresh_count": 1,
        "aging_count": 1,
        "stale_count": 1,
        "missing_count": 2,
        "total_monitored": 5,
    }
    assert list(body["by_status"]) == ["fresh", "aging", "stale", "missing"]
    for status, items in body["by_status"].items():
        for item in items:
            assert set(item) == SPEC_FRESHNESS_ITEM_FIELDS | DATA_TIME_ITEM_FIELDS
            assert item["status"] == status
            assert _is_count(item["data_point_count"])
    [fresh] = body["by_status"]["fresh"]
    assert (fresh["symbol"], fresh["timeframe"], fresh["data_point_count"]) == ("AAPL", "1h", 250)
    assert _is_z_timestamp(fresh["last_computed_at"])
    # Whole seconds, as in the spec's example; 1200 s old when seeded, a little older now.
    assert isinstance(fresh["staleness_seconds"], int)
    assert 1200 <= fresh["staleness_seconds"] < 1200 + 120
    [stale] = body["by_status"]["stale"]
    assert (stale["symbol"], stale["timeframe"]) == ("MSFT", "1h")
    missing = {(i["symbol"], i["timeframe"]): i for i in body["by_status"]["missing"]}
    assert set(missing) == {("MSFT", "1d"), ("BTC-USD", "1h")}
    never = missing[("MSFT", "1d")]
    assert never["last_computed_at"] is None and never["staleness_seconds"] is None
    assert missing[("BTC-USD", "1h")]["data_point_count"] == 0


def test_staleness_limit_caps_each_status_list_but_not_the_summary(api):
    body = http.get(f"{api.url}/api/v1/admin/features/staleness?limit=1").json()

    assert len(body["by_status"]["missing"]) == 1
    assert body["summary"]["missing_count"] == 2


def test_staleness_default_limit_is_fifty_per_list(store, db_url, tmp_path):
    store.update_feature_freshness_many(
        {"symbol": f"S{i:03d}", "timeframe": "1h", "last_computed_at": None, "data_point_count": 0}
        for i in range(60)
    )
    unfiltered = ObservabilityStore(store.engine)  # monitors every stored row
    with running_server(create_app(settings_for_store(db_url, tmp_path), store=unfiltered)) as url:
        body = http.get(f"{url}/api/v1/admin/features/staleness").json()

    assert body["summary"]["missing_count"] == 60
    assert len(body["by_status"]["missing"]) == 50


def test_execution_history_matches_the_spec_example_figures(api):
    response = http.get(f"{api.url}/api/v1/admin/scheduler/execution-history?limit=20")

    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"timestamp", "executions"}
    assert _is_z_timestamp(body["timestamp"])
    latest, older = body["executions"]
    assert set(latest) == SPEC_EXECUTION_FIELDS
    assert latest == {
        "execution_id": api.seeded.latest_execution_id,
        "started_at": latest["started_at"],
        "completed_at": latest["completed_at"],
        "duration_seconds": 930,
        "total_symbols": 50,
        "successful_symbols": 45,
        "failed_symbols": 5,
        "total_records_processed": 12500,
        "status": "completed",
        "error_message": None,
        "success_rate": 90.0,
    }
    assert _is_z_timestamp(latest["started_at"]) and _is_z_timestamp(latest["completed_at"])
    assert older["execution_id"] == api.seeded.older_execution_id
    assert (older["status"], older["error_message"]) == ("failed", "provider timed out")
    # No symbols, no rate: null rather than a 0.0 that would read as "all failed".
    assert older["success_rate"] is None


def test_execution_history_limit_returns_the_newest(api):
    body = http.get(f"{api.url}/api/v1/admin/scheduler/execution-history?limit=1").json()

    assert [e["execution_id"] for e in body["executions"]] == [api.seeded.latest_execution_id]


def test_limit_at_the_documented_cap_is_served(api):
    for path in ("features/staleness", "scheduler/execution-history"):
        response = http.get(f"{api.url}/api/v1/admin/{path}", params={"limit": MAX_LIMIT})
        assert response.status_code == 200, response.text


"""PHASE_1_OBSERVABILITY.md, "How to Use", 4. Python Example, verbatim."""


def test_the_spec_python_example_runs_verbatim_against_the_server(api):
    code = SPEC_PYTHON_EXAMPLE.replace("http://localhost:8000", api.url)
    out = io.StringIO()

    with contextlib.redirect_stdout(out):
        exec(compile(code, "spec_example.py", "exec"), {"requests": requests})

    printed = out.getvalue().splitlines()
    assert printed[0] == "⚠️ 3 features are stale"
    assert printed[1] == "  ❌ MSFT/1h: Division by zero in volatility"
    assert printed[2] == (
        "Feature Status: {'fresh_count': 1, 'aging_count': 1, 'stale_count': 1, "
        "'missing_count': 2, 'total_monitored': 5}"
    )


def test_openapi_document_describes_every_route_and_nothing_else(api):
    document = http.get(f"{api.url}/openapi.json").json()

    assert document["openapi"].startswith("3.")
    assert set(document["paths"]) == {path for path, _, _ in ROUTES}
    for path, item in document["paths"].items():
        assert set(item) == {"get"}, path
        assert "200" in item["get"]["responses"], path
    limit = document["paths"]["/api/v1/admin/features/staleness"]["get"]["parameters"][0]
    assert limit["schema"] == {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": 50}


def test_openapi_routes_match_the_application_routes(store, db_url, tmp_path):
    app = create_app(settings_for_store(db_url, tmp_path), store=store)

    served = {route.path for route in app.routes}

    # The dashboard page and its files are HTML and static files, not API.
    assert served == set(app.state.openapi["paths"]) | {path for path, _ in PAGE_ROUTES}
    assert not {path for path, _ in PAGE_ROUTES} & set(app.state.openapi["paths"])


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/admin/scheduler-health",
        "/api/v1/admin/features/staleness",
        "/api/v1/admin/scheduler/execution-history",
    ],
)
def test_admin_responses_are_not_cached(api, path):
    response = http.get(f"{api.url}{path}")

    assert response.headers["cache-control"] == "no-store"


def test_head_is_answered_without_a_body(api):
    response = http.head(f"{api.url}/api/v1/admin/scheduler-health")

    assert response.status_code == 200
    assert response.content == b""


class CountingStore(ObservabilityStore):
    """A real store that counts the history queries it runs."""

    history_calls = 0

    def get_execution_history(self, *, limit: int = 20):
        type(self).history_calls += 1
        return super().get_execution_history(limit=limit)


def test_answers_are_reused_for_the_cache_period_then_recomputed(store, db_url, tmp_path):
    app = create_app(settings_for_store(db_url, tmp_path), store=store, cache_seconds=0.5)
    with running_server(app) as url:
        first = http.get(f"{url}/api/v1/admin/scheduler/execution-history").json()
        store.create_scheduler_execution_log(started_at=datetime.now(UTC), total_symbols=1)
        reused = http.get(f"{url}/api/v1/admin/scheduler/execution-history").json()
        time.sleep(0.6)
        recomputed = http.get(f"{url}/api/v1/admin/scheduler/execution-history").json()

    assert reused == first and first["executions"] == []
    assert len(recomputed["executions"]) == 1


def test_concurrent_requests_share_one_query(engine, db_url, tmp_path):
    store = CountingStore(engine, monitored_pairs=[])
    CountingStore.history_calls = 0
    app = create_app(settings_for_store(db_url, tmp_path), store=store, cache_seconds=30)
    with running_server(app) as url, ThreadPoolExecutor(max_workers=16) as pool:
        statuses = list(
            pool.map(
                lambda _: http.get(f"{url}/api/v1/admin/scheduler/execution-history"),
                range(32),
            )
        )

    assert {response.status_code for response in statuses} == {200}
    assert CountingStore.history_calls == 1


def test_the_cache_keeps_a_bounded_number_of_answers(store, db_url, tmp_path):
    app = create_app(settings_for_store(db_url, tmp_path), store=store, cache_seconds=30)
    with running_server(app) as url:
        for limit in range(1, 101):
            assert http.get(f"{url}/api/v1/admin/features/staleness?limit={limit}").is_success

    assert len(app.state.cache._entries) == app.state.cache.max_entries


def test_the_documented_schemas_are_the_models_of_the_bodies_served(api):
    """A field added to a model shows up in the document: both come from the same classes."""
    document = http.get(f"{api.url}/openapi.json").json()
    assert document["components"]["schemas"] == component_schemas()
    assert {"SchedulerHealth", "FreshnessItem", "Execution", "HealthProbe", "Error"} <= set(
        document["components"]["schemas"]
    )


@pytest.mark.parametrize(
    ("path", "model"),
    [
        ("/api/v1/admin/scheduler-health", SchedulerHealth),
        ("/api/v1/admin/features/staleness", StalenessReport),
        ("/api/v1/admin/scheduler/execution-history", ExecutionHistory),
        ("/healthz", HealthProbe),
        ("/readyz", Readiness),
        ("/livez", Liveness),
        ("/api/v1/admin/nowhere", Error),
    ],
)
def test_every_answer_is_an_instance_of_its_documented_model(api, path, model):
    response = http.get(f"{api.url}{path}")
    parsed = model.model_validate_json(response.content)
    # Readiness leaves out the fields that do not apply (checks when failing, error when ready).
    assert json.loads(render_json(parsed, exclude_none=model is Readiness)) == response.json()
