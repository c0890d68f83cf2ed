"""Case 6, admin API: requests per second and p50/p99 latency per endpoint at 16 clients.

The database holds the same history as the store case (100k executions, 1M status rows, 100k
failures, 500 monitored pairs). The server is started as users start it, ``market-pipeline
serve`` in its own process (one uvicorn worker; admin answers are reused for 1 s, as shipped), and
once more with that cache turned off (``create_app(cache_seconds=0)`` under uvicorn), so the
figures show what the queries cost and what the cache buys.

Load: 16 keep-alive connections from one asyncio client with a minimal HTTP/1.1 reader (much
less client CPU than a full HTTP library, which matters when client, server and PostgreSQL share
two cores). Endpoints are loaded one at a time; latency is from sending a request to the last
byte of its body. The baseline of every endpoint is ``/livez`` on the same server under the same
load: the HTTP and framework floor, touching no database.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bench.cases.store_ops import TIMEFRAMES, history_database
from bench.common import (
    HIGHER_IS_BETTER,
    Result,
    bench_symbols,
    median,
    percentile,
    write_universe,
)

CLIENTS = 16
ENDPOINTS = (
    "/livez",
    "/api/v1/admin/scheduler-health",
    "/api/v1/admin/features/staleness?limit=50",
    "/api/v1/admin/scheduler/execution-history?limit=20",
    "/healthz",
    "/readyz",
)
BASELINE = "/livez"
UNCACHED_SERVER = (
    "import sys, uvicorn\n"
    "from market_pipeline.api.app import create_app\n"
    "from market_pipeline.config.settings import Settings\n"
    "uvicorn.run(create_app(Settings.from_env(), cache_seconds=0), host='127.0.0.1',\n"
    "            port=int(sys.argv[1]), log_level='warning', access_log=False)\n"
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def get_once(reader, writer, path: str) -> int:
    """Send one GET on a keep-alive connection and read the whole answer; return the status."""
    writer.write(f"GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n".encode())
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.lower() == "content-length":
            length = int(value)
    if length:
        await reader.readexactly(length)
    return status


async def load(port: int, path: str, requests: int, clients: int = CLIENTS):
    """``requests`` GETs of ``path`` over ``clients`` connections: (seconds, latencies ms, bad)."""
    conns = [await asyncio.open_connection("127.0.0.1", port) for _ in range(clients)]
    for reader, writer in conns:  # warm the connection and the server's cache/pool
        await get_once(reader, writer, path)
    latencies: list[float] = []
    bad = 0
    remaining = requests

    async def client(reader, writer) -> None:
        nonlocal remaining, bad
        while remaining > 0:
            remaining -= 1
            start = time.perf_counter()
            status = await get_once(reader, writer, path)
            latencies.append((time.perf_counter() - start) * 1e3)
            if status >= 400 and not (path == "/healthz" and status == 503):
                bad += 1

    start = time.perf_counter()
    await asyncio.gather(*(client(r, w) for r, w in conns))
    elapsed = time.perf_counter() - start
    for _, writer in conns:
        writer.close()
    return elapsed, latencies, bad


def wait_ready(port: int, proc: subprocess.Popen, log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the API server exited: {log.read_text()[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("the API server did not start listening")


@contextmanager
def served(cmd: list[str], env: dict, log: Path) -> Iterator[int]:
    """Run the API server ``cmd`` (``market-pipeline serve`` or ``python -c UNCACHED_SERVER``) on
    a free port until it listens; yield the port; stop it."""
    port = free_port()
    with open(log, "ab") as sink:
        proc = subprocess.Popen(
            [*cmd, str(port)] if "-c" in cmd else [*cmd, "--port", str(port)],
            env=env,
            stdout=sink,
            stderr=sink,
        )
    try:
        wait_ready(port, proc, log)
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _serve_and_load(cmd: list[str], env: dict, log: Path, requests: int) -> dict:
    with served(cmd, env, log) as port:
        asyncio.run(load(port, BASELINE, 200))  # warm-up: first connections, imports, pools
        figures = {}
        for path in ENDPOINTS:
            elapsed, latencies, bad = asyncio.run(load(port, path, requests))
            if bad:
                raise RuntimeError(f"{bad} failed answers from {path}; see {log}")
            figures[path] = {
                "rps": len(latencies) / elapsed,
                "p50_ms": median(latencies),
                "p99_ms": percentile(latencies, 99),
                "requests": len(latencies),
            }
        return figures


def run(smoke: bool = False) -> list[Result]:
    """Seed the history, serve it twice (cached as shipped, uncached) and load every endpoint."""
    executions, statuses, failures = (100, 1_000, 1_000) if smoke else (100_000, 1_000_000, 100_000)
    requests = 50 if smoke else 2000
    workdir = Path(tempfile.mkdtemp(prefix="mp_bench_api_"))
    universe = write_universe(
        workdir / "universe.yaml", bench_symbols(100), TIMEFRAMES, {"kind": "synthetic"}
    )
    bin_dir = Path(sys.executable).parent
    # The store case's database when it ran first in this process (seeding takes most of a
    # minute), else a new one seeded the same way.
    url = history_database(executions=executions, statuses=statuses, failures=failures)
    env = dict(os.environ)
    env.update(
        MARKET_PIPELINE_DB_URL=url,
        MARKET_PIPELINE_UNIVERSE=str(universe),
        MARKET_PIPELINE_HOME=str(workdir),
    )
    env.pop("MARKET_PIPELINE_ADMIN_TOKEN", None)
    servers = {
        "cached (as shipped)": _serve_and_load(
            [str(bin_dir / "market-pipeline"), "serve", "--host", "127.0.0.1"],
            env,
            workdir / "serve.log",
            requests,
        ),
        "uncached": _serve_and_load(
            [sys.executable, "-c", UNCACHED_SERVER],
            env,
            workdir / "uncached.log",
            max(50, requests // 2),
        ),
    }
    results = []
    for server, figures in servers.items():
        floor = figures[BASELINE]
        for path in ENDPOINTS:
            if path == BASELINE:
                continue
            fig = figures[path]
            results.append(
                Result(
                    name=f"api {server}: {path.split('?')[0]}",
                    value=fig["rps"],
                    unit="req/s",
                    baseline=f"{BASELINE} on the same server, {CLIENTS} clients",
                    baseline_value=floor["rps"],
                    direction=HIGHER_IS_BETTER,
                    extra={
                        **fig,
                        "clients": CLIENTS,
                        "baseline_p50_ms": floor["p50_ms"],
                        "baseline_p99_ms": floor["p99_ms"],
                        "executions": executions,
                        "symbol_status_rows": statuses,
                        "failures": failures,
                    },
                )
            )
    return results
