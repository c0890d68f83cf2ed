"""Helpers of the admin API tests: a real uvicorn server on a free port, seeded stores, raw HTTP."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import uvicorn
from starlette.applications import Starlette

from market_pipeline.config.settings import Settings
from market_pipeline.observability.store import ObservabilityStore

TOKEN = "test-admin-token-5f2c"

http = httpx.Client(timeout=30.0)
"""One client for all tests: a client per request would load the TLS trust store each time."""


MONITORED_PAIRS = [
    ("AAPL", "1h"),
    ("AAPL", "1d"),
    ("MSFT", "1h"),
    ("MSFT", "1d"),
    ("BTC-USD", "1h"),
]
"""Seeded as: AAPL/1h fresh, AAPL/1d aging, MSFT/1h stale, MSFT/1d missing (no row) and
BTC-USD/1h missing (a row with no data points)."""


@contextlib.contextmanager
def running_server(app: Starlette) -> Iterator[str]:
    """Serve ``app`` with uvicorn on 127.0.0.1 and a free port; yield the base URL."""
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="uvicorn-test", daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError("uvicorn stopped during startup")
        if time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start within 20 s")
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=20)


def settings_for_store(db_url: str, tmp_path: Path, *, token: str | None = None) -> Settings:
    """Settings for an app given its store (the universe file is then not read)."""
    return Settings(
        home=tmp_path,
        db_url=db_url,
        universe_path=tmp_path / "universe-not-read.yaml",
        admin_token=token,
    )


settings_for_store.__test__ = False  # a helper, not a test


@dataclass
class Seeded:
    """What the seed wrote, for assertions."""

    store: ObservabilityStore
    now: datetime
    latest_execution_id: str
    older_execution_id: str
    failure_error: str = "Division by zero in volatility"
    executions: list[str] = field(default_factory=list)


def seed_degraded(store: ObservabilityStore) -> Seeded:
    """Two executions (the spec's example figures), one open failure and every freshness status."""
    now = datetime.now(UTC).replace(microsecond=0)
    older = store.create_scheduler_execution_log(
        started_at=now - timedelta(days=1, hours=2), total_symbols=0
    )
    store.update_scheduler_execution_log(
        execution_id=older,
        completed_at=now - timedelta(days=1, hours=1),
        status="failed",
        error_message="provider timed out",
    )
    latest = store.create_scheduler_execution_log(
        started_at=now - timedelta(hours=2), total_symbols=50
    )
    store.update_scheduler_execution_log(
        execution_id=latest,
        completed_at=now - timedelta(hours=2) + timedelta(seconds=930),
        successful_symbols=45,
        failed_symbols=5,
        total_records_processed=12500,
        status="completed",
    )
    store.log_feature_computation_failure(
        symbol="MSFT",
        timeframe="1h",
        error_message="Division by zero in volatility",
        execution_id=latest,
        failed_at=now - timedelta(hours=1, minutes=55),
    )
    store.update_feature_freshness_many(
        [
            {
                "symbol": "AAPL",
                "timeframe": "1h",
                "last_computed_at": now - timedelta(seconds=1200),
                "data_point_count": 250,
            },
            {
                "symbol": "AAPL",
                "timeframe": "1d",
                "last_computed_at": now - timedelta(hours=5),
                "data_point_count": 300,
            },
            {
                "symbol": "MSFT",
                "timeframe": "1h",
                "last_computed_at": now - timedelta(days=3),
                "data_point_count": 120,
            },
            {
                "symbol": "BTC-USD",
                "timeframe": "1h",
                "last_computed_at": now - timedelta(minutes=5),
                "data_point_count": 0,
            },
        ]
    )
    return Seeded(
        store=store,
        now=now,
        latest_execution_id=latest,
        older_execution_id=older,
        executions=[latest, older],
    )


def seed_healthy(store: ObservabilityStore) -> datetime:
    """A completed execution, every monitored pair fresh, no open failure."""
    now = datetime.now(UTC).replace(microsecond=0)
    eid = store.create_scheduler_execution_log(
        started_at=now - timedelta(minutes=10), total_symbols=3
    )
    store.update_scheduler_execution_log(
        execution_id=eid,
        completed_at=now - timedelta(minutes=5),
        successful_symbols=3,
        failed_symbols=0,
        total_records_processed=900,
        status="completed",
    )
    store.update_feature_freshness_many(
        [
            {
                "symbol": symbol,
                "timeframe": timeframe,
                "last_computed_at": now - timedelta(minutes=5),
                "data_point_count": 100,
            }
            for symbol, timeframe in store.monitored_pairs or ()
        ]
    )
    return now


@dataclass
class Api:
    """A running server and what it serves."""

    url: str
    token: str | None
    seeded: Seeded | None = None

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}


@dataclass
class RawResponse:
    """A response read off a raw socket."""

    status: int
    headers: dict[str, str]
    body: bytes


def raw_request(
    base_url: str, method: str | bytes, target: bytes | str, headers: dict[str, str] | None = None
) -> RawResponse:
    """Send one request with the target and method exactly as given (no client normalisation of
    ``..``, percent-escapes or raw bytes) and read the response until the server closes."""
    parts = urlsplit(base_url)
    method_bytes = method.encode("ascii") if isinstance(method, str) else method
    target_bytes = target.encode("latin-1") if isinstance(target, str) else target
    lines = [method_bytes + b" " + target_bytes + b" HTTP/1.1", f"Host: {parts.netloc}".encode()]
    for name, value in (headers or {}).items():
        lines.append(f"{name}: ".encode() + value.encode("latin-1"))
    lines.append(b"Connection: close")
    payload = b"\r\n".join(lines) + b"\r\n\r\n"
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as sock:
        sock.sendall(payload)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    data = b"".join(chunks)
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    response_headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        response_headers[name.strip().lower()] = value.strip()
    if response_headers.get("transfer-encoding") == "chunked":
        body = _dechunk(body)
    return RawResponse(int(status_line.split(" ")[1]), response_headers, body)


def _dechunk(body: bytes) -> bytes:
    out = b""
    while body:
        size_text, _, rest = body.partition(b"\r\n")
        size = int(size_text, 16)
        if size == 0:
            break
        out += rest[:size]
        body = rest[size + 2 :]
    return out


SPEC_PYTHON_EXAMPLE = """
import requests

# Get health status
health = requests.get("http://localhost:8000/api/v1/admin/scheduler-health").json()

if health["status"] == "degraded":
    print(f"⚠️ {health['stale_features_count']} features are stale")
    for failure in health["recent_failures"]:
        print(f"  ❌ {failure['symbol']}/{failure['timeframe']}: {failure['error']}")

# Get staleness breakdown
staleness = requests.get("http://localhost:8000/api/v1/admin/features/staleness").json()
print(f"Feature Status: {staleness['summary']}")
"""
"""The spec's "Python Example", verbatim but for the URL."""
