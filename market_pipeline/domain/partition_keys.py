"""Partition keys of (symbol, timeframe) pairs, and the key ranges that cover a selection.

Dagster joins the dimensions of a multi-partition key with ``|`` in alphabetical order of the
dimension names (``symbol``, ``timeframe``): the pair (AAPL, 1d) is ``AAPL|1d``.
"""

from __future__ import annotations

from collections.abc import Sequence

from market_pipeline.domain.universe import Universe, UniverseError

SEPARATOR = "|"

Pair = tuple[str, str]


def key_of(symbol: str, timeframe: str) -> str:
    """The partition key of a pair: ``AAPL|1d``."""
    return f"{symbol}{SEPARATOR}{timeframe}"


def split_key(key: str) -> Pair | None:
    """(symbol, timeframe) of ``SYMBOL|timeframe``; ``None`` when ``key`` is not of that form."""
    symbol, sep, timeframe = str(key).partition(SEPARATOR)
    return (symbol, timeframe) if sep and symbol and timeframe else None


def pair_of(key: str) -> Pair:
    """(symbol, timeframe) of ``SYMBOL|timeframe``; ``ValueError`` naming any other key."""
    pair = split_key(key)
    if pair is None:
        raise ValueError(f"partition key {key!r} is not of the form SYMBOL|timeframe")
    return pair


def contiguous_blocks(chosen: Sequence[str], order: Sequence[str]) -> list[tuple[str, str]]:
    """(first, last) of each run of consecutive items of ``order`` that are all chosen."""
    wanted = set(chosen)
    blocks: list[tuple[str, str]] = []
    start: str | None = None
    prev: str | None = None
    for item in order:
        if item in wanted:
            start = start or item
            prev = item
        elif start is not None and prev is not None:
            blocks.append((start, prev))
            start = None
    if start is not None and prev is not None:
        blocks.append((start, prev))
    return blocks


def partition_ranges(
    universe: Universe,
    symbols: Sequence[str] | None = None,
    timeframes: Sequence[str] | None = None,
) -> list[tuple[str, str]]:
    """Partition-key ranges (``"A|1d"``, ``"Z|1h"``) covering exactly the chosen pairs.

    A range covers the cross product of its symbol and timeframe ranges, so one range per pair
    of contiguous symbol and timeframe blocks (in universe order) covers the selection exactly.
    """
    chosen_symbols = list(symbols or universe.symbol_names)
    chosen_timeframes = list(timeframes or universe.timeframes)
    unknown = sorted(set(chosen_symbols) - set(universe.symbol_names))
    if unknown:
        raise UniverseError(f"not in the universe {universe.source}: {', '.join(unknown)}")
    unknown = sorted(set(chosen_timeframes) - set(universe.timeframes))
    if unknown:
        raise UniverseError(
            f"timeframes not in the universe {universe.source}: {', '.join(unknown)}"
        )
    return [
        (key_of(s0, t0), key_of(s1, t1))
        for s0, s1 in contiguous_blocks(chosen_symbols, universe.symbol_names)
        for t0, t1 in contiguous_blocks(chosen_timeframes, universe.timeframes)
    ]
