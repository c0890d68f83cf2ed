"""The README's universe files for the parquet, binance and alpaca providers load as written."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from market_pipeline.config.universe_file import universe_from_mapping

README = Path(__file__).resolve().parents[2] / "README.md"
KINDS = ("parquet", "binance", "alpaca")


def _blocks() -> dict[str, dict]:
    found = {}
    for block in re.findall(r"```yaml\n(.*?)```", README.read_text(), flags=re.S):
        data = yaml.safe_load(block)
        if isinstance(data, dict) and data.get("provider", {}).get("kind") in KINDS:
            found[data["provider"]["kind"]] = data
    return found


@pytest.mark.parametrize("kind", KINDS)
def test_the_readme_universe_of_each_provider_loads(kind, tmp_path):
    data = _blocks()[kind]
    universe = universe_from_mapping(data, source=f"README ({kind})", base_dir=tmp_path)
    assert universe.provider["kind"] == kind and universe.pairs
