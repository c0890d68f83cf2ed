"""Smoke test: `dagster-webserver` on the repository's workspace.yaml serves our definitions."""

from __future__ import annotations

import json
import os
import shutil
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from market_pipeline.package_data import instance_template
from market_pipeline_tests.support.processes import free_port, started, wait_for_http
from market_pipeline_tests.support.universes import write_universe

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parents[2]
WAIT_SECONDS = 120

QUERY = """
{
  repositoriesOrError {
    ... on RepositoryConnection {
      nodes {
        name
        location { name }
        jobs { name }
        schedules { name cronSchedule executionTimezone }
        sensors { name sensorType }
        assetNodes { assetKey { path } }
      }
    }
    ... on PythonError { message }
  }
}
"""


def _graphql(port: int, query: str) -> dict:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql",
        data=json.dumps({"query": query}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def _environment(tmp_path: Path, home: Path) -> dict[str, str]:
    universe = write_universe(
        tmp_path / "universe.yaml", [("AAPL", "equity"), ("BTC-USD", "crypto")], ["5m", "1d"]
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("DAGSTER_PG")}
    env.update(
        DAGSTER_HOME=str(home),
        MARKET_PIPELINE_UNIVERSE=str(universe),
        MARKET_PIPELINE_DB_URL=f"sqlite:///{tmp_path / 'mp.db'}",
        MARKET_PIPELINE_HOME=str(tmp_path / "mp_home"),
    )
    return env


def _ask_webserver(tmp_path: Path, env: dict[str, str], query: str) -> dict:
    """Start dagster-webserver on workspace.yaml with ``env``, answer ``query``, stop it."""
    port = free_port()
    log = tmp_path / "webserver.log"
    argv = [str(BIN / "dagster-webserver"), "-w", "workspace.yaml", "-h", "127.0.0.1"]
    with started([*argv, "-p", str(port)], log, env=env, cwd=REPO) as process:
        wait_for_http(f"http://127.0.0.1:{port}/server_info", process, log, seconds=WAIT_SECONDS)
        return _graphql(port, query)


def test_the_webserver_lists_our_assets_jobs_schedules_and_sensors(tmp_path):
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    answer = _ask_webserver(tmp_path, _environment(tmp_path, home), QUERY)
    result = answer["data"]["repositoriesOrError"]
    assert "nodes" in result, result
    [repo] = [n for n in result["nodes"] if n["location"]["name"] == "market_pipeline"]
    assert {j["name"] for j in repo["jobs"] if not j["name"].startswith("__")} == {
        "market_data_job",
        "scheduler_health_report_job",
    }
    assert {"/".join(a["assetKey"]["path"]) for a in repo["assetNodes"]} == {
        "ohlcv_bars",
        "quant_features",
    }
    schedules = {s["name"]: (s["cronSchedule"], s["executionTimezone"]) for s in repo["schedules"]}
    assert schedules == {
        "daily_backfill_schedule": ("0 2 * * *", "UTC"),
        "intraday_backfill_schedule": ("*/15 * * * *", "UTC"),
        "scheduler_health_report_schedule": ("0 * * * *", "UTC"),
    }
    sensors = {s["name"]: s["sensorType"] for s in repo["sensors"]}
    assert sensors == {
        "mirror_run_started_sensor": "RUN_STATUS",
        "mirror_run_success_sensor": "RUN_STATUS",
        "mirror_run_failure_sensor": "RUN_STATUS",
        "mirror_run_canceled_sensor": "RUN_STATUS",
        "mirror_reconcile_sensor": "STANDARD",
        "freshness_refresh_sensor": "STANDARD",
    }


@pytest.mark.postgres
def test_the_webserver_on_the_committed_postgres_config_lists_runs_stored_there(
    tmp_path, pg_database_url, monkeypatch
):
    import dagster as dg

    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copyfile(instance_template(postgres=True), home / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_PG_URL", pg_database_url)

    @dg.op
    def noop():
        pass

    @dg.job
    def probe_job():
        noop()

    with dg.DagsterInstance.from_config(str(home)) as instance:
        run_id = probe_job.execute_in_process(instance=instance).run_id
    env = _environment(tmp_path, home)
    env["DAGSTER_PG_URL"] = pg_database_url
    answer = _ask_webserver(
        tmp_path, env, "{ runsOrError { ... on Runs { results { runId status } } } }"
    )
    runs = answer["data"]["runsOrError"]["results"]
    assert runs == [{"runId": run_id, "status": "SUCCESS"}]


def test_the_webserver_on_the_committed_sqlite_config_reads_runs_a_process_keeps_open(
    tmp_path, monkeypatch
):
    """The webserver is a second process on the kept-connection SQLite storage: it reads the
    runs and run logs of this process while this process still holds its kept connections."""
    import dagster as dg

    from market_pipeline.instance_storage.sqlite import KeptConnectionSqliteRunStorage
    from market_pipeline_tests.support.range_runs import JOB, RANGE

    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copyfile(instance_template(postgres=False), home / "dagster.yaml")
    env = _environment(tmp_path, home)
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    with dg.DagsterInstance.get() as instance:
        assert isinstance(instance.run_storage, KeptConnectionSqliteRunStorage)
        run_id = JOB.execute_in_process(instance=instance, tags=RANGE).run_id
        query = (
            "{ runsOrError { ... on Runs { results { runId status } } } "
            f'logsForRun(runId: "{run_id}") '
            "{ ... on EventConnection { events { __typename } } } }"
        )
        answer = _ask_webserver(tmp_path, env, query)
    assert answer["data"]["runsOrError"]["results"] == [{"runId": run_id, "status": "SUCCESS"}]
    events = [e["__typename"] for e in answer["data"]["logsForRun"]["events"]]
    assert events.count("MaterializationEvent") == 20
    assert events[-1] == "RunSuccessEvent"
