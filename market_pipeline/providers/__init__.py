"""Sources of bars behind one interface (:class:`MarketDataProvider`), chosen by the universe file.

Kinds: ``synthetic`` (:mod:`.synthetic`, deterministic demo data with failure injection),
``csv`` (:mod:`.csv_files`, one file per pair), ``parquet`` (:mod:`.parquet`, files or a hive
dataset), ``binance`` and ``alpaca`` (:mod:`.http`, the HTTP vendors). See :mod:`.base` for how
to add a vendor.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from market_pipeline.providers import csv_files, http, parquet, synthetic  # noqa: F401  (kinds)
from market_pipeline.providers.base import (
    RAW_COLUMNS,
    MarketDataProvider,
    ProviderConfigError,
    ProviderError,
    provider_class,
    provider_kinds,
    register_provider,
)
from market_pipeline.providers.csv_files import CsvFileProvider
from market_pipeline.providers.synthetic import SyntheticProvider

__all__ = [
    "RAW_COLUMNS",
    "CsvFileProvider",
    "MarketDataProvider",
    "ProviderConfigError",
    "ProviderError",
    "SyntheticProvider",
    "build_provider",
    "provider_kinds",
    "register_provider",
]


def build_provider(
    config: Mapping[str, Any], *, base_dir: Path | None = None
) -> MarketDataProvider:
    """The provider a universe ``provider`` block describes, e.g. ``{"kind": "synthetic"}``.

    ``base_dir`` is the folder relative paths resolve against (the universe file's folder; the
    current directory when None). Raises :class:`ProviderConfigError` for a missing or unknown
    ``kind``, unknown keys or bad values.
    """
    if not isinstance(config, Mapping):
        raise ProviderConfigError(f"expected a mapping such as {{kind: synthetic}}, got {config!r}")
    if "kind" not in config:
        raise ProviderConfigError(
            f"missing key 'kind'; expected one of {', '.join(provider_kinds())}"
        )
    cls = provider_class(config["kind"])
    return cls.from_config(config, base_dir=base_dir)
