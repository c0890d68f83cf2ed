"""What every part of the store shares: the statement runner, the clock and the settings."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy.engine import Engine

from market_pipeline.domain.lag_rules import DataLagRules, ScheduleKey
from market_pipeline.domain.timestamps import ensure_utc
from market_pipeline.observability.store.checks import check_key
from market_pipeline.observability.store.statements import Statements

Pair = tuple[str, str]


@dataclass(frozen=True)
class StoreContext:
    """One store's engine and settings, handed to the per-table functions."""

    sql: Statements
    clock: Callable[[], datetime]
    failure_alert_threshold: int
    monitored: tuple[Pair, ...] | None
    monitored_json: str = field(repr=False)
    lag_rules: DataLagRules | None = None
    as_of: bool = False
    """Reports as of the clock's instant (``report --at``): data time from the bars stored by
    then, executions started by then."""
    schedule_members: dict[str, dict[ScheduleKey | None, frozenset[str]]] | None = field(
        default=None, repr=False
    )
    """Per timeframe, the monitored symbols of each schedule in ``lag_rules`` (None: those
    without one), grouped once."""

    @classmethod
    def build(
        cls,
        engine: Engine,
        *,
        monitored_pairs: Sequence[Pair] | None,
        failure_alert_threshold: int,
        clock: Callable[[], datetime],
        lag_rules: DataLagRules | None = None,
        as_of: bool = False,
    ) -> StoreContext:
        threshold = failure_alert_threshold
        if isinstance(threshold, bool) or not isinstance(threshold, int) or threshold < 1:
            raise ValueError(
                f"failure_alert_threshold must be a positive integer, got {threshold!r}"
            )
        monitored: tuple[Pair, ...] | None = None
        if monitored_pairs is not None:
            pairs: dict[Pair, None] = {}
            for symbol, timeframe in monitored_pairs:
                pairs[(check_key(symbol, "symbol"), check_key(timeframe, "timeframe"))] = None
            monitored = tuple(pairs)
        return cls(
            sql=Statements(engine),
            clock=clock,
            failure_alert_threshold=threshold,
            monitored=monitored,
            # The monitored pairs as the one bound parameter of the freshness reads, built once.
            monitored_json=json.dumps([list(pair) for pair in monitored or ()]),
            lag_rules=lag_rules,
            as_of=as_of,
            schedule_members=None
            if lag_rules is None or monitored is None
            else _schedule_members(lag_rules, monitored),
        )

    @property
    def engine(self) -> Engine:
        return self.sql.engine

    def now(self) -> datetime:
        return ensure_utc(self.clock(), name="clock()")


def _schedule_members(
    rules: DataLagRules, pairs: Sequence[Pair]
) -> dict[str, dict[ScheduleKey | None, frozenset[str]]]:
    grouped: dict[str, dict[ScheduleKey | None, set[str]]] = {}
    for symbol, timeframe in pairs:
        key = rules.schedule_key((symbol, timeframe))
        grouped.setdefault(timeframe, {}).setdefault(key, set()).add(symbol)
    return {
        timeframe: {key: frozenset(symbols) for key, symbols in by_key.items()}
        for timeframe, by_key in grouped.items()
    }
