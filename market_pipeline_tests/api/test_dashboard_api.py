"""The dashboard's JSON reads and its page, against a real server on both backends.

The seed is :func:`~market_pipeline_tests.support.api.seed_degraded` (shared, read only): AAPL/1h
fresh, AAPL/1d aging, MSFT/1h stale with an open failure, MSFT/1d and BTC-USD/1h missing.
"""

from __future__ import annotations

import re

import pytest

from market_pipeline.api.pages import CONTENT_SECURITY_POLICY, DashboardFiles
from market_pipeline_tests.support.api import MONITORED_PAIRS, http

PAIRS = "/api/v1/admin/dashboard/pairs"
FAILURES = "/api/v1/admin/dashboard/failures"
PAIR = "/api/v1/admin/dashboard/pair"
PAGE_BUDGET_BYTES = 200_000


def test_pairs_lists_every_monitored_pair_with_its_cell_status(api):
    body = http.get(f"{api.url}{PAIRS}").json()

    assert [(p["symbol"], p["timeframe"]) for p in body["pairs"]] == MONITORED_PAIRS
    assert [p["cell_status"] for p in body["pairs"]] == [
        "fresh",
        "aging",
        "failed",
        "missing",
        "missing",
    ]
    failing = body["pairs"][2]
    assert failing["status"] == "stale"
    assert failing["failure"]["error"] == "Division by zero in volatility"
    assert failing["failure"]["first_failed_at"].endswith("Z")
    assert body["summary"]["total_monitored"] == 5 and body["failed_count"] == 1
    assert body["timeframes"] == ["1h", "1d"]
    assert http.get(f"{api.url}{PAIRS}").headers["cache-control"] == "no-store"


def test_failures_are_the_open_ones_newest_first(api):
    body = http.get(f"{api.url}{FAILURES}?limit=5").json()

    assert body["total_open"] == 1
    assert [(f["symbol"], f["timeframe"], f["retry_count"]) for f in body["failures"]] == [
        ("MSFT", "1h", 0)
    ]
    assert body["failures"][0]["execution_id"] == api.seeded.latest_execution_id


def test_pair_detail_has_the_pairs_fields_and_its_dagster_partition_link(api):
    body = http.get(f"{api.url}{PAIR}?symbol=MSFT&timeframe=1h").json()

    assert body["pair"]["cell_status"] == "failed"
    assert [f["error"] for f in body["failures"]] == ["Division by zero in volatility"]
    assert body["status_rows"] == []
    assert body["dagster_url"] == (
        "http://127.0.0.1:3000/assets/quant_features?partition=MSFT%7C1h"
    )


def test_an_unmonitored_pair_is_a_json_404(api):
    response = http.get(f"{api.url}{PAIR}?symbol=TSLA&timeframe=1h")

    assert response.status_code == 404
    assert response.json()["error"] == "unknown_pair"


@pytest.mark.parametrize(
    ("query", "error"),
    [
        ("timeframe=1h", "missing_parameter"),
        ("symbol=MSFT", "missing_parameter"),
        ("symbol=%3Cscript%3E&timeframe=1h", "invalid_parameter"),
        ("symbol=MSFT&timeframe=1week", "invalid_parameter"),
        ("symbol=MSFT&timeframe=1h&limit=0", "invalid_parameter"),
        ("symbol=MSFT&timeframe=1h&x=1", "unknown_parameter"),
    ],
)
def test_bad_pair_queries_are_a_400_naming_the_problem(api, query, error):
    response = http.get(f"{api.url}{PAIR}?{query}")

    assert response.status_code == 400
    assert response.json()["error"] == error


def test_the_openapi_document_describes_the_dashboard_reads(api):
    document = http.get(f"{api.url}/openapi.json").json()

    pair = document["paths"][PAIR]["get"]
    assert [(p["name"], p["required"]) for p in pair["parameters"]] == [
        ("symbol", True),
        ("timeframe", True),
        ("limit", False),
    ]
    assert "404" in pair["responses"]
    assert {"DashboardPairs", "OpenFailures", "PairDetail"} <= set(
        document["components"]["schemas"]
    )
    assert not {"/", "/dashboard"} & set(document["paths"])


def test_the_root_redirects_to_the_dashboard(api):
    response = http.get(f"{api.url}/", follow_redirects=False)

    assert response.status_code == 307
    assert response.headers["location"] == "/dashboard"


def test_the_page_is_html_with_a_strict_policy_and_no_data(api):
    response = http.get(f"{api.url}/dashboard")

    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    policy = response.headers["content-security-policy"]
    assert policy == CONTENT_SECURITY_POLICY
    assert "script-src 'self';" in policy and "unsafe-inline" not in policy
    assert "default-src 'none'" in policy and "frame-ancestors 'none'" in policy
    page = response.text
    for leaked in ("MSFT", "Division by zero", "degraded"):
        assert leaked not in page
    assert "<script>" not in page and " style=" not in page  # nothing inline
    assert 'data-poll-seconds="15"' in page and 'data-token-required="false"' in page


def test_the_page_asks_for_the_token_only_when_one_is_set(secured_api):
    response = http.get(f"{secured_api.url}/dashboard")

    assert response.status_code == 200
    assert 'data-token-required="true"' in response.text
    assert "Division by zero" not in response.text


def test_the_poll_interval_comes_from_the_query_within_bounds(api):
    fast = http.get(f"{api.url}/dashboard?poll=0.5")
    too_fast = http.get(f"{api.url}/dashboard?poll=0.01")
    not_a_number = http.get(f"{api.url}/dashboard?poll=soon")

    assert 'data-poll-seconds="0.5"' in fast.text
    assert too_fast.status_code == not_a_number.status_code == 400
    assert too_fast.json()["error"] == "invalid_parameter"


def test_every_file_the_page_names_is_served_by_the_app_with_a_long_cache(api):
    page = http.get(f"{api.url}/dashboard").text
    named = re.findall(r'(?:src|href)="([^"]+)"', page)

    assert named and all(url.startswith("/dashboard/static/") for url in named)  # no CDN
    for url in named:
        response = http.get(f"{api.url}{url}")
        assert response.status_code == 200, url
        assert response.headers["cache-control"] == "public, max-age=31536000, immutable"
        assert response.headers["x-content-type-options"] == "nosniff"
        revalidated = http.get(
            f"{api.url}{url}", headers={"If-None-Match": response.headers["etag"]}
        )
        assert revalidated.status_code == 304 and revalidated.content == b""


def test_the_scripts_import_only_files_the_app_serves(api):
    version = DashboardFiles().version
    for name, asset in DashboardFiles().assets.items():
        if not name.endswith(".js"):
            continue
        for imported in re.findall(r'from "\./([^"]+)"', asset.body.decode()):
            response = http.get(f"{api.url}/dashboard/static/{version}/{imported}")
            assert response.status_code == 200, (name, imported)
            assert response.headers["content-type"].startswith("text/javascript")


def test_the_scripts_never_parse_server_text_as_markup():
    scripts = "".join(
        asset.body.decode()
        for name, asset in DashboardFiles().assets.items()
        if name.endswith(".js")
    )

    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
        assert sink not in scripts


def test_the_page_and_its_files_weigh_under_the_budget():
    assert DashboardFiles().weight() < PAGE_BUDGET_BYTES
