"""Splitting a selection of pairs into runs: every chosen pair in exactly one range."""

from __future__ import annotations

import itertools

import pytest

from market_pipeline.domain.partition_keys import pair_of, pairs_in_range, partition_ranges
from market_pipeline.domain.universe import Universe, parse_universe


def _no_provider_check(block):
    return dict(block), frozenset()


SYMBOLS = [f"S{i:02d}" for i in range(10)]
TIMEFRAMES = ["5m", "1h", "1d"]


@pytest.fixture
def universe() -> Universe:
    return parse_universe(
        {
            "provider": {"kind": "synthetic"},
            "symbols": [{"symbol": s, "asset_class": "equity"} for s in SYMBOLS],
            "timeframes": TIMEFRAMES,
        },
        source="test",
        check_provider=_no_provider_check,
    )


def _covered(universe: Universe, ranges: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Every pair each range covers (the cross product of its two ends), duplicates kept."""
    out = []
    for start, end in ranges:
        (s0, t0), (s1, t1) = pair_of(start), pair_of(end)
        symbols = universe.symbol_names
        tfs = universe.timeframes
        out += itertools.product(
            symbols[symbols.index(s0) : symbols.index(s1) + 1],
            tfs[tfs.index(t0) : tfs.index(t1) + 1],
        )
    return out


def test_without_a_limit_one_range_covers_the_universe(universe):
    assert partition_ranges(universe) == [("S00|5m", "S09|1d")]


@pytest.mark.parametrize("limit", [1, 2, 3, 4, 7, 9, 12, 30, 31])
def test_a_limit_splits_into_ranges_of_at_most_that_many_pairs_covering_each_pair_once(
    universe, limit
):
    ranges = partition_ranges(universe, max_partitions_per_run=limit)
    covered = _covered(universe, ranges)
    assert sorted(covered) == sorted(itertools.product(SYMBOLS, TIMEFRAMES))
    assert all(pairs_in_range(universe, s, e) <= limit for s, e in ranges)
    assert [pairs_in_range(universe, s, e) for s, e in ranges] == [
        len(_covered(universe, [r])) for r in ranges
    ]


def test_whole_symbols_go_together_when_they_fit(universe):
    ranges = partition_ranges(universe, max_partitions_per_run=7)
    assert ranges[:2] == [("S00|5m", "S01|1d"), ("S02|5m", "S03|1d")]
    assert len(ranges) == 5


def test_a_selection_with_gaps_is_split_within_each_block(universe):
    chosen = ["S00", "S01", "S02", "S05", "S06"]
    ranges = partition_ranges(universe, chosen, ["5m", "1d"], max_partitions_per_run=4)
    assert sorted(_covered(universe, ranges)) == sorted(itertools.product(chosen, ["5m", "1d"]))
    assert all(pairs_in_range(universe, s, e) <= 4 for s, e in ranges)


@pytest.mark.parametrize("limit", [0, -1, True, 2.5])
def test_a_limit_must_be_a_positive_integer(universe, limit):
    with pytest.raises(ValueError, match="partitions per run must be a positive integer"):
        partition_ranges(universe, max_partitions_per_run=limit)
