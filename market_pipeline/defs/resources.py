"""Resources: the database of our tables and the market-data source of the universe."""

from __future__ import annotations

import dagster as dg
from pydantic import PrivateAttr
from sqlalchemy.engine import Engine

from market_pipeline.config.universe_file import load_universe
from market_pipeline.database.engine import make_engine
from market_pipeline.database.migrations import ensure_current
from market_pipeline.domain.universe import Universe
from market_pipeline.market_data.repository import MarketDataRepository
from market_pipeline.observability.store import ObservabilityStore
from market_pipeline.providers import MarketDataProvider, build_provider


class DatabaseResource(dg.ConfigurableResource):
    """The database holding market data and the observability tables (SQLite or PostgreSQL)."""

    url: str
    failure_alert_threshold: int = 3
    coverage_retention_days: int = 35
    coverage_objective: float = 0.99

    _engine: Engine | None = PrivateAttr(default=None)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        self._engine = make_engine(self.url)
        ensure_current(self._engine)

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None

    @property
    def engine(self) -> Engine:
        if self._engine is None:  # used outside a run (e.g. direct invocation in a script)
            self._engine = make_engine(self.url)
        return self._engine

    def repository(self) -> MarketDataRepository:
        return MarketDataRepository(self.engine)

    def store(self, universe: Universe | None = None) -> ObservabilityStore:
        """The store over this database, monitoring ``universe``'s pairs on its calendars (every
        row of the freshness table, and no data time, without one)."""
        return ObservabilityStore(
            self.engine,
            monitored_pairs=None if universe is None else universe.pairs,
            failure_alert_threshold=self.failure_alert_threshold,
            data_lag_rules=None if universe is None else universe.data_lag_rules(),
        )


class MarketDataResource(dg.ConfigurableResource):
    """The universe file (symbols, timeframes) and the provider it names."""

    universe_path: str

    _universe: Universe | None = PrivateAttr(default=None)
    _provider: MarketDataProvider | None = PrivateAttr(default=None)

    def universe(self) -> Universe:
        if self._universe is None:
            self._universe = load_universe(self.universe_path)
        return self._universe

    def provider(self) -> MarketDataProvider:
        if self._provider is None:
            self._provider = build_provider(self.universe().provider)
        return self._provider
