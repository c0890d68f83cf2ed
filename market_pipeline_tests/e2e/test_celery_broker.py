"""The Celery broker restarts while the workers idle: they reconnect and the next run completes.

The broker is a redis-server of the test's own (restarting the machine's one would cut off
everyone else using it); the rest is the cluster of test_celery.py: PostgreSQL instance and
tables, ``dagster-daemon`` with dagster-celery's run launcher, two workers.
"""

from __future__ import annotations

import re

import pytest

from market_pipeline_tests.support.celery_cluster import RedisServer, cluster, wait_until
from market_pipeline_tests.support.universes import write_universe

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.timeout(400)]

WORKERS = ("w1", "w2")
LOST = "Connection to broker lost"
CONNECTED = re.compile(r"Connected to redis://")


def _log(c, name: str) -> str:
    return (c.root / f"{name}.log").read_text(errors="replace")


def test_workers_reconnect_after_a_broker_restart_and_the_next_run_completes(tmp_path, pg_server):
    universe = write_universe(
        tmp_path / "universe.yaml",
        [("AAPL", "equity"), ("BTC-USD", "crypto")],
        ["1h", "1d"],
        {"kind": "synthetic", "history_bars": 200},
    )
    broker = RedisServer(tmp_path / "redis")
    broker.start()
    try:
        with cluster(tmp_path, pg_server, broker.url, universe, partitions_per_run=4) as c:
            for name in WORKERS:
                c.start_worker(name)
            c.start_daemon()
            backfill = ["backfill", "--submit", "--workspace", str(c.workspace), "--timeout", "120"]
            before = c.run_cli(backfill)
            assert before.returncode == 0, before.stdout[-2000:] + before.stderr[-2000:]

            connected = {name: len(CONNECTED.findall(_log(c, name))) for name in WORKERS}
            broker.stop()
            for name in WORKERS:
                wait_until(f"{name} noticing the broker gone", lambda n=name: LOST in _log(c, n))
            broker.start()  # same port, empty: no queue, no binding survives
            for name in WORKERS:
                wait_until(
                    f"{name} reconnected",
                    lambda n=name: len(CONNECTED.findall(_log(c, n))) > connected[n],
                    tail=lambda n=name: c.tail(n),
                )

            after = c.run_cli(backfill)
            assert after.returncode == 0, after.stdout[-2000:] + after.stderr[-2000:] + c.tail()
            assert "backfill of 4 pairs in 1 run(s): succeeded" in after.stdout
    finally:
        broker.stop()
