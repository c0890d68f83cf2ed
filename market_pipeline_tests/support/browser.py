"""A real browser and a real server for the dashboard: Debian's Chromium driven by Playwright,
and ``market-pipeline serve`` in a subprocess on a free loopback port.

Chromium is ``/usr/bin/chromium`` (``apt-get install --no-install-recommends chromium``, which
``.ci/run`` does when it is missing); ``playwright install`` is never used (it downloads a browser).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from market_pipeline_tests.support.processes import free_port, started, wait_for_http

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    # Without these Chromium keeps trying hosts this machine cannot reach.
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
REPO = Path(__file__).resolve().parents[2]
ARTEFACTS = Path(os.environ.get("MARKET_PIPELINE_TEST_ARTEFACTS") or REPO / "build" / "artefacts")
"""Where tests leave files for people to look at (the dashboard screenshot); git-ignored."""
CLI = [sys.executable, "-m", "market_pipeline.cli"]


def launch_chromium(playwright: Any) -> Any:
    """Debian's Chromium under Playwright, headless."""
    if not CHROMIUM.exists():
        raise RuntimeError(
            f"{CHROMIUM} is missing: apt-get install -y --no-install-recommends chromium "
            "(.ci/run does it); never `playwright install`"
        )
    return playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)


@dataclass
class Console:
    """What a page reported: console errors and warnings, uncaught errors, request URLs."""

    errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)

    @classmethod
    def watch(cls, page: Any) -> Console:
        console = cls()

        def on_console(message: Any) -> None:
            if message.type in ("error", "warning"):
                console.errors.append(f"console.{message.type}: {message.text}")

        page.on("console", on_console)
        page.on("pageerror", lambda error: console.errors.append(f"pageerror: {error}"))
        page.on("requestfailed", lambda r: _request_failed(console, r))
        page.on("request", lambda request: console.requests.append(request.url))
        return console


def _request_failed(console: Console, request: Any) -> None:
    # A poll in flight when the test reloads the page is aborted by the browser itself
    # (net::ERR_ABORTED): not the page's error. Any other failure is.
    if request.failure != "net::ERR_ABORTED":
        console.errors.append(f"request failed: {request.url} ({request.failure})")


def pipeline_env(home: Path, universe: Path, **extra: str) -> dict[str, str]:
    """This process's environment without our settings or Dagster home, then ``home`` (our
    SQLite database and the Dagster home), ``universe`` and ``extra``."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("MARKET_PIPELINE_") and key != "DAGSTER_HOME"
    }
    env.update(MARKET_PIPELINE_HOME=str(home), MARKET_PIPELINE_UNIVERSE=str(universe), **extra)
    return env


def run_cli(args: list[str], env: Mapping[str, str], timeout: float = 300) -> str:
    """Run ``market-pipeline <args>``; return its output, raising with it on failure."""
    done = subprocess.run(
        [*CLI, *args], env=dict(env), capture_output=True, text=True, timeout=timeout, check=False
    )
    if done.returncode != 0:
        raise AssertionError(
            f"market-pipeline {' '.join(args)} failed:\n{done.stdout}{done.stderr}"
        )
    return done.stdout


@contextlib.contextmanager
def serving(env: Mapping[str, str], log: Path, timeout: float = 60) -> Iterator[str]:
    """``market-pipeline serve`` on a free loopback port; yields its base URL, stops it after."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with started([*CLI, "serve", "--port", str(port)], log, env=dict(env)) as process:
        wait_for_http(f"{url}/livez", process, log, seconds=timeout)
        yield url
