"""Case 7, /metrics: what one Prometheus scrape costs, against one staleness report of the same
data, at 1,000 and 10,000 monitored pairs, and the exposition's size per pair.

Both are served by the same uncached server (``create_app(cache_seconds=0)`` under uvicorn, so
every request runs its queries; the server watches a Dagster instance on the shipped PostgreSQL
storage, whose reads run beside the scrapes every 5 s, as in a deployment) over one PostgreSQL
database: 1,000 executions, a freshness row
for 95% of the pairs (ages spread over fresh, aging and stale; the rest missing) and an open
failure for 1% of them. One client asks sequentially, alternating the paths, so the machine's
load falls on all alike. The baseline is the staleness report listing every pair (``limit=1000``,
the most per status), as the scrape exports them; the default ``limit=50`` report is recorded
beside it. Per-pair series follow the shipped default (``auto``: on at 1,000
pairs, off above 2,000); at 10,000 they are also measured forced on.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import tempfile
import time
import urllib.request
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench.cases.api import UNCACHED_SERVER, get_once, served
from bench.common import (
    LOWER_IS_BETTER,
    Result,
    median,
    migrated_engine,
    percentile,
    temp_database,
    write_universe,
)
from market_pipeline.observability.store import ObservabilityStore
from market_pipeline.package_data import instance_template

TIMEFRAMES = ["1m", "5m", "15m", "1h", "1d"]
STALENESS = "/api/v1/admin/features/staleness?limit=1000"
"""The staleness report listing every pair (up to 1,000 per status), as a scrape exports them."""
STALENESS_DEFAULT = "/api/v1/admin/features/staleness"


def _seed(url: str, pairs: list[tuple[str, str]]) -> None:
    engine = migrated_engine(url)
    store = ObservabilityStore(engine, monitored_pairs=pairs)
    now = datetime.now(UTC)
    store.update_feature_freshness_many(
        [
            {
                "symbol": symbol,
                "timeframe": tf,
                "last_computed_at": now - timedelta(seconds=(i * 37) % (3 * 86400)),
                "data_point_count": 500,
            }
            for i, (symbol, tf) in enumerate(pairs)
            if i % 20  # every 20th pair is missing
        ]
    )
    for n in range(1000):
        execution = store.create_scheduler_execution_log(
            started_at=now - timedelta(minutes=15 * (1000 - n))
        )
        store.update_scheduler_execution_log(
            execution_id=execution,
            completed_at=now - timedelta(minutes=15 * (1000 - n) - 5),
            status="completed",
        )
    for symbol, tf in pairs[::100]:  # 1% of the pairs have an open failure
        store.log_feature_computation_failure(
            symbol=symbol, timeframe=tf, error_message="vendor 503", execution_id=execution
        )
    engine.dispose()


async def _alternate(port: int, paths: tuple[str, ...], rounds: int) -> dict[str, list[float]]:
    """Latencies (ms) of ``paths`` asked in turn on one keep-alive connection."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    for path in paths:  # warm-up: imports, pools, compiled statements
        await get_once(reader, writer, path)
    latencies: dict[str, list[float]] = {path: [] for path in paths}
    for _ in range(rounds):
        for path in paths:
            start = time.perf_counter()
            status = await get_once(reader, writer, path)
            latencies[path].append((time.perf_counter() - start) * 1e3)
            if status != 200:
                raise RuntimeError(f"{path} answered {status}")
    writer.close()
    return latencies


def _size(port: int, path: str) -> int:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=30) as response:
        return len(response.read())


def _measure(
    env: dict[str, str], workdir: Path, pairs: int, per_pair: str, rounds: int
) -> list[Result]:
    env = {**env, "MARKET_PIPELINE_METRICS_PER_PAIR": per_pair}
    with served([sys.executable, "-c", UNCACHED_SERVER], env, workdir / "server.log") as port:
        paths = ("/metrics", STALENESS, STALENESS_DEFAULT)
        latencies = asyncio.run(_alternate(port, paths, rounds))
        size = _size(port, "/metrics")
        report_size = _size(port, STALENESS)
    scrape, report, default = (latencies[path] for path in paths)
    label = f"{pairs:,} pairs, per-pair series {per_pair}"
    extra = {
        "pairs": pairs,
        "per_pair": per_pair,
        "rounds": rounds,
        "scrape_p50_ms": median(scrape),
        "scrape_p99_ms": percentile(scrape, 99),
        "staleness_p50_ms": median(report),
        "staleness_p99_ms": percentile(report, 99),
        "staleness_default_limit_p50_ms": median(default),
        "staleness_default_limit_p99_ms": percentile(default, 99),
        "exposition_bytes": size,
    }
    p99 = Result(
        name=f"metrics: scrape p99 ({label})",
        value=percentile(scrape, 99),
        unit="ms",
        baseline="staleness report p99 (limit 1000), same data and server",
        baseline_value=percentile(report, 99),
        direction=LOWER_IS_BETTER,
        goal="ratio <= 1" if per_pair == "auto" else None,
        extra=extra,
    )
    if p99.goal:
        p99.goal_met = p99.ratio <= 1
    bytes_per_pair = Result(
        name=f"metrics: exposition bytes per pair ({label})",
        value=size / pairs,
        unit="bytes",
        baseline="staleness report body per pair (limit 1000)",
        baseline_value=report_size / pairs,
        direction=LOWER_IS_BETTER,
        extra=extra,
    )
    return [p99, bytes_per_pair]


def run(smoke: bool = False) -> list[Result]:
    sizes = (100,) if smoke else (1_000, 10_000)
    rounds = 10 if smoke else 200
    results: list[Result] = []
    with ExitStack() as stack:
        for pairs in sizes:
            workdir = Path(tempfile.mkdtemp(prefix="mp_bench_metrics_"))
            symbols = [(f"S{i:05d}", "equity" if i % 3 else "crypto") for i in range(pairs // 5)]
            universe = write_universe(
                workdir / "universe.yaml", symbols, TIMEFRAMES, {"kind": "synthetic"}
            )
            url = stack.enter_context(temp_database(f"metrics_{pairs}"))
            _seed(url, [(s, tf) for s, _ in symbols for tf in TIMEFRAMES])
            env = dict(os.environ)
            env.update(
                MARKET_PIPELINE_DB_URL=url,
                MARKET_PIPELINE_UNIVERSE=str(universe),
                MARKET_PIPELINE_HOME=str(workdir),
            )
            env.pop("MARKET_PIPELINE_ADMIN_TOKEN", None)
            # A PostgreSQL instance of its own, as a deployment's `serve` has: its reads
            # share the machine with the scrapes.
            home = workdir / "dagster_home"
            home.mkdir()
            shutil.copyfile(instance_template(postgres=True), home / "dagster.yaml")
            env["DAGSTER_HOME"] = str(home)
            env["DAGSTER_PG_URL"] = stack.enter_context(temp_database(f"dagster_{pairs}"))
            results += _measure(env, workdir, pairs, "auto", rounds)
            if pairs > 2000:
                results += _measure(env, workdir, pairs, "on", rounds)
    return results
