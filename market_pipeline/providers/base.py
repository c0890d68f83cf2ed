"""The one interface every source of bars implements.

A provider turns ``(symbol, asset_class, timeframe, since, until)`` into a raw frame of bars. It
does not validate, deduplicate or store anything: :func:`market_pipeline.domain.validation.
validate_bars` does the checking afterwards, the same way for every provider, and counts what it
rejects.

Adding a vendor (Polygon, Alpaca, Yahoo...) is one new class::

    # market_pipeline/providers/polygon.py
    @register_provider
    class PolygonProvider(MarketDataProvider):
        kind = "polygon"                       # the universe file's ``provider: {kind: polygon}``

        def __init__(self, *, api_key_env: str = "POLYGON_API_KEY", timeout_s: float = 30.0):
            ...                                # keyword arguments = the provider block's keys

        def fetch_bars(self, symbol, asset_class, timeframe, *, since, until):
            ...                                # call the API, return RAW_COLUMNS
            # raise ProviderError(f"polygon: {symbol} {timeframe}: HTTP 429 rate limited")

plus ``from market_pipeline.providers import polygon`` in ``providers/__init__.py`` so the class
registers itself. The default :meth:`MarketDataProvider.from_config` maps the provider block's
keys onto the constructor's keyword arguments and refuses unknown ones; override it only when a
key needs the universe file's folder (as the csv provider's ``path`` does). Constructors must be
cheap and must not touch the network or the disk: universes are validated by building their
provider at start-up.
"""

from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import pandas as pd

from market_pipeline.domain.timeframes import Timeframe
from market_pipeline.domain.universe import UNIVERSE_PROVIDER_KEYS

RAW_COLUMNS = ("ts", "open", "high", "low", "close", "volume")
"""Columns of the frame :meth:`MarketDataProvider.fetch_bars` returns (extras are ignored)."""


class ProviderError(RuntimeError):
    """Fetching bars failed. The message names the provider, symbol and timeframe (and the file,
    for file-based providers) and the problem, so it can be shown as-is in a failed run."""


class ProviderConfigError(ValueError):
    """A provider block of a universe file that cannot build a provider."""


class MarketDataProvider(ABC):
    """A source of OHLCV bars.

    Subclasses set :attr:`kind`, take their options as keyword-only constructor arguments and
    implement :meth:`fetch_bars`. Instances are built once per process and called for many
    pairs, possibly from several threads: keep per-call state local.
    """

    kind: ClassVar[str]

    fetch_concurrency: int = 1
    """Pairs the refresh fetches at once from this provider (network providers raise it; they
    also cap their own requests in flight, whatever the number of callers)."""

    _config: dict[str, Any] | None = None

    @classmethod
    def from_config(cls, config: Mapping[str, Any], *, base_dir: Path | None = None) -> Any:
        """Build the provider from a universe provider block (``kind`` plus options).

        The default maps each option onto a keyword argument of ``__init__``: unknown keys and
        values the constructor refuses (``ValueError``/``TypeError``) raise
        :class:`ProviderConfigError`. ``base_dir`` is the folder of the universe file, for
        providers with relative paths; the default ignores it.
        """
        options = {key: value for key, value in config.items() if key != "kind"}
        allowed = _keyword_parameters(cls)
        unknown = [key for key in options if key not in allowed]
        if unknown:
            raise ProviderConfigError(
                f"unknown key(s) {', '.join(repr(k) for k in unknown)} for provider kind "
                f"{cls.kind!r}; allowed: {', '.join(('kind', *allowed, *UNIVERSE_PROVIDER_KEYS))}"
            )
        try:
            provider = cls(**options)
        except (TypeError, ValueError) as exc:
            raise ProviderConfigError(f"provider kind {cls.kind!r}: {exc}") from None
        if getattr(provider, "_config", None) is None:
            provider._config = {"kind": cls.kind, **options}
        return provider

    def config(self) -> dict[str, Any]:
        """The provider block that rebuilds this provider with :func:`build_provider`.

        Relative paths are already resolved, so it does not depend on ``base_dir``.
        """
        return dict(self._config) if self._config is not None else {"kind": self.kind}

    def referenced_symbols(self) -> frozenset[str]:
        """Symbols the configuration names (e.g. for failure injection); the universe checks
        they exist so that a typo is not silently ignored."""
        return frozenset()

    def unsupported_timeframe(self, timeframe: Timeframe) -> str | None:
        """Why this provider cannot serve ``timeframe`` (a vendor without such bars), or None.
        The universe refuses such timeframes on load."""
        return None

    def unsupported_asset_class(self, asset_class: str) -> str | None:
        """Why this provider cannot serve ``asset_class``, or None (checked on load too)."""
        return None

    @abstractmethod
    def fetch_bars(
        self,
        symbol: str,
        asset_class: str,
        timeframe: Timeframe,
        *,
        since: datetime | None,
        until: datetime,
    ) -> pd.DataFrame:
        """Raw bars of one pair.

        Returns a frame with columns :data:`RAW_COLUMNS` (``ts, open, high, low, close,
        volume``), one row per bar as the source had it, in any order:

        - ``ts`` is the bar's timestamp in whatever form the source had: ISO 8601 strings for
          csv, ``datetime64[ns, UTC]`` for synthetic. It is the bar's *start* for intraday bars;
          daily bars are stamped 00:00 UTC of their session date. Rows may be unparsable or
          duplicated: :func:`~market_pipeline.domain.validation.validate_bars` parses, checks and
          counts them. Providers must not drop bad rows themselves.
        - prices and volume are numbers (or text the validation coerces to numbers).

        ``since=None`` asks for the whole available history. Otherwise rows with
        ``ts >= since`` are wanted; a provider may also return an overlap of rows before
        ``since`` (the csv provider does, because vendors revise their last bars). No bar
        stamped after ``until`` is returned; a provider that knows when a bar is complete
        returns only bars complete at ``until``. Both are timezone-aware datetimes (see
        :func:`check_window`). No rows: an empty frame with the same columns.

        Failures raise :class:`ProviderError` with a message naming the pair and the problem.
        """


_REGISTRY: dict[str, type[MarketDataProvider]] = {}

P = TypeVar("P", bound=type[MarketDataProvider])


def register_provider(cls: P) -> P:
    """Class decorator making ``cls`` available as ``provider: {kind: <cls.kind>}``."""
    kind = getattr(cls, "kind", None)
    if not isinstance(kind, str) or not kind:
        raise TypeError(f"{cls.__name__} must set a class attribute kind = '<name>'")
    existing = _REGISTRY.get(kind)
    if existing is not None and existing is not cls:
        raise TypeError(f"provider kind {kind!r} is already registered by {existing.__name__}")
    _REGISTRY[kind] = cls
    return cls


def provider_kinds() -> tuple[str, ...]:
    """The registered provider kinds, sorted."""
    return tuple(sorted(_REGISTRY))


def provider_class(kind: str) -> type[MarketDataProvider]:
    """The class registered for ``kind``; :class:`ProviderConfigError` when there is none."""
    try:
        return _REGISTRY[kind]
    except (KeyError, TypeError):
        raise ProviderConfigError(
            f"unknown provider kind {kind!r}; expected one of {', '.join(provider_kinds())}"
        ) from None


def check_window(
    since: datetime | None, until: datetime
) -> tuple[pd.Timestamp | None, pd.Timestamp]:
    """``since`` and ``until`` as UTC timestamps; ``ValueError`` when one is naive."""
    for name, value in (("since", since), ("until", until)):
        if value is None and name == "since":
            continue
        if not isinstance(value, datetime):
            raise ValueError(f"{name} must be a timezone-aware datetime, got {value!r}")
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"{name} must be timezone-aware, got naive {value.isoformat()}")
    until_ts = pd.Timestamp(until).tz_convert("UTC")
    since_ts = None if since is None else pd.Timestamp(since).tz_convert("UTC")
    return since_ts, until_ts


def _keyword_parameters(cls: type) -> tuple[str, ...]:
    init: Callable[..., Any] = cls.__init__  # type: ignore[misc]
    if init is object.__init__:
        return ()
    parameters = inspect.signature(init).parameters.values()
    return tuple(
        p.name
        for p in parameters
        if p.name != "self" and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)
    )
