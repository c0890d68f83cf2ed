"""Load the universe YAML file: read it, parse it, and let the providers check their block."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from market_pipeline.domain.timeframes import Timeframe
from market_pipeline.domain.universe import ProviderCheck, Universe, UniverseError, parse_universe
from market_pipeline.providers import build_provider


def load_universe(path: str | Path) -> Universe:
    """Read and validate the universe YAML file at ``path``.

    Raises :class:`UniverseError` when the file is missing, is not valid YAML, or breaks a rule
    (see :func:`market_pipeline.domain.universe.parse_universe`). Relative provider paths
    resolve against the file's folder.
    """
    file = Path(path).expanduser()
    source = str(file)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UniverseError(f"universe file {source} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UniverseError(f"universe file {source} cannot be read: {exc}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise UniverseError(f"universe file {source} is not valid YAML: {exc}") from None
    return universe_from_mapping(data, source=source, base_dir=file.resolve().parent)


def universe_from_mapping(data: Any, *, source: str, base_dir: Path | None = None) -> Universe:
    """Validate already-parsed universe content; ``base_dir`` is where relative provider paths
    resolve (the current directory when None). Timeframes and asset classes the provider does
    not offer (a vendor without 2m bars, or without FX) are refused too."""
    universe = parse_universe(data, source=source, check_provider=provider_check(base_dir))
    provider = build_provider(universe.provider)
    for index, code in enumerate(universe.timeframes):
        problem = provider.unsupported_timeframe(Timeframe.parse(code))
        if problem:
            raise UniverseError(f"{source}: timeframes[{index}]: {problem}")
    for index, spec in enumerate(universe.symbols):
        problem = provider.unsupported_asset_class(spec.asset_class)
        if problem:
            raise UniverseError(f"{source}: symbols[{index}]: symbol {spec.symbol!r}: {problem}")
    return universe


def provider_check(base_dir: Path | None) -> ProviderCheck:
    """Checks a provider block by building the provider it names, as a run would."""

    def check(raw: Mapping[str, Any]) -> tuple[dict[str, Any], frozenset[str]]:
        provider = build_provider(raw, base_dir=base_dir)
        return provider.config(), provider.referenced_symbols()

    return check
