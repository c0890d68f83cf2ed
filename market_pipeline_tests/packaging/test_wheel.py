"""A built wheel works outside the checkout: migrations, instance templates and universes ship
inside it, tests do not, and ``migrate``, ``demo`` and ``serve`` run from a fresh venv."""

from __future__ import annotations

import os
import re
import site
import socket
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import httpx
import pytest

from market_pipeline_tests.support.universes import write_universe

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(REPO)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (built,) = out.glob("market_pipeline-*.whl")
    return built


@pytest.fixture(scope="module")
def fresh_venv(wheel, tmp_path_factory) -> Path:
    """A new venv holding only the wheel; the dependencies (not market_pipeline) are borrowed
    from this venv's site-packages by a path entry, whose own .pth files (the editable install
    of the checkout among them) are not processed."""
    venv = tmp_path_factory.mktemp("venv") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    (own_site,) = (venv / "lib").glob("python3*/site-packages")
    (own_site / "borrowed_dependencies.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--no-deps", str(wheel)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    return venv


def _env(home: Path, universe: Path | None = None) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("MARKET_PIPELINE_", "DAGSTER_", "PYTHON"))
    }
    env["MARKET_PIPELINE_HOME"] = str(home)
    if universe is not None:
        env["MARKET_PIPELINE_UNIVERSE"] = str(universe)
    return env


def _run(venv: Path, args: list[str], cwd: Path, env: dict[str, str]):
    return subprocess.run(
        [str(venv / "bin" / "market-pipeline"), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def test_the_wheel_ships_its_data_files_and_no_tests(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    for dialect in ("sqlite", "postgresql"):
        shipped = [n for n in names if n.startswith(f"market_pipeline/package_data/sql/{dialect}/")]
        checkout = list((REPO / "market_pipeline/package_data/sql" / dialect).glob("*.sql"))
        assert len(shipped) == len(checkout) >= 6
    assert "market_pipeline/package_data/instance/dagster.yaml" in names
    assert "market_pipeline/package_data/instance/dagster.postgres.yaml" in names
    assert "market_pipeline/package_data/instance/dagster.celery.yaml" in names
    assert "market_pipeline/package_data/instance/celery_worker.yaml" in names
    assert "market_pipeline/package_data/universes/demo.yaml" in names
    dashboard = REPO / "market_pipeline/package_data/dashboard"
    files = sorted(
        p.name for p in dashboard.iterdir() if p.suffix in (".html", ".js", ".css", ".svg")
    )
    assert "dashboard.html" in files and "dashboard.js" in files
    assert (
        sorted(
            n.rsplit("/", 1)[1]
            for n in names
            if n.startswith("market_pipeline/package_data/dashboard/")
        )
        == files
    )
    assert not [n for n in names if n.startswith(("market_pipeline_tests", "bench/"))]


def test_the_installed_package_is_the_wheel_not_the_checkout(fresh_venv, tmp_path):
    found = subprocess.run(
        [
            str(fresh_venv / "bin" / "python"),
            "-c",
            "import market_pipeline; print(market_pipeline.__file__)",
        ],
        cwd=tmp_path,
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert Path(found).is_relative_to(fresh_venv), found


def test_migrate_and_demo_run_outside_the_checkout(fresh_venv, tmp_path):
    universe = write_universe(
        tmp_path / "u.yaml",
        [("AAPL", "equity"), ("ETH-USD", "crypto")],
        ["1h", "1d"],
        {"kind": "synthetic", "history_bars": 200},
    )
    env = _env(tmp_path / "home", universe)
    migrated = _run(fresh_venv, ["migrate"], tmp_path, env)
    assert migrated.returncode == 0, migrated.stderr
    assert "applied" in migrated.stdout and "0001_market_data" in migrated.stdout
    demo = _run(fresh_venv, ["demo"], tmp_path, env)
    assert demo.returncode == 0, demo.stdout + demo.stderr
    assert "backfill of 4 pairs in 1 run(s): succeeded" in demo.stdout
    assert "Scheduler health: HEALTHY" in demo.stdout
    assert (tmp_path / "home" / "dagster_home" / "dagster.yaml").is_file()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_serve_answers_from_the_installed_package(fresh_venv, tmp_path):
    env = _env(tmp_path / "home")
    assert _run(fresh_venv, ["migrate"], tmp_path, env).returncode == 0
    port = _free_port()
    server = subprocess.Popen(
        [str(fresh_venv / "bin" / "market-pipeline"), "serve", "--port", str(port)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                ready = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5)
                break
            except httpx.TransportError:
                assert server.poll() is None, server.stderr.read().decode()
                assert time.monotonic() < deadline, "the server did not start within 60 s"
                time.sleep(0.2)
        assert ready.status_code == 200
        health = httpx.get(f"http://127.0.0.1:{port}/api/v1/admin/scheduler-health", timeout=5)
        assert health.status_code == 200
        assert health.json()["total_symbols_monitored"] == 50  # the bundled demo universe
        page = httpx.get(f"http://127.0.0.1:{port}/dashboard", timeout=5)
        assert page.status_code == 200
        script = re.search(r'src="(/dashboard/static/[^"]+)"', page.text).group(1)
        assert httpx.get(f"http://127.0.0.1:{port}{script}", timeout=5).status_code == 200
    finally:
        server.terminate()
        server.wait(timeout=30)
