"""Health's data time: the data-status counts over every monitored pair and the pairs late
beyond tolerance, read grouped by stored bar.

Health needs no per-pair lag, only counts and the few late pairs, so ``feature_freshness`` is
read as one row per (timeframe, ``last_bar_at``) with the symbols that share it: most pairs of a
universe share a schedule and its newest bar, so a few hundred groups come back instead of a row
per pair, each group is rated once per schedule among its symbols, and only late groups turn
back into pairs. The figures are those of :func:`.data_lag_reads.read_lags` over every pair (a
test compares both). As of an instant (``report --at``) it rates the bars stored by then, pair
by pair.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterator, Mapping
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from market_pipeline.database.tables import feature_freshness as freshness_t
from market_pipeline.domain.data_lag import DATA_STATUSES
from market_pipeline.domain.lag_rules import DataLagRules, LagRating, ScheduleKey
from market_pipeline.observability.store import data_lag_reads
from market_pipeline.observability.store.context import StoreContext
from market_pipeline.observability.store.data_lag_reads import LateRow

Group = tuple[str, datetime | None, list[str]]
"""``(timeframe, last_bar_at, symbols)``: the stored pairs of one timeframe with one newest bar."""
Shared = tuple[str, ScheduleKey | None, datetime | None, Collection[str]]
"""``(timeframe, schedule, last_bar_at, symbols)``: monitored pairs rated as one."""


def read(ctx: StoreContext, now: datetime) -> tuple[dict[str, int], list[LateRow]] | None:
    """The :class:`~market_pipeline.domain.reports.DataStatusSummary` fields over every
    monitored pair and the pairs late beyond tolerance, most lagging first (None without
    rules)."""
    rules = ctx.lag_rules
    if rules is None:
        return None
    if ctx.as_of:
        lags = data_lag_reads.read_lags(ctx, now) or {}
        late = data_lag_reads.late_beyond_tolerance(ctx, lags)
        return data_lag_reads.summary(lags, late), late
    rows = ctx.sql.run("last_bar_groups", lambda: _groups_stmt(ctx), {}, fetch="all", write=False)
    groups = [
        (timeframe, last, json.loads(symbols) if isinstance(symbols, str) else symbols)
        for timeframe, last, symbols in rows
    ]
    tally = _Tally(rules, rules.at(now))
    for timeframe, key, last, symbols in _by_schedule(rules, ctx.schedule_members, groups):
        tally.add(timeframe, key, last, symbols)
    return tally.summary(), tally.late_pairs()


def _groups_stmt(ctx: StoreContext) -> Any:
    t = freshness_t
    symbols = (
        sa.func.array_agg(t.c.symbol, type_=postgresql.ARRAY(sa.Text))
        if ctx.sql.is_postgres
        else sa.func.json_group_array(t.c.symbol)
    )
    return sa.select(t.c.timeframe, t.c.last_bar_at, symbols).group_by(
        t.c.timeframe, t.c.last_bar_at
    )


def _by_schedule(
    rules: DataLagRules,
    members: Mapping[str, Mapping[ScheduleKey | None, frozenset[str]]] | None,
    groups: list[Group],
) -> Iterator[Shared]:
    """Each group split by the schedules of its monitored symbols (set intersections, no
    per-pair Python), then the monitored symbols of each schedule without a stored row
    (``last_bar_at`` None). ``members`` None: every stored pair is monitored."""
    if members is None:
        yield from _by_schedule_of_each(rules, groups)
        return
    found: dict[tuple[str, ScheduleKey | None], int] = {}
    for timeframe, last, symbols in groups:
        by_key = members.get(timeframe)
        if not by_key:
            continue
        stored = set(symbols)
        for key, monitored in by_key.items():
            shared = stored & monitored
            if shared:
                found[(timeframe, key)] = found.get((timeframe, key), 0) + len(shared)
                yield timeframe, key, last, shared
    for timeframe, by_key in members.items():
        for key, monitored in by_key.items():
            if found.get((timeframe, key), 0) < len(monitored):
                stored = {s for tf, _, symbols in groups if tf == timeframe for s in symbols}
                yield timeframe, key, None, monitored - stored


def _by_schedule_of_each(rules: DataLagRules, groups: list[Group]) -> Iterator[Shared]:
    for timeframe, last, symbols in groups:
        split: dict[ScheduleKey | None, list[str]] = {}
        for symbol in symbols:
            split.setdefault(rules.schedule_key((symbol, timeframe)), []).append(symbol)
        for key, shared in split.items():
            yield timeframe, key, last, shared


class _Tally:
    """Counts per data status, and the pairs late beyond tolerance."""

    def __init__(self, rules: DataLagRules, rating: LagRating) -> None:
        self._rules = rules
        self._rating = rating
        self._counts = dict.fromkeys((*DATA_STATUSES, "unknown"), 0)
        self._late: list[LateRow] = []

    def add(
        self,
        timeframe: str,
        key: ScheduleKey | None,
        last: datetime | None,
        symbols: Collection[str],
    ) -> None:
        lag = self._rating.rate(key, last)
        self._counts["unknown" if lag is None else lag.data_status] += len(symbols)
        if lag is not None and self._rules.is_late_beyond_tolerance(timeframe, lag):
            self._late.extend(
                data_lag_reads.late_row((symbol, timeframe), lag, self._rules) for symbol in symbols
            )

    def summary(self) -> dict[str, int]:
        return {
            **{f"{status}_count": count for status, count in self._counts.items()},
            "late_beyond_tolerance_count": len(self._late),
        }

    def late_pairs(self) -> list[LateRow]:
        self._late.sort(key=data_lag_reads.most_lagging_first)
        return self._late
