"""How fast the reconciler mirrors a backlog of finished runs: ``python bench/mirror_bench.py``.

A few real runs of the market-data job (a small universe, one symbol failing at the provider) are
executed on a PostgreSQL-backed Dagster instance, then replayed under new run ids (run record and
every event written through the instance, as a real run writes them) up to ``--runs`` finished
runs: the backlog a reconciler meets after the daemon was down for a day. One
``reconcile_instance`` pass then mirrors all of them into a fresh database of our tables; the
script prints runs/s, and the time of a second pass that finds everything mirrored.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

import dagster as dg
import sqlalchemy as sa
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from market_pipeline.backfill import run_backfill
from market_pipeline.core.universe import load_universe
from market_pipeline.mirror import reconcile_instance
from market_pipeline.settings import Settings
from market_pipeline.storage.engine import make_engine
from market_pipeline.storage.migrations import migrate
from market_pipeline.storage.observability import ObservabilityStore

PG = os.environ.get("MARKET_PIPELINE_TEST_PG", "postgresql+psycopg2://postgres@127.0.0.1:5432")


@contextlib.contextmanager
def database(label: str):
    name = f"mp_mirror_bench_{label}_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(f"{PG}/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    try:
        yield f"{PG}/{name}"
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


def replay(instance: dg.DagsterInstance, run_id: str, copies: int) -> None:
    """Write ``copies`` copies of a finished run, record and events, under new run ids."""
    run = instance.get_run_by_id(run_id)
    entries = [r.event_log_entry for r in instance.get_records_for_run(run_id).records]
    for _ in range(copies):
        new_id = str(uuid.uuid4())
        instance.add_run(_copy_run(run, new_id))
        for entry in entries:
            instance.handle_new_event(_copy_entry(entry, new_id))


def _copy_run(run: dg.DagsterRun, run_id: str) -> dg.DagsterRun:
    from dagster._record import copy  # no public way to clone a run record under a new id

    return copy(run, run_id=run_id, status=dg.DagsterRunStatus.NOT_STARTED)


def _copy_entry(entry, run_id: str):
    return entry._replace(run_id=run_id)  # EventLogEntry is a NamedTuple


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1000, help="finished runs in the backlog")
    parser.add_argument("--templates", type=int, default=4, help="real runs replayed")
    args = parser.parse_args()
    logging.getLogger("dagster").setLevel(logging.ERROR)
    work = Path(tempfile.mkdtemp(prefix="mp_mirror_bench_"))
    universe_path = work / "universe.yaml"
    universe_path.write_text(yaml.safe_dump({
        "provider": {"kind": "synthetic", "fail_symbols": ["BADCO"], "history_bars": 100},
        "symbols": [{"symbol": s, "asset_class": "equity"} for s in ("AAPL", "BADCO", "MSFT")],
        "timeframes": ["1h", "1d"],
    }))
    universe = load_universe(universe_path)
    with database("dagster") as instance_url, database("tables") as tables_url:
        engine = make_engine(tables_url)
        migrate(engine)
        settings = Settings(home=work, db_url=tables_url, universe_path=universe_path)
        home = work / "dagster_home"
        home.mkdir()
        (home / "dagster.yaml").write_text(yaml.safe_dump({
            "storage": {"postgres": {"postgres_url": instance_url}},
            "telemetry": {"enabled": False},
        }))
        os.environ["DAGSTER_HOME"] = str(home)
        with dg.DagsterInstance.get() as instance:
            templates = [
                run_backfill(settings, instance=instance).run_ids[0] for _ in range(args.templates)
            ]
            started = time.perf_counter()
            copies = args.runs // len(templates) - 1
            for run_id in templates:
                replay(instance, run_id, copies)
            backlog = len(instance.get_run_ids())
            print(f"backlog: {backlog} finished runs of 6 pairs each "
                  f"(replayed in {time.perf_counter() - started:.0f} s)")
            store = ObservabilityStore(engine, monitored_pairs=universe.pairs)
            summary = reconcile_instance(instance, store)
            print(f"first pass:  {summary}")
            print(f"             {summary.mirrored / summary.seconds:.1f} runs/s")
            again = reconcile_instance(instance, store)
            print(f"second pass: {again}")
        with engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT COUNT(*) FROM symbol_computation_status")).scalar()
        print(f"symbol_computation_status rows: {rows} (expected {backlog * 6})")
        engine.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
