"""Data lag of many pairs at once: each pair's calendar and grace, each timeframe's tolerance.

:class:`DataLagRules` evaluates :func:`~market_pipeline.domain.data_lag.data_lag` for a whole
universe. Pairs share few (calendar, timeframe, grace) schedules and, when current, one newest
due bar, so the due bar is found once per schedule and the count of missing bars once per
distinct stored bar: the cost grows with the pairs only by a comparison each.

A pair is *late beyond tolerance*, which degrades health, when it is ``late`` and its
``data_lag_seconds`` exceeds its timeframe's tolerance (:func:`default_tolerance_seconds`, which
absorbs the schedules' cadence, unless the universe sets ``data_lag_tolerance_seconds``). An
instant outside a pair's exchange calendar
(before 1990, after 2035) gives that pair no data-lag figures (``None``) instead of an error:
a report or a sensor must answer for the other pairs.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from market_pipeline.domain.bar_schedule import due_bar_open
from market_pipeline.domain.calendars import CalendarOutOfBounds, MarketCalendar, get_calendar
from market_pipeline.domain.data_lag import DATA_STATUSES, DataLag, stored_lag
from market_pipeline.domain.schedule_intervals import expected_execution_interval
from market_pipeline.domain.timeframes import Timeframe
from market_pipeline.domain.timestamps import ensure_utc

Pair = tuple[str, str]
ScheduleKey = tuple[str, str, int]
"""``(calendar, timeframe, grace seconds)``: pairs with the same key have the same due bars."""


def default_tolerance_seconds(timeframe: Timeframe) -> int:
    """The period of the schedule that refreshes ``timeframe`` plus one bar (at most an hour):
    a pair is only late beyond tolerance once a refresh was missed. 1m: 16 min, 15m: 30 min
    (refreshed every 15 min); 1h: 25 h, 1d: 25 h (refreshed daily)."""
    return expected_execution_interval([timeframe.code]) + min(timeframe.seconds, 3600)


@dataclass(frozen=True)
class PairSchedule:
    """When one pair's bars are due: its calendar's name and its provider's grace in seconds;
    and its asset class, which the coverage SLI is grouped by."""

    calendar: str
    grace_seconds: int = 0
    asset_class: str = "unknown"


class DataLagRules:
    """Per pair schedules and per timeframe tolerances; evaluates data lag for many pairs."""

    def __init__(
        self,
        schedules: Mapping[Pair, PairSchedule],
        *,
        tolerances: Mapping[str, int] | None = None,
    ) -> None:
        self._schedules = dict(schedules)
        self._keys: dict[Pair, ScheduleKey] = {
            (symbol, tf): (s.calendar, tf, s.grace_seconds)
            for (symbol, tf), s in self._schedules.items()
        }
        self._timeframes = {tf: Timeframe.parse(tf) for _, tf in self._schedules}
        self._calendars: dict[str, MarketCalendar] = {
            s.calendar: get_calendar(s.calendar) for s in self._schedules.values()
        }
        given = dict(tolerances or {})
        self._tolerances = {
            code: given.get(code, default_tolerance_seconds(tf))
            for code, tf in self._timeframes.items()
        }

    def schedule_of(self, pair: Pair) -> PairSchedule | None:
        return self._schedules.get(pair)

    @property
    def asset_classes(self) -> dict[str, str]:
        """Each scheduled symbol's asset class."""
        return {symbol: s.asset_class for (symbol, _), s in self._schedules.items()}

    def tolerance_seconds(self, timeframe: str) -> int:
        """The tolerance of ``timeframe`` (its default when no pair of it is scheduled)."""
        known = self._tolerances.get(timeframe)
        return default_tolerance_seconds(Timeframe.parse(timeframe)) if known is None else known

    def schedule_key(self, pair: Pair) -> ScheduleKey | None:
        """The schedule ``pair`` shares with others (None when it has none): pairs of one key
        have the same due bars, so :meth:`at` rates them together."""
        return self._keys.get(pair)

    def at(self, now: datetime) -> LagRating:
        """A rating of stored bars at ``now``, for many pairs (see :class:`LagRating`)."""
        return LagRating(self, ensure_utc(now, name="now"))

    def evaluate(
        self, rows: Iterable[tuple[str, str, datetime | None]], now: datetime
    ) -> dict[Pair, DataLag | None]:
        """``(symbol, timeframe, last_bar_at)`` rows -> each pair's :class:`DataLag`, or None
        for a pair without a schedule or outside its calendar's bounds. Pairs of one schedule
        with the same stored bar share one (immutable) result."""
        keys = self._keys
        rate = self.at(now).rate
        return {
            (symbol, timeframe): rate(keys.get((symbol, timeframe)), last)
            for symbol, timeframe, last in rows
        }

    def is_late_beyond_tolerance(self, timeframe: str, lag: DataLag | None) -> bool:
        return (
            lag is not None
            and lag.data_status == "late"
            and (lag.data_lag_seconds or 0.0) > self.tolerance_seconds(timeframe)
        )

    def _due(self, key: ScheduleKey, at: datetime) -> datetime | None:
        calendar, timeframe, grace = key
        try:
            return due_bar_open(
                self._calendars[calendar],
                self._timeframes[timeframe],
                at,
                grace=timedelta(seconds=grace),
            )
        except CalendarOutOfBounds:
            return None

    def _lag(self, key: ScheduleKey, last: datetime, at: datetime, due: datetime) -> DataLag | None:
        calendar, timeframe, grace = key
        try:
            return stored_lag(
                self._calendars[calendar],
                self._timeframes[timeframe],
                last,
                at,
                due,
                grace=timedelta(seconds=grace),
            )
        except CalendarOutOfBounds:
            return None


class LagRating:
    """Stored bars rated at one instant: each schedule's due bar is found once, and each
    (schedule, stored bar) rated once, so pairs that share both cost a dict lookup each."""

    def __init__(self, rules: DataLagRules, at: datetime) -> None:
        self._rules = rules
        self._at = at
        self._due: dict[ScheduleKey, datetime | None] = {}
        self._rated: dict[tuple[ScheduleKey, datetime | None], DataLag | None] = {}

    def rate(self, key: ScheduleKey | None, last: datetime | None) -> DataLag | None:
        """The :class:`DataLag` of a pair of schedule ``key`` whose newest stored bar is
        ``last`` (None: no schedule, or outside its calendar's bounds)."""
        if key is None:
            return None
        cache_key = (key, last)
        try:
            return self._rated[cache_key]
        except KeyError:
            pass
        if key not in self._due:
            self._due[key] = self._rules._due(key, self._at)
        due = self._due[key]
        lag: DataLag | None
        if due is None:
            lag = None
        elif last is None:
            lag = DataLag(None, due, None, None, "missing")
        elif last >= due:
            lag = DataLag(last, due, 0, 0.0, "current")
        else:
            lag = self._rules._lag(key, last, self._at, due)
        self._rated[cache_key] = lag
        return lag


def count_by_data_status(lags: Iterable[DataLag | None]) -> dict[str, int]:
    """Counts per data status, and ``unknown`` for pairs that could not be evaluated."""
    counts = dict.fromkeys((*DATA_STATUSES, "unknown"), 0)
    for lag in lags:
        counts["unknown" if lag is None else lag.data_status] += 1
    return counts


def parse_tolerances(raw: object, timeframes: Iterable[str]) -> dict[str, int]:
    """The ``data_lag_tolerance_seconds`` mapping of a universe file, checked: keys among the
    universe's ``timeframes``, values whole seconds from 0 to 30 days (``ValueError`` naming
    the entry otherwise)."""
    if raw is None:
        return {}
    allowed = tuple(timeframes)
    if not isinstance(raw, Mapping):
        raise ValueError(
            f"expected a mapping of timeframe to seconds such as {{1h: 7200}}, got {raw!r}"
        )
    out: dict[str, int] = {}
    for code, seconds in raw.items():
        if code not in allowed:
            raise ValueError(
                f"{code!r} is not a timeframe of the universe "
                f"(expected one of {', '.join(allowed)})"
            )
        if (
            isinstance(seconds, bool)
            or not isinstance(seconds, int)
            or not 0 <= seconds <= 30 * 86_400
        ):
            raise ValueError(f"{code}: expected whole seconds from 0 to 2592000, got {seconds!r}")
        out[str(code)] = seconds
    return out
