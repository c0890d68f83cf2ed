"""The fetch stage of a refresh: pairs fetched concurrently and validated, and the overlap bars
compared with the stored ones to find revised histories."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime

import pandas as pd

from market_pipeline.domain.revisions import revised_bar_count
from market_pipeline.domain.timeframes import Timeframe
from market_pipeline.domain.validation import BarValidation, validate_bars
from market_pipeline.market_data.repository import MarketDataRepository, Pair
from market_pipeline.providers.base import MarketDataProvider


@dataclass(frozen=True)
class Fetched:
    """One pair's fetch: the rows the provider returned and their validation."""

    rows_fetched: int
    checked: BarValidation


def fetch_pairs(
    pairs: Sequence[Pair],
    *,
    provider: MarketDataProvider,
    asset_class_of: Callable[[str], str],
    since: Mapping[Pair, datetime],
    until: datetime,
) -> dict[Pair, Fetched | Exception]:
    """Fetch and validate each pair (``since`` missing: the whole history).

    Up to ``provider.fetch_concurrency`` pairs are fetched at once (network providers wait on
    the vendor, not the CPU); a pair whose fetch or validation raises gets its exception, and
    the others go on. Results come back in the order of ``pairs``.
    """

    def one(pair: Pair) -> Fetched | Exception:
        try:
            raw = provider.fetch_bars(
                pair[0],
                asset_class_of(pair[0]),
                Timeframe.parse(pair[1]),
                since=since.get(pair),
                until=until,
            )
            return Fetched(len(raw), validate_bars(raw, timeframe=Timeframe.parse(pair[1])))
        except Exception as exc:  # noqa: BLE001 - one pair's failure must not stop the batch
            return exc

    workers = max(1, min(int(provider.fetch_concurrency), len(pairs)))
    if workers == 1:
        return {pair: one(pair) for pair in pairs}
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="market-fetch") as pool:
        return dict(zip(pairs, pool.map(one, pairs), strict=True))


def find_revisions(
    fetched: Mapping[Pair, pd.DataFrame],
    latest: Mapping[Pair, datetime],
    repository: MarketDataRepository,
    *,
    tolerance: float,
) -> dict[Pair, int]:
    """Pairs whose re-fetched overlap bars (stamped at or before the newest stored bar) differ
    from the stored ones beyond ``tolerance``, with the number of such bars."""
    overlaps = {
        pair: bars[bars["ts"] <= pd.Timestamp(latest[pair])]
        for pair, bars in fetched.items()
        if pair in latest and len(bars)
    }
    overlaps = {pair: bars for pair, bars in overlaps.items() if len(bars)}
    if not overlaps:
        return {}
    # One read per timeframe from its earliest overlap bar: a chunk mixing 1m and 1d pairs would
    # otherwise read days of 1m bars to compare a few.
    stored: dict[Pair, pd.DataFrame] = {}
    for timeframe in sorted({pair[1] for pair in overlaps}):
        group = [pair for pair in overlaps if pair[1] == timeframe]
        start = min(overlaps[pair]["ts"].iloc[0] for pair in group).to_pydatetime()
        stored.update(repository.load_bars_since(group, start))
    revised: dict[Pair, int] = {}
    for pair, bars in overlaps.items():
        count = revised_bar_count(bars, stored.get(pair, bars.iloc[0:0]), tolerance=tolerance)
        if count:
            revised[pair] = count
    return revised
