"""Hostile input against a real server on both backends: every answer is a 4xx JSON error that
says what was wrong, never a 500, a stack trace or an unbounded query."""

from __future__ import annotations

import logging

import httpx
import pytest

from market_pipeline.api.app import MAX_QUERY_BYTES, ROUTES, create_app
from market_pipeline.observability.store import MAX_LIMIT, ObservabilityStore
from market_pipeline_tests.support.api import (
    MONITORED_PAIRS,
    http,
    raw_request,
    running_server,
    settings_for_store,
)

LIMITED = ["/api/v1/admin/features/staleness", "/api/v1/admin/scheduler/execution-history"]


@pytest.fixture(autouse=True)
def no_server_errors_logged(caplog):
    """Fails a test in which the server logged an unhandled error (the 500 handler ran)."""
    caplog.set_level(logging.ERROR, logger="market_pipeline.api")
    yield
    errors = [
        r for r in caplog.records if r.name == "market_pipeline.api" and r.levelno >= logging.ERROR
    ]
    assert not errors, [r.getMessage() for r in errors]


def _assert_json_error(response: httpx.Response, status: int, error: str) -> str:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {"error", "detail"}
    assert body["error"] == error
    assert "Traceback" not in response.text and 'File "' not in response.text
    return body["detail"]


@pytest.mark.parametrize("path", LIMITED)
@pytest.mark.parametrize(
    "value",
    [
        "abc",
        "-1",
        "0",
        str(10**30),
        "1.5",
        "",
        " 5",
        "0x10",
        "1e3",
        "\uff15",
        "NaN",
        str(MAX_LIMIT + 1),
        "99999999999",
    ],
)
def test_bad_limit_is_a_400_naming_limit_and_the_cap(api, path, value):
    response = http.get(f"{api.url}{path}", params={"limit": value})

    detail = _assert_json_error(response, 400, "invalid_parameter")
    assert "limit" in detail and str(MAX_LIMIT) in detail


def test_a_huge_limit_is_not_echoed_in_full(api):
    value = "9" * 1500
    response = http.get(f"{api.url}{LIMITED[0]}", params={"limit": value})

    detail = _assert_json_error(response, 400, "invalid_parameter")
    assert len(detail) < 200


@pytest.mark.parametrize("path", LIMITED)
def test_unknown_parameters_are_a_400_naming_them(api, path):
    response = http.get(f"{api.url}{path}", params={"limit": 5, "offset": 10, "LIMIT": 3})

    detail = _assert_json_error(response, 400, "unknown_parameter")
    assert "'LIMIT'" in detail and "'offset'" in detail and "accepts limit" in detail


def test_endpoints_without_parameters_refuse_any(api):
    response = http.get(f"{api.url}/api/v1/admin/scheduler-health", params={"limit": 5})

    detail = _assert_json_error(response, 400, "unknown_parameter")
    assert "'limit'" in detail and "accepts no query parameters" in detail


def test_a_repeated_limit_is_a_400(api):
    response = http.get(f"{api.url}{LIMITED[0]}?limit=5&limit=500")

    detail = _assert_json_error(response, 400, "repeated_parameter")
    assert "limit" in detail


def test_percent_encoded_bytes_that_are_not_utf8_are_a_400(api):
    response = http.get(f"{api.url}{LIMITED[0]}?limit=%ff")

    detail = _assert_json_error(response, 400, "invalid_query_string")
    assert "UTF-8" in detail


def test_a_non_utf8_parameter_name_is_a_400(api):
    response = http.get(f"{api.url}{LIMITED[0]}?%ff%fe=1")

    _assert_json_error(response, 400, "invalid_query_string")


def test_raw_non_ascii_bytes_in_the_request_line_are_refused(api):
    # The HTTP parser refuses these before the application sees them: a plain 400.
    response = raw_request(api.url, "GET", LIMITED[0].encode() + b"?limit=\xff")

    assert response.status == 400


def test_a_10_kb_query_string_is_a_414(api):
    response = http.get(f"{api.url}{LIMITED[0]}?limit=5&x={'a' * 10_000}")

    detail = _assert_json_error(response, 414, "query_too_long")
    assert str(MAX_QUERY_BYTES) in detail


def test_too_many_parameters_are_a_400(api):
    query = "&".join(f"p{i}=1" for i in range(40))
    response = http.get(f"{api.url}{LIMITED[0]}?{query}")

    _assert_json_error(response, 400, "invalid_query_string")


@pytest.mark.parametrize("method", ["DELETE", "PATCH", "POST", "PUT", "OPTIONS", "TRACE"])
def test_other_methods_are_a_405_listing_the_allowed_ones(api, method):
    for path, _, _ in ROUTES:
        response = http.request(method, f"{api.url}{path}")

        _assert_json_error(response, 405, "method_not_allowed")
        assert set(response.headers["allow"].replace(" ", "").split(",")) == {"GET", "HEAD"}


def test_a_large_body_is_a_413_before_anything_else(api):
    response = http.post(f"{api.url}/api/v1/admin/scheduler-health", content=b"x" * 1_000_000)

    _assert_json_error(response, 413, "request_too_large")


def test_a_small_body_on_a_get_is_ignored(api):
    response = http.request("GET", f"{api.url}/api/v1/admin/scheduler-health", content=b"{}")

    assert response.status_code == 200


@pytest.mark.parametrize(
    "target",
    [
        "/api/v1/admin/../../etc/passwd",
        "/api/v1/admin/%2e%2e/%2e%2e/etc/passwd",
        "/api/v1/admin/..%2f..%2fetc%2fpasswd",
        "//api/v1/admin/scheduler-health",
        "/api/v1/admin/scheduler-health/",
        "/api/v1/admin/scheduler-health%00",
        "/api/v1/admin/features/staleness;limit=1",
        "/API/V1/ADMIN/SCHEDULER-HEALTH",
        "/%ff",
        "/" + "a" * 5000,
        "/dashboard/",
        "/dashboard/static/../../pyproject.toml",
        "/dashboard/static/0000000000000000/dashboard.js",
        "*",
    ],
)
def test_odd_paths_are_a_json_404(api, target):
    response = raw_request(api.url, "GET", target)

    assert response.status == 404
    assert response.headers["content-type"] == "application/json"
    assert b"not_found" in response.body
    assert b"root:" not in response.body


class ExplodingStore(ObservabilityStore):
    """A real store whose history query fails in an unforeseen way (a bug, not the database)."""

    def get_execution_history(self, *, limit: int = 20):
        raise ZeroDivisionError("secret internal state 7f3a")


def test_an_unforeseen_error_is_a_500_without_details(engine, db_url, tmp_path, caplog):
    store = ExplodingStore(engine, monitored_pairs=MONITORED_PAIRS)
    with running_server(create_app(settings_for_store(db_url, tmp_path), store=store)) as url:
        response = http.get(f"{url}/api/v1/admin/scheduler/execution-history")
    # The error is logged with its traceback on the server side only; this test expects that.
    caplog.clear()

    assert response.status_code == 500
    assert response.json() == {
        "error": "internal_error",
        "detail": "the server failed; see its log",
    }
    assert "secret" not in response.text and "ZeroDivisionError" not in response.text
