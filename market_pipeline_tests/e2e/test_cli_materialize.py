"""`dagster asset materialize` and `market-pipeline` from the command line, as a user runs them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

from market_pipeline.database.engine import make_engine
from market_pipeline_tests.support.universes import write_universe

BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def _env(tmp_path: Path, db_url: str, universe: Path) -> dict[str, str]:
    home = tmp_path / "dagster_home"
    home.mkdir(exist_ok=True)
    env = dict(os.environ)
    env.update(
        MARKET_PIPELINE_DB_URL=db_url,
        MARKET_PIPELINE_UNIVERSE=str(universe),
        MARKET_PIPELINE_HOME=str(tmp_path / "mp_home"),
        DAGSTER_HOME=str(home),
    )
    env.pop("DAGSTER_PG_URL", None)
    return env


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        args, env=env, cwd=REPO, capture_output=True, text=True, timeout=300, check=False
    )


def _pairs(db_url: str) -> set[tuple[str, str]]:
    engine = make_engine(db_url)
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT DISTINCT f.symbol, f.timeframe FROM quant_features f")
        ).all()
    engine.dispose()
    return {tuple(r) for r in rows}


def test_cli_materialize_one_partition_then_a_range_on_a_fresh_database(tmp_path, db_url):
    universe = write_universe(
        tmp_path / "u.yaml",
        [("AAPL", "equity"), ("MSFT", "equity"), ("ETH-USD", "crypto")],
        ["1h", "1d"],
        {"kind": "synthetic", "fail_symbols": ["MSFT"]},
    )
    env = _env(tmp_path, db_url, universe)
    migrate = _run([str(BIN / "market-pipeline"), "migrate"], env)
    assert migrate.returncode == 0, migrate.stderr
    assert "applied" in migrate.stdout

    one = _run(
        [
            str(BIN / "dagster"),
            "asset",
            "materialize",
            "-m",
            "market_pipeline.definitions",
            "--select",
            "ohlcv_bars,quant_features",
            "--partition",
            "AAPL|1d",
        ],
        env,
    )
    assert one.returncode == 0, one.stderr[-3000:]
    assert _pairs(db_url) == {("AAPL", "1d")}

    # Dagster's CLI takes a range only from assets with a single-run backfill policy: `all`.
    many = _run(
        [
            str(BIN / "dagster"),
            "asset",
            "materialize",
            "-m",
            "market_pipeline.definitions",
            "--select",
            "ohlcv_bars,quant_features",
            "--partition-range",
            "AAPL|1h...ETH-USD|1d",
        ],
        {**env, "MARKET_PIPELINE_PARTITIONS_PER_RUN": "all"},
    )
    # MSFT fails at the provider: the run fails, every other pair is stored.
    assert many.returncode != 0
    assert "injected failure" in many.stderr + many.stdout
    assert _pairs(db_url) == {("AAPL", "1h"), ("AAPL", "1d"), ("ETH-USD", "1h"), ("ETH-USD", "1d")}


def test_migrate_with_unreachable_database_names_host_and_database_without_password(tmp_path):
    universe = write_universe(tmp_path / "u.yaml", [("AAPL", "equity")], ["1d"])
    env = _env(tmp_path, "postgresql://alice:s3cret@127.0.0.1:1/market_data", universe)
    result = _run([str(BIN / "market-pipeline"), "migrate"], env)
    assert result.returncode == 2
    assert "market_data" in result.stderr and "127.0.0.1" in result.stderr
    assert "s3cret" not in result.stderr and "Traceback" not in result.stderr
