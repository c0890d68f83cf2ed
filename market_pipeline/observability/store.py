"""The scheduler observability store: the spec's eight methods over the four monitoring tables.

PHASE_1_OBSERVABILITY.md names five logging methods and the query methods behind the three admin
endpoints; :class:`ObservabilityStore` implements them on SQLite and PostgreSQL with the same code
(dialect-specific ``INSERT ... ON CONFLICT`` upserts, everything else portable Core), plus the
additions the Dagster mirror needs (bulk writes, failure resolution, freshness refresh).

The methods the spec times (the three writes, the freshness update and the three reads) build
their statements once, with named parameters, and on PostgreSQL run them as one statement each
on the direct driver connections of :mod:`market_pipeline.database.direct_pool` (autocommit, no ping,
no per-call statement building): a write is one round trip.

Conventions shared by every method:

- Keyword arguments only. Datetimes must be timezone-aware (naive ones raise
  ``NaiveDatetimeError``: their zone would be a guess) and are stored and returned in UTC.
- Execution ids are UUIDs, accepted in any form ``uuid.UUID`` parses and returned canonical
  (dashed, lower case). A malformed id raises ``MalformedIdError``; a well-formed id with no
  ``scheduler_execution_log`` row raises :class:`UnknownExecutionError` naming it.
- Error messages of any length and content are stored: NUL characters (which PostgreSQL TEXT
  rejects) become U+FFFD, lone surrogates become ``?``, and text longer than
  :data:`MAX_ERROR_LENGTH` characters is cut to exactly that length, ending with a marker that gives
  the original length (see :func:`sanitize_error_message`).
- Writes are idempotent under re-delivery (the Dagster run mirror may deliver a run twice or out of
  order): a terminal status is never moved back to ``running``/``pending``/``in_progress``, the
  same execution's failure is counted once, and freshness never moves ``last_computed_at`` back.
- ``limit`` arguments must be integers from 1 to :data:`MAX_LIMIT`; anything else raises
  ``ValueError`` (an API layer turns that into a 400 rather than silently serving less).
- Returned dicts carry aware UTC ``datetime`` objects; :func:`to_json_ready` formats them as
  ``YYYY-MM-DDTHH:MM:SSZ`` for the admin API and the CLI.
"""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence, Set
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from typing import Any, ClassVar, NamedTuple

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine

from market_pipeline.database.direct_pool import compile_for, direct_pool
from market_pipeline.database.tables import (
    feature_computation_failures as failures_t,
)
from market_pipeline.database.tables import (
    feature_freshness as freshness_t,
)
from market_pipeline.database.tables import (
    mirror_watermark as mirror_watermark_t,
)
from market_pipeline.database.tables import (
    scheduler_execution_log as executions_t,
)
from market_pipeline.database.tables import (
    symbol_computation_status as symbol_status_t,
)
from market_pipeline.database.types import UTCDateTime
from market_pipeline.domain.freshness import (
    FRESHNESS_STATUSES,
    freshness_cutoffs,
    health_status,
    status_for_staleness,
)
from market_pipeline.domain.identifiers import canonical_uuid
from market_pipeline.domain.reports import (
    MAX_LIMIT,
    Alert,
    ExecutionHistory,
    SchedulerHealth,
    StalenessReport,
)
from market_pipeline.domain.timestamps import ensure_utc

MAX_ERROR_LENGTH = 4000
"""Longest error message stored, in characters (the truncation marker included)."""

TRUNCATION_MARKER = " ...[truncated, {total} characters in all]"
"""Appended to an error message cut to :data:`MAX_ERROR_LENGTH`."""


EXECUTION_STATUSES = ("running", "completed", "failed")
SYMBOL_STATUSES = ("pending", "in_progress", "completed", "failed")
_TERMINAL_STATUSES = ("completed", "failed")
_ZERO = timedelta(0)

_SYMBOL_STATUS_FIELDS = frozenset(
    {
        "execution_id",
        "symbol",
        "timeframe",
        "status",
        "asset_class",
        "records_processed",
        "records_inserted",
        "features_computed",
        "started_at",
        "completed_at",
        "duration_seconds",
        "error_message",
    }
)
_EXECUTION_FIELDS = (
    "execution_id",
    "started_at",
    "completed_at",
    "total_symbols",
    "successful_symbols",
    "failed_symbols",
    "total_records_processed",
    "duration_seconds",
    "status",
    "error_message",
    "job_name",
    "run_trigger",
    "scheduled_for",
    "updated_at",
)
_FRESHNESS_FIELDS = frozenset(
    {"symbol", "timeframe", "last_computed_at", "data_point_count", "last_bar_at"}
)


class _HealthSummaryRow(NamedTuple):
    fresh_count: int
    aging_count: int
    stale_count: int
    missing_count: int
    total_monitored: int
    symbols: int
    open_failures: int
    execution_id: Any
    started_at: datetime | None
    completed_at: datetime | None
    status: str | None
    total_symbols: int | None
    successful_symbols: int | None
    failed_symbols: int | None
    error_message: str | None


class _FailureRow(NamedTuple):
    kind: str
    id: int
    symbol: str
    timeframe: str
    error_message: str
    failed_at: datetime
    retry_count: int
    execution_id: Any


class _HistoryRow(NamedTuple):
    execution_id: Any
    started_at: datetime
    completed_at: datetime | None
    duration_seconds: float | None
    total_symbols: int
    successful_symbols: int
    failed_symbols: int
    total_records_processed: int
    status: str
    error_message: str | None


def _id_str(value: Any) -> str | None:
    """An execution id as returned: its string (drivers may hand back ``uuid.UUID``)."""
    return None if value is None else str(value)


class UnknownExecutionError(LookupError):
    """A well-formed execution id that no ``scheduler_execution_log`` row has."""

    def __init__(self, execution_id: str) -> None:
        self.execution_id = execution_id
        super().__init__(
            f"unknown execution_id {execution_id!r}: no scheduler execution has this id "
            "(create it with create_scheduler_execution_log first)"
        )


# --------------------------------------------------------------------------------------------
# Value helpers
# --------------------------------------------------------------------------------------------


def sanitize_error_message(message: str) -> str:
    """``message`` made storable on every backend and cut to :data:`MAX_ERROR_LENGTH` characters.

    NUL becomes U+FFFD (PostgreSQL TEXT cannot hold NUL), lone surrogates become ``?`` (they
    cannot be encoded as UTF-8). A longer text keeps its beginning and ends with
    :data:`TRUNCATION_MARKER`, so the result is exactly ``MAX_ERROR_LENGTH`` characters long.
    """
    if not isinstance(message, str):
        raise TypeError(f"error_message must be a str, got {type(message).__name__}")
    text = message.replace("\x00", "\ufffd").encode("utf-8", "replace").decode("utf-8")
    if len(text) > MAX_ERROR_LENGTH:
        marker = TRUNCATION_MARKER.format(total=len(text))
        text = text[: MAX_ERROR_LENGTH - len(marker)] + marker
    return text


def to_json_ready(obj: Any, *, timespec: str = "seconds") -> Any:
    """A copy of ``obj`` that ``json.dumps`` accepts, in the spec's formats.

    Datetimes become ISO 8601 UTC strings ending in ``Z``; with the default ``timespec`` of
    ``"seconds"`` that is ``YYYY-MM-DDTHH:MM:SSZ`` as in the spec (sub-second digits are
    dropped; pass ``"milliseconds"`` or ``"microseconds"`` to keep them). Naive datetimes raise
    ``NaiveDatetimeError``. Dates become ``YYYY-MM-DD``, UUIDs strings, mappings dicts, lists and
    tuples lists; everything else is returned as is.
    """
    if isinstance(obj, datetime):
        return ensure_utc(obj).isoformat(timespec=timespec).replace("+00:00", "Z")
    if isinstance(obj, date):
        return obj.isoformat()
    if isinstance(obj, uuid.UUID):
        return str(obj)
    if isinstance(obj, Mapping):
        return {str(key): to_json_ready(value, timespec=timespec) for key, value in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_json_ready(value, timespec=timespec) for value in obj]
    return obj


def _check_limit(value: int, name: str = "limit") -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an integer from 1 to {MAX_LIMIT}, got {value!r}")
    if not 1 <= value <= MAX_LIMIT:
        raise ValueError(f"{name} must be from 1 to {MAX_LIMIT}, got {value}")
    return value


def _check_count(value: int, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
    if value < 0:
        raise ValueError(f"{name} must be >= 0, got {value}")
    return value


def _check_duration(value: float | None, name: str = "duration_seconds") -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} must be a number of seconds, got {value!r}")
    if math.isnan(value) or math.isinf(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value}")
    return float(value)


def _check_key(value: str, name: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{name} must be a non-empty string, got {value!r}")
    if "\x00" in value:
        raise ValueError(f"{name} {value!r} contains a NUL character")
    return value


def _check_status(value: str, allowed: tuple[str, ...], what: str) -> str:
    if value not in allowed:
        raise ValueError(f"{what} status {value!r} is not one of {', '.join(allowed)}")
    return value


def _check_fields(raw: Any, allowed: Set[str], required: Sequence[str]) -> None:
    """A bulk row must be a mapping with only ``allowed`` keys and every ``required`` one."""
    if not isinstance(raw, Mapping):
        raise TypeError(f"expected a mapping, got {type(raw).__name__}")
    unknown = set(raw) - allowed
    if unknown:
        raise ValueError(f"unknown field(s) {', '.join(sorted(unknown))}")
    for name in required:
        if name not in raw:
            raise ValueError(f"{name} is required")


def _optional_utc(value: datetime | None, name: str) -> datetime | None:
    return None if value is None else ensure_utc(value, name=name)


def _optional_message(value: str | None) -> str | None:
    return None if value is None else sanitize_error_message(value)


def _duration_between(
    started_at: datetime | None, completed_at: datetime | None, what: str
) -> float | None:
    if started_at is None or completed_at is None:
        return None
    seconds = (completed_at - started_at).total_seconds()
    if seconds < 0:
        raise ValueError(
            f"{what}: completed_at {completed_at.isoformat()} is before started_at "
            f"{started_at.isoformat()}"
        )
    return seconds


# --------------------------------------------------------------------------------------------
# The store
# --------------------------------------------------------------------------------------------


class ObservabilityStore:
    """Reads and writes the scheduler monitoring tables of one database.

    Args:
        engine: engine of a migrated database (SQLite or PostgreSQL).
        monitored_pairs: the (symbol, timeframe) pairs the pipeline is expected to keep fresh,
            usually the universe. When given, freshness reports and health cover exactly these
            pairs (a pair with no ``feature_freshness`` row is ``missing``; rows of other pairs are
            ignored). When ``None``, they cover every row of ``feature_freshness``. An empty
            sequence monitors nothing.
        failure_alert_threshold: consecutive failures of one pair (``retry_count + 1``) that put
            it in the health report's ``alerts``.
        clock: returns the current time (aware); injected by tests.
    """

    def __init__(
        self,
        engine: Engine,
        *,
        monitored_pairs: Sequence[tuple[str, str]] | None = None,
        failure_alert_threshold: int = 3,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        if engine.dialect.name not in ("sqlite", "postgresql"):
            raise ValueError(f"unsupported database dialect {engine.dialect.name!r}")
        if (
            isinstance(failure_alert_threshold, bool)
            or not isinstance(failure_alert_threshold, int)
            or failure_alert_threshold < 1
        ):
            raise ValueError(
                f"failure_alert_threshold must be a positive integer, got "
                f"{failure_alert_threshold!r}"
            )
        self._engine = engine
        self._dialect = engine.dialect.name
        self._threshold = failure_alert_threshold
        self._clock = clock
        self._monitored: tuple[tuple[str, str], ...] | None = None
        if monitored_pairs is not None:
            pairs: dict[tuple[str, str], None] = {}
            for pair in monitored_pairs:
                symbol, timeframe = pair
                pairs[(_check_key(symbol, "symbol"), _check_key(timeframe, "timeframe"))] = None
            self._monitored = tuple(pairs)
        # The monitored pairs as the one bound parameter of the freshness queries, built once.
        monitored = self._monitored or ()
        self._monitored_json = json.dumps([list(pair) for pair in monitored])
        # PostgreSQL over psycopg2: the hot statements go through direct driver connections
        # (one round trip each, no per-call statement building; see storage/direct.py).
        self._direct = (
            direct_pool(engine)
            if self._dialect == "postgresql" and engine.dialect.driver == "psycopg2"
            else None
        )

    @property
    def engine(self) -> Engine:
        return self._engine

    @property
    def monitored_pairs(self) -> tuple[tuple[str, str], ...] | None:
        return self._monitored

    @property
    def failure_alert_threshold(self) -> int:
        return self._threshold

    # -- plumbing ------------------------------------------------------------------------------

    def _now(self) -> datetime:
        return ensure_utc(self._clock(), name="clock()")

    def _insert(self, table: sa.Table):
        if self._dialect == "postgresql":
            return postgresql.insert(table)
        return sqlite.insert(table)

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        """A write transaction. On SQLite it takes the write lock up front (BEGIN IMMEDIATE), so
        that a read followed by a write cannot fail with SQLITE_BUSY halfway through."""
        with self._engine.begin() as conn:
            if self._dialect == "sqlite":
                conn.exec_driver_sql("BEGIN IMMEDIATE")
            else:
                # These rows are derived data: the reconciler rebuilds them from Dagster's run
                # storage (the source of truth), so a commit need not wait for the WAL flush.
                # A crash can lose the last few hundred ms of commits, never corrupt or reorder
                # them, and the next reconcile puts the lost rows back. Without this, every
                # write call pays an fdatasync (milliseconds on a shared disk). LOCAL: it ends
                # with this transaction and never leaks to other users of the pooled connection.
                conn.exec_driver_sql("SET LOCAL synchronous_commit = off")
            yield conn

    # Statements of the hot methods, built once per dialect with named parameters (they hold no
    # store state, so every store shares them), and their compiled text for the direct path.
    _STATEMENTS: ClassVar[dict[tuple[str, str], Any]] = {}
    _COMPILED: ClassVar[dict[tuple[str, str], tuple[str, Mapping[str, Any]]]] = {}

    def _statement(self, key: str, build: Callable[[], Any]) -> Any:
        cache_key = (self._dialect, key)
        stmt = self._STATEMENTS.get(cache_key)
        if stmt is None:
            stmt = self._STATEMENTS[cache_key] = build()
        return stmt

    def _run(
        self,
        key: str,
        build: Callable[[], Any],
        params: Mapping[str, Any],
        *,
        fetch: str = "none",
        write: bool,
        may_repeat: bool = True,
    ) -> Any:
        """Run the statement ``build()`` (cached under ``key``) with ``params``; return the
        first row (``fetch="one"``, ``None`` when there is none), all rows (``"all"``) or the
        row count (``"none"``). Rows unpack as tuples in the statement's column order.

        On PostgreSQL over psycopg2 the compiled text runs on a direct connection in autocommit
        (one round trip; ``params`` must then be driver-ready: canonical UUID strings, aware
        datetimes), retried once on a dropped connection when ``may_repeat``. Elsewhere it runs
        through SQLAlchemy, in a write transaction when ``write``.
        """
        if self._direct is not None:
            cache_key = (self._dialect, key)
            compiled = self._COMPILED.get(cache_key)
            if compiled is None:
                compiled = self._COMPILED[cache_key] = compile_for(
                    self._engine, self._statement(key, build)
                )
            sql, defaults = compiled
            bound = {**defaults, **params}

            def work(cursor: Any) -> Any:
                cursor.execute(sql, bound)
                if fetch == "one":
                    return cursor.fetchone()
                if fetch == "all":
                    return cursor.fetchall()
                return cursor.rowcount

            return self._direct.run(work, statement=sql, may_repeat=may_repeat)
        stmt = self._statement(key, build)
        with self._write() if write else self._engine.connect() as conn:
            result = conn.execute(stmt, params)
            if fetch == "one":
                return result.first()
            if fetch == "all":
                return result.all()
            return result.rowcount

    @staticmethod
    def _require_executions(conn: Connection, execution_ids: Iterable[str]) -> None:
        wanted = set(execution_ids)
        if not wanted:
            return
        found = set(
            conn.execute(
                sa.select(executions_t.c.execution_id).where(
                    executions_t.c.execution_id.in_(sorted(wanted))
                )
            ).scalars()
        )
        missing = sorted(wanted - found)
        if missing:
            raise UnknownExecutionError(missing[0])

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
        (``job_name``, ``run_trigger``, ``scheduled_for`` when NULL, ``total_symbols`` when 0) and
        a ``running`` row may take the given status; a completed or failed row stays as it is,
        so a re-delivered start never moves a finished run back to running.
        """
        started = ensure_utc(started_at, name="started_at")
        eid = str(uuid.uuid4()) if execution_id is None else canonical_uuid(execution_id)
        values = {
            "execution_id": eid,
            "started_at": started,
            "completed_at": None,
            "total_symbols": _check_count(total_symbols, "total_symbols"),
            "successful_symbols": 0,
            "failed_symbols": 0,
            "total_records_processed": 0,
            "duration_seconds": None,
            "status": _check_status(status, EXECUTION_STATUSES, "execution"),
            "error_message": None,
            "job_name": job_name,
            "run_trigger": run_trigger,
            "scheduled_for": _optional_utc(scheduled_for, "scheduled_for"),
            "updated_at": self._now(),
        }
        self._run("create_execution", self._create_execution_stmt, values, write=True)
        return eid

    def _create_execution_stmt(self):
        t = executions_t
        stmt = self._insert(t).values(
            {name: sa.bindparam(name, type_=t.c[name].type) for name in _EXECUTION_FIELDS}
        )
        new = stmt.excluded
        return stmt.on_conflict_do_update(
            index_elements=[t.c.execution_id],
            set_={
                "job_name": sa.func.coalesce(t.c.job_name, new.job_name),
                "run_trigger": sa.func.coalesce(t.c.run_trigger, new.run_trigger),
                "scheduled_for": sa.func.coalesce(t.c.scheduled_for, new.scheduled_for),
                "total_symbols": sa.case(
                    (t.c.total_symbols == 0, new.total_symbols), else_=t.c.total_symbols
                ),
                "status": sa.case((t.c.status == "running", new.status), else_=t.c.status),
                "updated_at": new.updated_at,
            },
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
        eid = canonical_uuid(execution_id)
        completed = _optional_utc(completed_at, "completed_at")
        duration = _check_duration(duration_seconds)
        params: dict[str, Any] = {
            "p_execution_id": eid,
            "p_updated_at": self._now(),
            "p_completed_at": completed,
            "p_duration_seconds": duration,
            "p_error_message": None
            if error_message is None
            else sanitize_error_message(error_message),
            "p_status": None
            if status is None
            else _check_status(status, EXECUTION_STATUSES, "execution"),
        }
        for name, value in (
            ("total_symbols", total_symbols),
            ("successful_symbols", successful_symbols),
            ("failed_symbols", failed_symbols),
            ("total_records_processed", total_records_processed),
        ):
            params[f"p_{name}"] = None if value is None else _check_count(value, name)
        if self._dialect == "postgresql":
            # One statement: the duration is computed, and a completion before the start
            # refused, in SQL. No row back: unknown id or such a completion; both raise below.
            row = self._run(
                "update_execution", self._update_execution_stmt, params, fetch="one", write=True
            )
            if row is None:
                self._raise_update_refused(eid, completed)
            return
        with self._write() as conn:
            row = conn.execute(
                self._statement("update_execution", self._update_execution_stmt), params
            ).first()
            if row is None:
                raise UnknownExecutionError(eid)
            if completed is not None and duration is None:
                seconds = _duration_between(row.started_at, completed, f"execution {eid}")
                t = executions_t
                conn.execute(
                    t.update().where(t.c.execution_id == eid).values(duration_seconds=seconds)
                )

    def _update_execution_stmt(self):
        """``UPDATE`` of one execution where every ``p_*`` parameter left NULL keeps the stored
        value; ``RETURNING started_at``. On PostgreSQL it also sets the duration from
        ``p_completed_at`` and skips the row (returning nothing) when that precedes the start."""
        t = executions_t
        p = {
            name: sa.bindparam(f"p_{name}", type_=t.c[name].type)
            for name in (
                "execution_id",
                "updated_at",
                "completed_at",
                "duration_seconds",
                "error_message",
                "status",
                "total_symbols",
                "successful_symbols",
                "failed_symbols",
                "total_records_processed",
            )
        }
        duration = sa.func.coalesce(p["duration_seconds"], t.c.duration_seconds)
        where = [t.c.execution_id == p["execution_id"]]
        if self._dialect == "postgresql":
            elapsed = sa.extract("epoch", p["completed_at"] - t.c.started_at)
            duration = sa.func.coalesce(
                p["duration_seconds"],
                sa.case((p["completed_at"].is_(None), t.c.duration_seconds), else_=elapsed),
            )
            where.append(
                sa.or_(
                    p["completed_at"].is_(None),
                    p["duration_seconds"].is_not(None),
                    p["completed_at"] >= t.c.started_at,
                )
            )
        status = sa.case(
            (p["status"].is_(None), t.c.status),
            (
                sa.and_(
                    p["status"] == "running",
                    sa.or_(*(t.c.status == name for name in _TERMINAL_STATUSES)),
                ),
                t.c.status,
            ),
            else_=p["status"],
        )
        keep = {
            name: sa.func.coalesce(p[name], t.c[name])
            for name in (
                "completed_at",
                "error_message",
                "total_symbols",
                "successful_symbols",
                "failed_symbols",
                "total_records_processed",
            )
        }
        return (
            t.update()
            .where(*where)
            .values(updated_at=p["updated_at"], duration_seconds=duration, status=status, **keep)
            .returning(t.c.started_at)
        )

    def _raise_update_refused(self, eid: str, completed: datetime | None) -> None:
        """Why the PostgreSQL update of ``eid`` changed nothing: unknown id, or a completion
        before the start (the same errors as on SQLite)."""
        t = executions_t
        with self._engine.connect() as conn:
            started = conn.execute(
                sa.select(t.c.started_at).where(t.c.execution_id == eid)
            ).scalar()
        if started is None:
            raise UnknownExecutionError(eid)
        _duration_between(started, completed, f"execution {eid}")
        raise AssertionError(f"update of execution {eid} changed no row")  # pragma: no cover

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
        ``retry_count`` + 1, and message, ``failed_at`` and ``execution_id`` of the newest failure
        (an out-of-order older failure still counts but does not overwrite them). Re-delivery is
        idempotent: the same execution's failure of the pair is counted once, and a failure that
        is already recorded and resolved, or that a later recorded success of the pair supersedes
        (a ``completed`` symbol status with ``completed_at >= failed_at``), is stored resolved
        instead of reopening the pair. Limitation: only the newest execution id is kept on an
        open failure, so re-delivering an older execution's failure after a newer one was folded
        into the same open row counts it again.
        """
        pair = (_check_key(symbol, "symbol"), _check_key(timeframe, "timeframe"))
        message = sanitize_error_message(error_message)
        eid = None if execution_id is None else canonical_uuid(execution_id)
        failed = self._now() if failed_at is None else ensure_utc(failed_at, name="failed_at")
        f = failures_t
        same_pair = sa.and_(f.c.symbol == pair[0], f.c.timeframe == pair[1])
        values = {
            "symbol": pair[0],
            "timeframe": pair[1],
            "error_message": message,
            "execution_id": eid,
            "retry_count": 0,
            "failed_at": failed,
            "first_failed_at": failed,
        }
        if self._dialect == "postgresql":
            variant = "log_failure" if eid is not None else "log_failure_no_execution"
            known, failure_id = self._run(
                variant,
                lambda: self._log_failure_pg_stmt(with_execution=eid is not None),
                {f"p_{name}": value for name, value in values.items()},
                fetch="one",
                write=True,
                # Counted once per execution, so a repeat is harmless; without an execution id
                # a repeat would count the failure twice.
                may_repeat=eid is not None,
            )
            if not known:
                raise UnknownExecutionError(eid)
            return int(failure_id)
        with self._write() as conn:
            if eid is not None:
                self._require_executions(conn, [eid])
                recorded = conn.execute(
                    sa.select(f.c.id)
                    .where(f.c.execution_id == eid, same_pair, f.c.resolved)
                    .order_by(f.c.id.desc())
                    .limit(1)
                ).scalar()
                if recorded is not None:
                    return int(recorded)
            s = symbol_status_t
            superseding = conn.execute(
                sa.select(s.c.execution_id, s.c.completed_at)
                .where(
                    s.c.symbol == pair[0],
                    s.c.timeframe == pair[1],
                    s.c.status == "completed",
                    s.c.completed_at >= failed,
                )
                .order_by(s.c.completed_at)
                .limit(1)
            ).first()
            if superseding is not None:
                return int(
                    conn.execute(
                        f.insert()
                        .values(
                            **values,
                            resolved=True,
                            resolved_at=superseding.completed_at,
                            resolved_by_execution_id=superseding.execution_id,
                        )
                        .returning(f.c.id)
                    ).scalar_one()
                )
            stmt = self._insert(f).values(**values, resolved=False)
            stmt = self._open_failure_upsert(stmt).returning(f.c.id)
            return int(conn.execute(stmt).scalar_one())

    @staticmethod
    def _open_failure_upsert(stmt):
        """``stmt`` (an INSERT of one open failure) folding into the pair's open failure."""
        f = failures_t
        new = stmt.excluded
        is_newer = new.failed_at >= f.c.failed_at
        same_execution = sa.and_(new.execution_id.is_not(None), f.c.execution_id == new.execution_id)
        return stmt.on_conflict_do_update(
            index_elements=[f.c.symbol, f.c.timeframe],
            index_where=sa.not_(f.c.resolved),
            set_={
                "retry_count": sa.case(
                    (same_execution, f.c.retry_count), else_=f.c.retry_count + 1
                ),
                "error_message": sa.case((is_newer, new.error_message), else_=f.c.error_message),
                "execution_id": sa.case((is_newer, new.execution_id), else_=f.c.execution_id),
                "failed_at": sa.case((is_newer, new.failed_at), else_=f.c.failed_at),
                "first_failed_at": sa.case(
                    (new.failed_at < f.c.first_failed_at, new.failed_at),
                    else_=f.c.first_failed_at,
                ),
            },
        )

    @staticmethod
    def _log_failure_pg_stmt(*, with_execution: bool) -> sa.Select:
        """:meth:`log_feature_computation_failure` on PostgreSQL as one statement (one round trip
        instead of four), returning ``(known, id)``; ``known`` is false when ``execution_id`` has
        no execution row, and then nothing was written.

        The steps of the SQLite path become CTEs evaluated on one snapshot: ``known`` (the
        execution exists), ``recorded`` (this execution's failure of the pair is already stored
        resolved: return its id), ``superseding`` (the earliest completed status of the pair at or
        after ``failed_at``: store the failure resolved by it) and otherwise the upsert into the
        pair's open failure. The two INSERTs have mutually exclusive conditions, so exactly one
        of ``recorded``, ``resolved_insert`` and ``upsert`` yields the id.
        """
        f = failures_t
        s = symbol_status_t
        e = executions_t
        names = [
            "symbol",
            "timeframe",
            "error_message",
            "execution_id",
            "retry_count",
            "failed_at",
            "first_failed_at",
        ]
        params = {name: sa.bindparam(f"p_{name}", type_=f.c[name].type) for name in names}

        def param(name: str):
            return params[name]

        if not with_execution:
            known = sa.true()
            not_recorded = sa.true()
            recorded_id = sa.null()
        else:
            known = sa.exists().where(e.c.execution_id == param("execution_id"))
            recorded = (
                sa.select(f.c.id)
                .where(
                    f.c.execution_id == param("execution_id"),
                    f.c.symbol == param("symbol"),
                    f.c.timeframe == param("timeframe"),
                    f.c.resolved,
                )
                .order_by(f.c.id.desc())
                .limit(1)
                .cte("recorded")
            )
            not_recorded = ~sa.exists().select_from(recorded)
            recorded_id = sa.select(recorded.c.id).scalar_subquery()
        superseding = (
            sa.select(s.c.execution_id, s.c.completed_at)
            .where(
                s.c.symbol == param("symbol"),
                s.c.timeframe == param("timeframe"),
                s.c.status == "completed",
                s.c.completed_at >= param("failed_at"),
            )
            .order_by(s.c.completed_at)
            .limit(1)
            .cte("superseding")
        )
        columns = [param(name).label(name) for name in names]
        resolved_insert = (
            postgresql.insert(f)
            .from_select(
                [*names, "resolved", "resolved_at", "resolved_by_execution_id"],
                sa.select(
                    *columns,
                    sa.true(),
                    superseding.c.completed_at,
                    superseding.c.execution_id,
                ).where(known, not_recorded),
            )
            .returning(f.c.id)
            .cte("resolved_insert")
        )
        upsert = ObservabilityStore._open_failure_upsert(
            postgresql.insert(f).from_select(
                [*names, "resolved"],
                sa.select(*columns, sa.false()).where(
                    known, not_recorded, ~sa.exists().select_from(superseding)
                ),
            )
        ).returning(f.c.id).cte("upsert")
        failure_id = sa.func.coalesce(
            recorded_id,
            sa.select(resolved_insert.c.id).scalar_subquery(),
            sa.select(upsert.c.id).scalar_subquery(),
        )
        return sa.select(known.label("known"), failure_id.label("id"))

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
        pair = (_check_key(symbol, "symbol"), _check_key(timeframe, "timeframe"))
        eid = None if execution_id is None else canonical_uuid(execution_id)
        when = self._now() if resolved_at is None else ensure_utc(resolved_at, name="resolved_at")
        f = failures_t
        with self._write() as conn:
            if eid is not None:
                self._require_executions(conn, [eid])
            result = conn.execute(
                f.update()
                .where(
                    f.c.symbol == pair[0],
                    f.c.timeframe == pair[1],
                    sa.not_(f.c.resolved),
                    f.c.failed_at <= when,
                )
                .values(resolved=True, resolved_at=when, resolved_by_execution_id=eid)
            )
            return int(result.rowcount)

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
        self.log_symbol_computation_statuses(
            [
                {
                    "execution_id": execution_id,
                    "symbol": symbol,
                    "timeframe": timeframe,
                    "status": status,
                    "asset_class": asset_class,
                    "records_processed": records_processed,
                    "records_inserted": records_inserted,
                    "features_computed": features_computed,
                    "started_at": started_at,
                    "completed_at": completed_at,
                    "duration_seconds": duration_seconds,
                    "error_message": error_message,
                }
            ]
        )

    def log_symbol_computation_statuses(self, rows: Iterable[Mapping[str, Any]]) -> int:
        """Bulk :meth:`log_symbol_computation_status` in one transaction; return the row count.

        Each row is a mapping with that method's keyword arguments (``execution_id``, ``symbol``,
        ``timeframe`` and ``status`` required). All rows are validated before anything is
        written; an invalid row raises ``ValueError`` naming its index and nothing is stored.
        Rows repeating a key within the batch are merged in order as re-deliveries would be.
        Cost: one multi-row upsert plus one resolving UPDATE per execution in the batch.
        """
        merged: dict[tuple[str, str, str], dict[str, Any]] = {}
        canonical_ids: dict[Any, str] = {}  # a batch mostly repeats one execution id
        for index, raw in enumerate(rows):
            try:
                row = self._symbol_status_row(raw, canonical_ids)
            except (TypeError, ValueError) as exc:
                raise type(exc)(f"symbol status row {index}: {exc}") from exc
            key = (row["execution_id"], row["symbol"], row["timeframe"])
            previous = merged.get(key)
            if previous is not None:
                if previous["status"] in _TERMINAL_STATUSES and row["status"] not in (
                    _TERMINAL_STATUSES
                ):
                    continue
                for name in ("asset_class", "started_at", "completed_at", "duration_seconds"):
                    if row[name] is None:
                        row[name] = previous[name]
            merged[key] = row
        if not merged:
            return 0
        batch = list(merged.values())
        s = symbol_status_t
        # RETURNING: multi-row INSERTs for the executemany (see _freshness_upsert).
        stmt = self._insert(s)
        new = stmt.excluded
        stmt = stmt.on_conflict_do_update(
            index_elements=[s.c.execution_id, s.c.symbol, s.c.timeframe],
            set_={
                "status": new.status,
                "asset_class": sa.func.coalesce(new.asset_class, s.c.asset_class),
                "records_processed": new.records_processed,
                "records_inserted": new.records_inserted,
                "features_computed": new.features_computed,
                "started_at": sa.func.coalesce(new.started_at, s.c.started_at),
                "completed_at": sa.func.coalesce(new.completed_at, s.c.completed_at),
                "duration_seconds": sa.func.coalesce(new.duration_seconds, s.c.duration_seconds),
                "error_message": new.error_message,
            },
            # Plain comparisons, not IN: expanding IN parameters cannot be used with executemany.
            where=sa.or_(
                sa.and_(*(s.c.status != status for status in _TERMINAL_STATUSES)),
                sa.or_(*(new.status == status for status in _TERMINAL_STATUSES)),
            ),
        ).returning(s.c.id)
        completed_executions = sorted(
            {row["execution_id"] for row in batch if row["status"] == "completed"}
        )
        now = self._now()
        with self._write() as conn:
            self._require_executions(conn, {row["execution_id"] for row in batch})
            conn.execute(stmt, batch).all()
            for eid in completed_executions:
                conn.execute(self._resolve_by_execution_stmt(eid, now))
        return len(batch)

    def _symbol_status_row(
        self, raw: Mapping[str, Any], canonical_ids: dict[Any, str]
    ) -> dict[str, Any]:
        _check_fields(
            raw, _SYMBOL_STATUS_FIELDS, ("execution_id", "symbol", "timeframe", "status")
        )
        started = _optional_utc(raw.get("started_at"), "started_at")
        completed = _optional_utc(raw.get("completed_at"), "completed_at")
        duration = _check_duration(raw.get("duration_seconds"))
        if duration is None:
            duration = _duration_between(started, completed, "symbol status")
        given_id = raw["execution_id"]
        try:
            execution_id = canonical_ids[given_id]
        except (KeyError, TypeError):
            execution_id = canonical_uuid(given_id)
            if isinstance(given_id, (str, uuid.UUID)):
                canonical_ids[given_id] = execution_id
        return {
            "execution_id": execution_id,
            "symbol": _check_key(raw["symbol"], "symbol"),
            "timeframe": _check_key(raw["timeframe"], "timeframe"),
            "status": _check_status(raw["status"], SYMBOL_STATUSES, "symbol"),
            "asset_class": raw.get("asset_class"),
            "records_processed": _check_count(
                raw.get("records_processed", 0), "records_processed"
            ),
            "records_inserted": _check_count(raw.get("records_inserted", 0), "records_inserted"),
            "features_computed": _check_count(
                raw.get("features_computed", 0), "features_computed"
            ),
            "started_at": started,
            "completed_at": completed,
            "duration_seconds": duration,
            "error_message": _optional_message(raw.get("error_message")),
        }

    @staticmethod
    def _resolve_by_execution_stmt(execution_id: str, now: datetime) -> sa.Update:
        """Resolve every open failure of a pair that ``execution_id`` completed at or after the
        failure (one statement for the whole execution, via the (execution, pair) unique key)."""
        f = failures_t
        s = symbol_status_t.alias("done")
        done_at = sa.func.coalesce(s.c.completed_at, sa.literal(now, UTCDateTime))
        same = sa.and_(
            s.c.execution_id == execution_id,
            s.c.symbol == f.c.symbol,
            s.c.timeframe == f.c.timeframe,
            s.c.status == "completed",
        )
        return (
            f.update()
            .where(
                sa.not_(f.c.resolved),
                sa.exists().where(same, done_at >= f.c.failed_at),
            )
            .values(
                resolved=True,
                resolved_at=sa.select(done_at).where(same).scalar_subquery(),
                resolved_by_execution_id=execution_id,
            )
        )

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
        at = self._now() if now is None else ensure_utc(now, name="now")
        row = self._freshness_row(
            {
                "symbol": symbol,
                "timeframe": timeframe,
                "last_computed_at": last_computed_at,
                "data_point_count": data_point_count,
                "last_bar_at": last_bar_at,
            },
            at,
        )
        self._write_freshness([row])
        return row["status"]

    def update_feature_freshness_many(
        self, rows: Iterable[Mapping[str, Any]], *, now: datetime | None = None
    ) -> int:
        """Bulk :meth:`update_feature_freshness` as one multi-row upsert; return the pair count.

        Rows are mappings with ``symbol``, ``timeframe``, ``last_computed_at``,
        ``data_point_count`` and optionally ``last_bar_at``. All are validated first (an invalid
        row raises naming its index, nothing is written); a pair given twice keeps the row with
        the newest ``last_computed_at``.
        """
        at = self._now() if now is None else ensure_utc(now, name="now")
        by_pair: dict[tuple[str, str], dict[str, Any]] = {}
        for index, raw in enumerate(rows):
            try:
                row = self._freshness_row(raw, at)
            except (TypeError, ValueError) as exc:
                raise type(exc)(f"freshness row {index}: {exc}") from exc
            key = (row["symbol"], row["timeframe"])
            previous = by_pair.get(key)
            if previous is not None and previous["last_computed_at"] is not None:
                if row["last_computed_at"] is None:
                    continue
                if row["last_computed_at"] < previous["last_computed_at"]:
                    continue
            by_pair[key] = row
        if not by_pair:
            return 0
        self._write_freshness(list(by_pair.values()))
        return len(by_pair)

    def _write_freshness(self, rows: list[dict[str, Any]]) -> None:
        """Upsert validated freshness rows (one row per pair) in one statement."""
        if self._dialect == "postgresql":
            # All rows as one JSON parameter expanded by jsonb_to_recordset: one short statement
            # whatever the batch size (psycopg2 would otherwise inline every value as text).
            payload = json.dumps(
                [
                    {
                        name: value.isoformat() if isinstance(value, datetime) else value
                        for name, value in row.items()
                    }
                    for row in rows
                ]
            )
            self._run(
                "freshness_upsert", self._freshness_json_upsert, {"p_rows": payload}, write=True
            )
            return
        with self._write() as conn:
            conn.execute(
                self._statement("freshness_upsert", self._freshness_upsert), rows
            ).all()

    def _freshness_row(self, raw: Mapping[str, Any], now: datetime) -> dict[str, Any]:
        _check_fields(
            raw, _FRESHNESS_FIELDS, ("symbol", "timeframe", "last_computed_at", "data_point_count")
        )
        last = _optional_utc(raw["last_computed_at"], "last_computed_at")
        count = _check_count(raw["data_point_count"], "data_point_count")
        # freshness_status() and staleness_seconds() inlined: both values checked above.
        seconds = None if last is None else max(now - last, _ZERO).total_seconds()
        return {
            "symbol": _check_key(raw["symbol"], "symbol"),
            "timeframe": _check_key(raw["timeframe"], "timeframe"),
            "last_computed_at": last,
            "data_point_count": count,
            "status": "missing"
            if seconds is None or count == 0
            else status_for_staleness(seconds),
            "staleness_seconds": seconds,
            "updated_at": now,
            "last_bar_at": _optional_utc(raw.get("last_bar_at"), "last_bar_at"),
        }

    def _freshness_upsert(self):
        # RETURNING makes SQLAlchemy 2.1 send an executemany as multi-row INSERTs
        # ("insertmanyvalues"); without it an upsert goes row by row. Batches hold each key once
        # (callers dedupe), which multi-row ON CONFLICT DO UPDATE requires.
        return self._freshness_on_conflict(self._insert(freshness_t)).returning(
            freshness_t.c.symbol
        )

    @staticmethod
    def _freshness_json_upsert():
        """PostgreSQL: the rows of the JSON array parameter ``p_rows`` upserted."""
        t = freshness_t
        names = [c.name for c in t.columns]
        rows = (
            sa.func.jsonb_to_recordset(
                sa.cast(sa.bindparam("p_rows", type_=sa.Text), postgresql.JSONB)
            )
            .table_valued(*(sa.column(name, t.c[name].type) for name in names))
            .render_derived(name="r", with_types=True)
        )
        stmt = postgresql.insert(t).from_select(names, sa.select(*(rows.c[n] for n in names)))
        return ObservabilityStore._freshness_on_conflict(stmt)

    @staticmethod
    def _freshness_on_conflict(stmt):
        """``stmt`` (an INSERT into ``feature_freshness``) as an upsert that never moves
        ``last_computed_at`` back and keeps a stored ``last_bar_at`` over a NULL."""
        t = freshness_t
        new = stmt.excluded
        return stmt.on_conflict_do_update(
            index_elements=[t.c.symbol, t.c.timeframe],
            set_={
                "last_computed_at": new.last_computed_at,
                "data_point_count": new.data_point_count,
                "status": new.status,
                "staleness_seconds": new.staleness_seconds,
                "updated_at": new.updated_at,
                "last_bar_at": sa.func.coalesce(new.last_bar_at, t.c.last_bar_at),
            },
            where=sa.or_(
                t.c.last_computed_at.is_(None), new.last_computed_at >= t.c.last_computed_at
            ),
        )

    def refresh_feature_freshness(self, *, now: datetime | None = None) -> int:
        """Recompute ``status`` and ``staleness_seconds`` of every cached row against ``now``
        (default: the clock) in one UPDATE; return the number of rows. For the periodic sensor:
        the read methods never trust the cached columns, but other readers of the table may."""
        at = self._now() if now is None else ensure_utc(now, name="now")
        fresh_after, stale_at = freshness_cutoffs(at)
        t = freshness_t
        status = sa.case(
            (sa.or_(t.c.last_computed_at.is_(None), t.c.data_point_count == 0), "missing"),
            (t.c.last_computed_at > sa.literal(fresh_after, UTCDateTime), "fresh"),
            (t.c.last_computed_at > sa.literal(stale_at, UTCDateTime), "aging"),
            else_="stale",
        )
        now_param = sa.literal(at, UTCDateTime)
        if self._dialect == "postgresql":
            elapsed = sa.extract("epoch", now_param - t.c.last_computed_at)
            seconds = sa.func.greatest(sa.cast(0.0, sa.Float), elapsed)
        else:
            # julianday() is a float of days: staleness is good to ~10 us, enough for a cache
            # column; the status above compares timestamps and is exact.
            days = sa.func.julianday(now_param) - sa.func.julianday(t.c.last_computed_at)
            seconds = sa.func.max(0.0, days * 86400.0)
        staleness = sa.case((t.c.last_computed_at.is_(None), sa.null()), else_=seconds)
        with self._write() as conn:
            result = conn.execute(
                t.update().values(status=status, staleness_seconds=staleness, updated_at=at)
            )
            return int(result.rowcount)

    # -- queries -------------------------------------------------------------------------------

    def _freshness_params(self, now: datetime) -> dict[str, Any]:
        """The parameters of :meth:`_freshness_source` for ``now``."""
        fresh_after, stale_at = freshness_cutoffs(now)
        params = {"p_now": now, "p_fresh_after": fresh_after, "p_stale_at": stale_at}
        if self._monitored is not None:
            params["monitored_pairs"] = self._monitored_json
        return params

    def _read_key(self, name: str) -> str:
        """Cache key of a read statement: its shape depends on whether pairs are monitored."""
        return f"{name}:{'monitored' if self._monitored is not None else 'table'}"

    def _freshness_source(self):
        """``(from_clause, symbol, timeframe, last_computed_at, data_point_count, status)``: the
        monitored pairs with their freshness status computed in SQL at the parameters of
        :meth:`_freshness_params`.

        With ``monitored_pairs`` the pairs come from one bound parameter, a JSON array of pairs
        (one parameter whatever the universe size, so the compiled statement is cached) LEFT JOINed to ``feature_freshness``; a pair without a
        row has NULL ``last_computed_at`` and is therefore ``missing``. Without it, every row of
        the table. The status is a CASE against the cutoffs of :func:`freshness_cutoffs` (the
        same rule as :func:`freshness_status`, as exact timestamp comparisons), never the cached
        ``status`` column.
        """
        t = freshness_t
        if self._monitored is None:
            source = t
            symbol, timeframe = t.c.symbol, t.c.timeframe
            count = t.c.data_point_count
        else:
            if self._dialect == "postgresql":
                # One JSON text parameter: psycopg2 inlines parameters into the SQL text, and a
                # 500-element array literal costs the server a parse per element on every call.
                each = sa.func.jsonb_array_elements(
                    sa.cast(sa.bindparam("monitored_pairs", type_=sa.Text), postgresql.JSONB)
                ).table_valued("value")
                pairs = sa.select(
                    each.c.value.op("->>")(0).label("symbol"),
                    each.c.value.op("->>")(1).label("timeframe"),
                ).subquery("monitored")
            else:
                each = sa.func.json_each(
                    sa.bindparam("monitored_pairs", type_=sa.Text)
                ).table_valued("value")
                pairs = sa.select(
                    sa.func.json_extract(each.c.value, "$[0]").label("symbol"),
                    sa.func.json_extract(each.c.value, "$[1]").label("timeframe"),
                ).subquery("monitored")
            symbol, timeframe = pairs.c.symbol, pairs.c.timeframe
            source = pairs.outerjoin(
                t, sa.and_(t.c.symbol == symbol, t.c.timeframe == timeframe)
            )
            count = sa.func.coalesce(t.c.data_point_count, 0)
        last = t.c.last_computed_at
        status = sa.case(
            (sa.or_(last.is_(None), count == 0), "missing"),
            (last > sa.bindparam("p_fresh_after", type_=UTCDateTime), "fresh"),
            (last > sa.bindparam("p_stale_at", type_=UTCDateTime), "aging"),
            else_="stale",
        )
        return source, symbol, timeframe, last, count, status

    def _code_point_order(self, column):
        """``column`` ordered by code point, as Python sorts strings (PostgreSQL would otherwise
        use the database's linguistic collation; SQLite's default BINARY already is)."""
        return column.collate("C") if self._dialect == "postgresql" else column

    def get_feature_staleness_report(self, *, limit: int = 50) -> StalenessReport:
        """The spec's ``/admin/features/staleness`` body, computed at read time.

        ``summary`` counts every monitored pair; each ``by_status`` list holds at most ``limit``
        pairs (the cap is per list), most stale first (never-computed pairs first, then by
        staleness, ties by symbol and timeframe). ``summary.total_monitored`` counts pairs.

        One query: statuses, per-status counts (a window count, so the cap does not hide pairs)
        and the ranking are computed in SQL, and only the listed pairs come back; their
        ``staleness_seconds`` is then computed in Python at microsecond precision.
        """
        _check_limit(limit)
        now = self._now()
        params = {**self._freshness_params(now), "per_status_limit": limit}
        rows = self._run(
            self._read_key("staleness_report"),
            self._staleness_report_stmt,
            params,
            fetch="all",
            write=False,
        )
        by_status: dict[str, list[dict[str, Any]]] = {status: [] for status in FRESHNESS_STATUSES}
        counts = dict.fromkeys(FRESHNESS_STATUSES, 0)
        for symbol, timeframe, last, count, status, status_count in rows:
            counts[status] = status_count
            by_status[status].append(
                {
                    "symbol": symbol,
                    "timeframe": timeframe,
                    "last_computed_at": last,
                    # staleness_seconds() without its checks: stored times are aware UTC.
                    "staleness_seconds": None
                    if last is None
                    else max(now - last, _ZERO).total_seconds(),
                    "status": status,
                    "data_point_count": count,
                }
            )
        return StalenessReport.model_validate({
            "timestamp": now,
            "summary": {
                "fresh_count": counts["fresh"],
                "aging_count": counts["aging"],
                "stale_count": counts["stale"],
                "missing_count": counts["missing"],
                "total_monitored": sum(counts.values()),
            },
            "by_status": by_status,
        })

    def _staleness_report_stmt(self):
        """The ranked pairs of the staleness report: ``(symbol, timeframe, last_computed_at,
        data_point_count, status, status_count)``, at most ``per_status_limit`` per status."""
        source, symbol, timeframe, last, count, status = self._freshness_source()
        # Most stale first = smallest min(last_computed_at, now): a computation in the future
        # has staleness 0, so those tie and fall back to symbol and timeframe as in Python.
        now_param = sa.bindparam("p_now", type_=UTCDateTime)
        clamped = sa.case((last > now_param, now_param), else_=last)
        ranked = (
            sa.select(
                symbol.label("symbol"),
                timeframe.label("timeframe"),
                last.label("last_computed_at"),
                count.label("data_point_count"),
                status.label("status"),
                sa.func.row_number()
                .over(
                    partition_by=status,
                    order_by=[
                        sa.case((last.is_(None), 0), else_=1),
                        clamped,
                        self._code_point_order(symbol),
                        self._code_point_order(timeframe),
                    ],
                )
                .label("rank"),
                sa.func.count().over(partition_by=status).label("status_count"),
            )
            .select_from(source)
            .subquery("ranked")
        )
        return (
            sa.select(
                ranked.c.symbol,
                ranked.c.timeframe,
                ranked.c.last_computed_at,
                ranked.c.data_point_count,
                ranked.c.status,
                ranked.c.status_count,
            )
            .where(ranked.c.rank <= sa.bindparam("per_status_limit", type_=sa.Integer))
            .order_by(ranked.c.status, ranked.c.rank)
        )

    def get_scheduler_health(self, *, recent_failures_limit: int = 10) -> SchedulerHealth:
        """The spec's ``/admin/scheduler-health`` body, with additions.

        Spec fields: ``status`` (see :func:`market_pipeline.domain.freshness.health_status`),
        ``timestamp``, ``last_execution`` (the one started most recently, ``None`` when there is
        none), ``stale_features_count`` (stale plus missing monitored pairs: both need a run),
        ``recent_failures`` (unresolved failures only, newest first, at most
        ``recent_failures_limit``; ``error`` is the stored message) and
        ``total_symbols_monitored`` (distinct symbols among the monitored pairs).

        Additions: ``reasons`` (why degraded; empty when healthy), ``freshness_summary`` (the
        staleness report's summary, so stale and missing are also apart),
        ``missing_features_count``, ``open_failures_count`` and ``alerts``: open failures of
        pairs that failed ``failure_alert_threshold`` or more times in a row, as
        ``{symbol, timeframe, consecutive_failures, error, failed_at}``, most failures first.

        Two queries: one row with the freshness counts (statuses computed in SQL at read time),
        the open failure count and the last execution; then the recent and alerting open
        failures as one UNION ALL.
        """
        _check_limit(recent_failures_limit, "recent_failures_limit")
        now = self._now()
        summary = self._run(
            self._read_key("health_summary"),
            self._health_summary_stmt,
            self._freshness_params(now),
            fetch="one",
            write=False,
        )
        failure_rows = [
            _FailureRow(*row)
            for row in self._run(
                "health_failures",
                self._health_failures_stmt,
                {"recent_failures_limit": recent_failures_limit,
                 "alert_threshold": self._threshold},
                fetch="all",
                write=False,
            )
        ]
        recent = sorted(
            (r for r in failure_rows if r.kind == "recent"),
            key=lambda r: (r.failed_at, r.id),
            reverse=True,
        )
        alerting = sorted(
            (r for r in failure_rows if r.kind == "alert"),
            key=lambda r: (r.retry_count, r.failed_at, r.id),
            reverse=True,
        )
        summary = _HealthSummaryRow(*summary)
        counts_by_status = {
            "fresh": int(summary.fresh_count),
            "aging": int(summary.aging_count),
            "stale": int(summary.stale_count),
            "missing": int(summary.missing_count),
        }
        open_failures = int(summary.open_failures)
        has_last = summary.execution_id is not None
        status, reasons = health_status(
            last_execution_status=summary.status if has_last else None,
            stale_count=counts_by_status["stale"],
            missing_count=counts_by_status["missing"],
            open_failures_count=open_failures,
        )
        return SchedulerHealth.model_validate({
            "status": status,
            "timestamp": now,
            "last_execution": None
            if not has_last
            else {
                "execution_id": _id_str(summary.execution_id),
                "started_at": summary.started_at,
                "completed_at": summary.completed_at,
                "status": summary.status,
                "successful_symbols": summary.successful_symbols,
                "failed_symbols": summary.failed_symbols,
                "total_symbols": summary.total_symbols,
                "error_message": summary.error_message,
            },
            "stale_features_count": counts_by_status["stale"] + counts_by_status["missing"],
            "recent_failures": [
                {
                    "symbol": r.symbol,
                    "timeframe": r.timeframe,
                    "error": r.error_message,
                    "failed_at": r.failed_at,
                    "retry_count": r.retry_count,
                    "execution_id": _id_str(r.execution_id),
                }
                for r in recent
            ],
            "total_symbols_monitored": int(summary.symbols),
            "reasons": reasons,
            "missing_features_count": counts_by_status["missing"],
            "open_failures_count": open_failures,
            "freshness_summary": {
                "fresh_count": counts_by_status["fresh"],
                "aging_count": counts_by_status["aging"],
                "stale_count": counts_by_status["stale"],
                "missing_count": counts_by_status["missing"],
                "total_monitored": int(summary.total_monitored),
            },
            "alerts": [
                {
                    "symbol": r.symbol,
                    "timeframe": r.timeframe,
                    "consecutive_failures": r.retry_count + 1,
                    "error": r.error_message,
                    "failed_at": r.failed_at,
                }
                for r in alerting
            ],
        })

    def _health_summary_stmt(self):
        """One row: freshness counts of the monitored pairs (statuses computed in SQL), the
        distinct symbol count, the open failure count and the last execution's columns (see
        :class:`_HealthSummaryRow`)."""
        e = executions_t
        f = failures_t
        source, symbol, _, _, _, status = self._freshness_source()

        def status_count(name: str):
            return sa.func.coalesce(
                sa.func.sum(sa.case((status == name, 1), else_=0)), 0
            ).label(f"{name}_count")

        counts = (
            sa.select(
                *(status_count(name) for name in FRESHNESS_STATUSES),
                sa.func.count().label("total_monitored"),
                sa.func.count(sa.distinct(symbol)).label("symbols"),
            )
            .select_from(source)
            .subquery("counts")
        )
        last = (
            sa.select(
                e.c.execution_id,
                e.c.started_at,
                e.c.completed_at,
                e.c.status,
                e.c.total_symbols,
                e.c.successful_symbols,
                e.c.failed_symbols,
                e.c.error_message,
            )
            .order_by(e.c.started_at.desc(), e.c.execution_id.desc())
            .limit(1)
            .subquery("last_execution")
        )
        open_count = (
            sa.select(sa.func.count())
            .select_from(f)
            .where(sa.not_(f.c.resolved))
            .scalar_subquery()
        )
        return sa.select(
            *(counts.c[f"{name}_count"] for name in FRESHNESS_STATUSES),
            counts.c.total_monitored,
            counts.c.symbols,
            open_count.label("open_failures"),
            *last.c,
        ).select_from(counts.outerjoin(last, sa.true()))

    @staticmethod
    def _health_failures_stmt():
        """The open failures of the health report (see :class:`_FailureRow`): the newest
        ``recent_failures_limit`` (kind ``recent``) and those at or over ``alert_threshold``
        consecutive failures (kind ``alert``), as one UNION ALL."""
        f = failures_t
        open_failure = sa.not_(f.c.resolved)
        failure_columns = (
            f.c.id,
            f.c.symbol,
            f.c.timeframe,
            f.c.error_message,
            f.c.failed_at,
            f.c.retry_count,
            f.c.execution_id,
        )
        recent_q = (
            sa.select(sa.literal("recent").label("kind"), *failure_columns)
            .where(open_failure)
            .order_by(f.c.failed_at.desc(), f.c.id.desc())
            .limit(sa.bindparam("recent_failures_limit", type_=sa.Integer))
            .subquery("recent")
        )
        alert_q = sa.select(sa.literal("alert").label("kind"), *failure_columns).where(
            open_failure,
            f.c.retry_count + 1 >= sa.bindparam("alert_threshold", type_=sa.Integer),
        )
        return sa.union_all(sa.select(recent_q), alert_q)

    def get_execution_history(self, *, limit: int = 20) -> ExecutionHistory:
        """The spec's ``/admin/scheduler/execution-history`` body: executions newest first.

        ``success_rate`` is ``round(100 * successful_symbols / total_symbols, 1)``, and ``None``
        when ``total_symbols`` is 0 (no rate exists; 0.0 would read as "everything failed").
        """
        _check_limit(limit)
        now = self._now()
        rows = [
            _HistoryRow(*row)
            for row in self._run(
                "execution_history",
                self._history_stmt,
                {"history_limit": limit},
                fetch="all",
                write=False,
            )
        ]
        return ExecutionHistory.model_validate({
            "timestamp": now,
            "executions": [
                {
                    "execution_id": _id_str(r.execution_id),
                    "started_at": r.started_at,
                    "completed_at": r.completed_at,
                    "duration_seconds": r.duration_seconds,
                    "total_symbols": r.total_symbols,
                    "successful_symbols": r.successful_symbols,
                    "failed_symbols": r.failed_symbols,
                    "total_records_processed": r.total_records_processed,
                    "status": r.status,
                    "error_message": r.error_message,
                    "success_rate": None
                    if r.total_symbols == 0
                    else round(100 * r.successful_symbols / r.total_symbols, 1),
                }
                for r in rows
            ],
        })

    @staticmethod
    def _history_stmt():
        e = executions_t
        return (
            sa.select(*(e.c[name] for name in _HistoryRow._fields))
            .order_by(e.c.started_at.desc(), e.c.execution_id.desc())
            .limit(sa.bindparam("history_limit", type_=sa.Integer))
        )

    # -- what the run mirror reads back ---------------------------------------------------------

    def failed_pairs_of(self, execution_id: str | uuid.UUID) -> set[tuple[str, str]]:
        """Pairs with a ``failed`` status row in ``execution_id``: their failure is already
        logged (the mirror writes failures before status rows)."""
        s = symbol_status_t
        with self._engine.connect() as conn:
            rows = conn.execute(
                sa.select(s.c.symbol, s.c.timeframe).where(
                    s.c.execution_id == canonical_uuid(execution_id), s.c.status == "failed"
                )
            ).all()
        return {(r.symbol, r.timeframe) for r in rows}

    def alerts_for(self, pairs: Iterable[tuple[str, str]]) -> list[Alert]:
        """Open failures among ``pairs`` that reached the alert threshold."""
        wanted = set(pairs)
        if not wanted:
            return []
        f = failures_t
        with self._engine.connect() as conn:
            rows = conn.execute(
                sa.select(
                    f.c.symbol, f.c.timeframe, f.c.retry_count, f.c.error_message, f.c.failed_at
                ).where(
                    sa.not_(f.c.resolved),
                    f.c.retry_count + 1 >= self._threshold,
                    f.c.symbol.in_(sorted({s for s, _ in wanted})),
                )
            ).all()
        return [
            Alert(
                symbol=r.symbol,
                timeframe=r.timeframe,
                consecutive_failures=r.retry_count + 1,
                error=r.error_message,
                failed_at=r.failed_at,
            )
            for r in rows
            if (r.symbol, r.timeframe) in wanted
        ]

    def finished_executions(self, execution_ids: Iterable[str]) -> set[str]:
        """Those of ``execution_ids`` (as given) whose row is ``completed`` or ``failed``; ids
        that are not UUIDs are simply not found."""
        canonical: dict[str, str] = {}
        for given in execution_ids:
            try:
                canonical[canonical_uuid(given)] = given
            except ValueError:
                continue
        if not canonical:
            return set()
        e = executions_t
        with self._engine.connect() as conn:
            found = conn.execute(
                sa.select(e.c.execution_id).where(
                    e.c.execution_id.in_(sorted(canonical)),
                    e.c.status.in_(_TERMINAL_STATUSES),
                )
            ).scalars()
            return {canonical[eid] for eid in found}

    def mirror_watermark(self, name: str) -> datetime | None:
        """The run update time up to which mirror ``name`` projected every run; ``None``
        before its first pass."""
        w = mirror_watermark_t
        with self._engine.connect() as conn:
            return conn.execute(sa.select(w.c.run_updated_at).where(w.c.name == name)).scalar()

    def advance_mirror_watermark(self, name: str, value: datetime, mirrored: int) -> None:
        """Move mirror ``name``'s watermark to ``value`` (never backwards) and count
        ``mirrored`` more runs."""
        w = mirror_watermark_t
        stmt = self._insert(w).values(
            name=_check_key(name, "name"),
            run_updated_at=ensure_utc(value, name="value"),
            runs_mirrored=_check_count(mirrored, "mirrored"),
            updated_at=self._now(),
        )
        new = stmt.excluded
        stmt = stmt.on_conflict_do_update(
            index_elements=[w.c.name],
            set_={
                "run_updated_at": sa.case(
                    (new.run_updated_at > w.c.run_updated_at, new.run_updated_at),
                    else_=w.c.run_updated_at,
                ),
                "runs_mirrored": w.c.runs_mirrored + new.runs_mirrored,
                "updated_at": new.updated_at,
            },
        )
        with self._write() as conn:
            conn.execute(stmt)
