"""Case: real market-data sources. The HTTP vendors' fetch against latency, a backfill through a
vendor against the same backfill from CSV files, and the Parquet provider's incremental read.

- fetch: 1,000 pairs (smoke: 20) of 200 daily klines each, one request per pair, from the local
  Binance-format server (:mod:`market_pipeline_tests.support.vendor_server`, in a process of
  its own)
  with 50 ms added to every answer, through :func:`market_pipeline.market_data.fetching.
  fetch_pairs` at the provider's concurrency of 16; baseline: pairs x latency / concurrency,
  the wall time of perfect overlap. Goal: within 1.5x.
- backfill: :func:`market_pipeline.cli.launcher.run_backfill` of the same pairs through the
  same server (same latency), against the same run reading the same bars from CSV files; each
  on a fresh SQLite market database and a fresh Dagster test instance. No goal: the figure
  says what the network costs a whole backfill.
- parquet: one pair of 100,000 one-minute bars in a Parquet file written with row groups of
  10,000 rows; an incremental fetch of the last 10 bars (plus the 3 overlap bars) against a
  full read of the file, interleaved, medians of 30 rounds. Goal: at least 10x less time. The
  update repeats on an unchanged file, so its footer is parsed once; the same update with the
  footer parsed again (as after the file changed) is an extra, and so are both figures for the
  file written with row groups of 4,096 and 1,024 rows and as one row group (pyarrow's default
  for this size: with one group there is nothing to skip).
"""

from __future__ import annotations

import contextlib
import multiprocessing
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from multiprocessing.connection import Connection
from pathlib import Path

import dagster as dg
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from bench.common import LOWER_IS_BETTER, Result, interleaved_seconds, median, write_universe
from bench.data import synthetic_bars
from market_pipeline.cli.launcher import run_backfill
from market_pipeline.config.settings import Settings
from market_pipeline.database.engine import make_engine
from market_pipeline.database.migrations import migrate
from market_pipeline.domain.timeframes import Timeframe
from market_pipeline.market_data.fetching import fetch_pairs
from market_pipeline.providers import build_provider
from market_pipeline.providers.parquet.footers import forget_footers
from market_pipeline_tests.support.vendor_server import VendorServer

LATENCY_S = 0.05
CONCURRENCY = 16
BARS_PER_PAIR = 200
PARQUET_BARS = 100_000
ROW_GROUP = 10_000
UPDATE_BARS = 10
UNTIL = datetime(2030, 1, 1, tzinfo=UTC)


_CPU: dict[str, float] = {}
"""CPU seconds of this process during the timed fetch: near the wall time, the fetch is bound
by the client's own work (httpx, JSON, frames, validation) under the interpreter lock."""


def _symbols(count: int) -> list[str]:
    return [f"S{i:04d}USDT" for i in range(count)]


def _frames(count: int) -> dict[str, pd.DataFrame]:
    symbols = _symbols(count)
    return dict(zip(symbols, synthetic_bars(count, BARS_PER_PAIR, "1d", "crypto"), strict=True))


def _serve(conn: Connection, count: int) -> None:
    """Child process: the vendor server over the bench's bars, until the parent says stop;
    then send back how many requests it saw and the most at once."""
    server = VendorServer(latency_s=LATENCY_S)
    for symbol, frame in _frames(count).items():
        server.bars[(symbol, "1d")] = frame
    server.prepare()
    with server.serve() as url:
        conn.send(url)
        conn.recv()
        conn.send({"requests": len(server.requests), "max_in_flight": server.max_in_flight})


@contextlib.contextmanager
def _server_process(count: int) -> Iterator[tuple[str, dict]]:
    """The vendor server in a process of its own, as a vendor is: in this one its JSON work
    would compete with the fetching threads for the interpreter lock."""
    parent, child = multiprocessing.get_context("fork").Pipe()
    process = multiprocessing.get_context("fork").Process(target=_serve, args=(child, count))
    process.start()
    stats: dict = {}
    try:
        if not parent.poll(120):
            raise RuntimeError("the vendor server did not start within 120 s")
        yield parent.recv(), stats
        parent.send("stop")
        stats.update(parent.recv())
    finally:
        process.join(timeout=20)
        if process.is_alive():
            process.terminate()


def _fetch_case(url: str, symbols: list[str]) -> tuple[float, float]:
    provider = build_provider(
        {"kind": "binance", "base_url": url, "concurrency": CONCURRENCY, "weight_per_minute": 1e7}
    )
    pairs = [(symbol, "1d") for symbol in symbols]
    fetch_pairs(
        pairs[:CONCURRENCY],
        provider=provider,
        asset_class_of=lambda _: "crypto",
        since={},
        until=UNTIL,
    )  # fmt: skip  (warm-up: connections, imports)
    start, cpu_start = time.perf_counter(), time.process_time()
    results = fetch_pairs(
        pairs, provider=provider, asset_class_of=lambda _: "crypto", since={}, until=UNTIL
    )
    wall = time.perf_counter() - start
    _CPU["fetch_cpu_s"] = time.process_time() - cpu_start
    failed = [pair for pair, result in results.items() if isinstance(result, Exception)]
    if failed:
        raise RuntimeError(f"{len(failed)} fetches failed, e.g. {results[failed[0]]}")
    return wall, len(pairs) * LATENCY_S / CONCURRENCY


def _backfill_seconds(folder: Path, symbols: list[str], provider: dict) -> float:
    folder.mkdir()
    db_url = f"sqlite:///{folder / 'market.db'}"
    engine = make_engine(db_url)
    migrate(engine)
    engine.dispose()
    universe = write_universe(
        folder / "universe.yaml", [(s, "crypto") for s in symbols], ["1d"], provider
    )
    settings = Settings(home=folder / "home", db_url=db_url, universe_path=universe)
    with dg.instance_for_test() as instance:
        start = time.perf_counter()
        result = run_backfill(settings, instance=instance, log_level="ERROR")
        seconds = time.perf_counter() - start
    if not result.success:
        raise RuntimeError(f"the backfill over {provider['kind']} failed")
    return seconds


def _write_csvs(folder: Path, frames: dict[str, pd.DataFrame]) -> None:
    folder.mkdir()
    for symbol, frame in frames.items():
        out = frame.assign(timestamp=frame["ts"].dt.strftime("%Y-%m-%dT%H:%M:%SZ"))
        out.drop(columns=["ts"]).to_csv(folder / f"{symbol}_1d.csv", index=False)


def _parquet_case(work: Path, smoke: bool) -> Result:
    n = 5_000 if smoke else PARQUET_BARS
    (frame,) = synthetic_bars(1, n, "1m", "crypto")
    table = pa.Table.from_pandas(frame, preserve_index=False)
    since = frame["ts"].iloc[-UPDATE_BARS].to_pydatetime()
    one_minute = Timeframe.parse("1m")
    medians: dict[str, tuple[float, ...]] = {}
    grouped = 500 if smoke else ROW_GROUP
    layouts = (("grouped", grouped), ("4096", 4_096), ("1024", 1_024), ("one group", None))
    for label, groups in layouts:
        folder = work / f"parquet-{label.replace(' ', '-')}"
        folder.mkdir()
        pq.write_table(table, folder / "X_1m.parquet", row_group_size=groups)
        provider = build_provider(
            {"kind": "parquet", "path": str(folder), "columns": {"timestamp": "ts"}}
        )

        def full(p=provider, tf=one_minute) -> None:
            p.fetch_bars("X", "crypto", tf, since=None, until=UNTIL)

        def incremental(p=provider, tf=one_minute, s=since) -> None:
            p.fetch_bars("X", "crypto", tf, since=s, until=UNTIL)

        def changed_file(p=provider, tf=one_minute, s=since) -> None:
            forget_footers()  # as after the file changed: its footer is parsed again
            p.fetch_bars("X", "crypto", tf, since=s, until=UNTIL)

        times = interleaved_seconds(
            {"full": full, "incremental": incremental, "changed": changed_file},
            5 if smoke else 30,
        )
        medians[label] = tuple(median(times[k]) for k in ("incremental", "full", "changed"))
    incremental_s, full_s, changed_s = medians["grouped"]
    return Result(
        name=f"vendors: parquet update of {UPDATE_BARS} bars on a {n}-bar file",
        value=incremental_s * 1e3,
        unit="ms",
        baseline="a full read of the same file",
        baseline_value=full_s * 1e3,
        direction=LOWER_IS_BETTER,
        goal="at least 10x less time (ratio <= 0.1)",
        goal_met=incremental_s <= 0.1 * full_s,
        note=(
            f"row groups of {grouped} rows, not pyarrow's default (up to 1Mi rows: one group "
            "here, in the extras); pushdown skips whole row groups"
        ),
        extra={"ratio_after_file_change": changed_s / full_s, **_layout_figures(medians)},
    )


def _layout_figures(medians: dict[str, tuple[float, ...]]) -> dict[str, dict[str, float]]:
    """Milliseconds of each file layout: the update, the full read, their ratio, and the update
    with the footer parsed again."""
    return {
        f"{label.replace(' ', '_')}_ms": {
            "incremental": inc * 1e3,
            "full": whole * 1e3,
            "ratio": inc / whole,
            "after_file_change": changed * 1e3,
        }
        for label, (inc, whole, changed) in medians.items()
    }


def run(smoke: bool = False) -> list[Result]:
    """The fetch, backfill and Parquet figures (see the module docstring)."""
    count = 20 if smoke else 1_000
    symbols = _symbols(count)
    with tempfile.TemporaryDirectory(prefix="mp-bench-vendors-") as tmp:
        work = Path(tmp)
        with _server_process(count) as (url, stats):
            wall, ideal = _fetch_case(url, symbols)
            vendor_s = _backfill_seconds(
                work / "binance",
                symbols,
                {"kind": "binance", "base_url": url, "concurrency": CONCURRENCY,
                 "weight_per_minute": 1e7},
            )  # fmt: skip
        _write_csvs(work / "csv", _frames(count))
        csv_s = _backfill_seconds(
            work / "files", symbols, {"kind": "csv", "path": str(work / "csv")}
        )
        results = [
            Result(
                name=f"vendors: fetch of {count} pairs, binance format, 50 ms latency",
                value=wall,
                unit="s",
                baseline=f"pairs x latency / concurrency ({CONCURRENCY})",
                baseline_value=ideal,
                direction=LOWER_IS_BETTER,
                goal="within 1.5x",
                goal_met=wall <= 1.5 * ideal,
                extra={**stats, **_CPU},
            ),
            Result(
                name=f"vendors: backfill of {count} pairs through binance at 50 ms latency",
                value=vendor_s,
                unit="s",
                baseline="the same backfill from CSV files",
                baseline_value=csv_s,
                direction=LOWER_IS_BETTER,
                extra={"pairs": count, "bars_per_pair": BARS_PER_PAIR},
            ),
            _parquet_case(work, smoke),
        ]
    return results


if __name__ == "__main__":
    for result in run(smoke="--smoke" in __import__("sys").argv):
        print(result.name, f"{result.value:.3f} {result.unit}", f"ratio {result.ratio:.2f}",
              result.goal_met, result.extra)  # fmt: skip
