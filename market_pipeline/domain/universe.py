"""The universe: which symbols and timeframes the pipeline keeps, and where their bars come from.

The universe is configuration, not code. ``MARKET_PIPELINE_UNIVERSE`` names a YAML file (see
:mod:`market_pipeline.config.settings`); without it the bundled demo universe
(``market_pipeline/package_data/universes/demo.yaml``, 50 symbols x 5 timeframes) is used. Shape::

    description: free text (optional)
    provider: {kind: synthetic}            # or {kind: csv, path: /data/bars}
    calendars: {equity: XNYS, crypto: "24/7", fx: FX}   # optional; these are the defaults
    data_lag_tolerance_seconds: {1h: 7200}   # optional; see domain.lag_rules for defaults
    symbols:
      - {symbol: AAPL, asset_class: equity}
      - {symbol: VOD, asset_class: equity, calendar: XLON}   # a per-symbol override
      - {symbol: BTC-USD, asset_class: crypto}
    timeframes: [1h, 1d]

A calendar is ``"24/7"``, ``FX`` or a name exchange_calendars knows (see
:mod:`market_pipeline.domain.calendars`). Any provider block may also carry ``grace_seconds``
(default 0): how long after a bar is complete the vendor publishes it, before the bar counts as
due (:mod:`market_pipeline.domain.bar_schedule`), and ``revision_tolerance`` (default 1e-6): the
relative difference between a re-fetched overlap bar and the stored one beyond which the pair's
history counts as revised (:mod:`market_pipeline.domain.revisions`). The universe keeps both apart
from the block the provider is built from.

Adding a symbol or a timeframe is an edit of that file. Everything is checked on load and a
problem raises :class:`UniverseError` naming the file and the offending entry, so a typo fails the
code location at start-up instead of a run hours later.

Pure: the file is read, and the provider block checked, by
:mod:`market_pipeline.config.universe_file`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from market_pipeline.domain.calendars import (
    DEFAULT_CALENDARS,
    UnknownCalendarError,
    check_calendar_name,
    get_calendar,
)
from market_pipeline.domain.lag_rules import DataLagRules, PairSchedule, parse_tolerances
from market_pipeline.domain.timeframes import ASSET_CLASSES, Timeframe, TimeframeError

SYMBOL_PATTERN = re.compile(r"^[A-Za-z0-9._-]{1,32}$")
"""Symbols are 1-32 characters out of letters, digits, ``.``, ``_`` and ``-``.

The symbol becomes part of Dagster partition keys (``AAPL|1h`` in a multi-partition, where ``|``
separates the dimensions; ``,`` separates keys in lists and ``...`` the ends of a key range) and of
file names (``AAPL_1h.csv``), so anything else is refused rather than escaped.
"""

_TOP_LEVEL_KEYS = (
    "description",
    "provider",
    "calendars",
    "symbols",
    "timeframes",
    "data_lag_tolerance_seconds",
)
_REQUIRED_TOP_LEVEL_KEYS = ("provider", "symbols", "timeframes")
_SYMBOL_KEYS = ("symbol", "asset_class", "calendar")
_REQUIRED_SYMBOL_KEYS = ("symbol", "asset_class")
GRACE_KEY = "grace_seconds"
MAX_GRACE_SECONDS = 7 * 86_400
REVISION_TOLERANCE_KEY = "revision_tolerance"
DEFAULT_REVISION_TOLERANCE = 1e-6
UNIVERSE_PROVIDER_KEYS = (GRACE_KEY, REVISION_TOLERANCE_KEY)
"""Keys any provider block may carry that the universe keeps, not the provider."""

ProviderCheck = Callable[[Mapping[str, Any]], tuple[dict[str, Any], frozenset[str]]]
"""Validates a provider block: returns it normalised and the symbols it names."""


class UniverseError(ValueError):
    """A universe file that cannot be read or breaks a rule; the message names file and entry."""


@dataclass(frozen=True)
class SymbolSpec:
    """One instrument of the universe; ``calendar`` is its own calendar when the file names one
    (None: its asset class's, see :meth:`Universe.calendar_of`)."""

    symbol: str
    asset_class: str
    calendar: str | None = None


@dataclass(frozen=True)
class Universe:
    """A validated universe.

    ``provider`` is the provider block of the file, checked by the provider's own class (see
    :func:`market_pipeline.providers.build_provider`); a relative csv ``path`` has already been
    resolved against the folder of the YAML file. ``timeframes`` keeps the codes as written
    (``1m``, ``1h``...). ``source`` names where the universe came from (the file path).
    ``calendars`` maps every asset class to its calendar name; ``grace_seconds`` is the
    provider's publication delay.
    """

    provider: dict[str, Any]
    symbols: tuple[SymbolSpec, ...]
    timeframes: tuple[str, ...]
    source: str
    description: str = ""
    calendars: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_CALENDARS))
    grace_seconds: int = 0
    data_lag_tolerances: Mapping[str, int] = field(default_factory=dict)
    revision_tolerance: float = DEFAULT_REVISION_TOLERANCE
    _by_symbol: dict[str, SymbolSpec] = field(
        init=False, repr=False, compare=False, default_factory=dict
    )

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_symbol", {spec.symbol: spec for spec in self.symbols})

    @property
    def symbol_names(self) -> tuple[str, ...]:
        """The symbols in file order."""
        return tuple(spec.symbol for spec in self.symbols)

    @property
    def timeframe_objects(self) -> tuple[Timeframe, ...]:
        """The timeframes, parsed, in file order."""
        return tuple(Timeframe.parse(code) for code in self.timeframes)

    def asset_class_of(self, symbol: str) -> str:
        """The asset class of ``symbol``; :class:`UniverseError` when it is not in the universe."""
        return self._spec(symbol).asset_class

    def calendar_of(self, symbol: str) -> str:
        """The calendar name of ``symbol``: its own, else its asset class's."""
        spec = self._spec(symbol)
        return spec.calendar or self.calendars[spec.asset_class]

    def _spec(self, symbol: str) -> SymbolSpec:
        try:
            return self._by_symbol[symbol]
        except KeyError:
            raise UniverseError(f"symbol {symbol!r} is not in the universe {self.source}") from None

    def session_timezone_of(self, symbol: str) -> str:
        """The time zone whose local date is a trading session of ``symbol`` (its exchange's;
        UTC for 24/7 and FX): the session VWAP resets there."""
        return get_calendar(self.calendar_of(symbol)).timezone

    def data_lag_rules(self) -> DataLagRules:
        """Each pair's calendar and the provider's grace, with the tolerances of the file."""
        schedules = {
            (spec.symbol, tf): PairSchedule(
                spec.calendar or self.calendars[spec.asset_class],
                self.grace_seconds,
                spec.asset_class,
            )
            for spec in self.symbols
            for tf in self.timeframes
        }
        return DataLagRules(schedules, tolerances=self.data_lag_tolerances)

    @property
    def pairs(self) -> list[tuple[str, str]]:
        """Every (symbol, timeframe) pair: symbols in file order, each with every timeframe."""
        return [(spec.symbol, tf) for spec in self.symbols for tf in self.timeframes]


def parse_universe(data: Any, *, source: str, check_provider: ProviderCheck) -> Universe:
    """Validate the parsed content of a universe file.

    ``source`` names the file in error messages. ``check_provider`` validates the ``provider``
    block (the provider layer knows the kinds and their options): it returns the block as the
    provider normalises it and the symbols it names, or raises ``ValueError`` saying what is
    wrong, which becomes a :class:`UniverseError` naming the file and the block.
    """
    if not isinstance(data, Mapping):
        raise UniverseError(
            f"{source}: expected a mapping with keys {', '.join(_REQUIRED_TOP_LEVEL_KEYS)}, "
            f"got {type(data).__name__}"
        )
    _check_keys(
        data,
        allowed=_TOP_LEVEL_KEYS,
        required=_REQUIRED_TOP_LEVEL_KEYS,
        where=f"{source}: top level",
    )
    description = data.get("description") or ""
    if not isinstance(description, str):
        raise UniverseError(f"{source}: description must be text, got {description!r}")
    symbols = _parse_symbols(data["symbols"], source)
    timeframes = _parse_timeframes(data["timeframes"], source)
    calendars = _parse_calendars(data.get("calendars"), source)
    try:
        tolerances = parse_tolerances(data.get("data_lag_tolerance_seconds"), timeframes)
    except ValueError as exc:
        raise UniverseError(f"{source}: data_lag_tolerance_seconds: {exc}") from None
    provider, grace_seconds, tolerance = _parse_provider(
        data["provider"], source, check_provider, {s.symbol for s in symbols}
    )
    return Universe(
        provider=provider,
        symbols=symbols,
        timeframes=timeframes,
        source=source,
        description=description.strip(),
        calendars=calendars,
        grace_seconds=grace_seconds,
        data_lag_tolerances=tolerances,
        revision_tolerance=tolerance,
    )


def check_symbol(symbol: Any, *, where: str = "symbol") -> str:
    """Return ``symbol`` if it may be used as a partition-key part and file-name part.

    Raises :class:`UniverseError` explaining the rule otherwise.
    """
    if not isinstance(symbol, str):
        raise UniverseError(
            f"{where}: symbol {symbol!r} is a {type(symbol).__name__}, not text; quote it in the "
            "YAML file (unquoted ON, OFF, YES, NO, TRUE and numbers are not read as text)"
        )
    if not SYMBOL_PATTERN.match(symbol):
        bad = sorted({ch for ch in symbol if not re.match(r"[A-Za-z0-9._-]", ch)})
        detail = f"contains {', '.join(repr(ch) for ch in bad)}; " if bad else ""
        raise UniverseError(
            f"{where}: symbol {symbol!r} is not allowed: {detail}a symbol is 1-32 characters out "
            "of letters, digits, '.', '_' and '-' because it becomes part of Dagster partition "
            "keys, where '|' separates the dimensions of a key and ',' separates keys"
        )
    if "..." in symbol:
        raise UniverseError(
            f"{where}: symbol {symbol!r} is not allowed: '...' separates the ends of a Dagster "
            "partition key range"
        )
    return symbol


def _check_keys(
    entry: Mapping[Any, Any], *, allowed: tuple[str, ...], required: tuple[str, ...], where: str
) -> None:
    unknown = [key for key in entry if key not in allowed]
    if unknown:
        raise UniverseError(
            f"{where}: unknown key(s) {', '.join(repr(k) for k in unknown)}; "
            f"allowed: {', '.join(allowed)}"
        )
    missing = [key for key in required if key not in entry]
    if missing:
        raise UniverseError(f"{where}: missing key(s) {', '.join(missing)}")


def _parse_symbols(raw: Any, source: str) -> tuple[SymbolSpec, ...]:
    if not isinstance(raw, list) or not raw:
        raise UniverseError(
            f"{source}: symbols must be a non-empty list of {{symbol: ..., asset_class: ...}}, "
            f"got {raw!r}"
        )
    specs: list[SymbolSpec] = []
    seen: dict[str, int] = {}
    for index, entry in enumerate(raw):
        where = f"{source}: symbols[{index}]"
        if not isinstance(entry, Mapping):
            raise UniverseError(
                f"{where}: expected {{symbol: ..., asset_class: ...}}, got {entry!r}"
            )
        _check_keys(entry, allowed=_SYMBOL_KEYS, required=_REQUIRED_SYMBOL_KEYS, where=where)
        symbol = check_symbol(entry["symbol"], where=where)
        asset_class = entry["asset_class"]
        if asset_class not in ASSET_CLASSES:
            raise UniverseError(
                f"{where}: symbol {symbol!r} has unknown asset_class {asset_class!r}; "
                f"expected one of {', '.join(ASSET_CLASSES)}"
            )
        # Case-insensitive: AAPL and aapl would be the same file on a case-insensitive disk.
        folded = symbol.upper()
        if folded in seen:
            raise UniverseError(
                f"{where}: duplicate symbol {symbol!r} (already listed as symbols[{seen[folded]}]"
                f" {raw[seen[folded]]['symbol']!r})"
            )
        seen[folded] = index
        calendar = entry.get("calendar")
        if calendar is not None:
            calendar = _check_calendar(calendar, where=f"{where}: symbol {symbol!r}")
        specs.append(SymbolSpec(symbol=symbol, asset_class=asset_class, calendar=calendar))
    return tuple(specs)


def _parse_calendars(raw: Any, source: str) -> dict[str, str]:
    where = f"{source}: calendars"
    if raw is None:
        return dict(DEFAULT_CALENDARS)
    if not isinstance(raw, Mapping):
        raise UniverseError(
            f'{where}: expected a mapping such as {{equity: XNYS, crypto: "24/7", fx: FX}}, '
            f"got {raw!r}"
        )
    _check_keys(raw, allowed=ASSET_CLASSES, required=(), where=where)
    calendars = dict(DEFAULT_CALENDARS)
    for asset_class, name in raw.items():
        calendars[asset_class] = _check_calendar(name, where=f"{where}.{asset_class}")
    return calendars


def _check_calendar(name: Any, *, where: str) -> str:
    try:
        return check_calendar_name(name)
    except UnknownCalendarError as exc:
        raise UniverseError(f"{where}: {exc}") from None


def _parse_timeframes(raw: Any, source: str) -> tuple[str, ...]:
    if not isinstance(raw, list) or not raw:
        raise UniverseError(
            f"{source}: timeframes must be a non-empty list such as [1m, 5m, 1h, 1d], got {raw!r}"
        )
    codes: list[str] = []
    seen: dict[int, str] = {}
    for index, code in enumerate(raw):
        where = f"{source}: timeframes[{index}]"
        if not isinstance(code, str):
            raise UniverseError(f"{where}: timeframe {code!r} is not text such as 1h")
        try:
            timeframe = Timeframe.parse(code)
        except TimeframeError as exc:
            raise UniverseError(f"{where}: {exc}") from None
        if timeframe.seconds in seen:
            same = seen[timeframe.seconds]
            detail = "listed twice" if same == timeframe.code else f"the same duration as {same!r}"
            raise UniverseError(f"{where}: duplicate timeframe {code!r} ({detail})")
        seen[timeframe.seconds] = timeframe.code
        codes.append(timeframe.code)
    return tuple(codes)


def _parse_provider(
    raw: Any, source: str, check_provider: ProviderCheck, symbols: set[str]
) -> tuple[dict[str, Any], int, float]:
    """The provider block as the provider normalises it, and its grace in seconds (a key every
    provider kind takes, kept apart so that the block still builds the provider)."""
    where = f"{source}: provider"
    if not isinstance(raw, Mapping):
        raise UniverseError(f"{where}: expected a mapping such as {{kind: synthetic}}, got {raw!r}")
    grace = raw.get(GRACE_KEY, 0)
    if isinstance(grace, bool) or not isinstance(grace, int) or not 0 <= grace <= MAX_GRACE_SECONDS:
        raise UniverseError(
            f"{where}: {GRACE_KEY} must be a whole number of seconds from 0 to "
            f"{MAX_GRACE_SECONDS} (the vendor's delay in publishing a complete bar), got {grace!r}"
        )
    tolerance = raw.get(REVISION_TOLERANCE_KEY, DEFAULT_REVISION_TOLERANCE)
    if (
        isinstance(tolerance, bool)
        or not isinstance(tolerance, (int, float))
        or not 0 <= tolerance <= 1
    ):
        raise UniverseError(
            f"{where}: {REVISION_TOLERANCE_KEY} must be a number from 0 to 1 (the relative "
            f"difference of a re-fetched bar that counts as a revision), got {tolerance!r}"
        )
    try:
        config, referenced = check_provider(
            {k: v for k, v in raw.items() if k not in UNIVERSE_PROVIDER_KEYS}
        )
    except ValueError as exc:
        raise UniverseError(f"{where}: {exc}") from None
    unknown = sorted(referenced - symbols)
    if unknown:
        raise UniverseError(f"{where}: names symbol(s) not in the universe: {', '.join(unknown)}")
    return config, grace, float(tolerance)
