"""The workspace loads in Dagster's own loader, as `dagster dev` and the daemon load it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def test_dagster_definitions_validate_passes_on_the_workspace(tmp_path):
    env = dict(os.environ, DAGSTER_HOME=str(tmp_path), MARKET_PIPELINE_HOME=str(tmp_path / "mp"))
    result = subprocess.run(
        [
            str(Path(sys.executable).parent / "dagster"),
            "definitions",
            "validate",
            "-w",
            "workspace.yaml",
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "All code locations passed validation" in result.stderr + result.stdout


def test_a_bad_universe_fails_the_load_with_a_message_naming_the_symbol(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "provider: {kind: synthetic}\nsymbols:\n  - {symbol: 'A|B', asset_class: equity}\n"
        "timeframes: [1d]\n"
    )
    env = dict(os.environ, DAGSTER_HOME=str(tmp_path), MARKET_PIPELINE_UNIVERSE=str(bad))
    result = subprocess.run(
        [
            str(Path(sys.executable).parent / "dagster"),
            "definitions",
            "validate",
            "-w",
            "workspace.yaml",
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode != 0
    assert "A|B" in result.stderr + result.stdout
