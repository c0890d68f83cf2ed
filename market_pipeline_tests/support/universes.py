"""Universe files for tests."""

from __future__ import annotations

from pathlib import Path

import yaml

from market_pipeline.config.settings import Settings
from market_pipeline.config.universe_file import load_universe


def write_universe(
    path: Path,
    symbols: list[tuple[str, str]],
    timeframes: list[str],
    provider: dict | None = None,
) -> Path:
    """Write a universe YAML file of ``(symbol, asset_class)`` pairs and timeframes."""
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


def asset_classes_of(settings: Settings) -> dict[str, str]:
    """symbol -> asset class of the universe ``settings`` names, as the mirror needs them."""
    universe = load_universe(settings.universe_path)
    return {symbol: universe.asset_class_of(symbol) for symbol in universe.symbol_names}
