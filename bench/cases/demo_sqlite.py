"""Case: the demo's backfill on the embedded SQLite default, shipped against stock storage.

What ``make demo`` does, side by side in one invocation: the bundled demo universe (250 pairs,
synthetic provider, 2,000 bars per pair on a first write), our tables in a SQLite file, the
Dagster instance on SQLite under a ``DAGSTER_HOME`` whose dagster.yaml is the committed one
(``shipped``: KeptConnectionSqliteStorage) or the committed one with its one commented stock line
instead (``stock``: Dagster's own storage, a new connection per storage call), each with a
market database of its own. For each storage, in this order:

- Dagster's empty-body floor (:func:`bench.cases.backfill.floor_job`: the same two asset keys
  over the same partitions, one range run that only yields the per-partition materializations),
  and the same floor also yielding the two per-partition check results our assets report;
- ours, first write: :func:`market_pipeline.cli.launcher.run_backfill` on an empty database;
- ours, incremental: the same after removing the newest :data:`INCREMENTAL_BARS` bars (and
  their feature rows) of every pair, so the run fetches at least that many new bars per pair
  (more if a 1m bar completed meanwhile), as a scheduled update does; on the shipped storage also
  with :data:`SCHEDULED_BARS`, the scheduled update's common case.

On the shipped storage the floors and ours run :data:`ROUNDS` times (medians); stock once.
Dagster's console log goes to a temporary file.
"""

# No `from __future__ import annotations`: Dagster reads the context annotation at runtime.

import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import dagster as dg
import sqlalchemy as sa

from bench.cases.backfill import dagster_logs_to, floor_job
from bench.common import LOWER_IS_BETTER, Result, bench_symbols, median, write_universe
from market_pipeline.cli.launcher import run_backfill
from market_pipeline.config.settings import Settings
from market_pipeline.config.universe_file import load_universe
from market_pipeline.database.engine import make_engine
from market_pipeline.database.migrations import migrate
from market_pipeline.defs.partitions import build_pair_partitions
from market_pipeline.domain.names import RANGE_END_TAG, RANGE_START_TAG
from market_pipeline.package_data import demo_universe, instance_template

INCREMENTAL_BARS = 16
SCHEDULED_BARS = 5
ROUNDS = 2
STOCK_LINE_PREFIX = "#   storage: {sqlite:"

_REWIND = """
DELETE FROM {table} WHERE rowid IN (
    SELECT rowid FROM (
        SELECT rowid, ROW_NUMBER() OVER (PARTITION BY symbol, timeframe ORDER BY ts DESC) AS rn
        FROM {table}
    ) WHERE rn <= :bars
)
"""


def dagster_home(folder: Path, *, stock: bool) -> Path:
    """A ``DAGSTER_HOME`` with the committed dagster.yaml, or with its stock line instead."""
    folder.mkdir(parents=True)
    text = instance_template(postgres=False).read_text()
    if stock:
        [line] = [s for s in text.splitlines() if s.startswith(STOCK_LINE_PREFIX)]
        start, end = text.index("\nstorage:\n"), text.index("\n\n", text.index("\nstorage:\n"))
        text = text[:start] + "\n" + line.removeprefix("#   ") + text[end:]
    (folder / "dagster.yaml").write_text(text)
    return folder


def rewind(db_url: str, bars: int) -> None:
    """Remove the newest ``bars`` bars and feature rows of every pair (SQLite)."""
    engine = make_engine(db_url)
    with engine.begin() as conn:
        for table in ("ohlcv_bars", "quant_features"):
            conn.execute(sa.text(_REWIND.format(table=table)), {"bars": bars})
    engine.dispose()


def _seconds(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


class Storage:
    """One Dagster instance (shipped or stock storage) and one market database, timed."""

    def __init__(self, workdir: Path, universe_path: Path, *, stock: bool) -> None:
        name = "stock" if stock else "shipped"
        self.home = dagster_home(workdir / name / "dagster_home", stock=stock)
        self.db_url = f"sqlite:///{workdir / name / 'market_pipeline.db'}"
        engine = make_engine(self.db_url)
        migrate(engine)
        engine.dispose()
        self.settings = Settings(
            home=workdir / name, db_url=self.db_url, universe_path=universe_path
        )
        self.times: dict[str, list[float]] = {}

    def _record(self, what: str, seconds: float) -> None:
        self.times.setdefault(what, []).append(seconds)

    def floors(self, instance: dg.DagsterInstance, partitions, tags: dict[str, str]) -> None:
        keys = partitions.get_partition_keys()
        for what, job in (
            ("floor", floor_job(partitions)),
            ("floor_with_checks", floor_job(partitions, with_checks=True)),
        ):
            job.execute_in_process(instance=instance, partition_key=keys[0])  # warm-up
            result = None

            def run(job=job):
                nonlocal result
                result = job.execute_in_process(instance=instance, tags=tags)

            self._record(what, _seconds(run))
            if result is None or not result.success:
                raise RuntimeError(f"the floor run of {job.name} failed")

    def ours(self, instance: dg.DagsterInstance, what: str, rewind_bars: int | None) -> None:
        if rewind_bars is not None:
            rewind(self.db_url, rewind_bars)
        outcome = None

        def run():
            nonlocal outcome
            outcome = run_backfill(self.settings, instance=instance, trigger="bench")

        self._record(what, _seconds(run))
        if outcome is None or not outcome.success:
            raise RuntimeError(f"{what} did not succeed: {outcome and outcome.summary()}")

    def median(self, what: str) -> float:
        return median(self.times[what])


def _measure(storage: Storage, partitions, tags, rounds: int, *, scheduled: bool, log: Path):
    os.environ["DAGSTER_HOME"] = str(storage.home)
    try:
        with dg.DagsterInstance.get() as instance, dagster_logs_to(log):
            for round_ in range(rounds):
                storage.floors(instance, partitions, tags)
                if round_ > 0:  # a fresh market database for each first write
                    Path(storage.db_url.removeprefix("sqlite:///")).unlink()
                    engine = make_engine(storage.db_url)
                    migrate(engine)
                    engine.dispose()
                storage.ours(instance, "first", None)
                storage.ours(instance, "incremental", INCREMENTAL_BARS)
                if scheduled:
                    storage.ours(instance, "scheduled", SCHEDULED_BARS)
    finally:
        os.environ.pop("DAGSTER_HOME", None)


def run(smoke: bool = False) -> list[Result]:
    """Time the demo backfill, first write and incremental, shipped and stock; return results."""
    workdir = Path(tempfile.mkdtemp(prefix="mp_bench_demo_sqlite_"))
    log = workdir / "dagster.log"
    if smoke:
        universe_path = write_universe(
            workdir / "universe.yaml",
            bench_symbols(4),
            ["5m", "1d"],
            {"kind": "synthetic", "history_bars": 100},
        )
    else:
        universe_path = demo_universe()
    partitions = build_pair_partitions(load_universe(universe_path))
    keys = partitions.get_partition_keys()
    tags = {RANGE_START_TAG: keys[0], RANGE_END_TAG: keys[-1]}
    saved_home = os.environ.get("DAGSTER_HOME")
    try:
        shipped = Storage(workdir, universe_path, stock=False)
        stock = Storage(workdir, universe_path, stock=True)
        _measure(shipped, partitions, tags, 1 if smoke else ROUNDS, scheduled=True, log=log)
        _measure(stock, partitions, tags, 1, scheduled=False, log=log)
    finally:
        if saved_home is not None:
            os.environ["DAGSTER_HOME"] = saved_home
    results = _results(shipped, stock, len(keys), 1 if smoke else ROUNDS)
    shutil.rmtree(workdir, ignore_errors=True)
    return results


def _vs_floor(shipped: Storage, what: str, label: str, n: int, rounds: int) -> Result:
    ours, floor = shipped.median(what), shipped.median("floor")
    floor_checks = shipped.median("floor_with_checks")
    result = Result(
        name=f"demo on SQLite: {label} vs bookkeeping floor",
        value=ours,
        unit="s",
        baseline=f"same {n} partitions, empty body (Dagster floor), same shipped storage, "
        f"medians of {rounds} round(s)",
        baseline_value=floor,
        direction=LOWER_IS_BETTER,
        goal="ratio <= 1.5",
        extra={
            "partitions": n,
            "ours_s": shipped.times[what],
            "floor_s": shipped.times["floor"],
            "floor_with_checks_s": shipped.times["floor_with_checks"],
            "ratio_vs_floor_with_checks": ours / floor_checks,
        },
    )
    result.goal_met = result.ratio <= 1.5
    result.note = (
        f"floor with the two per-partition check results our assets also report: "
        f"{floor_checks:.1f} s (ratio {ours / floor_checks:.2f})"
    )
    return result


def _vs_stock(shipped: Storage, stock: Storage, what: str, label: str) -> Result:
    result = Result(
        name=f"demo on SQLite: {label}, shipped instance storage vs stock",
        value=shipped.median(what),
        unit="s",
        baseline="the same backfill on stock Dagster SQLite storage (the committed dagster.yaml's "
        "commented line), own instance and market database, same invocation",
        baseline_value=stock.median(what),
        direction=LOWER_IS_BETTER,
        goal="ratio <= 0.5 (>= 2x faster)",
        extra={"shipped_s": shipped.times[what], "stock_s": stock.times[what]},
    )
    result.goal_met = result.ratio <= 0.5
    result.extra["speedup"] = result.baseline_value / result.value if result.value else None
    return result


def _results(shipped: Storage, stock: Storage, n: int, rounds: int) -> list[Result]:
    floors = Result(
        name="demo on SQLite: bookkeeping floor, shipped instance storage vs stock",
        value=shipped.median("floor"),
        unit="s",
        baseline="the same empty-body range run on stock Dagster SQLite storage",
        baseline_value=stock.median("floor"),
        direction=LOWER_IS_BETTER,
        note="what KeptConnectionSqliteStorage saves Dagster's own bookkeeping; with checks: "
        f"{shipped.median('floor_with_checks'):.1f} s kept, "
        f"{stock.median('floor_with_checks'):.1f} s stock",
    )
    scheduled = Result(
        name=f"demo on SQLite: scheduled update ({SCHEDULED_BARS} new bars) vs first write",
        value=shipped.median("scheduled"),
        unit="s",
        baseline="the first write of the same pairs, shipped storage",
        baseline_value=shipped.median("first"),
        direction=LOWER_IS_BETTER,
        note=f"each run still pays the floor ({shipped.median('floor'):.1f} s) and recomputes "
        "every pair's features over its full stored history",
        extra={"scheduled_s": shipped.times["scheduled"]},
    )
    return [
        _vs_floor(shipped, "first", "first write", n, rounds),
        _vs_floor(shipped, "incremental", f"incremental ({INCREMENTAL_BARS} new bars)", n, rounds),
        _vs_stock(shipped, stock, "first", "first write"),
        _vs_stock(shipped, stock, "incremental", f"incremental ({INCREMENTAL_BARS} new bars)"),
        floors,
        scheduled,
    ]
