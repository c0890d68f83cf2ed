"""The coverage SLI and its error budget: is each monitored pair's newest due bar stored, or
at least not overdue?

Each freshness refresh takes a *sample*: per (timeframe, asset class), the monitored pairs, how
many are ``current``, ``late`` and late beyond their timeframe's tolerance
(:mod:`market_pipeline.domain.lag_rules`). A pair is *covered* when it is current or late within
tolerance: the tolerance absorbs the schedules' cadence (a 1m pair refreshed every 15 minutes is
late by up to 15 minutes by design), so only a missed refresh, a stuck vendor or a pair with no
bar counts against the objective. Over a window, the SLI is the sum of covered over the sum of
monitored of the samples in it, so every sample weighs as many pairs as it counted. Against an
objective (say 0.99):

- the *burn rate* of a window is its bad share over the allowed bad share,
  ``(1 - sli) / (1 - objective)``: 1 spends the budget exactly over the SLO period, above 1
  faster;
- the *error budget remaining* over the SLO period (30 days) is ``1 - burn rate`` of that
  window: 1 untouched, 0 spent, negative overspent. While fewer than 30 days of samples exist it
  is the budget left at the rate seen so far.

Pairs whose data status is unknown (no calendar, outside its bounds) are left out of a sample.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from market_pipeline.domain.data_lag import DataLag
from market_pipeline.domain.reports import CoverageReport, CoverageWindow

SLO_PERIOD = "30d"
WINDOWS = {"1h": 3600, "24h": 86_400, "30d": 30 * 86_400}
"""The windows the SLI is given over, by name, in seconds."""

__all__ = ["SLO_PERIOD", "WINDOWS", "CoverageReport", "error_budget_remaining", "sample_counts"]


def sample_counts(
    lags: Mapping[tuple[str, str], DataLag | None],
    asset_class_of: Mapping[str, str],
    beyond_tolerance: Callable[[str, DataLag], bool],
) -> dict[tuple[str, str], tuple[int, int, int, int]]:
    """``(timeframe, asset_class) -> (monitored, current, late, late beyond tolerance)`` of one
    sample; ``beyond_tolerance(timeframe, lag)`` says whether a late pair is beyond it."""
    counts: dict[tuple[str, str], list[int]] = {}
    for (symbol, timeframe), lag in lags.items():
        if lag is None:
            continue
        group = counts.setdefault((timeframe, asset_class_of.get(symbol, "unknown")), [0] * 4)
        group[0] += 1
        group[1] += lag.data_status == "current"
        group[2] += lag.data_status == "late"
        group[3] += beyond_tolerance(timeframe, lag)
    return {key: (g[0], g[1], g[2], g[3]) for key, g in counts.items()}


def window(
    name: str, samples: int, monitored: int, covered: int, objective: float
) -> CoverageWindow:
    """The window ``name`` from the sums of its samples."""
    sli = None if monitored == 0 else covered / monitored
    return CoverageWindow(
        window=name,
        window_seconds=WINDOWS[name],
        samples=samples,
        sli=sli,
        burn_rate=None if sli is None else (1.0 - sli) / (1.0 - objective),
    )


def error_budget_remaining(windows: Iterable[CoverageWindow]) -> float | None:
    """``1 - burn rate`` of the SLO period's window (None without samples)."""
    for w in windows:
        if w.window == SLO_PERIOD:
            return None if w.burn_rate is None else 1.0 - w.burn_rate
    return None
