"""Case 7, dashboard: time to first render and to a full update in a real browser, page weight.

Debian's Chromium (Playwright) loads ``/dashboard`` from ``market-pipeline serve`` over a
PostgreSQL store of 250 and of 1,000 monitored pairs (symbols x 5 timeframes), 50 executions and
open failures on 2% of the pairs. The figures are the page's own User Timing entries:

- first render: the ``dashboard:first-render`` mark, i.e. from the start of navigation until the
  page has read the five endpoints and drawn every cell, the banner, chart and failures;
- full update: the last ``dashboard:update`` measure after every pair's status changed in the
  database (so every cell is repainted), from the refresh click's fetches to the last DOM write.

Baselines, in the same browser and server: a navigation to ``/livez`` (the browser's and
server's floor for showing anything) and one ``fetch('/livez')`` from the page (the floor of a
request). The page weight (HTML, scripts, style, icon as served) is set against the issue's
budget of 200 kB. The issue's goal: both times under 1 s at 1,000 pairs.
"""

from __future__ import annotations

import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import sqlalchemy as sa
from playwright.sync_api import sync_playwright

from bench.cases.store_ops import TIMEFRAMES
from bench.common import (
    LOWER_IS_BETTER,
    Result,
    bench_symbols,
    median,
    migrated_engine,
    temp_database,
    write_universe,
)
from market_pipeline.database.tables import feature_freshness
from market_pipeline.observability.store import ObservabilityStore
from market_pipeline_tests.support.browser import launch_chromium, pipeline_env, serving

BUDGET_BYTES = 200_000
GOAL_MS = 1000.0
AGES = {"fresh": timedelta(minutes=10), "aging": timedelta(hours=5), "stale": timedelta(days=3)}
# Each state's successor has a newer (or first) computation, so the store accepts the change.
NEXT = {"stale": "aging", "aging": "fresh", "fresh": "missing", "missing": "stale"}
ORDER = ("stale", "aging", "fresh", "missing")


def _freshness_rows(pairs, statuses, now):
    rows = []
    for (symbol, timeframe), status in zip(pairs, statuses, strict=True):
        last = now if status == "missing" else now - AGES[status]
        count = 0 if status == "missing" else 100
        rows.append(
            {
                "symbol": symbol,
                "timeframe": timeframe,
                "last_computed_at": last,
                "data_point_count": count,
            }
        )
    return rows


def _seed(store: ObservabilityStore, pairs) -> list[str]:
    now = datetime.now(UTC)
    for i in range(50):
        started = now - timedelta(hours=50 - i)
        eid = store.create_scheduler_execution_log(started_at=started, total_symbols=len(pairs))
        store.update_scheduler_execution_log(
            execution_id=eid,
            completed_at=started + timedelta(seconds=30 + i % 7),
            successful_symbols=len(pairs) - i % 3,
            failed_symbols=i % 3,
            status="failed" if i % 11 == 0 else "completed",
        )
    for symbol, timeframe in pairs[::50]:
        store.log_feature_computation_failure(
            symbol=symbol, timeframe=timeframe, error_message="provider timed out", failed_at=now
        )
    return [ORDER[i % 4] for i in range(len(pairs))]


def _reset(store: ObservabilityStore, pairs, statuses) -> None:
    with store.engine.begin() as conn:
        conn.execute(sa.delete(feature_freshness))
    store.update_feature_freshness_many(_freshness_rows(pairs, statuses, datetime.now(UTC)))


def _one_round(browser, url: str, store, pairs, statuses) -> dict[str, float]:
    _reset(store, pairs, statuses)
    time.sleep(1.1)  # past the API's 1 s answer cache
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    loaded: list[str] = []
    page.on("request", lambda request: loaded.append(request.url))
    page.goto(f"{url}/dashboard?poll=3600")  # no timed poll during the measurement
    page.wait_for_selector("body[data-updates='1']", timeout=60_000)
    first = page.evaluate("performance.getEntriesByName('dashboard:first-render')[0].startTime")
    store.update_feature_freshness_many(
        _freshness_rows(pairs, [NEXT[s] for s in statuses], datetime.now(UTC))
    )
    time.sleep(1.1)
    page.click("#refresh")
    page.wait_for_selector("body[data-updates='2']", timeout=60_000)
    update = page.evaluate("performance.getEntriesByName('dashboard:update').at(-1).duration")
    fetch_floor = page.evaluate(
        "async () => { const t = performance.now(); await fetch('/livez'); "
        "return performance.now() - t; }"
    )
    files = {u for u in loaded if "/api/" not in u and not u.endswith("/livez")}
    page.goto(f"{url}/livez")
    floor = page.evaluate("performance.getEntriesByType('navigation')[0].loadEventEnd")
    context.close()
    weight = sum(len(httpx.get(u, timeout=10).content) for u in files)
    return {"first": first, "update": update, "floor": floor, "fetch": fetch_floor, "bytes": weight}


def _measure(pair_count: int, rounds: int, workdir: Path, browser) -> dict[str, float]:
    symbols = bench_symbols(pair_count // len(TIMEFRAMES))
    universe = write_universe(
        workdir / f"universe_{pair_count}.yaml", symbols, TIMEFRAMES, {"kind": "synthetic"}
    )
    pairs = [(s, tf) for s, _ in symbols for tf in TIMEFRAMES]
    with temp_database("dashboard") as db_url:
        engine = migrated_engine(db_url)
        try:
            store = ObservabilityStore(engine, monitored_pairs=pairs)
            statuses = _seed(store, pairs)
            env = pipeline_env(workdir / "home", universe, MARKET_PIPELINE_DB_URL=db_url)
            with serving(env, workdir / f"serve_{pair_count}.log") as url:
                _one_round(browser, url, store, pairs, statuses)  # warm-up: caches, JIT, pools
                runs = [_one_round(browser, url, store, pairs, statuses) for _ in range(rounds)]
        finally:
            engine.dispose()
    return {key: median([r[key] for r in runs]) for key in runs[0]}


def run(smoke: bool = False) -> list[Result]:
    """Measure both sizes (20 and 40 pairs when smoke) and the page weight."""
    sizes, rounds = ((20, 40), 1) if smoke else ((250, 1000), 5)
    workdir = Path(tempfile.mkdtemp(prefix="mp_bench_dashboard_"))
    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        try:
            figures = {n: _measure(n, rounds, workdir, browser) for n in sizes}
        finally:
            browser.close()
    results = []
    for n, fig in figures.items():
        goal = n == 1000
        for key, what, floor, floor_name in (
            ("first", "first render", "floor", "navigation to /livez"),
            ("update", "full update", "fetch", "one fetch('/livez') from the page"),
        ):
            results.append(
                Result(
                    name=f"dashboard: {what}, {n} pairs",
                    value=fig[key],
                    unit="ms",
                    baseline=f"{floor_name}, same browser and server",
                    baseline_value=max(fig[floor], 0.1),
                    direction=LOWER_IS_BETTER,
                    goal="under 1 s at 1,000 pairs" if goal else None,
                    goal_met=fig[key] < GOAL_MS if goal else None,
                    extra={"pairs": n, "rounds": rounds, "browser": "Debian chromium"},
                )
            )
    weight = figures[sizes[0]]["bytes"]
    results.append(
        Result(
            name="dashboard: page weight (HTML, scripts, style, icon)",
            value=weight,
            unit="bytes",
            baseline="issue 14's budget",
            baseline_value=BUDGET_BYTES,
            direction=LOWER_IS_BETTER,
            goal="at most 200 kB, data excluded",
            goal_met=weight <= BUDGET_BYTES,
        )
    )
    return results
