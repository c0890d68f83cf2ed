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
    *,
    max_partitions_per_run: int | None = None,
) -> list[tuple[str, str]]:
    """Partition-key ranges (``"A|1d"``, ``"Z|1h"``) covering exactly the chosen pairs.

    A range covers the cross product of its symbol and timeframe ranges, so one range per pair
    of contiguous symbol and timeframe blocks (in universe order) covers the selection exactly.
    With ``max_partitions_per_run`` each block is cut further into ranges of at most that many
    pairs: whole symbols (all the block's timeframes) at a time, or, when one symbol's timeframes
    alone are more, one symbol with part of its timeframes.
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
    check_partitions_per_run(max_partitions_per_run)
    ranges: list[tuple[str, str]] = []
    for s0, s1 in contiguous_blocks(chosen_symbols, universe.symbol_names):
        for t0, t1 in contiguous_blocks(chosen_timeframes, universe.timeframes):
            block_symbols = _between(universe.symbol_names, s0, s1)
            block_timeframes = _between(universe.timeframes, t0, t1)
            ranges += _cut(block_symbols, block_timeframes, max_partitions_per_run)
    return ranges


def check_partitions_per_run(value: int | None) -> None:
    """``ValueError`` unless ``value`` is ``None`` (no limit) or a positive integer."""
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise ValueError(f"partitions per run must be a positive integer, got {value!r}")


def symbols_per_run(timeframe_count: int, max_partitions_per_run: int) -> int:
    """Whole symbols (each with ``timeframe_count`` timeframes) that fit in one run; at least 1."""
    return max(1, max_partitions_per_run // max(1, timeframe_count))


def _between(order: Sequence[str], first: str, last: str) -> list[str]:
    return list(order[order.index(first) : order.index(last) + 1])


def _cut(symbols: list[str], timeframes: list[str], limit: int | None) -> list[tuple[str, str]]:
    """Ranges of at most ``limit`` pairs over the block ``symbols`` x ``timeframes``."""
    if limit is None:
        return [(key_of(symbols[0], timeframes[0]), key_of(symbols[-1], timeframes[-1]))]
    if len(timeframes) > limit:
        return [
            (key_of(s, part[0]), key_of(s, part[-1]))
            for s in symbols
            for part in (timeframes[i : i + limit] for i in range(0, len(timeframes), limit))
        ]
    step = symbols_per_run(len(timeframes), limit)
    return [
        (key_of(part[0], timeframes[0]), key_of(part[-1], timeframes[-1]))
        for part in (symbols[i : i + step] for i in range(0, len(symbols), step))
    ]


def pairs_in_range(universe: Universe, start: str, end: str) -> int:
    """How many pairs the range ``start...end`` covers (the cross product of its two ranges)."""
    (s0, t0), (s1, t1) = pair_of(start), pair_of(end)
    return len(_between(universe.symbol_names, s0, s1)) * len(_between(universe.timeframes, t0, t1))
