"""How often the schedules run the pipeline, so monitors know when a success is overdue."""

from __future__ import annotations

from collections.abc import Iterable

from market_pipeline.domain.timeframes import Timeframe

DAILY_INTERVAL_SECONDS = 86400
INTRADAY_INTERVAL_SECONDS = 900
INTRADAY_MAX_SECONDS = 3600
"""Timeframes shorter than this (1m, 5m, 15m, 30m) are refreshed by the intraday schedule."""


def is_intraday(timeframe: str) -> bool:
    return Timeframe.parse(timeframe).seconds < INTRADAY_MAX_SECONDS


def expected_execution_interval(timeframes: Iterable[str]) -> int:
    """Seconds between two scheduled executions of a universe with ``timeframes``: the intraday
    schedule's period when it refreshes any of them, else the daily one's."""
    if any(is_intraday(tf) for tf in timeframes):
        return INTRADAY_INTERVAL_SECONDS
    return DAILY_INTERVAL_SECONDS
