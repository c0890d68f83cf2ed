"""The run mirror with the real daemon: `dagster-daemon run` on PostgreSQL storage, runs from
the CLI (and, at the end of this file, the same on the committed SQLite dagster.yaml).

One story, in the order an operator would live it, with one daemon that is stopped and started:

0. a run made before the daemon ever ran is mirrored by the reconcile sensor's first tick;
1. a CLI materialization with one failing symbol ends with the right rows in all four tables
   (the run-status sensors, which only see it because they monitor all code locations);
2. a run made while the daemon is stopped is mirrored after it restarts;
3. a run made while our database is unreachable (the daemon reaches it through a TCP proxy that
   the test closes) is mirrored once it is back;
4. a successful re-run of the failed symbol resolves its failures;
and at the end no table holds a duplicated row.

The Dagster instance (runs, events, sensor cursors) and our tables live in two fresh PostgreSQL
databases. The daemon's definitions are the project's own (``build_definitions``) with short
sensor intervals and without the schedules, so no 02:00 backfill can start in the middle.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa
import yaml
from sqlalchemy.engine import make_url

from market_pipeline.database.engine import make_engine
from market_pipeline.database.migrations import migrate
from market_pipeline.instance_storage.postgres import storage_config
from market_pipeline.package_data import instance_template
from market_pipeline_tests.support.postgres import pg_admin_engine
from market_pipeline_tests.support.processes import free_port
from market_pipeline_tests.support.universes import write_universe

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parents[2]
WAIT_SECONDS = 120
RUN_STATUS_SENSORS = (
    "mirror_run_started_sensor",
    "mirror_run_success_sensor",
    "mirror_run_failure_sensor",
    "mirror_run_canceled_sensor",
)
SYMBOLS = [("AAPL", "equity"), ("BADCO", "equity"), ("BTC-USD", "crypto")]
TIMEFRAMES = ["1h", "1d"]

DEFS_MODULE = '''
"""The project's definitions with short sensor intervals and no schedules (test daemon)."""
import dagster as dg

from market_pipeline.definitions import build_definitions
from market_pipeline.defs.observability_sensors import SensorIntervals
from market_pipeline.config.settings import Settings


def _definitions() -> dg.Definitions:
    full = build_definitions(
        Settings.from_env(),
        sensor_intervals=SensorIntervals(run_status=5, reconcile=3600, freshness=3600),
    )
    return dg.Definitions(
        assets=full.assets, jobs=full.jobs, sensors=full.sensors, resources=full.resources
    )


defs = _definitions()
'''


# --------------------------------------------------------------------------------------------
# Helpers: databases, a closable TCP proxy, the daemon process, polling
# --------------------------------------------------------------------------------------------


@contextmanager
def _database(pg_server: str, prefix: str) -> Iterator[str]:
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = pg_admin_engine()
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    try:
        yield name
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


class TcpProxy:
    """Forwards a local port to PostgreSQL. ``stop`` closes the port and every connection through
    it (the database is unreachable for whoever uses the port); ``start`` opens it again."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.port = free_port()
        self._listener: socket.socket | None = None
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()

    def start(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        listener.settimeout(0.2)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def stop(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.close()
        with self._lock:
            for s in self._sockets:
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                s.close()
            self._sockets.clear()

    def _accept(self, listener: socket.socket) -> None:
        while self._listener is listener:
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            client.settimeout(None)
            with self._lock:
                self._sockets += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)


class Daemon:
    """`dagster-daemon run` in its own process group, output in a log file."""

    def __init__(self, workspace: Path, env: dict[str, str], log: Path) -> None:
        self.workspace, self.env, self.log = workspace, env, log
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        out = self.log.open("a")
        self.process = subprocess.Popen(
            [str(BIN / "dagster-daemon"), "run", "-w", str(self.workspace)],
            env=self.env,
            cwd=REPO,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        out.close()

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:] if self.log.exists() else ""


def _wait_for(what: str, check: Callable[[], object], daemon: Daemon) -> object:
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        value = check()
        if value:
            return value
        if daemon.process is not None and daemon.process.poll() is not None:
            raise AssertionError(f"the daemon exited while waiting for {what}:\n{daemon.tail()}")
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what} after {WAIT_SECONDS} s; daemon log:\n{daemon.tail()}")
        time.sleep(0.5)


def _cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        args, env=env, cwd=REPO, capture_output=True, text=True, timeout=300, check=False
    )


def _latest_run_id(instance: dg.DagsterInstance) -> str:
    return instance.get_run_records(limit=1)[0].dagster_run.run_id


def _sensor_states(instance: dg.DagsterInstance) -> dict:
    return {state.instigator_name: state for state in instance.all_instigator_state()}


def _failed_ticks_after(instance: dg.DagsterInstance, name: str, after: float) -> int:
    state = _sensor_states(instance).get(name)
    if state is None:
        return 0
    ticks = instance.get_ticks(state.instigator_origin_id, state.selector_id, after=after)
    return sum(1 for t in ticks if t.status.value == "FAILURE")


class Tables:
    """Reads of our four tables."""

    def __init__(self, url: str) -> None:
        self.engine = make_engine(url)

    def execution(self, run_id: str) -> dict | None:
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.text("SELECT * FROM scheduler_execution_log WHERE execution_id = :i"),
                {"i": run_id},
            ).first()
        return None if row is None else dict(row._mapping)

    def finished(self, run_id: str, status: str) -> bool:
        row = self.execution(run_id)
        return row is not None and row["status"] == status

    def rows(self, sql: str) -> list[dict]:
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(sa.text(sql))]

    def count(self, table: str) -> int:
        return self.rows(f"SELECT COUNT(*) AS n FROM {table}")[0]["n"]


# --------------------------------------------------------------------------------------------
# The story
# --------------------------------------------------------------------------------------------


@pytest.mark.postgres
def _daemon_setup(tmp_path: Path, home: Path) -> tuple[Path, Path, dict[str, str]]:
    """The universe (BADCO fails at the provider), the daemon's code location and workspace, and
    the environment every process of a test shares (instance in ``home``)."""
    universe = write_universe(
        tmp_path / "universe.yaml",
        SYMBOLS,
        TIMEFRAMES,
        {"kind": "synthetic", "fail_symbols": ["BADCO"], "history_bars": 200},
    )
    (tmp_path / "daemon_defs.py").write_text(DEFS_MODULE)
    workspace = tmp_path / "workspace.yaml"
    workspace.write_text(
        "load_from:\n  - python_file:\n"
        f"      relative_path: {tmp_path / 'daemon_defs.py'}\n"
        f"      working_directory: {REPO}\n      location_name: market_pipeline\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("DAGSTER_PG")}
    env.update(
        DAGSTER_HOME=str(home),
        MARKET_PIPELINE_UNIVERSE=str(universe),
        MARKET_PIPELINE_HOME=str(tmp_path / "mp_home"),
    )
    return universe, workspace, env


def test_the_daemon_mirrors_every_run_across_downtime_of_daemon_and_database(tmp_path, pg_server):
    server = make_url(pg_server)
    with (
        _database(pg_server, "mp_dagster") as dagster_db,
        _database(pg_server, "mp_tables") as tables_db,
    ):
        direct_url = server.set(database=tables_db).render_as_string(hide_password=False)
        proxy = TcpProxy(server.host or "127.0.0.1", server.port or 5432)
        proxy.start()
        proxied_url = server.set(
            host="127.0.0.1", port=proxy.port, database=tables_db
        ).render_as_string(hide_password=False)
        engine = make_engine(direct_url)
        migrate(engine)
        engine.dispose()

        home = tmp_path / "dagster_home"
        home.mkdir()
        instance_url = server.set(database=dagster_db).render_as_string(hide_password=False)
        # The storage dagster.postgres.yaml ships, shared by the daemon's threads and the runs.
        (home / "dagster.yaml").write_text(
            yaml.safe_dump(
                {
                    "telemetry": {"enabled": False},
                    "storage": storage_config(instance_url),
                    "sensors": {"use_threads": True, "num_workers": 4},
                }
            )
        )
        universe, workspace, base = _daemon_setup(tmp_path, home)
        cli_env = {**base, "MARKET_PIPELINE_DB_URL": direct_url}
        daemon_env = {**base, "MARKET_PIPELINE_DB_URL": proxied_url}
        daemon = Daemon(workspace, daemon_env, tmp_path / "daemon.log")
        tables = Tables(direct_url)
        os.environ["DAGSTER_HOME"] = str(home)
        try:
            with dg.DagsterInstance.get() as instance:
                _story(instance, daemon, proxy, tables, cli_env, universe)
        finally:
            os.environ.pop("DAGSTER_HOME", None)
            daemon.stop()
            proxy.stop()
            tables.engine.dispose()


def _story(
    instance, daemon: Daemon, proxy: TcpProxy, tables: Tables, env: dict, universe: Path
) -> None:
    backfill = [str(BIN / "market-pipeline"), "backfill", "--allow-failures"]

    # 0. History: a run before the daemon ever ran; run-status sensors start after it.
    done = _cli([*backfill, "--symbols", "BTC-USD", "--timeframes", "1d"], env)
    assert done.returncode == 0, done.stderr[-3000:]
    history = _latest_run_id(instance)
    daemon.start()
    _wait_for(
        "cursor on every run-status sensor",
        lambda: all(
            (s := _sensor_states(instance).get(n)) is not None
            and s.instigator_data is not None
            and s.instigator_data.cursor
            for n in RUN_STATUS_SENSORS
        ),
        daemon,
    )
    _wait_for("history mirrored", lambda: tables.finished(history, "completed"), daemon)

    # 1. A CLI materialization over the whole universe; BADCO fails at the provider.
    materialize = _cli(
        [
            str(BIN / "dagster"),
            "asset",
            "materialize",
            "-m",
            "market_pipeline.definitions",
            "--select",
            "ohlcv_bars,quant_features",
            "--partition-range",
            "AAPL|1h...BTC-USD|1d",
        ],
        # Dagster's CLI takes a range only from assets with a single-run backfill policy.
        {**env, "MARKET_PIPELINE_PARTITIONS_PER_RUN": "all"},
    )
    assert materialize.returncode != 0 and "injected failure" in materialize.stderr
    first = _latest_run_id(instance)
    _wait_for("the CLI run mirrored", lambda: tables.finished(first, "completed"), daemon)
    execution = tables.execution(first)
    assert (execution["total_symbols"], execution["successful_symbols"]) == (3, 2)
    assert execution["failed_symbols"] == 1 and execution["total_records_processed"] > 0
    statuses = tables.rows(
        f"SELECT symbol, timeframe, status, error_message FROM symbol_computation_status "
        f"WHERE execution_id = '{first}'"
    )
    assert len(statuses) == 6
    assert {(r["symbol"], r["status"]) for r in statuses} == {
        ("AAPL", "completed"),
        ("BTC-USD", "completed"),
        ("BADCO", "failed"),
    }
    failures = tables.rows("SELECT * FROM feature_computation_failures ORDER BY timeframe")
    assert [(f["symbol"], f["timeframe"]) for f in failures] == [("BADCO", "1d"), ("BADCO", "1h")]
    assert all("injected failure for BADCO" in f["error_message"] for f in failures)
    assert tables.count("feature_freshness") == 4

    # 2. The daemon is down while BADCO|1d fails again.
    daemon.stop()
    done = _cli([*backfill, "--symbols", "BADCO", "--timeframes", "1d"], env)
    assert done.returncode == 0, done.stderr[-3000:]
    while_down = _latest_run_id(instance)
    daemon.start()
    _wait_for(
        "the run made while the daemon was down",
        lambda: tables.finished(while_down, "failed"),
        daemon,
    )
    retries = {
        (f["symbol"], f["timeframe"]): f["retry_count"]
        for f in tables.rows("SELECT * FROM feature_computation_failures")
    }
    assert retries == {("BADCO", "1d"): 1, ("BADCO", "1h"): 0}

    # 3. Our database is unreachable for the daemon while a run succeeds.
    proxy_down_at = time.time()
    proxy.stop()
    done = _cli([*backfill, "--symbols", "AAPL"], env)
    assert done.returncode == 0, done.stderr[-3000:]
    unreachable = _latest_run_id(instance)
    _wait_for(
        "a failed mirror tick while the database is unreachable",
        lambda: _failed_ticks_after(instance, "mirror_run_success_sensor", proxy_down_at),
        daemon,
    )
    assert tables.execution(unreachable) is None
    proxy.start()
    _wait_for(
        "the run made while the database was unreachable",
        lambda: tables.finished(unreachable, "completed"),
        daemon,
    )

    # 4. BADCO is fixed at the provider; a re-run resolves both of its failures.
    write_universe(universe, SYMBOLS, TIMEFRAMES, {"kind": "synthetic", "history_bars": 200})
    done = _cli([*backfill, "--symbols", "BADCO"], env)
    assert done.returncode == 0, done.stderr[-3000:]
    fixed = _latest_run_id(instance)
    _wait_for("the fixing run mirrored", lambda: tables.finished(fixed, "completed"), daemon)
    failures = tables.rows("SELECT * FROM feature_computation_failures")
    assert len(failures) == 2
    assert all(f["resolved"] and str(f["resolved_by_execution_id"]) == fixed for f in failures)

    # Nothing lost, nothing doubled.
    run_ids = {history, first, while_down, unreachable, fixed}
    executions = tables.rows("SELECT execution_id, status FROM scheduler_execution_log")
    assert {str(r["execution_id"]) for r in executions} == run_ids
    assert tables.count("symbol_computation_status") == 1 + 6 + 1 + 2 + 2
    assert tables.count("feature_freshness") == 6
    duplicated = tables.rows(
        "SELECT execution_id, symbol, timeframe FROM symbol_computation_status "
        "GROUP BY execution_id, symbol, timeframe HAVING COUNT(*) > 1"
    )
    assert duplicated == []


def test_the_daemon_on_the_committed_sqlite_config_mirrors_cli_runs(tmp_path):
    """The embedded default: daemon, CLI runs and this test are three processes on one SQLite
    instance, each keeping its own connections (KeptConnectionSqliteStorage)."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copyfile(instance_template(postgres=False), home / "dagster.yaml")
    _, workspace, env = _daemon_setup(tmp_path, home)
    tables_url = f"sqlite:///{tmp_path / 'mp.db'}"
    engine = make_engine(tables_url)
    migrate(engine)
    engine.dispose()
    env["MARKET_PIPELINE_DB_URL"] = tables_url
    daemon = Daemon(workspace, env, tmp_path / "daemon.log")
    tables = Tables(tables_url)
    backfill = [str(BIN / "market-pipeline"), "backfill", "--allow-failures"]
    os.environ["DAGSTER_HOME"] = str(home)
    try:
        with dg.DagsterInstance.get() as instance:
            daemon.start()
            _wait_for(
                "cursor on the success sensor",
                lambda: (
                    (s := _sensor_states(instance).get("mirror_run_success_sensor"))
                    and s.instigator_data is not None
                    and s.instigator_data.cursor
                ),
                daemon,
            )
            for symbols in (["AAPL", "BADCO"], ["BTC-USD"]):
                done = _cli([*backfill, "--symbols", *symbols], env)
                assert done.returncode == 0, done.stderr[-3000:]
                run_id = _latest_run_id(instance)
                # The start sensor may mirror the started row before the success sensor
                # finishes it, so wait for the finished row itself.
                _wait_for(
                    f"run {run_id} mirrored as completed",
                    lambda r=run_id: tables.finished(r, "completed"),
                    daemon,
                )
        assert "database is locked" not in daemon.log.read_text(errors="replace")
        assert tables.count("scheduler_execution_log") == 2
        failures = tables.rows("SELECT symbol FROM feature_computation_failures")
        assert {f["symbol"] for f in failures} == {"BADCO"}
    finally:
        os.environ.pop("DAGSTER_HOME", None)
        daemon.stop()
        tables.engine.dispose()
