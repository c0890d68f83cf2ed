"""Latency of the admin API under concurrent clients: p50/p99 per endpoint, printed.

Run against a server started with ``market-pipeline serve`` (any backend, any data)::

    python -m bench.tools.api_bench --url http://127.0.0.1:8000 --clients 16 --requests 400

Each client is a thread with its own keep-alive connection; every client sends ``--requests``
requests to each endpoint in turn (round robin over the endpoints). Latency is measured on the
client, from send to the last byte of the body, so it includes the client's own share of the two
cores when client and server run on the same machine. A non-2xx answer (other than the health
probe's 503 when degraded) is counted as an error and reported.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time
from collections import defaultdict

import httpx

ENDPOINTS = (
    "/api/v1/admin/scheduler-health",
    "/api/v1/admin/features/staleness?limit=50",
    "/api/v1/admin/scheduler/execution-history?limit=20",
    "/healthz",
    "/readyz",
    "/livez",
)


def _percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    index = min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))
    return ordered[index]


def run(url: str, clients: int, requests_per_client: int, token: str | None) -> int:
    """Run the load and print the table; return the number of failed requests."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    latencies: dict[str, list[float]] = defaultdict(list)
    errors: dict[str, list[str]] = defaultdict(list)
    lock = threading.Lock()
    start = threading.Barrier(clients + 1)

    def client(offset: int) -> None:
        mine: dict[str, list[float]] = defaultdict(list)
        bad: dict[str, list[str]] = defaultdict(list)
        with httpx.Client(base_url=url, headers=headers, timeout=30.0) as http:
            http.get("/livez")  # open the connection before the clock starts
            start.wait()
            for index in range(requests_per_client * len(ENDPOINTS)):
                path = ENDPOINTS[(index + offset) % len(ENDPOINTS)]
                began = time.perf_counter()
                response = http.get(path)
                mine[path].append((time.perf_counter() - began) * 1000)
                ok = response.is_success or (path == "/healthz" and response.status_code == 503)
                if not ok:
                    bad[path].append(f"{response.status_code} {response.text[:120]}")
        with lock:
            for path, values in mine.items():
                latencies[path].extend(values)
            for path, values in bad.items():
                errors[path].extend(values)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    start.wait()
    began = time.perf_counter()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - began

    total = sum(len(values) for values in latencies.values())
    print(
        f"{url}: {clients} clients, {total} requests in {elapsed:.1f} s "
        f"({total / elapsed:.0f} req/s)"
    )
    print(f"{'endpoint':52} {'n':>6} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'errors':>6}")
    for path in ENDPOINTS:
        values = latencies[path]
        print(
            f"{path:52} {len(values):6d} {statistics.median(values):8.1f} "
            f"{_percentile(values, 0.99):8.1f} {max(values):8.1f} {len(errors[path]):6d}"
        )
    for path, values in errors.items():
        if values:
            print(f"first error on {path}: {values[0]}", file=sys.stderr)
    return sum(len(values) for values in errors.values())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000", help="server base URL")
    parser.add_argument("--clients", type=int, default=16, help="concurrent clients")
    parser.add_argument(
        "--requests", type=int, default=200, help="requests per client and endpoint"
    )
    parser.add_argument(
        "--token",
        default=os.environ.get("MARKET_PIPELINE_ADMIN_TOKEN"),
        help="admin token (default: MARKET_PIPELINE_ADMIN_TOKEN)",
    )
    args = parser.parse_args(argv)
    failed = run(args.url, args.clients, args.requests, args.token)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
