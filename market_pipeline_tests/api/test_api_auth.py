"""Bearer-token authentication of the admin API, against a real server on both backends."""

from __future__ import annotations

import hmac
import json

import httpx
import pytest

from market_pipeline_tests.support.api import TOKEN, http, raw_request

PROTECTED = [
    "/api/v1/admin/scheduler-health",
    "/api/v1/admin/features/staleness?limit=50",
    "/api/v1/admin/scheduler/execution-history?limit=20",
    "/healthz",
    "/metrics",
    "/api/v1/admin/dashboard/pairs",
    "/api/v1/admin/dashboard/failures?limit=10",
    "/api/v1/admin/dashboard/pair?symbol=AAPL&timeframe=1h",
    "/api/v1/admin/features/coverage",
]
OPEN = ["/livez", "/readyz", "/openapi.json", "/dashboard"]


def _assert_no_data(response: httpx.Response) -> None:
    body = response.json()
    assert set(body) == {"error", "detail"}
    for leaked in ("AAPL", "MSFT", "Division by zero", "degraded", "timestamp"):
        assert leaked not in response.text


@pytest.mark.parametrize("path", PROTECTED)
def test_missing_token_is_401_with_a_bearer_challenge_and_no_data(secured_api, path):
    response = http.get(f"{secured_api.url}{path}")

    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer ")
    _assert_no_data(response)


@pytest.mark.parametrize(
    "header",
    [
        f"Bearer {TOKEN}x",
        f"Bearer {TOKEN[:-1]}",
        "Bearer ",
        "Bearer",
        f"Basic {TOKEN}",
        f"Token {TOKEN}",
        TOKEN,
        f"Bearer {TOKEN.upper()}",
    ],
)
def test_wrong_or_malformed_token_is_401(secured_api, header):
    # Sent raw: HTTP clients refuse some of these headers (a trailing space) themselves.
    response = raw_request(
        secured_api.url, "GET", "/api/v1/admin/scheduler-health", {"Authorization": header}
    )

    assert response.status == 401
    assert 'error="invalid_token"' in response.headers["www-authenticate"]
    assert json.loads(response.body).keys() == {"error", "detail"}
    assert b"AAPL" not in response.body and b"timestamp" not in response.body


def test_token_with_bytes_outside_ascii_is_401_not_500(secured_api):
    response = raw_request(
        secured_api.url,
        "GET",
        "/api/v1/admin/scheduler-health",
        {"Authorization": "Bearer \xff\xfe" + TOKEN},
    )

    assert response.status == 401


def test_huge_token_is_401(secured_api):
    response = http.get(
        f"{secured_api.url}/api/v1/admin/scheduler-health",
        headers={"Authorization": "Bearer " + "a" * 8000},
    )

    assert response.status_code == 401


@pytest.mark.parametrize("path", PROTECTED)
def test_right_token_is_served(secured_api, path):
    response = http.get(f"{secured_api.url}{path}", headers=secured_api.auth)

    # /healthz answers 503 because the seeded scheduler is degraded; it is still served.
    assert response.status_code == (503 if path == "/healthz" else 200)
    if path == "/metrics":
        assert "market_pipeline_scheduler_healthy 0.0" in response.text
    else:
        assert "timestamp" in response.json()


def test_bearer_scheme_is_case_insensitive(secured_api):
    response = http.get(
        f"{secured_api.url}/api/v1/admin/scheduler-health",
        headers={"Authorization": f"bearer {TOKEN}"},
    )

    assert response.status_code == 200


@pytest.mark.parametrize("path", OPEN)
def test_liveness_readiness_and_the_schema_need_no_token(secured_api, path):
    response = http.get(f"{secured_api.url}{path}")

    assert response.status_code == 200


def test_authentication_comes_before_input_checks(secured_api):
    # An unauthenticated caller learns nothing, not even which parameters exist.
    response = http.get(f"{secured_api.url}/api/v1/admin/features/staleness?limit=abc&x=1")

    assert response.status_code == 401


def test_token_is_compared_in_constant_time(secured_api, monkeypatch):
    calls = []
    real = hmac.compare_digest

    def spy(a, b):
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)

    wrong = http.get(
        f"{secured_api.url}/api/v1/admin/scheduler-health",
        headers={"Authorization": "Bearer not-the-token"},
    )
    right = http.get(f"{secured_api.url}/api/v1/admin/scheduler-health", headers=secured_api.auth)

    assert (wrong.status_code, right.status_code) == (401, 200)
    assert len(calls) == 2
    # Fixed-length digests are compared, so not even the token's length shows in the timing.
    assert all(len(a) == len(b) == 32 for a, b in calls)


def test_openapi_declares_bearer_auth_on_protected_routes_only(secured_api):
    document = http.get(f"{secured_api.url}/openapi.json").json()

    protected = {path.split("?")[0] for path in PROTECTED}
    for path, item in document["paths"].items():
        expected = [{"bearerAuth": []}] if path in protected else []
        assert item["get"]["security"] == expected, path
        if path in protected:
            assert "401" in item["get"]["responses"], path
    assert document["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"


def test_without_a_configured_token_admin_endpoints_are_open(api):
    response = http.get(f"{api.url}/api/v1/admin/scheduler-health")

    assert response.status_code == 200
