"""End to end: a real Prometheus scrapes a real `market-pipeline serve` after backfills with one
failing symbol, evaluates the shipped rules, and a real Alertmanager (the shipped routing) sends
one grouped notification to a webhook receiver of the test. Loopback only; every process is the
test's own and is stopped by it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from market_pipeline.cli.main import main
from market_pipeline_tests.support.processes import free_port, started, wait_for_http
from market_pipeline_tests.support.universes import write_universe

BIN = Path(sys.executable).parent
DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
FAILING = "BADCO"
TIMEFRAMES = ["1h", "1d"]
WAIT_SECONDS = 60.0


class _Receiver(BaseHTTPRequestHandler):
    received: list[dict[str, Any]]

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.received.append(json.loads(body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def webhook() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    received: list[dict[str, Any]] = []
    handler = type("Receiver", (_Receiver,), {"received": received})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/alerts", received
    finally:
        server.shutdown()
        server.server_close()


def _backfill_with_a_failing_symbol(tmp_path: Path, monkeypatch) -> dict[str, str]:
    universe = write_universe(
        tmp_path / "universe.yaml",
        [("AAPL", "equity"), (FAILING, "equity"), ("BTC-USD", "crypto")],
        TIMEFRAMES,
        {"kind": "synthetic", "fail_symbols": [FAILING], "history_bars": 100},
    )
    env = {
        "MARKET_PIPELINE_HOME": str(tmp_path / "home"),
        "MARKET_PIPELINE_UNIVERSE": str(universe),
        "MARKET_PIPELINE_DB_URL": f"sqlite:///{tmp_path / 'home' / 'market_pipeline.db'}",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    monkeypatch.delenv("DAGSTER_PG_URL", raising=False)
    assert main(["migrate"]) == 0
    for _ in range(3):  # three failures in a row: the default alert threshold
        assert main(["backfill", "--allow-failures"]) == 0
    assert main(["reconcile"]) == 0
    return env


def _prometheus_config(tmp_path: Path, api_port: int, alertmanager_port: int) -> Path:
    """The shipped config, pointed at the test's ports and evaluated every second."""
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    config["global"].update(scrape_interval="1s", evaluation_interval="1s")
    config["rule_files"] = [str(DEPLOY / "prometheus" / rule) for rule in config["rule_files"]]
    config["alerting"]["alertmanagers"][0]["static_configs"] = [
        {"targets": [f"127.0.0.1:{alertmanager_port}"]}
    ]
    job = config["scrape_configs"][0]
    job.update(scrape_interval="1s", scrape_timeout="1s")
    job["static_configs"] = [{"targets": [f"127.0.0.1:{api_port}"]}]
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    return path


def _alertmanager_config(tmp_path: Path, webhook_url: str) -> Path:
    """The shipped routing and inhibition, sending to the test's receiver without waiting long."""
    config = yaml.safe_load((DEPLOY / "alertmanager" / "alertmanager.yml").read_text())
    config["route"].update(group_wait="1s", group_interval="1m", repeat_interval="1h")
    for receiver in config["receivers"]:
        receiver.pop("slack_configs", None)
        for hook in receiver.get("webhook_configs", []):
            hook["url"] = webhook_url
    path = tmp_path / "alertmanager.yml"
    path.write_text(yaml.safe_dump(config))
    return path


def _get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


def _query(prometheus: str, expr: str) -> list[dict[str, Any]]:
    url = f"{prometheus}/api/v1/query?query={urllib.parse.quote(expr)}"
    return _get_json(url)["data"]["result"]


def _until(what: str, check: Callable[[], Any], seconds: float = WAIT_SECONDS) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.25)
    raise AssertionError(f"{what}: not within {seconds} s")


def test_prometheus_scrapes_alerts_and_alertmanager_groups(tmp_path, monkeypatch, webhook):
    env = _backfill_with_a_failing_symbol(tmp_path, monkeypatch)
    webhook_url, notifications = webhook
    api_port, prom_port, am_port = free_port(), free_port(), free_port()
    api, prometheus = f"http://127.0.0.1:{api_port}", f"http://127.0.0.1:{prom_port}"
    serve = [str(BIN / "market-pipeline"), "serve", "--port", str(api_port)]
    alertmanager = [
        shutil.which("prometheus-alertmanager") or "alertmanager",
        f"--config.file={_alertmanager_config(tmp_path, webhook_url)}",
        f"--storage.path={tmp_path / 'alertmanager'}",
        f"--web.listen-address=127.0.0.1:{am_port}",
        "--cluster.listen-address=",
    ]
    prom = [
        "prometheus",
        f"--config.file={_prometheus_config(tmp_path, api_port, am_port)}",
        f"--storage.tsdb.path={tmp_path / 'prometheus'}",
        f"--web.listen-address=127.0.0.1:{prom_port}",
    ]
    process_env = {**os.environ, **env}
    with (
        started(serve, tmp_path / "serve.log", env=process_env) as api_process,
        started(alertmanager, tmp_path / "alertmanager.log") as am_process,
        started(prom, tmp_path / "prometheus.log") as prom_process,
    ):
        wait_for_http(f"{api}/livez", api_process, tmp_path / "serve.log")
        wait_for_http(f"http://127.0.0.1:{am_port}/-/ready", am_process, tmp_path / "am.log")
        wait_for_http(f"{prometheus}/-/ready", prom_process, tmp_path / "prometheus.log")

        scrape = urllib.request.urlopen(f"{api}/metrics", timeout=10).read()
        check = subprocess.run(
            ["promtool", "check", "metrics"],
            input=scrape,
            capture_output=True,
            timeout=30,
            check=False,
        )
        assert check.returncode == 0, check.stdout + check.stderr

        def target_up() -> bool:
            targets = _get_json(f"{prometheus}/api/v1/targets")["data"]["activeTargets"]
            return any(t["health"] == "up" for t in targets)

        _until("the API target is up", target_up)
        healthy = _until(
            "health scraped", lambda: _query(prometheus, "market_pipeline_scheduler_healthy")
        )
        assert healthy[0]["value"][1] == "0"
        failures = _query(prometheus, "market_pipeline_open_failures")
        assert failures[0]["value"][1] == str(len(TIMEFRAMES))

        def failure_alerts() -> list[dict[str, Any]]:
            alerts = _get_json(f"{prometheus}/api/v1/alerts")["data"]["alerts"]
            return [
                a for a in alerts if a["labels"]["alertname"] == "MarketPipelineRepeatedFailure"
            ]

        alerts = _until("the repeated-failure alerts", failure_alerts)
        assert {a["state"] for a in alerts} <= {"pending", "firing"}
        assert {a["labels"]["symbol"] for a in alerts} == {FAILING}

        _until("a notification", lambda: notifications)
        time.sleep(5)  # any second notification of the group would arrive within this
        assert len(notifications) == 1, notifications
        notification = notifications[0]
        assert notification["groupLabels"] == {
            "alertname": "MarketPipelineRepeatedFailure",
            "provider": "synthetic",
        }
        assert sorted(a["labels"]["timeframe"] for a in notification["alerts"]) == sorted(
            TIMEFRAMES
        )
        assert all(a["labels"]["symbol"] == FAILING for a in notification["alerts"])
