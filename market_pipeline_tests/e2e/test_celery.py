"""Scale-out on Dagster's own engines, end to end: runs queued on a PostgreSQL instance, launched
by the daemon with dagster-celery's run launcher onto two Celery workers (separate processes) on
the machine's Redis, our tables on PostgreSQL too.

One cluster for the module, in the order an operator would meet things: a split backfill over
both workers, two overlapping backfills of the same pairs, then a worker process SIGKILLed in the
middle of a run and the retry. The Redis restart has a broker of its own (test_celery_broker.py).
"""

from __future__ import annotations

import re
import subprocess
from collections import Counter
from pathlib import Path

import dagster as dg
import numpy as np
import pytest
import sqlalchemy as sa
import yaml

from market_pipeline.domain.features import FEATURE_COLUMNS, compute_features
from market_pipeline.market_data.repository import MarketDataRepository
from market_pipeline.package_data import demo_universe
from market_pipeline_tests.support.celery_cluster import (
    CELERY_TASK_ID_TAG,
    MACHINE_REDIS,
    Cluster,
    cluster,
    require_redis,
    wait_until,
)

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.timeout(600)]

PARTITIONS_PER_RUN = 60  # the demo's 250 pairs: 12 symbols x 5 timeframes per run, 5 runs
WORKERS = ("w1", "w2")


def _demo_universe_gated(root: Path) -> Path:
    """The bundled demo universe (50 symbols x 5 timeframes) on the gated synthetic provider."""
    data = yaml.safe_load(demo_universe().read_text())
    data["provider"] = {
        "kind": "gated_synthetic",
        "hold_file": str(root / "hold"),
        "entered_file": str(root / "entered"),
        "history_bars": 500,
    }
    path = root / "universe.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture(scope="module")
def celery_cluster(tmp_path_factory, pg_server):
    root = tmp_path_factory.mktemp("celery")
    universe = _demo_universe_gated(root)
    with cluster(
        root,
        pg_server,
        require_redis(MACHINE_REDIS),
        universe,
        partitions_per_run=PARTITIONS_PER_RUN,
    ) as c:
        for name in WORKERS:
            c.start_worker(name)
        c.start_daemon()
        with pytest.MonkeyPatch.context() as mp:
            for key in ("DAGSTER_HOME", "DAGSTER_PG_URL"):
                mp.setenv(key, c.env[key])
            with dg.DagsterInstance.get() as instance:
                c.instance = instance  # type: ignore[attr-defined]
                yield c


def _run_ids(stdout: str) -> list[str]:
    return re.findall(r"^queued run ([0-9a-f-]{36}):", stdout, flags=re.MULTILINE)


def _rows(engine: sa.Engine, sql: str) -> list[dict]:
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(sa.text(sql))]


def _mirrored(engine: sa.Engine, run_ids: list[str], status: str) -> bool:
    rows = _rows(engine, "SELECT execution_id, status FROM scheduler_execution_log")
    done = {str(r["execution_id"]) for r in rows if r["status"] == status}
    return set(run_ids) <= done


def _workers_of(c: Cluster, run_ids: list[str]) -> dict[str, str]:
    app = c.celery_app()
    out = {}
    for run_id in run_ids:
        run = c.instance.get_run_by_id(run_id)  # type: ignore[attr-defined]
        out[run_id] = app.AsyncResult(run.tags[CELERY_TASK_ID_TAG]).worker
    return out


def _assert_features_equal_full_recompute(engine: sa.Engine, universe_path: Path) -> None:
    data = yaml.safe_load(universe_path.read_text())
    classes = {s["symbol"]: s["asset_class"] for s in data["symbols"]}
    pairs = [(s, tf) for s in classes for tf in data["timeframes"]]
    repo = MarketDataRepository(engine)
    bars, stored = repo.load_bars(pairs), repo.load_features(pairs)
    assert set(bars) == set(stored) == set(pairs)
    for symbol, timeframe in pairs:
        expected = compute_features(
            bars[(symbol, timeframe)], asset_class=classes[symbol], timeframe=timeframe
        )
        got = stored[(symbol, timeframe)]
        assert len(got) == len(expected), (symbol, timeframe)
        np.testing.assert_allclose(
            got[list(FEATURE_COLUMNS)].to_numpy(),
            expected[list(FEATURE_COLUMNS)].to_numpy(),
            rtol=1e-9,
            atol=1e-9,
            equal_nan=True,
            err_msg=f"{symbol} {timeframe}",
        )


def test_a_demo_backfill_is_split_into_runs_that_both_workers_take(celery_cluster):
    c = celery_cluster
    done = c.run_cli(["backfill", "--submit", "--workspace", str(c.workspace), "--timeout", "240"])
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:] + c.tail()
    run_ids = _run_ids(done.stdout)
    assert len(run_ids) == 5
    assert "backfill of 250 pairs in 5 run(s): succeeded" in done.stdout
    for run_id in run_ids:
        assert f"run {run_id} success" in done.stdout

    # Both workers took runs: each run's Celery task names the worker that executed it.
    workers = _workers_of(c, run_ids)
    assert {w.split("@")[0] for w in workers.values()} == set(WORKERS), workers

    # Every partition was materialized exactly once, by one of these runs.
    for asset in ("ohlcv_bars", "quant_features"):
        records = c.instance.fetch_materializations(dg.AssetKey(asset), limit=1000).records
        counts = Counter(r.partition_key for r in records)
        assert len(counts) == 250 and set(counts.values()) == {1}, asset
        assert {r.run_id for r in records} == set(run_ids)

    tables = c.tables()
    wait_until(
        "the five runs mirrored", lambda: _mirrored(tables, run_ids, "completed"), tail=c.tail
    )
    executions = _rows(tables, "SELECT * FROM scheduler_execution_log")
    assert sorted(r["total_symbols"] for r in executions) == [2, 12, 12, 12, 12]  # symbols
    statuses = _rows(
        tables,
        "SELECT execution_id, symbol, timeframe, status FROM symbol_computation_status",
    )
    assert len(statuses) == 250 and {r["status"] for r in statuses} == {"completed"}
    assert len({(r["symbol"], r["timeframe"]) for r in statuses}) == 250
    assert _rows(tables, "SELECT COUNT(*) AS n FROM feature_freshness")[0]["n"] == 250
    assert _rows(tables, "SELECT COUNT(*) AS n FROM feature_computation_failures")[0]["n"] == 0


def _hold(c: Cluster) -> tuple[Path, Path]:
    hold, entered = c.root / "hold", c.root / "entered"
    entered.unlink(missing_ok=True)
    hold.touch()
    return hold, entered


def _advisory_waiters(engine: sa.Engine) -> int:
    rows = _rows(
        engine,
        "SELECT COUNT(*) AS n FROM pg_locks WHERE locktype = 'advisory' AND NOT granted "
        "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
    )
    return int(rows[0]["n"])


def _submit(c: Cluster, *args: str) -> subprocess.Popen[str]:
    return c.start_cli(["backfill", "--submit", "--workspace", str(c.workspace), *args])


def test_two_overlapping_backfills_of_the_same_pairs_take_turns_and_stay_exact(celery_cluster):
    c = celery_cluster
    tables = c.tables()
    hold, entered = _hold(c)
    first = second = None
    try:
        first = _submit(c, "--symbols", "AAPL", "MSFT", "--timeout", "240")
        wait_until("the first run inside its refresh", entered.exists, tail=c.tail)
        second = _submit(c, "--symbols", "MSFT", "AAPL", "--timeout", "240")
        # The second run is on the other worker, waiting for the pairs the first one holds.
        wait_until(
            "the second run waiting on a pair lock",
            lambda: _advisory_waiters(tables) > 0,
            tail=c.tail,
        )
    finally:
        hold.unlink(missing_ok=True)
    outs = [p.communicate(timeout=300) for p in (first, second)]
    for process, (out, err) in zip((first, second), outs, strict=True):
        assert process.returncode == 0, out[-3000:] + err[-3000:] + c.tail()
    run_ids = [_run_ids(out)[0] for out, _ in outs]
    workers = _workers_of(c, run_ids)
    assert len(set(workers.values())) == 2, workers  # they did run at the same time
    wait_until("both runs mirrored", lambda: _mirrored(tables, run_ids, "completed"), tail=c.tail)
    for table in ("ohlcv_bars", "quant_features"):
        [row] = _rows(
            tables,
            f"SELECT COUNT(*) AS n, COUNT(DISTINCT (symbol, timeframe, ts)) AS d FROM {table}",
        )
        assert row["n"] == row["d"], table
    _assert_features_equal_full_recompute(tables, c.universe)


def test_a_worker_killed_mid_run_fails_the_run_and_a_retry_completes(celery_cluster):
    c = celery_cluster
    tables = c.tables()
    hold, entered = _hold(c)
    try:
        doomed = _submit(c, "--symbols", "NVDA", "--timeout", "240")
        wait_until("the run inside its refresh", entered.exists, tail=c.tail)
        run = c.instance.get_run_records(limit=1)[0].dagster_run  # type: ignore[attr-defined]
        worker, pid = wait_until(
            "the worker reporting the run's task",
            lambda: c.executing(run.tags[CELERY_TASK_ID_TAG]),
            tail=c.tail,
        )
        # The pool process of that worker, the one executing the run.
        assert pid in c.descendants(worker), (worker, pid, c.descendants(worker))
        c.kill(pid)
    finally:
        hold.unlink(missing_ok=True)
    out, err = doomed.communicate(timeout=300)
    # Celery fails the task of a lost worker process; run monitoring fails the run.
    assert doomed.returncode == 1, out[-3000:] + err[-3000:] + c.tail()
    [run_id] = _run_ids(out)
    assert f"run {run_id} failure" in out
    run = c.instance.get_run_by_id(run_id)  # type: ignore[attr-defined]
    assert run.status == dg.DagsterRunStatus.FAILURE
    wait_until(
        "the failed run mirrored", lambda: _mirrored(tables, [run_id], "failed"), tail=c.tail
    )

    retry = c.run_cli(
        ["backfill", "--submit", "--workspace", str(c.workspace), "--symbols", "NVDA"]
    )
    assert retry.returncode == 0, retry.stdout[-3000:] + retry.stderr[-3000:] + c.tail()
    [retry_id] = _run_ids(retry.stdout)
    wait_until("the retry mirrored", lambda: _mirrored(tables, [retry_id], "completed"))
    _assert_features_equal_full_recompute(tables, c.universe)
    # The killed process's advisory locks went with its session: nothing is left locked.
    assert _advisory_waiters(tables) == 0
