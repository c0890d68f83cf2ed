"""The dashboard in a real browser (Debian's Chromium under Playwright) over a real
``market-pipeline serve``, after a real ``market-pipeline demo`` backfill in which one symbol fails
with a provider error full of markup.

Every test also checks that the browser reported no console error, warning, uncaught exception
or failed request. Every wait is bounded.
"""

from __future__ import annotations

import pytest
from playwright.sync_api import sync_playwright

from market_pipeline_tests.support.api import http
from market_pipeline_tests.support.browser import (
    ARTEFACTS,
    Console,
    launch_chromium,
    pipeline_env,
    run_cli,
    serving,
)
from market_pipeline_tests.support.universes import write_universe

pytestmark = pytest.mark.slow

XSS = '<script>window.__xss = 1</script>" </td><img src=x onerror="window.__xss = 2">'
SYMBOLS = [("AAPL", "equity"), ("MSFT", "equity"), ("BADCO", "equity"), ("ETH-USD", "crypto")]
TIMEFRAMES = ["1h", "1d"]
TOKEN = "dashboard-token-3c1e"
WAIT_MS = 20_000
CELLS = ".heatmap .cell"


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory) -> dict[str, str]:
    """A store filled by ``market-pipeline demo`` over 4 symbols x 2 timeframes; BADCO fails."""
    root = tmp_path_factory.mktemp("dashboard")
    universe = write_universe(
        root / "universe.yaml",
        SYMBOLS,
        TIMEFRAMES,
        {"kind": "synthetic", "history_bars": 300, "fail_symbols": ["BADCO"], "fail_message": XSS},
    )
    env = pipeline_env(root / "home", universe)
    run_cli(["demo"], env)
    env["LOG_DIR"] = str(root)
    return env


@pytest.fixture(scope="module")
def server(pipeline, tmp_path_factory):
    with serving(pipeline, tmp_path_factory.mktemp("serve") / "serve.log") as url:
        yield url


@pytest.fixture(scope="module")
def secured_server(pipeline, tmp_path_factory):
    env = {**pipeline, "MARKET_PIPELINE_ADMIN_TOKEN": TOKEN}
    with serving(env, tmp_path_factory.mktemp("serve") / "serve.log") as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as playwright:
        chromium = launch_chromium(playwright)
        yield chromium
        chromium.close()


@pytest.fixture
def tab(browser):
    """A fresh browser context (own session storage) and page; yields (page, console)."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    console = Console.watch(page)
    yield page, console
    context.close()


def _open(page, url: str) -> None:
    page.goto(f"{url}/dashboard?poll=0.5")
    page.wait_for_selector("body[data-updates]", timeout=WAIT_MS)


def _wait_for_updates(page, *, above: int) -> None:
    # Functions, not expression strings: the page's CSP (no 'unsafe-eval') refuses those.
    page.wait_for_function(
        "(n) => Number(document.body.dataset.updates) > n", arg=above, timeout=WAIT_MS
    )


def _visible_cells(page) -> int:
    return page.locator(f"{CELLS}:visible").count()


def test_the_map_has_one_cell_per_monitored_pair_grouped_by_asset_class(server, tab):
    page, console = tab
    _open(page, server)

    monitored = http.get(f"{server}/api/v1/admin/dashboard/pairs").json()["pairs"]
    assert page.locator(CELLS).count() == len(monitored) == len(SYMBOLS) * len(TIMEFRAMES)
    groups = page.locator("details.group")
    assert [groups.nth(i).get_attribute("data-asset-class") for i in range(groups.count())] == [
        "equity",
        "crypto",
    ]
    assert page.locator("#health").get_attribute("data-status") == "degraded"
    assert "Last execution completed" in page.inner_text("#last-execution")
    assert page.locator("#history-chart rect.bar").count() == 1
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTEFACTS / "dashboard-e2e.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert console.errors == []


def test_the_failing_pairs_cell_shows_failed_with_its_error(server, tab):
    page, console = tab
    _open(page, server)

    cell = page.locator(f"{CELLS}[data-symbol='BADCO'][data-timeframe='1h']")
    assert cell.get_attribute("data-status") == "failed"
    assert cell.inner_text() == "FAIL"
    assert "injected failure for BADCO 1h" in cell.get_attribute("title")
    healthy = page.locator(f"{CELLS}[data-symbol='AAPL'][data-timeframe='1d']")
    assert healthy.get_attribute("data-status") == "fresh" and healthy.inner_text() == "ok"

    cell.click()
    page.wait_for_selector("#detail:not([hidden])", timeout=WAIT_MS)
    assert page.inner_text("#detail-title").startswith("BADCO · 1h")
    assert f"injected failure for BADCO 1h: {XSS}" in page.inner_text("#detail-fields")
    assert page.get_attribute("#detail-link", "href") == (
        "http://127.0.0.1:3000/assets/quant_features?partition=BADCO%7C1h"
    )
    failures = page.locator("#failures tbody tr")
    assert failures.count() == 2
    assert {failures.nth(i).locator("td").first.inner_text() for i in range(2)} == {"BADCO"}
    assert console.errors == []


def test_the_xss_payload_renders_as_text_and_breaks_no_layout(server, tab):
    page, console = tab
    _open(page, server)
    page.locator(f"{CELLS}[data-symbol='BADCO'][data-timeframe='1d']").click()
    page.wait_for_selector("#detail:not([hidden])", timeout=WAIT_MS)

    assert page.evaluate("window.__xss") is None
    assert page.locator("img").count() == 0
    assert page.locator("main script").count() == 0
    rows = page.locator("#failures tbody tr")
    for i in range(rows.count()):
        assert rows.nth(i).locator("td").count() == 6
        assert rows.nth(i).locator("td.error").inner_text().endswith(XSS)
    detail_failure = page.locator("#detail-failures tbody tr").first
    assert detail_failure.locator("td").count() == 5
    assert detail_failure.locator("td.error").inner_text().endswith(XSS)
    assert console.errors == []


def test_the_filters_narrow_the_map(server, tab):
    page, console = tab
    _open(page, server)
    assert _visible_cells(page) == 8

    page.fill("#filter-prefix", "ms")
    assert _visible_cells(page) == 2
    assert page.locator("details.group[data-asset-class='crypto']").is_hidden()
    assert page.inner_text("#map-count") == "showing 2 of 8 pairs"

    page.fill("#filter-prefix", "")
    for status in ("stale", "aging", "missing", "fresh"):
        page.uncheck(f"#filter-status input[value='{status}']")
    visible = page.locator(f"{CELLS}:visible")
    assert visible.count() == 2
    assert {visible.nth(i).get_attribute("data-symbol") for i in range(2)} == {"BADCO"}
    assert console.errors == []


def test_pausing_stops_the_updates_until_resumed(server, tab):
    page, console = tab
    _open(page, server)
    _wait_for_updates(page, above=1)

    page.click("#pause")
    paused_at = int(page.get_attribute("body", "data-updates"))
    page.wait_for_timeout(2000)  # four poll periods
    assert int(page.get_attribute("body", "data-updates")) == paused_at
    page.click("#pause")
    _wait_for_updates(page, above=paused_at)
    assert console.errors == []


def test_with_a_token_the_page_asks_once_and_keeps_it_out_of_urls(secured_server, tab):
    page, console = tab
    page.goto(f"{secured_server}/dashboard?poll=0.5")
    page.wait_for_selector("#token-form:not([hidden])", timeout=WAIT_MS)
    assert page.locator("#content").is_hidden()
    assert not [u for u in console.requests if "/api/" in u]  # nothing asked without it

    page.fill("#token-input", TOKEN)
    page.click("#token-form button[type=submit]")
    page.wait_for_selector("body[data-updates]", timeout=WAIT_MS)
    assert page.locator(CELLS).count() == 8
    assert page.evaluate("sessionStorage.getItem('market_pipeline.admin_token')") == TOKEN

    page.reload()  # kept in the session: no second question
    page.wait_for_selector("body[data-updates]", timeout=WAIT_MS)
    assert page.locator("#token-form").is_hidden()
    assert page.locator(CELLS).count() == 8
    assert [u for u in console.requests if "/api/" in u]
    assert not [u for u in console.requests if TOKEN in u]
    assert TOKEN not in page.url
    assert console.errors == []


def test_a_new_run_appears_without_a_reload(server, pipeline, tab):
    """Last in this module: it adds an execution to the shared store."""
    page, console = tab
    _open(page, server)
    before = page.locator("#history-chart rect.bar").count()
    page.evaluate("window.__not_reloaded = true")

    run_cli(["demo"], pipeline)  # a second backfill, mirrored

    page.wait_for_function(
        "(n) => document.querySelectorAll('#history-chart rect.bar').length > n",
        arg=before,
        timeout=60_000,
    )
    assert page.evaluate("window.__not_reloaded") is True
    assert page.locator("#history-chart rect.bar").count() == before + 1
    assert page.locator(CELLS).count() == 8
    assert console.errors == []
