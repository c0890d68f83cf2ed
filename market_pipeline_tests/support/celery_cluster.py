"""A local scale-out cluster for end-to-end tests: a Redis broker, PostgreSQL for the Dagster
instance and our tables, ``dagster-daemon`` and Celery workers, each a process of its own.

The instance is the shipped ``dagster.celery.yaml`` (run launcher ``CeleryRunLauncher``) with
a short run-monitoring interval; the workers run ``dagster-celery worker start`` with the shipped
``celery_worker.yaml``. Every test cluster has a Celery queue of its own, so two test sessions on
one broker never take each other's runs. Everything started is stopped by :meth:`Cluster.close`.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import redis
import sqlalchemy as sa
import yaml
from celery import Celery

from market_pipeline.database.engine import make_engine, temporary_postgres_database
from market_pipeline.database.migrations import migrate
from market_pipeline.package_data import celery_worker_config, instance_template
from market_pipeline_tests.support.processes import free_port, stop

BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parents[2]
WAIT_S = 120.0
MACHINE_REDIS = os.environ.get("MARKET_PIPELINE_TEST_REDIS", "redis://127.0.0.1:6379/0")
"""The machine's Redis (``.ci/run`` starts it when it is down)."""
CELERY_TASK_ID_TAG = "dagster-celery/task_id"

DEFS_MODULE = '''
"""The project's definitions with short sensor intervals and no schedules (test cluster)."""
import dagster as dg

import market_pipeline_tests.support.gated_provider  # noqa: F401  (the gated_synthetic kind)
from market_pipeline.config.settings import Settings
from market_pipeline.definitions import build_definitions
from market_pipeline.defs.observability_sensors import SensorIntervals


def _definitions() -> dg.Definitions:
    full = build_definitions(
        Settings.from_env(),
        sensor_intervals=SensorIntervals(run_status=2, reconcile=3600, freshness=3600),
    )
    return dg.Definitions(
        assets=full.assets,
        jobs=full.jobs,
        sensors=full.sensors,
        resources=full.resources,
        executor=dg.in_process_executor,
    )


defs = _definitions()
'''


def wait_until(what: str, check: Callable[[], object], *, seconds: float = WAIT_S, tail=None):
    """``check()``'s first truthy value, polled; an AssertionError naming ``what`` (and
    ``tail()``, the logs) after ``seconds``."""
    deadline = time.monotonic() + seconds
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            logs = tail() if tail else ""
            raise AssertionError(f"no {what} after {seconds:.0f} s\n{logs}")
        time.sleep(0.25)


class RedisServer:
    """A redis-server of the test's own on a free port (it can be restarted without disturbing
    anyone else's broker)."""

    def __init__(self, folder: Path) -> None:
        self.folder, self.port = folder, free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        log = (self.folder / "redis.log").open("ab")
        self.process = subprocess.Popen(
            [
                *("redis-server", "--bind", "127.0.0.1", "--port", str(self.port)),
                *("--save", "", "--appendonly", "no", "--dir", str(self.folder)),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        client = redis.Redis.from_url(self.url)
        wait_until("redis answering", lambda: _pings(client), seconds=20)

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None:
            stop(process)


def require_redis(url: str) -> str:
    """``url`` when a Redis server answers there; otherwise the test fails saying how to start
    one (these tests are never skipped)."""
    if not _pings(redis.Redis.from_url(url, socket_connect_timeout=2)):
        raise AssertionError(
            f"Redis at {url} is not reachable: start it as DEVELOPERS.md says (.ci/run does)"
        )
    return url


def _pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.exceptions.ConnectionError:
        return False


class Cluster:
    """Databases, instance, code location and processes of one scale-out test cluster."""

    def __init__(
        self,
        root: Path,
        pg_server: str,
        broker_url: str,
        universe: Path,
        *,
        defs_module: str = DEFS_MODULE,
    ) -> None:
        self.defs_module = defs_module
        self.root, self.pg_server, self.broker_url, self.universe = (
            root,
            pg_server,
            broker_url,
            universe,
        )
        self.queue = f"mp_test_{uuid.uuid4().hex[:10]}"
        self.home = root / "dagster_home"
        self.workspace = root / "workspace.yaml"
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self._stack = contextlib.ExitStack()
        self.instance_url = self.tables_url = ""

    # ---- set-up ---------------------------------------------------------------------------
    def open(self, *, partitions_per_run: int) -> Cluster:
        self.instance_url = self._stack.enter_context(
            temporary_postgres_database(self.pg_server, prefix="mp_celery_dagster")
        )
        self.tables_url = self._stack.enter_context(
            temporary_postgres_database(self.pg_server, prefix="mp_celery_tables")
        )
        engine = make_engine(self.tables_url)
        migrate(engine)
        engine.dispose()
        self.home.mkdir(parents=True)
        config = yaml.safe_load(instance_template(postgres=True, celery=True).read_text())
        config["run_monitoring"]["poll_interval_seconds"] = 2
        (self.home / "dagster.yaml").write_text(yaml.safe_dump(config))
        self.workspace = self.write_workspace("cluster_defs", self.defs_module)
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("DAGSTER_")}
        self.env.update(
            PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
            DAGSTER_HOME=str(self.home),
            DAGSTER_PG_URL=self.instance_url,
            DAGSTER_CELERY_BROKER_URL=self.broker_url,
            DAGSTER_CELERY_BACKEND_URL=self.broker_url,
            DAGSTER_CELERY_QUEUE=self.queue,
            MARKET_PIPELINE_DB_URL=self.tables_url,
            MARKET_PIPELINE_UNIVERSE=str(self.universe),
            MARKET_PIPELINE_HOME=str(self.root / "mp_home"),
            MARKET_PIPELINE_PARTITIONS_PER_RUN=str(partitions_per_run),
            PYTHONPATH=str(REPO),
        )
        # Last in, first out: the processes stop, then the broker's keys go.
        self._stack.callback(self._forget_queue)
        self._stack.callback(self._stop_all)
        return self

    def write_workspace(self, name: str, module_text: str) -> Path:
        """A code location ``market_pipeline`` from the module ``module_text`` (``name``.py);
        returns its workspace file (for the daemon and ``backfill --submit --workspace``)."""
        (self.root / f"{name}.py").write_text(module_text)
        workspace = self.root / f"{name}_workspace.yaml"
        workspace.write_text(
            "load_from:\n  - python_file:\n"
            f"      relative_path: {self.root / f'{name}.py'}\n"
            f"      working_directory: {REPO}\n      location_name: market_pipeline\n"
        )
        return workspace

    def close(self) -> None:
        self._stack.close()

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---- processes ------------------------------------------------------------------------
    def _start(self, name: str, argv: list[str]) -> subprocess.Popen[bytes]:
        log = (self.root / f"{name}.log").open("ab")
        process = subprocess.Popen(
            argv,
            cwd=REPO,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        self.processes[name] = process
        return process

    def start_daemon(self, workspace: Path | None = None) -> None:
        self._start(
            "daemon", [str(BIN / "dagster-daemon"), "run", "-w", str(workspace or self.workspace)]
        )

    def start_worker(self, name: str) -> None:
        """``dagster-celery worker start`` on the cluster's queue, one run at a time."""
        log = self.root / f"{name}.log"
        offset = log.stat().st_size if log.exists() else 0
        self._start(
            name,
            [
                *(str(BIN / "dagster-celery"), "worker", "start", "-A", "dagster_celery.app"),
                *("-y", str(celery_worker_config()), "-q", self.queue, "-n", name),
                *("--", "--concurrency=1"),
            ],
        )
        wait_until(
            f"worker {name} ready",
            lambda: " ready." in log.read_text(errors="replace")[offset:],
            tail=lambda: self.tail(name),
        )

    def stop_process(self, name: str) -> None:
        process = self.processes.pop(name, None)
        if process is not None:
            stop(process, timeout=30)

    def _stop_all(self) -> None:
        for name in list(self.processes):
            self.stop_process(name)

    def executing(self, task_id: str) -> tuple[str, int] | None:
        """(worker name, pid of its pool process) executing Celery task ``task_id``, as the
        workers report it (``celery inspect active``); ``None`` while no worker has it."""
        active = self.celery_app().control.inspect(timeout=2).active() or {}
        for worker, tasks in active.items():
            for task in tasks:
                if task["id"] == task_id:
                    return worker.split("@")[0], int(task["worker_pid"])
        return None

    def descendants(self, name: str) -> list[int]:
        """Pids of every process below worker ``name``'s command (its pool processes)."""
        return _descendants(self.processes[name].pid)

    def kill(self, pid: int) -> None:
        os.kill(pid, signal.SIGKILL)

    def tail(self, *names: str) -> str:
        out = []
        for name in names or tuple(self.processes):
            log = self.root / f"{name}.log"
            if log.exists():
                out.append(f"--- {name} ---\n{log.read_text(errors='replace')[-3000:]}")
        return "\n".join(out)

    # ---- reading ---------------------------------------------------------------------------
    def celery_app(self) -> Celery:
        app = Celery(broker=self.broker_url, backend=self.broker_url)
        app.conf.result_extended = True
        return app

    def _forget_queue(self) -> None:
        """Remove the queue, its bindings and the result records of the cluster's runs from the
        broker (after the processes stopped, before the instance database is dropped)."""
        task_ids: list[str] = []
        with contextlib.suppress(sa.exc.SQLAlchemyError):
            engine = sa.create_engine(self.instance_url, poolclass=sa.pool.NullPool)
            with engine.connect() as conn:
                task_ids = list(
                    conn.execute(
                        sa.text("SELECT value FROM run_tags WHERE key = :k"),
                        {"k": CELERY_TASK_ID_TAG},
                    ).scalars()
                )
            engine.dispose()
        with contextlib.suppress(redis.exceptions.RedisError):
            client = redis.Redis.from_url(self.broker_url)
            keys = [self.queue, *(f"{self.queue}\x06\x16{p}" for p in range(10))]
            keys += [f"_kombu.binding.{self.queue}", f"_kombu.binding_permanent.{self.queue}"]
            keys += [f"celery-task-meta-{task_id}" for task_id in task_ids]
            client.delete(*keys)

    def tables(self) -> sa.Engine:
        engine = make_engine(self.tables_url)
        self._stack.callback(engine.dispose)
        return engine

    def start_cli(self, args: list[str]) -> subprocess.Popen[str]:
        """``market-pipeline ARGS`` as :meth:`run_cli`, not waited for; the caller communicates."""
        process = subprocess.Popen(
            [sys.executable, "-c", _CLI, *args],
            cwd=REPO,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._stack.callback(_end, process)
        return process

    def run_cli(self, args: list[str], *, timeout: float = 300) -> subprocess.CompletedProcess:
        """``market-pipeline ARGS`` through its ``main``, in a process that knows the gated kind."""
        return subprocess.run(
            [sys.executable, "-c", _CLI, *args],
            cwd=REPO,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )


_CLI = (
    "import sys\nimport market_pipeline_tests.support.gated_provider\n"
    "from market_pipeline.cli.main import main\nsys.exit(main(sys.argv[1:]))\n"
)


def _end(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        process.kill()
        process.communicate(timeout=30)


def _parents() -> dict[int, int]:
    """pid -> parent pid of every process (from /proc: children of any thread count)."""
    out = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # The command name is in parentheses and may hold spaces: the fields follow the last ")".
        out[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    return out


def _descendants(pid: int) -> list[int]:
    parents = _parents()
    out, todo = [], [pid]
    while todo:
        current = todo.pop()
        kids = [p for p, parent in parents.items() if parent == current]
        out += kids
        todo += kids
    return out


@contextlib.contextmanager
def cluster(
    root: Path,
    pg_server: str,
    broker_url: str,
    universe: Path,
    *,
    partitions_per_run: int,
    defs_module: str = DEFS_MODULE,
) -> Iterator[Cluster]:
    c = Cluster(root, pg_server, broker_url, universe, defs_module=defs_module)
    try:
        yield c.open(partitions_per_run=partitions_per_run)
    finally:
        c.close()
