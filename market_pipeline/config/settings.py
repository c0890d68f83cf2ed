"""Settings read from the environment, once, for code inside and outside Dagster.

Every setting has one environment variable and one default, named here and in the README:

- ``MARKET_PIPELINE_HOME``: folder of the embedded default storage (default: ``.market_pipeline``
  in the checkout, git-ignored). Holds ``market_pipeline.db`` and the Dagster home.
- ``MARKET_PIPELINE_DB_URL``: SQLAlchemy URL of the database holding our tables (default: the
  SQLite file ``$MARKET_PIPELINE_HOME/market_pipeline.db``). ``postgresql://`` URLs are read as
  ``postgresql+psycopg2://``, the driver dagster-postgres installs.
- ``MARKET_PIPELINE_UNIVERSE``: YAML file of symbols, timeframes and provider (default: the bundled
  demo universe of 50 symbols x 5 timeframes).
- ``MARKET_PIPELINE_FAILURE_ALERT_THRESHOLD``: consecutive failures of a pair that raise an alert
  (default 3).
- ``MARKET_PIPELINE_ADMIN_TOKEN``: bearer token the admin HTTP API requires when set.
- ``MARKET_PIPELINE_METRICS_TOKEN``: a bearer token for ``/metrics`` only, so scrapers carry
  their own credentials (the admin token is accepted there too).
- ``MARKET_PIPELINE_METRICS_PER_PAIR``: ``auto`` (default), ``on`` or ``off``: whether
  ``/metrics`` exports per-pair series; ``auto`` exports them while the universe has at most
  ``MARKET_PIPELINE_METRICS_PER_PAIR_LIMIT`` pairs (default 2000).
- ``MARKET_PIPELINE_METRICS_DAGSTER_INTERVAL``: seconds between two readings of Dagster's state
  for ``/metrics``, made beside the scrapes (default 5).
- ``MARKET_PIPELINE_PARTITIONS_PER_RUN``: most (symbol, timeframe) partitions one run covers,
  or ``all`` for one run per contiguous range (default 250, see README "Scaling out"). It sets the
  assets' backfill policy (``BackfillPolicy.multi_run``), the schedules' and the CLI's split.
- ``MARKET_PIPELINE_DAGSTER_UI_URL``: base URL of the Dagster UI, which the dashboard links each
  pair's partition to (default ``http://127.0.0.1:3000``, where ``make dev`` serves it).
- ``MARKET_PIPELINE_COVERAGE_OBJECTIVE``: the coverage SLO, the share of monitored pairs whose
  newest due bar is stored, between 0 and 1 exclusive (default 0.99).
- ``MARKET_PIPELINE_COVERAGE_RETENTION_DAYS``: days of coverage samples kept (default 35, a
  little over the 30-day SLO window; at least 30).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from market_pipeline.database.engine import normalize_db_url
from market_pipeline.package_data import demo_universe

_PACKAGE_DIR = Path(__file__).resolve().parents[1]
DB_URL_ENV = "MARKET_PIPELINE_DB_URL"
PER_PAIR_MODES = ("auto", "on", "off")
DEFAULT_DAGSTER_UI_URL = "http://127.0.0.1:3000"
DEFAULT_PARTITIONS_PER_RUN = 250
"""Runs of at most 250 partitions: the demo universe stays one run, a 1,000-pair universe is four
runs that two workers share (per-run overhead against parallelism: README "Scaling out")."""


def _checkout_dir() -> Path:
    """The repository checkout when running from one (editable install), else the cwd."""
    candidate = _PACKAGE_DIR.parent
    if (candidate / "pyproject.toml").is_file():
        return candidate
    return Path.cwd()


def default_home() -> Path:
    return _checkout_dir() / ".market_pipeline"


@dataclass(frozen=True)
class Settings:
    """Resolved configuration of one process."""

    home: Path
    db_url: str
    universe_path: Path
    failure_alert_threshold: int = 3
    admin_token: str | None = None
    metrics_token: str | None = None
    metrics_per_pair: str = "auto"
    metrics_per_pair_limit: int = 2000
    metrics_dagster_interval_seconds: float = 5.0
    dagster_ui_url: str = DEFAULT_DAGSTER_UI_URL
    coverage_objective: float = 0.99
    coverage_retention_days: int = 35
    partitions_per_run: int | None = DEFAULT_PARTITIONS_PER_RUN
    """``None``: no limit (one run per contiguous key range, a single-run backfill policy)."""

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        home = Path(env.get("MARKET_PIPELINE_HOME") or default_home()).expanduser().resolve()
        db_url = env.get(DB_URL_ENV) or f"sqlite:///{home / 'market_pipeline.db'}"
        universe = (env.get("MARKET_PIPELINE_UNIVERSE") or "").strip() or str(demo_universe())
        threshold = _positive_int(env, "MARKET_PIPELINE_FAILURE_ALERT_THRESHOLD", 3)
        per_pair = (env.get("MARKET_PIPELINE_METRICS_PER_PAIR") or "auto").strip().lower()
        if per_pair not in PER_PAIR_MODES:
            raise ValueError(
                f"MARKET_PIPELINE_METRICS_PER_PAIR must be one of {', '.join(PER_PAIR_MODES)}, "
                f"got {per_pair!r}"
            )
        return cls(
            home=home,
            db_url=normalize_db_url(db_url),
            universe_path=Path(universe).expanduser().resolve(),
            failure_alert_threshold=threshold,
            admin_token=env.get("MARKET_PIPELINE_ADMIN_TOKEN") or None,
            metrics_token=env.get("MARKET_PIPELINE_METRICS_TOKEN") or None,
            metrics_per_pair=per_pair,
            metrics_per_pair_limit=_positive_int(
                env, "MARKET_PIPELINE_METRICS_PER_PAIR_LIMIT", 2000
            ),
            metrics_dagster_interval_seconds=_positive_seconds(
                env, "MARKET_PIPELINE_METRICS_DAGSTER_INTERVAL", 5.0
            ),
            dagster_ui_url=_ui_url(env.get("MARKET_PIPELINE_DAGSTER_UI_URL")),
            coverage_objective=_objective(env.get("MARKET_PIPELINE_COVERAGE_OBJECTIVE")),
            coverage_retention_days=_retention_days(env),
            partitions_per_run=_partitions_per_run(env.get("MARKET_PIPELINE_PARTITIONS_PER_RUN")),
        )

    def per_pair_metrics(self, pairs: int) -> bool:
        """Whether ``/metrics`` exports per-pair series for a universe of ``pairs`` pairs."""
        if self.metrics_per_pair == "auto":
            return pairs <= self.metrics_per_pair_limit
        return self.metrics_per_pair == "on"


def _positive_int(env: Mapping[str, str], name: str, default: int) -> int:
    text = env.get(name) or str(default)
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise ValueError(f"{name} must be a positive integer, got {text!r}")
    return value


def _positive_seconds(env: Mapping[str, str], name: str, default: float) -> float:
    text = env.get(name) or str(default)
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not value > 0 or math.isinf(value):
        raise ValueError(f"{name} must be a positive number of seconds, got {text!r}")
    return value


def _retention_days(env: Mapping[str, str]) -> int:
    days = _positive_int(env, "MARKET_PIPELINE_COVERAGE_RETENTION_DAYS", 35)
    if days < 30:
        raise ValueError(
            f"MARKET_PIPELINE_COVERAGE_RETENTION_DAYS must be at least 30 (the SLO window), got "
            f"{days}"
        )
    return days


def _objective(text: str | None) -> float:
    raw = (text or "").strip() or "0.99"
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not 0 < value < 1:
        raise ValueError(
            f"MARKET_PIPELINE_COVERAGE_OBJECTIVE must be a share between 0 and 1 exclusive "
            f"such as 0.99, got {raw!r}"
        )
    return value


def _partitions_per_run(text: str | None) -> int | None:
    value = (text or "").strip().lower()
    if not value:
        return DEFAULT_PARTITIONS_PER_RUN
    if value == "all":
        return None
    if value.isdigit() and int(value) > 0:
        return int(value)
    raise ValueError(
        f"MARKET_PIPELINE_PARTITIONS_PER_RUN must be a positive integer or 'all', got {text!r}"
    )


def _ui_url(text: str | None) -> str:
    """The Dagster UI base URL: an absolute http(s) URL (the dashboard turns it into links, so
    nothing else, ``javascript:`` least of all, is accepted)."""
    value = (text or "").strip() or DEFAULT_DAGSTER_UI_URL
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(
            f"MARKET_PIPELINE_DAGSTER_UI_URL must be an http:// or https:// URL, got {value!r}"
        )
    return value.rstrip("/")
