"""Refresh a batch of (symbol, timeframe) pairs: fetch, validate, store bars, compute features.

The Dagster assets call this once per run with every partition of the run, so the work is batched
across pairs (one bulk write per table), while each pair succeeds or fails on its own: a pair whose
provider call, validation or feature computation raises is reported as failed with its error text,
and the other pairs are stored as usual.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pandas as pd

from market_pipeline.domain.features import compute_features, compute_features_many
from market_pipeline.domain.universe import Universe
from market_pipeline.market_data.fetching import Fetched, fetch_pairs, find_revisions
from market_pipeline.market_data.pair_locks import locked_pairs
from market_pipeline.market_data.repository import MarketDataRepository, Pair
from market_pipeline.providers.base import MarketDataProvider

log = logging.getLogger(__name__)

# Pairs per bulk write and per batched feature pass: large enough that per-call overheads vanish
# (100 pairs of ~2,000 bars are ~200k rows per COPY), small enough to overlap with bookkeeping.
DEFAULT_CHUNK_SIZE = 100
# The first chunk is small so the caller's bookkeeping starts after ~1 s instead of waiting for a
# whole chunk; every later chunk is computed while the caller consumes the ones before it.
FIRST_CHUNK_SIZE = 10


@dataclass
class PairOutcome:
    """What happened to one pair in one refresh."""

    symbol: str
    timeframe: str
    asset_class: str
    started_at: datetime
    completed_at: datetime | None = None
    error: str | None = None
    rows_fetched: int = 0
    rows_inserted: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    validated: bool = False
    first_bar_at: datetime | None = None
    last_bar_at: datetime | None = None
    bar_count: int = 0
    features_computed: int = 0
    revised_bars: int = 0
    """Overlap bars that differed from the stored ones (a revision of the vendor's history)."""
    history_refetched: bool = False
    """The whole history was fetched again after a revision, and all features recomputed."""

    @property
    def pair(self) -> Pair:
        return (self.symbol, self.timeframe)

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def rows_rejected(self) -> int:
        return sum(self.rejected.values())

    def fail(self, stage: str, exc: BaseException) -> None:
        text = str(exc).strip() or type(exc).__name__
        self.error = f"{stage} failed for {self.symbol} {self.timeframe}: {text}"
        log.warning("%s", self.error)


def _utc(value) -> datetime:
    return pd.Timestamp(value).tz_convert("UTC").to_pydatetime()


def refresh_pairs(
    pairs: Sequence[Pair],
    *,
    universe: Universe,
    provider: MarketDataProvider,
    repository: MarketDataRepository,
    fetch: bool = True,
    features: bool = True,
    now: datetime | None = None,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> list[PairOutcome]:
    """Bring ``pairs`` up to date; return one outcome per pair, in the order given.

    With ``fetch`` new bars come from the provider (incrementally after the newest stored bar,
    up to ``provider.fetch_concurrency`` pairs at once); when the overlap bars it re-reads differ
    from the stored ones beyond ``universe.revision_tolerance``, the pair's whole history is
    fetched again and all of its features rewritten;
    with ``features`` the features of every pair with bars are recomputed over the full stored
    history (EMA-family values depend on all of it) and the rows from the first new bar on are
    written, so stored values always equal a full-history computation.
    """
    until = now or clock()
    outcomes = {
        pair: PairOutcome(pair[0], pair[1], universe.asset_class_of(pair[0]), started_at=clock())
        for pair in pairs
    }
    latest = repository.latest_bar_times(pairs)
    first_new_bar: dict[Pair, pd.Timestamp | None] = {}
    clean: dict[Pair, pd.DataFrame] = {}

    if fetch:
        results = fetch_pairs(
            list(outcomes),
            provider=provider,
            asset_class_of=universe.asset_class_of,
            since=latest,
            until=until,
        )
        for pair, result in results.items():
            _take(outcomes[pair], result, clean, first_new_bar)
        _refetch_revised(
            outcomes,
            clean,
            first_new_bar,
            find_revisions(clean, latest, repository, tolerance=universe.revision_tolerance),
            provider=provider,
            universe=universe,
            until=until,
        )
        new_pairs = [p for p in clean if p not in latest]
        try:
            written = repository.upsert_bars(clean, new_pairs=new_pairs)
        except Exception as exc:  # noqa: BLE001 - the whole write failed: every pair in it did
            for pair in clean:
                outcomes[pair].fail("storing bars", exc)
            written = {}
        for pair, count in written.items():
            outcomes[pair].rows_inserted = count
        for pair, bars in clean.items():
            # The newest stored bar, also for a bars-only run (features overwrite it with the
            # history's last bar): what bars_current_check rates.
            stored = latest.get(pair)
            fetched = _utc(bars["ts"].iloc[-1]) if len(bars) else None
            outcomes[pair].last_bar_at = (
                max(t for t in (stored, fetched) if t) if (stored or fetched) else None
            )

    if features:
        # A pair stored for the first time has its whole history in hand: no need to read it back.
        known = {p: f for p, f in clean.items() if p not in latest and outcomes[p].ok}
        zones = {pair: universe.session_timezone_of(pair[0]) for pair in outcomes}
        _refresh_features(
            outcomes, repository, latest, first_new_bar if fetch else None, known, zones
        )

    for outcome in outcomes.values():
        outcome.completed_at = clock()
    return [outcomes[pair] for pair in pairs]


def _take(
    outcome: PairOutcome,
    result: Fetched | Exception,
    clean: dict[Pair, pd.DataFrame],
    first_new_bar: dict[Pair, pd.Timestamp | None],
) -> None:
    """Record one pair's fetch in its outcome, and its clean bars in ``clean``."""
    if isinstance(result, Exception):
        outcome.fail("fetching bars", result)
        clean.pop(outcome.pair, None)
        return
    outcome.rows_fetched += result.rows_fetched
    outcome.validated = True
    rejected = {k: int(v) for k, v in result.checked.rejected.items() if v}
    for reason, count in rejected.items():
        outcome.rejected[reason] = outcome.rejected.get(reason, 0) + count
    if rejected:
        log.warning(
            "rejected %d bad bar rows of %s %s: %s",
            sum(rejected.values()),
            outcome.symbol,
            outcome.timeframe,
            rejected,
        )
    bars = result.checked.bars
    clean[outcome.pair] = bars
    first_new_bar[outcome.pair] = bars["ts"].iloc[0] if len(bars) else None


def _refetch_revised(
    outcomes: dict[Pair, PairOutcome],
    clean: dict[Pair, pd.DataFrame],
    first_new_bar: dict[Pair, pd.Timestamp | None],
    revised: dict[Pair, int],
    *,
    provider: MarketDataProvider,
    universe: Universe,
    until: datetime,
) -> None:
    """Fetch the whole history of each pair whose overlap bars were revised; its features are
    then rewritten from its first bar on (``first_new_bar``)."""
    if not revised:
        return
    results = fetch_pairs(
        list(revised),
        provider=provider,
        asset_class_of=universe.asset_class_of,
        since={},
        until=until,
    )
    for pair, result in results.items():
        outcome = outcomes[pair]
        outcome.revised_bars = revised[pair]
        log.warning(
            "revised history of %s %s: %d overlap bar(s) differ from the stored ones beyond "
            "a relative %g; fetching its whole history again and recomputing all its features",
            pair[0],
            pair[1],
            revised[pair],
            universe.revision_tolerance,
        )
        if isinstance(result, Exception):
            outcome.fail("re-fetching revised history", result)
            clean.pop(pair, None)
            continue
        outcome.history_refetched = True
        _take(outcome, result, clean, first_new_bar)


def chunked(pairs: Sequence[Pair], chunk_size: int, first_chunk_size: int) -> list[list[Pair]]:
    """``pairs`` in order, split into a first chunk of ``first_chunk_size`` (at most
    ``chunk_size``) and then chunks of ``chunk_size``."""
    for name, value in (("chunk_size", chunk_size), ("first_chunk_size", first_chunk_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    first = min(first_chunk_size, chunk_size)
    chunks = [list(pairs[:first])] if pairs else []
    chunks += [list(pairs[i : i + chunk_size]) for i in range(first, len(pairs), chunk_size)]
    return chunks


def refresh_in_chunks(
    pairs: Sequence[Pair],
    *,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    first_chunk_size: int = FIRST_CHUNK_SIZE,
    workers: int = 1,
    after_chunk: Callable[[list[PairOutcome]], None] | None = None,
    **refresh_kwargs,
) -> Iterator[list[PairOutcome]]:
    """:func:`refresh_pairs` over ``pairs`` in chunks, yielding each chunk's outcomes in order.

    Chunks are refreshed by ``workers`` threads, up to ``workers`` chunks ahead of the one the
    caller consumes, so the caller's per-pair bookkeeping (Dagster writes a few events per
    partition) overlaps with fetching, computing and writing the next chunks instead of following
    them; chunks also bound memory on large universes. With two workers one chunk's COPY runs on
    the server while the other chunk is computed (PostgreSQL; SQLite has one writer at a time, so
    more than one worker only waits there). ``after_chunk`` runs in the worker after each chunk.
    Each chunk is refreshed under its pairs' advisory locks on PostgreSQL, so runs sharing pairs
    take turns on them (:mod:`market_pipeline.market_data.pair_locks`).

    A chunk that raises as a whole (a database error; a pair's own failure never raises) raises
    here when its turn comes, and no later chunk is started. With two workers the chunk after it
    is already running and finishes first: its pairs are stored (idempotently) but never yielded,
    so the caller reports them as not refreshed and the next run stores them again.
    """
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be a positive integer, got {workers!r}")
    chunks = chunked(pairs, chunk_size, first_chunk_size)
    if not chunks:
        return

    repository: MarketDataRepository = refresh_kwargs["repository"]

    def work(chunk: list[Pair]) -> list[PairOutcome]:
        # Another run refreshing some of these pairs finishes them first (pair_locks).
        with locked_pairs(repository.engine, chunk):
            outcomes = refresh_pairs(chunk, **refresh_kwargs)
            if after_chunk is not None:
                after_chunk(outcomes)
        return outcomes

    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="market-refresh") as pool:
        futures: list[Future[list[PairOutcome]] | None] = [
            pool.submit(work, chunk) for chunk in chunks[:workers]
        ]
        for index in range(len(chunks)):
            future = futures[index]
            assert future is not None  # each index is consumed once, in order
            outcomes = future.result()
            futures[index] = None  # let the chunk's outcomes go once consumed
            if index + workers < len(chunks):
                futures.append(pool.submit(work, chunks[index + workers]))
            yield outcomes


def _features_of(
    ready: dict[Pair, pd.DataFrame],
    outcomes: dict[Pair, PairOutcome],
    session_timezones: dict[Pair, str],
) -> dict[Pair, pd.DataFrame]:
    """Features of all pairs in one batched pass; if the batch raises, pair by pair, so that a
    numeric problem in one series fails that pair only."""
    if not ready:
        return {}
    try:
        return compute_features_many(
            ((pair, bars, outcomes[pair].asset_class, pair[1]) for pair, bars in ready.items()),
            session_timezones=session_timezones,
        )
    except Exception:  # noqa: BLE001 - find the culprit below
        log.warning("batched feature computation failed; retrying pair by pair")
    out: dict[Pair, pd.DataFrame] = {}
    for pair, bars in ready.items():
        try:
            out[pair] = compute_features(
                bars,
                asset_class=outcomes[pair].asset_class,
                timeframe=pair[1],
                session_tz=session_timezones.get(pair),
            )
        except Exception as exc:  # noqa: BLE001
            outcomes[pair].fail("computing features", exc)
    return out


def _refresh_features(
    outcomes: dict[Pair, PairOutcome],
    repository: MarketDataRepository,
    latest: dict[Pair, datetime],
    first_new_bar: dict[Pair, pd.Timestamp | None] | None,
    known_history: dict[Pair, pd.DataFrame],
    session_timezones: dict[Pair, str],
) -> None:
    live = [pair for pair, outcome in outcomes.items() if outcome.ok]
    history = dict(known_history)
    history.update(repository.load_bars([p for p in live if p not in known_history]))
    ready: dict[Pair, pd.DataFrame] = {}
    for pair in live:
        outcome = outcomes[pair]
        bars = history.get(pair)
        if bars is None or bars.empty:
            outcome.fail("computing features", ValueError("no bars stored for this pair"))
            continue
        outcome.bar_count = len(bars)
        outcome.first_bar_at = _utc(bars["ts"].iloc[0])
        outcome.last_bar_at = _utc(bars["ts"].iloc[-1])
        ready[pair] = bars
    features = _features_of(ready, outcomes, session_timezones)
    computed: dict[Pair, pd.DataFrame] = {}
    for pair, frame in features.items():
        if first_new_bar is not None and pair in latest:
            # Incremental: rows before the first newly fetched bar are unchanged (features are
            # causal), so only the tail is written.
            start = first_new_bar.get(pair)
            computed[pair] = frame.iloc[0:0] if start is None else frame[frame["ts"] >= start]
        else:
            computed[pair] = frame
    new_pairs = [p for p in computed if p not in latest]
    try:
        repository.upsert_features(computed, new_pairs=new_pairs)
    except Exception as exc:  # noqa: BLE001
        for pair in computed:
            outcomes[pair].fail("storing features", exc)
        return
    for pair, frame in computed.items():
        outcomes[pair].features_computed = len(frame)
