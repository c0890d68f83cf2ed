"""The scheduler observability store: the spec's eight methods over the four monitoring tables.

:class:`ObservabilityStore` is a small facade over one module per table or read (``executions``,
``failures``, ``symbol_status``, ``freshness``, ``coverage``; ``queries``, ``history``,
``data_lag_reads``, ``dashboard_queries``, ``mirror_state``); ``statements`` runs them all.

Conventions shared by every method:

- Keyword arguments only. Datetimes must be timezone-aware (naive ones raise
  ``NaiveDatetimeError``: their zone would be a guess) and are stored and returned in UTC.
- Execution ids are UUIDs, accepted in any form ``uuid.UUID`` parses and returned canonical
  (dashed, lower case). A malformed id raises ``MalformedIdError``; a well-formed id with no
  ``scheduler_execution_log`` row raises :class:`UnknownExecutionError` naming it.
- Error messages of any length and content are stored: NUL characters (which PostgreSQL TEXT
  rejects) become U+FFFD, lone surrogates become ``?``, and text longer than
  :data:`MAX_ERROR_LENGTH` characters is cut to exactly that length, ending with a marker that
  gives the original length (see :func:`sanitize_error_message`).
- Writes are idempotent under re-delivery (the Dagster run mirror may deliver a run twice or out
  of order): a terminal status is never moved back to ``running``/``pending``/``in_progress``,
  the same execution's failure is counted once, and freshness never moves ``last_computed_at``
  back.
- ``limit`` arguments must be integers from 1 to :data:`MAX_LIMIT`; anything else raises
  ``ValueError`` (the API turns that into a 400 rather than silently serving less).
- The reads return the typed models of :mod:`market_pipeline.domain.reports`.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.engine import Engine

from market_pipeline.domain.lag_rules import DataLagRules
from market_pipeline.domain.reports import (
    MAX_LIMIT,
    ExecutionHistory,
    SchedulerHealth,
    StalenessReport,
)
from market_pipeline.observability.store import (
    executions,
    failures,
    freshness,
    history,
    metrics_reads,
    queries,
    symbol_status,
)
from market_pipeline.observability.store.checks import (
    MAX_ERROR_LENGTH,
    TRUNCATION_MARKER,
    UnknownExecutionError,
    sanitize_error_message,
)
from market_pipeline.observability.store.context import Pair, StoreContext
from market_pipeline.observability.store.dashboard_queries import DashboardReads
from market_pipeline.observability.store.data_time import DataTime
from market_pipeline.observability.store.metrics_reads import MetricsReading
from market_pipeline.observability.store.mirror_state import MirrorState

__all__ = [
    "MAX_ERROR_LENGTH",
    "MAX_LIMIT",
    "TRUNCATION_MARKER",
    "DashboardReads",
    "ObservabilityStore",
    "UnknownExecutionError",
    "sanitize_error_message",
]


class ObservabilityStore:
    """Reads and writes the scheduler monitoring tables of one database.

    Args:
        engine: engine of a migrated database (SQLite or PostgreSQL).
        monitored_pairs: the (symbol, timeframe) pairs the pipeline is expected to keep fresh,
            usually the universe. When given, freshness reports and health cover exactly these
            pairs (a pair with no ``feature_freshness`` row is ``missing``; rows of other pairs
            are ignored). When ``None``, they cover every row of ``feature_freshness``. An empty
            sequence monitors nothing.
        failure_alert_threshold: consecutive failures of one pair (``retry_count + 1``) that put
            it in the health report's ``alerts``.
        clock: returns the current time (aware); injected by tests.
        data_lag_rules: each pair's calendar, grace and tolerance (usually
            ``universe.data_lag_rules()``). With them the reads add data time (each pair's
            stored newest bar against the bar due); without, those fields stay null.
        as_of: read as of the clock's instant (``report --at``): data time from the bars
            stored by then, executions started and failures open by then.
    """

    def __init__(
        self,
        engine: Engine,
        *,
        monitored_pairs: Sequence[Pair] | None = None,
        failure_alert_threshold: int = 3,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        data_lag_rules: DataLagRules | None = None,
        as_of: bool = False,
    ) -> None:
        self._ctx = StoreContext.build(
            engine,
            monitored_pairs=monitored_pairs,
            failure_alert_threshold=failure_alert_threshold,
            clock=clock,
            lag_rules=data_lag_rules,
            as_of=as_of,
        )

    @property
    def engine(self) -> Engine:
        return self._ctx.engine

    @property
    def monitored_pairs(self) -> tuple[Pair, ...] | None:
        return self._ctx.monitored

    @property
    def failure_alert_threshold(self) -> int:
        return self._ctx.failure_alert_threshold

    @property
    def data_lag_rules(self) -> DataLagRules | None:
        return self._ctx.lag_rules

    # -- scheduler_execution_log ---------------------------------------------------------------

    def create_scheduler_execution_log(
        self,
        *,
        started_at: datetime,
        total_symbols: int = 0,
        status: str = "running",
        execution_id: str | uuid.UUID | None = None,
        job_name: str | None = None,
        run_trigger: str | None = None,
        scheduled_for: datetime | None = None,
    ) -> str:
        """Record the start of an execution and return its id (a new uuid4 when none is given).

        Idempotent: creating an id that exists changes no recorded fact. Only blanks are filled
        (``job_name``, ``run_trigger``, ``scheduled_for`` when NULL, ``total_symbols`` when 0)
        and a ``running`` row may take the given status; a completed or failed row stays as it
        is, so a re-delivered start never moves a finished run back to running.
        """
        return executions.create(
            self._ctx,
            started_at=started_at,
            total_symbols=total_symbols,
            status=status,
            execution_id=execution_id,
            job_name=job_name,
            run_trigger=run_trigger,
            scheduled_for=scheduled_for,
        )

    def update_scheduler_execution_log(
        self,
        *,
        execution_id: str | uuid.UUID,
        completed_at: datetime | None = None,
        total_symbols: int | None = None,
        successful_symbols: int | None = None,
        failed_symbols: int | None = None,
        total_records_processed: int | None = None,
        status: str | None = None,
        error_message: str | None = None,
        duration_seconds: float | None = None,
    ) -> None:
        """Record progress or completion of an execution; arguments left ``None`` are unchanged.

        ``duration_seconds`` defaults to ``completed_at - started_at`` when ``completed_at`` is
        given (``ValueError`` when that is negative). ``status='running'`` on a completed or
        failed row is ignored (a re-delivered progress update must not reopen a finished run);
        a finished row may still change between ``completed`` and ``failed``.
        """
        executions.update(
            self._ctx,
            execution_id=execution_id,
            completed_at=completed_at,
            status=status,
            error_message=error_message,
            duration_seconds=duration_seconds,
            total_symbols=total_symbols,
            successful_symbols=successful_symbols,
            failed_symbols=failed_symbols,
            total_records_processed=total_records_processed,
        )

    # -- feature_computation_failures ----------------------------------------------------------

    def log_feature_computation_failure(
        self,
        *,
        symbol: str,
        timeframe: str,
        error_message: str,
        execution_id: str | uuid.UUID | None = None,
        failed_at: datetime | None = None,
    ) -> int:
        """Record that computing features of a pair failed; return the failure's id.

        A pair has at most one open (unresolved) failure. A repeat failure updates that row:
        ``retry_count`` + 1, and message, ``failed_at`` and ``execution_id`` of the newest
        failure (an out-of-order older failure still counts but does not overwrite them).
        Re-delivery is idempotent: the same execution's failure of the pair is counted once, and
        a failure that is already recorded and resolved, or that a later recorded success of the
        pair supersedes (a ``completed`` symbol status with ``completed_at >= failed_at``), is
        stored resolved instead of reopening the pair. Limitation: only the newest execution id
        is kept on an open failure, so re-delivering an older execution's failure after a newer
        one was folded into the same open row counts it again.
        """
        return failures.log(
            self._ctx,
            symbol=symbol,
            timeframe=timeframe,
            error_message=error_message,
            execution_id=execution_id,
            failed_at=failed_at,
        )

    def resolve_feature_computation_failures(
        self,
        *,
        symbol: str,
        timeframe: str,
        execution_id: str | uuid.UUID | None = None,
        resolved_at: datetime | None = None,
    ) -> int:
        """Mark the open failure of a pair resolved (a later success); return how many (0 or 1).

        Only a failure with ``failed_at <= resolved_at`` is resolved: a success older than the
        failure (delivered out of order) does not hide it.
        """
        return failures.resolve(
            self._ctx,
            symbol=symbol,
            timeframe=timeframe,
            execution_id=execution_id,
            resolved_at=resolved_at,
        )

    # -- symbol_computation_status -------------------------------------------------------------

    def log_symbol_computation_status(
        self,
        *,
        execution_id: str | uuid.UUID,
        symbol: str,
        timeframe: str,
        status: str,
        asset_class: str | None = None,
        records_processed: int = 0,
        records_inserted: int = 0,
        features_computed: int = 0,
        started_at: datetime | None = None,
        completed_at: datetime | None = None,
        duration_seconds: float | None = None,
        error_message: str | None = None,
    ) -> None:
        """Record the status of one pair in one execution (upsert on execution, symbol, timeframe).

        ``duration_seconds`` defaults to ``completed_at - started_at`` when both are given.
        Re-delivery never moves a ``completed``/``failed`` row back to ``pending`` or
        ``in_progress``; ``asset_class``, ``started_at``, ``completed_at`` and
        ``duration_seconds`` left ``None`` keep their stored values. A ``completed`` status also
        resolves the pair's open failure that failed at or before ``completed_at`` (the clock's
        now when not given), with ``resolved_by_execution_id`` set to this execution. A
        ``failed`` status does not log a failure: call :meth:`log_feature_computation_failure`.
        """
        row = dict(locals())
        del row["self"]
        symbol_status.log_many(self._ctx, [row])

    def log_symbol_computation_statuses(self, rows: Iterable[Mapping[str, Any]]) -> int:
        """Bulk :meth:`log_symbol_computation_status` in one transaction; return the row count.

        Each row is a mapping with that method's keyword arguments (``execution_id``, ``symbol``,
        ``timeframe`` and ``status`` required). All rows are validated before anything is
        written; an invalid row raises ``ValueError`` naming its index and nothing is stored.
        Rows repeating a key within the batch are merged in order as re-deliveries would be.
        Cost: one multi-row upsert plus one resolving UPDATE per execution in the batch.
        """
        return symbol_status.log_many(self._ctx, rows)

    # -- feature_freshness ---------------------------------------------------------------------

    def update_feature_freshness(
        self,
        *,
        symbol: str,
        timeframe: str,
        last_computed_at: datetime | None,
        data_point_count: int,
        last_bar_at: datetime | None = None,
        now: datetime | None = None,
    ) -> str:
        """Upsert the freshness cache row of a pair; return the status it was given.

        ``status`` and ``staleness_seconds`` are computed against ``now`` (default: the clock).
        The write is skipped when it would move ``last_computed_at`` back (an older or ``None``
        value over a stored one: a late re-delivery); use ``data_point_count=0`` to mark a pair
        missing. ``last_bar_at`` left ``None`` keeps the stored value.
        """
        row = {
            "symbol": symbol,
            "timeframe": timeframe,
            "last_computed_at": last_computed_at,
            "data_point_count": data_point_count,
            "last_bar_at": last_bar_at,
        }
        try:
            (written,) = freshness.update_many(self._ctx, [row], now=now)
        except (TypeError, ValueError) as exc:  # one row: no index to name
            message = str(exc).removeprefix("freshness row 0: ")
            raise type(exc)(message) from exc.__cause__
        return str(written["status"])

    def update_feature_freshness_many(
        self, rows: Iterable[Mapping[str, Any]], *, now: datetime | None = None
    ) -> int:
        """Bulk :meth:`update_feature_freshness` as one multi-row upsert; return the pair count.

        Rows are mappings with ``symbol``, ``timeframe``, ``last_computed_at``,
        ``data_point_count`` and optionally ``last_bar_at``. All are validated first (an invalid
        row raises naming its index, nothing is written); a pair given twice keeps the row with
        the newest ``last_computed_at``.
        """
        return len(freshness.update_many(self._ctx, rows, now=now))

    def refresh_feature_freshness(self, *, now: datetime | None = None) -> int:
        """Recompute ``status`` and ``staleness_seconds`` of every cached row against ``now``
        (default: the clock) in one UPDATE; return the number of rows. For the periodic sensor:
        the reads never trust the cached columns, but other readers of the table may."""
        return freshness.refresh(self._ctx, now=now)

    # -- reads ---------------------------------------------------------------------------------

    def get_feature_staleness_report(self, *, limit: int = 50) -> StalenessReport:
        """The spec's ``/admin/features/staleness`` body, computed at read time.

        ``summary`` counts every monitored pair; each ``by_status`` list holds at most ``limit``
        pairs (the cap is per list), most stale first (never-computed pairs first, then by
        staleness, ties by symbol and timeframe in code-point order). One query: statuses,
        per-status counts and the ranking are computed in SQL, and only the listed pairs come
        back; their ``staleness_seconds`` is computed in Python at microsecond precision.
        """
        return queries.staleness_report(self._ctx, limit=limit)

    def get_scheduler_health(self, *, recent_failures_limit: int = 10) -> SchedulerHealth:
        """The spec's ``/admin/scheduler-health`` body, with additions.

        Spec fields: ``status`` (see :func:`market_pipeline.domain.freshness.health_status`),
        ``timestamp``, ``last_execution`` (the one started most recently, ``None`` when there is
        none), ``stale_features_count`` (stale plus missing monitored pairs: both need a run),
        ``recent_failures`` (unresolved failures only, newest first, at most
        ``recent_failures_limit``) and ``total_symbols_monitored`` (distinct symbols among the
        monitored pairs). Additions: ``reasons``, ``freshness_summary``,
        ``missing_features_count``, ``open_failures_count`` and ``alerts`` (open failures of
        pairs that failed ``failure_alert_threshold`` or more times in a row, most first).
        """
        return queries.scheduler_health(self._ctx, recent_failures_limit=recent_failures_limit)

    def get_execution_history(self, *, limit: int = 20) -> ExecutionHistory:
        """The spec's ``/admin/scheduler/execution-history`` body: executions newest first.

        ``success_rate`` is ``round(100 * successful_symbols / total_symbols, 1)``, and ``None``
        when ``total_symbols`` is 0 (no rate exists; 0.0 would read as "everything failed").
        """
        return history.execution_history(self._ctx, limit=limit)

    @property
    def data_time(self) -> DataTime:
        """Data time over the monitored pairs: each pair's data lag, and the coverage SLI's
        samples and report (see :class:`~.data_time.DataTime`)."""
        return DataTime(self._ctx)

    def metrics_reading(self, *, now: datetime | None = None) -> MetricsReading:
        """Every monitored pair's status and open failure, and the execution totals (/metrics)."""
        return metrics_reads.metrics_reading(self._ctx, now)

    def dashboard(
        self,
        *,
        asset_classes: Mapping[str, str] | None = None,
        dagster_ui_url: str | None = None,
    ) -> DashboardReads:
        """The dashboard's reads over this store: every monitored pair with its status and open
        failure, the open failures, one pair's detail (see :class:`DashboardReads`)."""
        return DashboardReads(self._ctx, asset_classes=asset_classes, dagster_ui_url=dagster_ui_url)

    @property
    def mirror(self) -> MirrorState:
        """What the run mirror reads back, and its watermark."""
        return MirrorState(self._ctx)
