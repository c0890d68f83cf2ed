"""Universe files for tests."""

from __future__ import annotations

from pathlib import Path

import yaml


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
