"""Fixtures for the Dagster wiring: a small universe file and settings over a test database."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest
import yaml

from market_pipeline.settings import Settings
from market_pipeline.storage.engine import make_engine
from market_pipeline.storage.migrations import migrate


def write_universe(
    path: Path,
    symbols: list[tuple[str, str]],
    timeframes: list[str],
    provider: dict | None = None,
) -> Path:
    path.write_text(
        yaml.safe_dump(
            {
                "provider": provider or {"kind": "synthetic"},
                "symbols": [{"symbol": s, "asset_class": a} for s, a in symbols],
                "timeframes": timeframes,
            }
        )
    )
    return path


@pytest.fixture
def live_instance():
    """Building a repository reads the defs-state storage of Dagster's current instance, and a
    test instance closed earlier in the session can be left current: give the test a live one."""
    with dg.instance_for_test() as instance:
        yield instance


@pytest.fixture
def small_universe(tmp_path) -> Path:
    """Three symbols x two timeframes; BADCO always fails at the provider."""
    return write_universe(
        tmp_path / "universe.yaml",
        [("AAPL", "equity"), ("BADCO", "equity"), ("BTC-USD", "crypto")],
        ["1h", "1d"],
        {"kind": "synthetic", "fail_symbols": ["BADCO"]},
    )


@pytest.fixture
def settings(tmp_path, db_url, small_universe) -> Settings:
    engine = make_engine(db_url)
    migrate(engine)
    engine.dispose()
    return Settings(home=tmp_path / "home", db_url=db_url, universe_path=small_universe)
