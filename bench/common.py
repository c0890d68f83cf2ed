"""Shared plumbing of the benchmark suite: temporary databases, timing, result records, output.

Every case creates its own PostgreSQL database (and drops it afterwards), so cases never see each
other's rows and a crashed case leaves nothing behind but a ``mp_bench_*`` database that the next
run of the suite drops. The server is ``MARKET_PIPELINE_BENCH_PG`` (a server URL without a
database), defaulting to ``MARKET_PIPELINE_TEST_PG`` and then to the local trust-auth server.

A result is one :class:`Result`: a figure of ours, the baseline it is compared with (measured in
the same invocation on the same machine), and ``ratio = value / baseline_value`` with the
direction in which a ratio is good spelled out, so "2.0" can never be misread.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import platform
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
import yaml

PG_SERVER_URL = os.environ.get(
    "MARKET_PIPELINE_BENCH_PG",
    os.environ.get("MARKET_PIPELINE_TEST_PG", "postgresql+psycopg2://postgres@127.0.0.1:5432"),
)
RESULTS_DIR = Path(__file__).resolve().parent / "results"
LATEST_JSON = RESULTS_DIR / "latest.json"
DB_PREFIX = "mp_bench_"

LOWER_IS_BETTER = "lower is better"
HIGHER_IS_BETTER = "higher is better"


# --------------------------------------------------------------------------------------------
# Databases
# --------------------------------------------------------------------------------------------


@contextlib.contextmanager
def temp_database(label: str) -> Iterator[str]:
    """A fresh, empty PostgreSQL database named after ``label``; yields its URL, drops it after."""
    from market_pipeline.database.engine import temporary_postgres_database

    with temporary_postgres_database(PG_SERVER_URL, prefix=f"{DB_PREFIX}{label}") as url:
        yield url


def migrated_engine(url: str) -> sa.Engine:
    """An engine on ``url`` with our migrations applied."""
    from market_pipeline.database.engine import make_engine
    from market_pipeline.database.migrations import migrate

    engine = make_engine(url)
    migrate(engine)
    return engine


def write_universe(
    path: Path, symbols: Sequence[tuple[str, str]], timeframes: Sequence[str], provider: dict
) -> Path:
    """Write a universe YAML file (``symbols`` as ``(symbol, asset_class)``) and return its path."""
    path.write_text(
        yaml.safe_dump(
            {
                "description": "benchmark universe",
                "provider": provider,
                "symbols": [{"symbol": s, "asset_class": a} for s, a in symbols],
                "timeframes": list(timeframes),
            }
        )
    )
    return path


def bench_symbols(count: int) -> list[tuple[str, str]]:
    """``count`` made-up symbols, 80% equities, 10% crypto, 10% FX, in a stable order."""
    out = []
    for i in range(count):
        kind = ("equity",) * 8 + ("crypto", "fx")
        asset_class = kind[i % 10]
        out.append(
            (f"S{i:04d}" + {"equity": "", "crypto": "-USD", "fx": "FX"}[asset_class], asset_class)
        )
    return out


# --------------------------------------------------------------------------------------------
# Timing
# --------------------------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) of ``values``, linear interpolation between ranks."""
    ordered = sorted(values)
    if not ordered:
        raise ValueError("no values")
    if len(ordered) == 1:
        return ordered[0]
    rank = (len(ordered) - 1) * q / 100.0
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def time_ms(fn: Callable[[], Any], repeat: int) -> list[float]:
    """Wall-clock milliseconds of ``repeat`` calls of ``fn``."""
    out = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        out.append((time.perf_counter() - start) * 1e3)
    return out


def interleaved_seconds(fns: dict[str, Callable[[], Any]], repeat: int) -> dict[str, list[float]]:
    """Wall-clock seconds of each function over ``repeat`` rounds, one call of each per round.

    Interleaving spreads the noise of a shared machine over all contenders instead of letting it
    land on whichever one happened to run while another process was busy.
    """
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeat):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return times


# --------------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------------


@dataclass
class Result:
    """One figure of ours against its baseline.

    ``ratio`` is ``value / baseline_value`` (ours over baseline) and ``direction`` says whether a
    lower or a higher ratio is better; ``goal`` is the issue's target for the ratio in words and
    ``goal_met`` whether this run met it (``None`` when the issue sets no goal for the figure).
    ``extra`` holds supporting figures (p99, sample sizes, ...).
    """

    name: str
    value: float
    unit: str
    baseline: str
    baseline_value: float
    direction: str
    goal: str | None = None
    goal_met: bool | None = None
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    case: str = ""

    @property
    def ratio(self) -> float:
        if not self.baseline_value:
            return float("nan")
        return self.value / self.baseline_value

    def as_json(self, machine: dict[str, Any]) -> dict[str, Any]:
        record = asdict(self)
        record["ratio"] = _finite(self.ratio)
        record["value"] = _finite(self.value)
        record["baseline_value"] = _finite(self.baseline_value)
        record["machine"] = machine
        return record


def _finite(value: float) -> float | None:
    return None if value is None or not math.isfinite(value) else round(float(value), 6)


def machine_info() -> dict[str, Any]:
    """Cores, memory and software versions of this machine (memory from /proc/meminfo)."""
    memory_kb = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory_kb = int(line.split()[1])
                break
    except OSError:
        pass
    try:
        load = os.getloadavg()[0]
    except OSError:
        load = None
    info: dict[str, Any] = {
        "cores": os.cpu_count(),
        "memory_gb": round(memory_kb / 1024 / 1024, 1) if memory_kb else None,
        "load_average_1m_at_end": round(load, 2) if load is not None else None,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
    try:
        import dagster

        info["dagster"] = dagster.__version__
    except ImportError:  # pragma: no cover
        pass
    server = sa.create_engine(f"{PG_SERVER_URL}/postgres", poolclass=sa.pool.NullPool)
    try:
        with server.connect() as conn:
            info["postgresql"] = conn.exec_driver_sql("SHOW server_version").scalar_one()
    except sa.exc.DBAPIError:
        info["postgresql"] = None
    finally:
        server.dispose()
    return info


def write_json(
    results: Sequence[Result],
    path: Path = LATEST_JSON,
    *,
    smoke: bool,
    keep: Sequence[dict[str, Any]] = (),
) -> Path:
    """Write ``results`` as a JSON list of records, each with the machine it ran on; records in
    ``keep`` (already in JSON form, from an earlier invocation) come first, unchanged."""
    machine = machine_info()
    machine["smoke"] = smoke
    machine["finished_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    path.parent.mkdir(parents=True, exist_ok=True)
    records = [*keep, *(r.as_json(machine) for r in results)]
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(records, indent=2) + "\n")
    tmp.replace(path)
    return path


def _fmt(value: float) -> str:
    if value is None or not math.isfinite(value):
        return "-"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.3g}"


def format_table(results: Sequence[Result]) -> str:
    """The results as one plain-text table (ratio = ours / baseline)."""
    header = ("benchmark", "ours", "unit", "baseline", "baseline value", "ratio", "goal", "met")
    rows = [
        (
            r.name,
            _fmt(r.value),
            r.unit,
            r.baseline,
            _fmt(r.baseline_value),
            f"{_fmt(r.ratio)} ({'lower' if r.direction == LOWER_IS_BETTER else 'higher'} better)",
            r.goal or "-",
            {True: "yes", False: "NO", None: "-"}[r.goal_met],
        )
        for r in results
    ]
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(header, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows]
    notes = [f"- {r.name}: {r.note}" for r in results if r.note]
    if notes:
        lines += ["", "Notes:", *notes]
    return "\n".join(lines)


def median(values: Sequence[float]) -> float:
    """The median of ``values``."""
    return statistics.median(values)
