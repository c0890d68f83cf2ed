"""Data time over a store's pairs: data lags and the coverage SLI (``store.data_time``)."""

from __future__ import annotations

from datetime import datetime

from market_pipeline.domain.coverage import CoverageReport
from market_pipeline.domain.data_lag import DataLag
from market_pipeline.domain.timestamps import ensure_utc
from market_pipeline.observability.store import coverage, data_lag_reads
from market_pipeline.observability.store.context import Pair, StoreContext


class DataTime:
    """Each pair's data lag, and the coverage SLI's samples and report."""

    def __init__(self, ctx: StoreContext) -> None:
        self._ctx = ctx

    def _at(self, now: datetime | None) -> datetime:
        return self._ctx.now() if now is None else ensure_utc(now, name="now")

    def lags(self, *, now: datetime | None = None) -> dict[Pair, DataLag | None] | None:
        """Each monitored pair's data lag at ``now`` (None when the store knows no calendars)."""
        return data_lag_reads.read_lags(self._ctx, self._at(now))

    def tolerance_seconds(self, timeframe: str) -> int | None:
        rules = self._ctx.lag_rules
        return None if rules is None else rules.tolerance_seconds(timeframe)

    def record_coverage_sample(
        self,
        *,
        now: datetime | None = None,
        retention_days: int = 35,
        lags: dict[Pair, DataLag | None] | None = None,
    ) -> int:
        """Store a coverage sample at ``now`` (per timeframe and asset class: the monitored
        pairs and how many are ``current``), delete samples older than ``retention_days``;
        return the rows written (0 when the store knows no calendars). ``lags``: what
        :meth:`lags` returned for ``now``, so that the pairs are not read twice."""
        return coverage.record_sample(self._ctx, self._at(now), retention_days, lags)

    def coverage_report(self, *, objective: float = 0.99) -> CoverageReport:
        """The coverage SLI over 1 h, 24 h and 30 d against ``objective``, the burn rates, the
        error budget left over 30 d, and the newest sample (``/admin/features/coverage``)."""
        return coverage.report(self._ctx, objective)
