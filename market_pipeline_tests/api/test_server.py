"""``market-pipeline serve``: the exposure rule, and the spec's curl lines and Python example run
against the command itself (a subprocess), on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from market_pipeline.api.server import PublicWithoutTokenError, check_exposure, is_loopback
from market_pipeline.config.settings import Settings
from market_pipeline.observability.store import ObservabilityStore
from market_pipeline_tests.support.api import SPEC_PYTHON_EXAMPLE, TOKEN, http, seed_degraded

UNIVERSE_YAML = """\
description: admin API test universe
provider: {kind: synthetic}
symbols:
  - {symbol: AAPL, asset_class: equity}
  - {symbol: MSFT, asset_class: equity}
  - {symbol: BTC-USD, asset_class: crypto}
timeframes: [1h, 1d]
"""

SPEC_CURL_LINES = [
    'curl "http://localhost:8000/api/v1/admin/scheduler-health"',
    'curl "http://localhost:8000/api/v1/admin/features/staleness?limit=100"',
    'curl "http://localhost:8000/api/v1/admin/scheduler/execution-history?limit=50"',
]
"""PHASE_1_OBSERVABILITY.md, "How to Use" 1-3, verbatim."""


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("localhost", True),
        ("::1", True),
        ("[::1]", True),
        ("0.0.0.0", False),
        ("::", False),
        ("192.168.1.10", False),
        ("example.com", False),
        ("", False),
    ],
)
def test_is_loopback(host, loopback):
    assert is_loopback(host) is loopback


def _settings(tmp_path: Path, token: str | None) -> Settings:
    return Settings(
        home=tmp_path, db_url="sqlite://", universe_path=tmp_path / "u.yaml", admin_token=token
    )


def test_a_public_address_without_token_is_refused(tmp_path):
    with pytest.raises(PublicWithoutTokenError, match="MARKET_PIPELINE_ADMIN_TOKEN"):
        check_exposure("0.0.0.0", _settings(tmp_path, None), allow_public=False)


def test_a_public_address_is_allowed_with_a_token_or_when_declared_intended(tmp_path):
    check_exposure("0.0.0.0", _settings(tmp_path, TOKEN), allow_public=False)
    check_exposure("0.0.0.0", _settings(tmp_path, None), allow_public=True)
    check_exposure("127.0.0.1", _settings(tmp_path, None), allow_public=False)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _env(db_url: str, universe: Path, tmp_path: Path, token: str | None) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("MARKET_PIPELINE_") and key != "DAGSTER_HOME"
    }
    env.update(
        MARKET_PIPELINE_HOME=str(tmp_path / "home"),
        MARKET_PIPELINE_DB_URL=db_url,
        MARKET_PIPELINE_UNIVERSE=str(universe),
    )
    if token:
        env["MARKET_PIPELINE_ADMIN_TOKEN"] = token
    return env


def test_cli_refuses_a_public_address_without_token(tmp_path):
    universe = tmp_path / "universe.yaml"
    universe.write_text(UNIVERSE_YAML)
    env = _env(f"sqlite:///{tmp_path / 'db.sqlite'}", universe, tmp_path, None)

    result = subprocess.run(
        [sys.executable, "-m", "market_pipeline.cli", "serve", "--host", "0.0.0.0"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.returncode == 2
    assert "--allow-public-without-token" in result.stderr
    assert "MARKET_PIPELINE_ADMIN_TOKEN" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.fixture
def served(engine, db_url, tmp_path, request) -> Iterator[str]:
    """``market-pipeline serve`` in a subprocess over seeded data; yields its base URL.

    Parametrize indirectly with a token to start it with ``MARKET_PIPELINE_ADMIN_TOKEN``.
    """
    token = getattr(request, "param", None)
    universe = tmp_path / "universe.yaml"
    universe.write_text(UNIVERSE_YAML)
    seed_degraded(ObservabilityStore(engine))
    port = _free_port()
    log = (tmp_path / "serve.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "market_pipeline.cli", "serve", "--port", str(port)],
        env=_env(db_url, universe, tmp_path, token),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise AssertionError(f"serve exited: {(tmp_path / 'serve.log').read_text()}")
            try:
                if http.get(f"{url}/livez", timeout=1).status_code == 200:
                    break
            except Exception:  # noqa: BLE001 - not listening yet
                pass
            if time.monotonic() > deadline:
                raise AssertionError("serve did not answer /livez within 60 s")
            time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
    assert "Traceback" not in (tmp_path / "serve.log").read_text()


def test_the_spec_how_to_use_works_against_market_pipeline_serve(served, tmp_path):
    """The spec's curl lines (when curl is installed) and its Python example, verbatim but for
    the address, against the real command."""
    if shutil.which("curl") is not None:
        bodies = []
        for line in SPEC_CURL_LINES:
            command = line.replace("http://localhost:8000", served)
            result = subprocess.run(
                ["bash", "-c", command], capture_output=True, text=True, timeout=30, check=True
            )
            bodies.append(json.loads(result.stdout))
        health, staleness, history = bodies
        assert health["status"] == "degraded"
        # The universe (3 symbols x 2 timeframes) is what is monitored: BTC-USD/1d is missing.
        assert staleness["summary"]["total_monitored"] == 6
        assert staleness["summary"]["missing_count"] == 3
        assert [e["success_rate"] for e in history["executions"]] == [90.0, None]

    script = tmp_path / "spec_example.py"
    script.write_text(SPEC_PYTHON_EXAMPLE.replace("http://localhost:8000", served))
    result = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        timeout=60,
        env={**os.environ, "PYTHONIOENCODING": "utf-8"},
        check=False,
    )

    assert result.returncode == 0, result.stderr.decode()
    lines = result.stdout.decode("utf-8").splitlines()
    assert lines[0] == "⚠️ 4 features are stale"
    assert lines[1] == "  ❌ MSFT/1h: Division by zero in volatility"
    assert lines[2].startswith("Feature Status: {'fresh_count': 1, 'aging_count': 1,")


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("served", [TOKEN], indirect=True)
def test_serve_with_a_token_requires_it(served):
    # Auth is tested on both backends against in-process servers; this checks that the command
    # reads MARKET_PIPELINE_ADMIN_TOKEN.
    anonymous = http.get(f"{served}/api/v1/admin/scheduler-health")
    holder = http.get(
        f"{served}/api/v1/admin/scheduler-health", headers={"Authorization": f"Bearer {TOKEN}"}
    )

    assert anonymous.status_code == 401
    assert set(anonymous.json()) == {"error", "detail"}
    assert holder.status_code == 200 and holder.json()["status"] == "degraded"


@pytest.mark.parametrize(
    ("db_url", "message"),
    [
        ("mysql://root@127.0.0.1/x", "unsupported database 'mysql'"),
        ("not a url", "not a database URL"),
    ],
)
def test_cli_refuses_a_bad_database_url_before_listening(tmp_path, db_url, message):
    universe = tmp_path / "universe.yaml"
    universe.write_text(UNIVERSE_YAML)

    result = subprocess.run(
        [sys.executable, "-m", "market_pipeline.cli", "serve", "--port", str(_free_port())],
        env=_env(db_url, universe, tmp_path, None),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr


def test_cli_refuses_a_bad_universe_before_listening(tmp_path):
    universe = tmp_path / "universe.yaml"
    universe.write_text("provider: {kind: synthetic}\nsymbols: []\ntimeframes: [1h]\n")

    result = subprocess.run(
        [sys.executable, "-m", "market_pipeline.cli", "serve", "--port", str(_free_port())],
        env=_env(f"sqlite:///{tmp_path / 'db.sqlite'}", universe, tmp_path, None),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.returncode == 2
    assert str(universe) in result.stderr and "Traceback" not in result.stderr
