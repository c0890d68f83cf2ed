"""ObservabilityStore on SQLite and PostgreSQL (the ``engine`` fixture runs each test on both).

Time comes from a fixed clock that tests move by hand; nothing sleeps.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

from market_pipeline.database.direct_pool import direct_pool
from market_pipeline.database.engine import temporary_postgres_database
from market_pipeline.database.tables import (
    feature_computation_failures,
    feature_freshness,
    scheduler_execution_log,
    symbol_computation_status,
)
from market_pipeline.domain.freshness import NO_EXECUTION_REASON, freshness_status
from market_pipeline.domain.identifiers import MalformedIdError
from market_pipeline.domain.timestamps import NaiveDatetimeError, format_utc
from market_pipeline.observability.store import (
    MAX_ERROR_LENGTH,
    MAX_LIMIT,
    ObservabilityStore,
    UnknownExecutionError,
    sanitize_error_message,
)
from market_pipeline_tests.support.postgres import migrated_engine

T0 = datetime(2024, 11, 13, 19, 30, tzinfo=UTC)
TOKYO = timezone(timedelta(hours=9))


class FixedClock:
    """A clock that only moves when told to."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@pytest.fixture(scope="module")
def pg_module_engine(pg_server):
    """One migrated PostgreSQL database for this module (creating one per test costs ~0.75 s)."""
    with temporary_postgres_database(pg_server, prefix="mp_test") as url:
        yield from migrated_engine(url)


def _emptied(eng):
    with eng.begin() as conn:  # DELETE: on tiny tables much faster than TRUNCATE
        for table in (
            feature_computation_failures,
            symbol_computation_status,
            feature_freshness,
            scheduler_execution_log,
        ):
            conn.execute(table.delete())
    return eng


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def engine(request, tmp_path):
    """A migrated, empty database on each backend (overrides conftest's ``engine`` for speed).

    SQLite gets a new file per test, as in conftest; PostgreSQL reuses the module's database,
    emptied before each test, so every test still starts from an empty, migrated schema.
    """
    if request.param == "sqlite":
        yield from migrated_engine(f"sqlite:///{tmp_path / 'market_pipeline.db'}")
        return
    yield _emptied(request.getfixturevalue("pg_module_engine"))


@pytest.fixture
def pg_engine(pg_module_engine):
    """The module's PostgreSQL database, emptied: for behaviour only PostgreSQL has."""
    return _emptied(pg_module_engine)


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(T0)


@pytest.fixture
def store(engine, clock) -> ObservabilityStore:
    return ObservabilityStore(engine, clock=clock)


def make_store(engine, clock, **kwargs) -> ObservabilityStore:
    return ObservabilityStore(engine, clock=clock, **kwargs)


def rows(engine, table, *where):
    with engine.connect() as conn:
        return conn.execute(sa.select(table).where(*where)).all()


def one(engine, table, *where):
    found = rows(engine, table, *where)
    assert len(found) == 1, found
    return found[0]


def execution_row(engine, execution_id):
    t = scheduler_execution_log
    return one(engine, t, t.c.execution_id == execution_id)


def failure_rows(engine, symbol, timeframe):
    t = feature_computation_failures
    with engine.connect() as conn:
        return conn.execute(
            sa.select(t).where(t.c.symbol == symbol, t.c.timeframe == timeframe).order_by(t.c.id)
        ).all()


def new_execution(store, started_at=None, **kwargs) -> str:
    return store.create_scheduler_execution_log(
        started_at=started_at or T0 - timedelta(hours=1), **kwargs
    )


class StatementCounter:
    """Counts statements sent to the database while active."""

    def __init__(self, engine) -> None:
        self.engine = engine
        self.count = 0

    def _on_execute(self, *args, **kwargs) -> None:
        self.count += 1

    def __enter__(self) -> StatementCounter:
        sa.event.listen(self.engine, "before_cursor_execute", self._on_execute)
        return self

    def __exit__(self, *exc) -> None:
        sa.event.remove(self.engine, "before_cursor_execute", self._on_execute)


# -- scheduler_execution_log ---------------------------------------------------------------------


def test_create_generates_a_uuid_and_stores_a_running_row(engine, store):
    eid = store.create_scheduler_execution_log(started_at=T0, total_symbols=50)
    assert uuid.UUID(eid).version == 4
    row = execution_row(engine, eid)
    assert row.status == "running"
    assert row.started_at == T0
    assert row.total_symbols == 50
    assert (row.successful_symbols, row.failed_symbols, row.total_records_processed) == (0, 0, 0)
    assert row.completed_at is None
    assert row.updated_at == T0


def test_create_accepts_a_given_id_in_any_uuid_form_and_returns_it_canonical(engine, store):
    given = uuid.uuid4()
    returned = store.create_scheduler_execution_log(
        started_at=T0,
        execution_id="{" + str(given).upper() + "}",
        job_name="market_data_job",
        run_trigger="schedule",
        scheduled_for=T0,
    )
    assert returned == str(given)
    row = execution_row(engine, str(given))
    assert (row.job_name, row.run_trigger, row.scheduled_for) == ("market_data_job", "schedule", T0)


def test_create_converts_other_timezones_to_utc_and_keeps_microseconds(engine, store):
    started = datetime(2024, 11, 14, 4, 30, 0, 123456, tzinfo=TOKYO)
    eid = store.create_scheduler_execution_log(started_at=started)
    stored = execution_row(engine, eid).started_at
    assert stored == started
    assert stored.utcoffset() == timedelta(0)
    assert stored == datetime(2024, 11, 13, 19, 30, 0, 123456, tzinfo=UTC)


def test_create_refuses_naive_datetimes_and_stores_nothing(engine, store):
    with pytest.raises(NaiveDatetimeError):
        store.create_scheduler_execution_log(started_at=datetime(2024, 11, 13, 2, 0))
    with pytest.raises(NaiveDatetimeError):
        store.create_scheduler_execution_log(
            started_at=T0, scheduled_for=datetime(2024, 11, 13, 2, 0)
        )
    assert rows(engine, scheduler_execution_log) == []


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"status": "done"}, ValueError),
        ({"total_symbols": -1}, ValueError),
        ({"total_symbols": 2.5}, ValueError),
        ({"execution_id": "not-a-uuid"}, MalformedIdError),
        ({"execution_id": 42}, MalformedIdError),
    ],
)
def test_create_validates_its_arguments(engine, store, kwargs, error):
    with pytest.raises(error):
        store.create_scheduler_execution_log(started_at=T0, **kwargs)
    assert rows(engine, scheduler_execution_log) == []


def test_recreating_a_completed_execution_does_not_reopen_it(engine, store, clock):
    eid = new_execution(store, total_symbols=50)
    store.update_scheduler_execution_log(
        execution_id=eid,
        completed_at=T0,
        successful_symbols=45,
        failed_symbols=5,
        status="completed",
    )
    before = execution_row(engine, eid)
    clock.advance(minutes=5)
    again = store.create_scheduler_execution_log(
        started_at=T0 + timedelta(minutes=1), total_symbols=7, status="running", execution_id=eid
    )
    assert again == eid
    after = execution_row(engine, eid)
    assert after.status == "completed"
    assert after.started_at == before.started_at
    assert after.completed_at == before.completed_at
    assert after.total_symbols == 50
    assert (after.successful_symbols, after.failed_symbols) == (45, 5)
    assert after.duration_seconds == before.duration_seconds
    assert len(rows(engine, scheduler_execution_log)) == 1


def test_recreating_fills_blanks_only(engine, store):
    eid = new_execution(store)
    store.create_scheduler_execution_log(
        started_at=T0, execution_id=eid, total_symbols=12, job_name="job", run_trigger="sensor"
    )
    row = execution_row(engine, eid)
    assert (row.total_symbols, row.job_name, row.run_trigger) == (12, "job", "sensor")
    store.create_scheduler_execution_log(
        started_at=T0, execution_id=eid, total_symbols=99, job_name="other", run_trigger="manual"
    )
    row = execution_row(engine, eid)
    assert (row.total_symbols, row.job_name, row.run_trigger) == (12, "job", "sensor")


def test_update_records_completion_and_computes_duration(engine, store, clock):
    started = T0 - timedelta(minutes=15, seconds=30)
    eid = new_execution(store, started_at=started, total_symbols=50)
    clock.advance(seconds=1)
    store.update_scheduler_execution_log(
        execution_id=eid,
        completed_at=T0,
        successful_symbols=45,
        failed_symbols=5,
        total_records_processed=12500,
        status="completed",
    )
    row = execution_row(engine, eid)
    assert row.status == "completed"
    assert row.completed_at == T0
    assert row.duration_seconds == pytest.approx(930.0)
    assert (row.successful_symbols, row.failed_symbols) == (45, 5)
    assert row.total_records_processed == 12500
    assert row.total_symbols == 50
    assert row.updated_at == clock.now


def test_update_keeps_an_explicit_duration_and_unmentioned_fields(engine, store):
    eid = new_execution(store, total_symbols=3)
    store.update_scheduler_execution_log(execution_id=eid, successful_symbols=1)
    store.update_scheduler_execution_log(
        execution_id=eid,
        completed_at=T0,
        duration_seconds=12.5,
        status="failed",
        error_message="provider down",
    )
    row = execution_row(engine, eid)
    assert row.duration_seconds == 12.5
    assert row.successful_symbols == 1
    assert row.total_symbols == 3
    assert (row.status, row.error_message) == ("failed", "provider down")


def test_update_of_an_unknown_execution_names_it(engine, store):
    missing = str(uuid.uuid4())
    with pytest.raises(UnknownExecutionError, match=missing) as info:
        store.update_scheduler_execution_log(execution_id=missing, status="completed")
    assert isinstance(info.value, LookupError)
    assert info.value.execution_id == missing


def test_update_with_a_malformed_id_is_a_clear_error(store):
    with pytest.raises(MalformedIdError, match="not-a-uuid"):
        store.update_scheduler_execution_log(execution_id="not-a-uuid", status="completed")


def test_update_refuses_an_unknown_status_naming_the_valid_ones(engine, store):
    eid = new_execution(store)
    with pytest.raises(ValueError, match="running, completed, failed"):
        store.update_scheduler_execution_log(execution_id=eid, status="succeeded")
    assert execution_row(engine, eid).status == "running"


def test_update_refuses_completion_before_start_and_changes_nothing(engine, store):
    eid = new_execution(store, started_at=T0)
    with pytest.raises(ValueError, match="before started_at"):
        store.update_scheduler_execution_log(
            execution_id=eid, completed_at=T0 - timedelta(seconds=1), status="completed"
        )
    row = execution_row(engine, eid)
    assert (row.status, row.completed_at) == ("running", None)


@pytest.mark.parametrize("field", ["successful_symbols", "failed_symbols", "duration_seconds"])
def test_update_refuses_negative_numbers(store, field):
    eid = new_execution(store)
    with pytest.raises(ValueError, match=field):
        store.update_scheduler_execution_log(execution_id=eid, **{field: -1})


def test_a_late_running_update_does_not_reopen_a_finished_execution(engine, store):
    eid = new_execution(store)
    store.update_scheduler_execution_log(execution_id=eid, completed_at=T0, status="completed")
    store.update_scheduler_execution_log(execution_id=eid, status="running", successful_symbols=3)
    row = execution_row(engine, eid)
    assert row.status == "completed"
    assert row.successful_symbols == 3
    store.update_scheduler_execution_log(execution_id=eid, status="failed")
    assert execution_row(engine, eid).status == "failed"


# -- error messages ------------------------------------------------------------------------------


def test_error_messages_of_any_unicode_round_trip(engine, store):
    message = "Division by zero in volatility: Ünïcödé ✓ 日本語 עברית 🚀 \t\n end"
    eid = new_execution(store)
    store.update_scheduler_execution_log(execution_id=eid, status="failed", error_message=message)
    assert execution_row(engine, eid).error_message == message


def test_nul_characters_are_replaced_not_rejected(engine, store):
    eid = new_execution(store)
    store.log_feature_computation_failure(
        symbol="XYZ", timeframe="1h", error_message="bad\x00byte", execution_id=eid
    )
    stored = failure_rows(engine, "XYZ", "1h")[0].error_message
    assert "\x00" not in stored
    assert stored == "bad\ufffdbyte"


def test_long_error_messages_are_cut_to_the_limit_with_a_marker(engine, store):
    message = "é" * (MAX_ERROR_LENGTH * 3)
    eid = new_execution(store)
    store.update_scheduler_execution_log(execution_id=eid, status="failed", error_message=message)
    stored = execution_row(engine, eid).error_message
    assert len(stored) == MAX_ERROR_LENGTH
    assert stored.startswith("é" * 100)
    assert stored.endswith(f"[truncated, {len(message)} characters in all]")


def test_messages_at_the_limit_are_kept_whole_and_lone_surrogates_are_replaced():
    exact = "x" * MAX_ERROR_LENGTH
    assert sanitize_error_message(exact) == exact
    assert sanitize_error_message("a\ud800b") == "a?b"
    assert sanitize_error_message("") == ""
    with pytest.raises(TypeError):
        sanitize_error_message(None)


# -- feature_computation_failures ----------------------------------------------------------------


def test_first_failure_opens_a_row(engine, store):
    eid = new_execution(store)
    failed = T0 - timedelta(minutes=25)
    fid = store.log_feature_computation_failure(
        symbol="XYZ",
        timeframe="1h",
        error_message="Division by zero in volatility",
        execution_id=eid,
        failed_at=failed,
    )
    (row,) = failure_rows(engine, "XYZ", "1h")
    assert row.id == fid
    assert (row.retry_count, row.resolved) == (0, False)
    assert (row.failed_at, row.first_failed_at) == (failed, failed)
    assert row.execution_id == eid
    assert row.error_message == "Division by zero in volatility"


def test_failed_at_defaults_to_the_clock(engine, store):
    store.log_feature_computation_failure(symbol="XYZ", timeframe="1h", error_message="x")
    assert failure_rows(engine, "XYZ", "1h")[0].failed_at == T0


def test_a_repeat_failure_of_another_execution_increments_the_open_row(engine, store):
    first, second = new_execution(store), new_execution(store)
    t1, t2 = T0 - timedelta(hours=2), T0 - timedelta(hours=1)
    fid1 = store.log_feature_computation_failure(
        symbol="XYZ", timeframe="1h", error_message="one", execution_id=first, failed_at=t1
    )
    fid2 = store.log_feature_computation_failure(
        symbol="XYZ", timeframe="1h", error_message="two", execution_id=second, failed_at=t2
    )
    assert fid1 == fid2
    (row,) = failure_rows(engine, "XYZ", "1h")
    assert row.retry_count == 1
    assert (row.error_message, row.execution_id, row.failed_at) == ("two", second, t2)
    assert row.first_failed_at == t1


def test_failures_without_execution_ids_each_count(engine, store, clock):
    for _ in range(3):
        store.log_feature_computation_failure(symbol="XYZ", timeframe="1h", error_message="x")
        clock.advance(minutes=10)
    (row,) = failure_rows(engine, "XYZ", "1h")
    assert row.retry_count == 2


def test_redelivering_the_same_executions_failure_does_not_count_again(engine, store):
    eid = new_execution(store)
    args = {"symbol": "XYZ", "timeframe": "1h", "error_message": "boom", "execution_id": eid}
    fid = store.log_feature_computation_failure(**args, failed_at=T0)
    assert store.log_feature_computation_failure(**args, failed_at=T0) == fid
    assert store.log_feature_computation_failure(**args, failed_at=T0) == fid
    (row,) = failure_rows(engine, "XYZ", "1h")
    assert row.retry_count == 0


def test_an_older_failure_arriving_late_counts_but_does_not_replace_the_newest(engine, store):
    old, new = new_execution(store), new_execution(store)
    t_old, t_new = T0 - timedelta(hours=3), T0 - timedelta(hours=1)
    store.log_feature_computation_failure(
        symbol="XYZ", timeframe="1h", error_message="newest", execution_id=new, failed_at=t_new
    )
    store.log_feature_computation_failure(
        symbol="XYZ", timeframe="1h", error_message="older", execution_id=old, failed_at=t_old
    )
    (row,) = failure_rows(engine, "XYZ", "1h")
    assert row.retry_count == 1
    assert (row.error_message, row.execution_id, row.failed_at) == ("newest", new, t_new)
    assert row.first_failed_at == t_old


def test_resolving_closes_the_open_failure_and_the_next_failure_opens_a_new_one(engine, store):
    failing, fixing = new_execution(store), new_execution(store)
    fid = store.log_feature_computation_failure(
        symbol="XYZ",
        timeframe="1h",
        error_message="x",
        execution_id=failing,
        failed_at=T0 - timedelta(hours=1),
    )
    store.log_feature_computation_failure(
        symbol="XYZ", timeframe="1h", error_message="y", failed_at=T0 - timedelta(minutes=30)
    )
    resolved = store.resolve_feature_computation_failures(
        symbol="XYZ", timeframe="1h", execution_id=fixing, resolved_at=T0
    )
    assert resolved == 1
    (row,) = failure_rows(engine, "XYZ", "1h")
    assert (row.resolved, row.resolved_at, row.resolved_by_execution_id) == (True, T0, fixing)
    assert row.retry_count == 1
    assert store.resolve_feature_computation_failures(symbol="XYZ", timeframe="1h") == 0

    reopened = store.log_feature_computation_failure(
        symbol="XYZ", timeframe="1h", error_message="z", failed_at=T0 + timedelta(hours=1)
    )
    assert reopened != fid
    old, new = failure_rows(engine, "XYZ", "1h")
    assert old.resolved and not new.resolved
    assert new.retry_count == 0


def test_a_success_older_than_the_failure_does_not_resolve_it(engine, store):
    store.log_feature_computation_failure(
        symbol="XYZ", timeframe="1h", error_message="x", failed_at=T0
    )
    assert (
        store.resolve_feature_computation_failures(
            symbol="XYZ", timeframe="1h", resolved_at=T0 - timedelta(seconds=1)
        )
        == 0
    )
    assert not failure_rows(engine, "XYZ", "1h")[0].resolved


def test_resolving_only_touches_its_pair(engine, store):
    for timeframe in ("1h", "1d"):
        store.log_feature_computation_failure(
            symbol="XYZ", timeframe=timeframe, error_message="x", failed_at=T0
        )
    store.resolve_feature_computation_failures(symbol="XYZ", timeframe="1h", resolved_at=T0)
    assert failure_rows(engine, "XYZ", "1h")[0].resolved
    assert not failure_rows(engine, "XYZ", "1d")[0].resolved


def test_redelivering_a_resolved_failure_does_not_reopen_the_pair(engine, store):
    failing, fixing = new_execution(store), new_execution(store)
    args = {
        "symbol": "XYZ",
        "timeframe": "1h",
        "error_message": "x",
        "execution_id": failing,
        "failed_at": T0 - timedelta(hours=1),
    }
    fid = store.log_feature_computation_failure(**args)
    store.resolve_feature_computation_failures(
        symbol="XYZ", timeframe="1h", execution_id=fixing, resolved_at=T0
    )
    assert store.log_feature_computation_failure(**args) == fid
    (row,) = failure_rows(engine, "XYZ", "1h")
    assert row.resolved


def test_a_failure_arriving_after_a_later_recorded_success_is_stored_resolved(engine, store):
    failing, fixing = new_execution(store), new_execution(store)
    store.log_symbol_computation_status(
        execution_id=fixing, symbol="XYZ", timeframe="1h", status="completed", completed_at=T0
    )
    fid = store.log_feature_computation_failure(
        symbol="XYZ",
        timeframe="1h",
        error_message="late news",
        execution_id=failing,
        failed_at=T0 - timedelta(hours=1),
    )
    (row,) = failure_rows(engine, "XYZ", "1h")
    assert row.id == fid
    assert (row.resolved, row.resolved_at, row.resolved_by_execution_id) == (True, T0, fixing)
    assert store.get_scheduler_health().model_dump()["open_failures_count"] == 0


def test_failures_with_unknown_or_malformed_execution_ids_are_refused(engine, store):
    missing = str(uuid.uuid4())
    with pytest.raises(UnknownExecutionError, match=missing):
        store.log_feature_computation_failure(
            symbol="XYZ", timeframe="1h", error_message="x", execution_id=missing
        )
    with pytest.raises(MalformedIdError):
        store.log_feature_computation_failure(
            symbol="XYZ", timeframe="1h", error_message="x", execution_id="run-42"
        )
    with pytest.raises(UnknownExecutionError):
        store.resolve_feature_computation_failures(
            symbol="XYZ", timeframe="1h", execution_id=missing
        )
    assert rows(engine, feature_computation_failures) == []


def test_the_earliest_success_at_or_after_the_failure_supersedes_it(engine, store):
    """Among many statuses of the pair only a completed one at or after failed_at resolves a late
    failure, and the earliest such success is the one recorded as resolving it."""
    earlier, failing, failed_later, first_fix, second_fix = (new_execution(store) for _ in range(5))
    statuses = [
        (earlier, "completed", T0 - timedelta(hours=5)),
        (failed_later, "failed", T0 - timedelta(minutes=30)),
        (second_fix, "completed", T0 + timedelta(hours=2)),
        (first_fix, "completed", T0 + timedelta(hours=1)),
    ]
    store.log_symbol_computation_statuses(
        {
            "execution_id": eid,
            "symbol": "XYZ",
            "timeframe": "1h",
            "status": status,
            "completed_at": at,
        }
        for eid, status, at in statuses
    )
    fid = store.log_feature_computation_failure(
        symbol="XYZ", timeframe="1h", error_message="late", execution_id=failing, failed_at=T0
    )
    (row,) = failure_rows(engine, "XYZ", "1h")
    assert row.id == fid
    assert (row.resolved, row.resolved_at, row.resolved_by_execution_id) == (
        True,
        T0 + timedelta(hours=1),
        first_fix,
    )
    # A failure after every success of the pair opens it; the other pair is untouched.
    later = store.log_feature_computation_failure(
        symbol="XYZ",
        timeframe="1h",
        error_message="new",
        execution_id=new_execution(store),
        failed_at=T0 + timedelta(hours=3),
    )
    assert [(r.id, r.resolved) for r in failure_rows(engine, "XYZ", "1h")] == [
        (fid, True),
        (later, False),
    ]
    assert failure_rows(engine, "XYZ", "1d") == []


@pytest.mark.postgres
def test_a_failure_write_is_one_call_on_postgresql(pg_engine, clock):
    engine, store = pg_engine, ObservabilityStore(pg_engine, clock=clock)
    eid = new_execution(store)
    pool = direct_pool(engine)
    before = pool.calls
    with StatementCounter(engine) as counter:
        store.log_feature_computation_failure(
            symbol="XYZ", timeframe="1h", error_message="x", execution_id=eid
        )
    assert pool.calls - before == 1  # one statement on a direct connection
    assert counter.count == 0  # and nothing through the SQLAlchemy pool
    assert failure_rows(engine, "XYZ", "1h")[0].retry_count == 0


@pytest.mark.postgres
def test_only_the_stores_own_connections_skip_the_commit_flush(pg_engine, clock):
    """The store's direct connections run with synchronous_commit off (its rows are derived
    data the reconciler rebuilds); the engine's pooled connections keep the server default, so
    market data written through them stays durable."""
    engine, store = pg_engine, ObservabilityStore(pg_engine, clock=clock)
    new_execution(store)

    def show(cursor):
        cursor.execute("SHOW synchronous_commit")
        return cursor.fetchone()[0]

    assert direct_pool(engine).run(show, statement="SHOW", may_repeat=True) == "off"
    with engine.connect() as conn:
        default = conn.exec_driver_sql(
            "SELECT reset_val FROM pg_settings WHERE name = 'synchronous_commit'"
        ).scalar_one()
        assert default == "on"
        assert conn.exec_driver_sql("SHOW synchronous_commit").scalar_one() == default


@pytest.mark.parametrize(
    "kwargs",
    [
        {"symbol": "", "timeframe": "1h", "error_message": "x"},
        {"symbol": "XYZ", "timeframe": None, "error_message": "x"},
        {"symbol": "X\x00", "timeframe": "1h", "error_message": "x"},
        {
            "symbol": "XYZ",
            "timeframe": "1h",
            "error_message": "x",
            "failed_at": datetime(2024, 1, 1),
        },
    ],
)
def test_failure_arguments_are_validated(store, kwargs):
    with pytest.raises((ValueError, TypeError)):
        store.log_feature_computation_failure(**kwargs)


def test_deleting_an_execution_keeps_its_failures(engine, store):
    eid = new_execution(store)
    store.log_feature_computation_failure(
        symbol="XYZ", timeframe="1h", error_message="x", execution_id=eid
    )
    with engine.begin() as conn:
        conn.execute(
            scheduler_execution_log.delete().where(scheduler_execution_log.c.execution_id == eid)
        )
    assert failure_rows(engine, "XYZ", "1h")[0].execution_id is None


# -- symbol_computation_status -------------------------------------------------------------------


def status_row(engine, eid, symbol, timeframe):
    s = symbol_computation_status
    return one(engine, s, s.c.execution_id == eid, s.c.symbol == symbol, s.c.timeframe == timeframe)


def test_symbol_status_is_an_upsert_per_execution_and_pair(engine, store):
    eid = new_execution(store)
    started = T0 - timedelta(minutes=10)
    store.log_symbol_computation_status(
        execution_id=eid,
        symbol="AAPL",
        timeframe="1d",
        status="in_progress",
        asset_class="equity",
        started_at=started,
    )
    store.log_symbol_computation_status(
        execution_id=eid,
        symbol="AAPL",
        timeframe="1d",
        status="completed",
        records_processed=250,
        records_inserted=3,
        features_computed=18,
        completed_at=T0,
    )
    row = status_row(engine, eid, "AAPL", "1d")
    assert row.status == "completed"
    assert (row.records_processed, row.records_inserted, row.features_computed) == (250, 3, 18)
    assert row.asset_class == "equity"
    assert (row.started_at, row.completed_at) == (started, T0)
    assert len(rows(engine, symbol_computation_status)) == 1


def test_symbol_status_duration_comes_from_its_timestamps(engine, store):
    eid = new_execution(store)
    store.log_symbol_computation_status(
        execution_id=eid,
        symbol="AAPL",
        timeframe="1d",
        status="completed",
        started_at=T0 - timedelta(seconds=2.5),
        completed_at=T0,
    )
    assert status_row(engine, eid, "AAPL", "1d").duration_seconds == pytest.approx(2.5)


def test_a_redelivered_in_progress_status_does_not_undo_completion(engine, store):
    eid = new_execution(store)
    common = {"execution_id": eid, "symbol": "AAPL", "timeframe": "1d"}
    store.log_symbol_computation_status(**common, status="completed", records_processed=9)
    store.log_symbol_computation_status(**common, status="in_progress", records_processed=1)
    row = status_row(engine, eid, "AAPL", "1d")
    assert (row.status, row.records_processed) == ("completed", 9)


def test_a_completed_status_resolves_the_pairs_open_failure(engine, store):
    failing, fixing = new_execution(store), new_execution(store)
    for symbol in ("XYZ", "ABC"):
        store.log_feature_computation_failure(
            symbol=symbol,
            timeframe="1h",
            error_message="x",
            execution_id=failing,
            failed_at=T0 - timedelta(hours=1),
        )
    store.log_symbol_computation_status(
        execution_id=fixing,
        symbol="XYZ",
        timeframe="1h",
        status="completed",
        completed_at=T0 - timedelta(minutes=5),
    )
    xyz = failure_rows(engine, "XYZ", "1h")[0]
    assert (xyz.resolved, xyz.resolved_by_execution_id) == (True, fixing)
    assert xyz.resolved_at == T0 - timedelta(minutes=5)
    assert not failure_rows(engine, "ABC", "1h")[0].resolved


def test_completion_without_a_timestamp_resolves_at_the_clock(engine, store):
    store.log_feature_computation_failure(
        symbol="XYZ", timeframe="1h", error_message="x", failed_at=T0 - timedelta(hours=1)
    )
    eid = new_execution(store)
    store.log_symbol_computation_status(
        execution_id=eid, symbol="XYZ", timeframe="1h", status="completed"
    )
    assert failure_rows(engine, "XYZ", "1h")[0].resolved_at == T0


def test_failed_and_in_progress_statuses_resolve_nothing(engine, store):
    store.log_feature_computation_failure(
        symbol="XYZ", timeframe="1h", error_message="x", failed_at=T0 - timedelta(hours=1)
    )
    eid = new_execution(store)
    for status in ("in_progress", "failed"):
        store.log_symbol_computation_status(
            execution_id=eid, symbol="XYZ", timeframe="1h", status=status, completed_at=T0
        )
    assert not failure_rows(engine, "XYZ", "1h")[0].resolved


def test_symbol_status_arguments_are_validated(engine, store):
    eid = new_execution(store)
    base = {"execution_id": eid, "symbol": "AAPL", "timeframe": "1d"}
    with pytest.raises(ValueError, match="pending, in_progress, completed, failed"):
        store.log_symbol_computation_status(**base, status="done")
    with pytest.raises(ValueError, match="records_inserted"):
        store.log_symbol_computation_status(**base, status="completed", records_inserted=-3)
    with pytest.raises(NaiveDatetimeError):
        store.log_symbol_computation_status(
            **base, status="completed", completed_at=datetime(2024, 1, 1)
        )
    missing = str(uuid.uuid4())
    with pytest.raises(UnknownExecutionError, match=missing):
        store.log_symbol_computation_status(
            execution_id=missing, symbol="AAPL", timeframe="1d", status="completed"
        )
    assert rows(engine, symbol_computation_status) == []


def test_bulk_statuses_write_a_thousand_rows_in_a_handful_of_statements(engine, store):
    eid = new_execution(store)
    symbols = [f"S{i:04d}" for i in range(200)]
    timeframes = ["1m", "5m", "15m", "1h", "1d"]
    batch = [
        {
            "execution_id": eid,
            "symbol": s,
            "timeframe": tf,
            "status": "completed",
            "asset_class": "equity",
            "records_processed": 10,
            "completed_at": T0,
        }
        for s in symbols
        for tf in timeframes
    ]
    store.log_feature_computation_failure(
        symbol="S0007", timeframe="1h", error_message="x", failed_at=T0 - timedelta(hours=1)
    )
    with StatementCounter(engine) as counter:
        assert store.log_symbol_computation_statuses(batch) == 1000
    assert counter.count <= 6, counter.count
    assert len(rows(engine, symbol_computation_status)) == 1000
    assert failure_rows(engine, "S0007", "1h")[0].resolved


def test_bulk_statuses_are_all_or_nothing_and_name_the_bad_row(engine, store):
    eid = new_execution(store)
    good = {"execution_id": eid, "symbol": "AAPL", "timeframe": "1d", "status": "completed"}
    with pytest.raises(ValueError, match=r"row 1: .*status"):
        store.log_symbol_computation_statuses([good, {**good, "symbol": "B", "status": "bad"}])
    with pytest.raises(ValueError, match="row 0: unknown field"):
        store.log_symbol_computation_statuses([{**good, "colour": "red"}])
    with pytest.raises(ValueError, match="row 0: status is required"):
        store.log_symbol_computation_statuses([{k: v for k, v in good.items() if k != "status"}])
    with pytest.raises(UnknownExecutionError):
        store.log_symbol_computation_statuses(
            [good, {**good, "symbol": "B", "execution_id": str(uuid.uuid4())}]
        )
    assert rows(engine, symbol_computation_status) == []
    assert store.log_symbol_computation_statuses([]) == 0


def test_bulk_statuses_merge_repeated_keys_like_redeliveries(engine, store):
    eid = new_execution(store)
    key = {"execution_id": eid, "symbol": "AAPL", "timeframe": "1d"}
    started = T0 - timedelta(minutes=1)
    store.log_symbol_computation_statuses(
        [
            {**key, "status": "in_progress", "started_at": started, "asset_class": "equity"},
            {**key, "status": "completed", "records_processed": 5},
            {**key, "status": "in_progress", "records_processed": 1},
        ]
    )
    row = status_row(engine, eid, "AAPL", "1d")
    assert (row.status, row.records_processed) == ("completed", 5)
    assert (row.started_at, row.asset_class) == (started, "equity")


def test_deleting_an_execution_deletes_its_symbol_statuses(engine, store):
    eid = new_execution(store)
    store.log_symbol_computation_status(
        execution_id=eid, symbol="AAPL", timeframe="1d", status="completed"
    )
    with engine.begin() as conn:
        conn.execute(
            scheduler_execution_log.delete().where(scheduler_execution_log.c.execution_id == eid)
        )
    assert rows(engine, symbol_computation_status) == []


# -- feature_freshness ---------------------------------------------------------------------------


def freshness_row(engine, symbol, timeframe):
    t = feature_freshness
    return one(engine, t, t.c.symbol == symbol, t.c.timeframe == timeframe)


@pytest.mark.parametrize(
    ("age", "expected"),
    [(3599.999, "fresh"), (3600, "aging"), (86399, "aging"), (86400, "stale")],
)
def test_update_freshness_stores_status_and_staleness_at_the_boundaries(
    engine, store, age, expected
):
    last = T0 - timedelta(seconds=age)
    assert (
        store.update_feature_freshness(
            symbol="AAPL", timeframe="1d", last_computed_at=last, data_point_count=250
        )
        == expected
    )
    row = freshness_row(engine, "AAPL", "1d")
    assert row.status == expected
    assert row.staleness_seconds == pytest.approx(age, abs=1e-6)
    assert (row.last_computed_at, row.data_point_count, row.updated_at) == (last, 250, T0)


def test_update_freshness_marks_missing_pairs(engine, store):
    store.update_feature_freshness(
        symbol="AAPL", timeframe="1d", last_computed_at=None, data_point_count=0
    )
    row = freshness_row(engine, "AAPL", "1d")
    assert (row.status, row.staleness_seconds, row.last_computed_at) == ("missing", None, None)
    store.update_feature_freshness(
        symbol="AAPL", timeframe="1d", last_computed_at=T0, data_point_count=0
    )
    assert freshness_row(engine, "AAPL", "1d").status == "missing"


def test_update_freshness_replaces_the_row_with_newer_data(engine, store):
    store.update_feature_freshness(
        symbol="AAPL",
        timeframe="1d",
        last_computed_at=T0 - timedelta(days=2),
        data_point_count=100,
        last_bar_at=T0 - timedelta(days=3),
    )
    store.update_feature_freshness(
        symbol="AAPL",
        timeframe="1d",
        last_computed_at=T0 - timedelta(minutes=1),
        data_point_count=101,
    )
    row = freshness_row(engine, "AAPL", "1d")
    assert (row.status, row.data_point_count) == ("fresh", 101)
    assert row.last_bar_at == T0 - timedelta(days=3)
    assert len(rows(engine, feature_freshness)) == 1


def test_update_freshness_never_moves_last_computed_at_back(engine, store):
    newest = T0 - timedelta(minutes=5)
    store.update_feature_freshness(
        symbol="AAPL", timeframe="1d", last_computed_at=newest, data_point_count=250
    )
    store.update_feature_freshness(
        symbol="AAPL",
        timeframe="1d",
        last_computed_at=T0 - timedelta(days=3),
        data_point_count=10,
    )
    store.update_feature_freshness(
        symbol="AAPL", timeframe="1d", last_computed_at=None, data_point_count=0
    )
    row = freshness_row(engine, "AAPL", "1d")
    assert (row.last_computed_at, row.data_point_count, row.status) == (newest, 250, "fresh")


def test_update_freshness_with_an_explicit_now_and_other_zones(engine, store):
    last = datetime(2024, 11, 14, 2, 0, tzinfo=TOKYO)  # 17:00 UTC the day before
    now = datetime(2024, 11, 13, 12, 0, tzinfo=timezone(timedelta(hours=-5)))  # 17:00 UTC
    store.update_feature_freshness(
        symbol="AAPL", timeframe="1d", last_computed_at=last, data_point_count=1, now=now
    )
    row = freshness_row(engine, "AAPL", "1d")
    assert row.last_computed_at == datetime(2024, 11, 13, 17, 0, tzinfo=UTC)
    assert (row.staleness_seconds, row.status, row.updated_at) == (0.0, "fresh", now)
    with pytest.raises(NaiveDatetimeError):
        store.update_feature_freshness(
            symbol="AAPL",
            timeframe="1d",
            last_computed_at=datetime(2024, 1, 1),
            data_point_count=1,
        )


def test_bulk_freshness_is_one_statement_and_keeps_the_newest_duplicate(engine, store):
    batch = [
        {
            "symbol": f"S{i:03d}",
            "timeframe": "1d",
            "last_computed_at": T0 - timedelta(hours=i),
            "data_point_count": 250,
        }
        for i in range(100)
    ]
    batch.append(
        {
            "symbol": "S000",
            "timeframe": "1d",
            "last_computed_at": T0 - timedelta(days=9),
            "data_point_count": 1,
        }
    )
    with StatementCounter(engine) as counter:
        assert store.update_feature_freshness_many(batch) == 100
    assert counter.count <= 2, counter.count
    assert len(rows(engine, feature_freshness)) == 100
    assert freshness_row(engine, "S000", "1d").data_point_count == 250
    assert freshness_row(engine, "S002", "1d").status == "aging"
    assert freshness_row(engine, "S030", "1d").status == "stale"


def test_bulk_freshness_validates_every_row_before_writing(engine, store):
    good = {"symbol": "A", "timeframe": "1d", "last_computed_at": T0, "data_point_count": 1}
    with pytest.raises(ValueError, match="row 1: data_point_count"):
        store.update_feature_freshness_many([good, {**good, "data_point_count": -5}])
    with pytest.raises(NaiveDatetimeError, match="row 0"):
        store.update_feature_freshness_many([{**good, "last_computed_at": datetime(2024, 1, 1)}])
    assert rows(engine, feature_freshness) == []
    assert store.update_feature_freshness_many([]) == 0


@pytest.mark.parametrize("age", [3599.999, 3600, 86399, 86400])
def test_refresh_recomputes_cached_status_at_the_boundaries(engine, store, clock, age):
    last = T0 - timedelta(hours=1, minutes=30)
    store.update_feature_freshness(
        symbol="AAPL", timeframe="1d", last_computed_at=last, data_point_count=5
    )
    store.update_feature_freshness(
        symbol="NEVER", timeframe="1d", last_computed_at=None, data_point_count=0
    )
    later = last + timedelta(seconds=age)
    assert store.refresh_feature_freshness(now=later) == 2
    row = freshness_row(engine, "AAPL", "1d")
    assert row.status == freshness_status(last, 5, later)
    assert row.staleness_seconds == pytest.approx(age, abs=0.01)
    assert row.updated_at == later
    never = freshness_row(engine, "NEVER", "1d")
    assert (never.status, never.staleness_seconds) == ("missing", None)


def test_refresh_uses_the_clock_and_clamps_future_computations(engine, store, clock):
    store.update_feature_freshness(
        symbol="AAPL", timeframe="1d", last_computed_at=T0, data_point_count=5
    )
    store.update_feature_freshness(
        symbol="MSFT",
        timeframe="1d",
        last_computed_at=T0,
        data_point_count=5,
        now=T0 - timedelta(days=2),
    )
    clock.advance(days=1)
    store.refresh_feature_freshness()
    assert freshness_row(engine, "AAPL", "1d").status == "stale"
    clock.now = T0 - timedelta(minutes=1)
    store.refresh_feature_freshness()
    row = freshness_row(engine, "MSFT", "1d")
    assert (row.status, row.staleness_seconds) == ("fresh", 0.0)


# -- get_feature_staleness_report ----------------------------------------------------------------

ITEM_KEYS = {
    "symbol",
    "timeframe",
    "last_computed_at",
    "staleness_seconds",
    "status",
    "data_point_count",
    # data-time additions
    "last_bar_at",
    "expected_last_bar_at",
    "bars_behind",
    "data_lag_seconds",
    "data_status",
}


def seed_freshness(store, ages_by_pair):
    store.update_feature_freshness_many(
        [
            {
                "symbol": symbol,
                "timeframe": timeframe,
                "last_computed_at": None if age is None else T0 - timedelta(seconds=age),
                "data_point_count": 0 if age is None else 250,
            }
            for (symbol, timeframe), age in ages_by_pair.items()
        ],
        now=T0,
    )


DATA_TIME_FIELDS = (
    "last_bar_at",
    "expected_last_bar_at",
    "bars_behind",
    "data_lag_seconds",
    "data_status",
)


def test_staleness_report_has_the_spec_shape(store):
    seed_freshness(store, {("AAPL", "1d"): 1200, ("MSFT", "1d"): 7200, ("XYZ", "1h"): 90000})
    report = store.get_feature_staleness_report().model_dump()
    assert list(report) == ["timestamp", "summary", "by_status"]
    assert report["timestamp"] == T0
    assert report["summary"] == {
        "fresh_count": 1,
        "aging_count": 1,
        "stale_count": 1,
        "missing_count": 0,
        "total_monitored": 3,
    }
    assert list(report["by_status"]) == ["fresh", "aging", "stale", "missing"]
    (item,) = report["by_status"]["fresh"]
    assert item == {
        "symbol": "AAPL",
        "timeframe": "1d",
        "last_computed_at": T0 - timedelta(seconds=1200),
        "staleness_seconds": 1200.0,
        "status": "fresh",
        "data_point_count": 250,
        **dict.fromkeys(DATA_TIME_FIELDS),
    }
    assert report["by_status"]["missing"] == []
    json.dumps(store.get_feature_staleness_report().model_dump(mode="json"))


def test_staleness_is_computed_at_read_time_not_taken_from_the_cache(engine, store, clock):
    seed_freshness(store, {("AAPL", "1d"): 0})
    assert freshness_row(engine, "AAPL", "1d").status == "fresh"
    for age, expected in [(3599.999, "fresh"), (3600, "aging"), (86399, "aging"), (86400, "stale")]:
        clock.now = T0 + timedelta(seconds=age)
        report = store.get_feature_staleness_report().model_dump()
        (item,) = report["by_status"][expected]
        assert item["status"] == expected
        assert item["staleness_seconds"] == pytest.approx(age, abs=1e-6)
        assert report["timestamp"] == clock.now
    assert freshness_row(engine, "AAPL", "1d").status == "fresh"


def test_report_lists_are_capped_per_status_most_stale_first(store):
    ages = {(f"F{i}", "1h"): 60 * i for i in range(1, 6)}
    ages.update({(f"S{i}", "1d"): 86400 + i for i in range(1, 4)})
    ages[("M1", "1d")] = None
    seed_freshness(store, ages)
    report = store.get_feature_staleness_report(limit=2).model_dump()
    assert report["summary"]["fresh_count"] == 5
    assert report["summary"]["stale_count"] == 3
    assert report["summary"]["total_monitored"] == 9
    assert [i["symbol"] for i in report["by_status"]["fresh"]] == ["F5", "F4"]
    assert [i["symbol"] for i in report["by_status"]["stale"]] == ["S3", "S2"]
    assert [i["symbol"] for i in report["by_status"]["missing"]] == ["M1"]


def test_monitored_pairs_without_rows_are_missing_and_others_are_ignored(engine, clock):
    store = make_store(
        engine, clock, monitored_pairs=[("AAPL", "1d"), ("AAPL", "1h"), ("MSFT", "1d")]
    )
    seed_freshness(store, {("AAPL", "1d"): 10, ("DELISTED", "1d"): 10})
    report = store.get_feature_staleness_report().model_dump()
    assert report["summary"]["total_monitored"] == 3
    assert report["summary"]["missing_count"] == 2
    missing = {(i["symbol"], i["timeframe"]) for i in report["by_status"]["missing"]}
    assert missing == {("AAPL", "1h"), ("MSFT", "1d")}
    for item in report["by_status"]["missing"]:
        assert set(item) == ITEM_KEYS
        assert (item["last_computed_at"], item["staleness_seconds"]) == (None, None)
        assert item["data_point_count"] == 0
    health = store.get_scheduler_health().model_dump()
    assert health["total_symbols_monitored"] == 2
    assert health["stale_features_count"] == 2


def test_report_order_matches_python_sorting_of_every_pair(engine, clock):
    """The ranking done in SQL equals sorting every pair in Python: never computed first, then
    most stale, ties (equal ages, future computations clamped to 0) by code-point order of
    symbol then timeframe, whatever the database collation; counts ignore the cap."""
    pairs = [
        ("aapl", "1d"),
        ("AAPL", "1d"),
        ("Zed", "1d"),
        ("ÉTF", "1d"),
        ("B", "1h"),
        ("B", "15m"),
        ("NEVER", "1d"),
        ("ZERO", "1d"),
        ("FUT1", "1d"),
        ("FUT0", "1d"),
    ]
    store = make_store(engine, clock, monitored_pairs=pairs)
    ages = {
        ("aapl", "1d"): 100,
        ("AAPL", "1d"): 100,
        ("Zed", "1d"): 100,
        ("ÉTF", "1d"): 100,
        ("B", "1h"): 90000,
        ("B", "15m"): 90000,
        ("FUT1", "1d"): -50,
        ("FUT0", "1d"): -5,
    }
    seed_freshness(store, ages)
    store.update_feature_freshness(
        symbol="ZERO",
        timeframe="1d",
        last_computed_at=T0 - timedelta(seconds=10),
        data_point_count=0,
        now=T0,
    )
    report = store.get_feature_staleness_report(limit=MAX_LIMIT).model_dump()
    listed = [item for items in report["by_status"].values() for item in items]
    assert len(listed) == len(pairs) == report["summary"]["total_monitored"]

    def python_key(item):
        seconds = item["staleness_seconds"]
        return (seconds is not None, -(seconds or 0.0), item["symbol"], item["timeframe"])

    for status, items in report["by_status"].items():
        assert items == sorted(items, key=python_key), status
        for item in items:
            assert (
                item["status"]
                == status
                == freshness_status(item["last_computed_at"], item["data_point_count"], T0)
            )
    assert [i["symbol"] for i in report["by_status"]["fresh"]] == [
        "AAPL",
        "Zed",
        "aapl",
        "ÉTF",
        "FUT0",
        "FUT1",
    ]
    assert [(i["symbol"], i["timeframe"]) for i in report["by_status"]["stale"]] == [
        ("B", "15m"),
        ("B", "1h"),
    ]
    assert [i["symbol"] for i in report["by_status"]["missing"]] == ["NEVER", "ZERO"]
    capped = store.get_feature_staleness_report(limit=1).model_dump()
    assert capped["summary"] == report["summary"]
    assert [len(items) for items in capped["by_status"].values()] == [1, 0, 1, 1]


def test_health_counts_are_computed_at_read_time_for_monitored_pairs(engine, clock):
    store = make_store(
        engine, clock, monitored_pairs=[("AAPL", "1d"), ("AAPL", "1h"), ("MSFT", "1d")]
    )
    new_execution(store)
    seed_freshness(store, {("AAPL", "1d"): 10, ("AAPL", "1h"): 4000, ("OTHER", "1d"): 10})
    health = store.get_scheduler_health().model_dump()
    assert health["freshness_summary"] == {
        "fresh_count": 1,
        "aging_count": 1,
        "stale_count": 0,
        "missing_count": 1,
        "total_monitored": 3,
    }
    assert health["total_symbols_monitored"] == 2
    clock.advance(seconds=86400 - 4000)  # the cached statuses are not refreshed
    health = store.get_scheduler_health().model_dump()
    assert health["freshness_summary"]["aging_count"] == 1
    assert health["freshness_summary"]["stale_count"] == 1
    assert health["stale_features_count"] == 2
    assert (
        make_store(engine, clock, monitored_pairs=[])
        .get_scheduler_health()
        .model_dump()["freshness_summary"]["total_monitored"]
        == 0
    )


@pytest.mark.parametrize("bad", [0, -1, MAX_LIMIT + 1, True, "5", 2.0, None])
def test_limits_are_validated(store, bad):
    with pytest.raises(ValueError, match="limit"):
        store.get_feature_staleness_report(limit=bad).model_dump()
    with pytest.raises(ValueError, match="limit"):
        store.get_execution_history(limit=bad).model_dump()
    with pytest.raises(ValueError, match="recent_failures_limit"):
        store.get_scheduler_health(recent_failures_limit=bad).model_dump()


def test_the_largest_limit_is_accepted(store):
    assert (
        store.get_feature_staleness_report(limit=MAX_LIMIT).model_dump()["summary"][
            "total_monitored"
        ]
        == 0
    )
    assert store.get_execution_history(limit=MAX_LIMIT).model_dump()["executions"] == []


# -- get_scheduler_health ------------------------------------------------------------------------

SPEC_HEALTH_KEYS = {
    "status",
    "timestamp",
    "last_execution",
    "stale_features_count",
    "recent_failures",
    "total_symbols_monitored",
}
SPEC_LAST_EXECUTION_KEYS = {
    "execution_id",
    "started_at",
    "completed_at",
    "status",
    "successful_symbols",
    "failed_symbols",
}


def test_health_with_no_execution_is_degraded_and_has_the_spec_shape(store):
    health = store.get_scheduler_health().model_dump()
    assert set(health) >= SPEC_HEALTH_KEYS
    assert health["status"] == "degraded"
    assert health["reasons"] == [NO_EXECUTION_REASON]
    assert health["timestamp"] == T0
    assert health["last_execution"] is None
    assert health["recent_failures"] == []
    assert health["stale_features_count"] == 0
    assert health["total_symbols_monitored"] == 0
    assert health["alerts"] == []


def test_health_is_healthy_after_a_good_run_with_fresh_features(store):
    eid = new_execution(store, total_symbols=2)
    store.update_scheduler_execution_log(
        execution_id=eid,
        completed_at=T0 - timedelta(minutes=30),
        successful_symbols=2,
        status="completed",
    )
    seed_freshness(store, {("AAPL", "1d"): 1800, ("MSFT", "1d"): 1800})
    health = store.get_scheduler_health().model_dump()
    assert (health["status"], health["reasons"]) == ("healthy", [])
    last = health["last_execution"]
    assert set(last) >= SPEC_LAST_EXECUTION_KEYS
    assert last["execution_id"] == eid
    assert last["started_at"] == T0 - timedelta(hours=1)
    assert last["completed_at"] == T0 - timedelta(minutes=30)
    assert (last["status"], last["successful_symbols"], last["failed_symbols"]) == (
        "completed",
        2,
        0,
    )
    assert health["total_symbols_monitored"] == 2


def test_health_looks_at_the_most_recently_started_execution(store):
    older = new_execution(store, started_at=T0 - timedelta(hours=3))
    store.update_scheduler_execution_log(execution_id=older, status="failed")
    newer = new_execution(store, started_at=T0 - timedelta(minutes=5))
    health = store.get_scheduler_health().model_dump()
    assert health["last_execution"]["execution_id"] == newer
    assert (health["status"], health["reasons"]) == ("healthy", [])
    store.update_scheduler_execution_log(
        execution_id=newer, status="failed", error_message="provider down"
    )
    health = store.get_scheduler_health().model_dump()
    assert health["status"] == "degraded"
    assert "last execution failed" in health["reasons"]
    assert health["last_execution"]["error_message"] == "provider down"


def test_stale_features_count_includes_missing_and_both_are_exposed(store):
    new_execution(store)
    seed_freshness(
        store, {("A", "1d"): 10, ("B", "1d"): 7200, ("C", "1d"): 90000, ("D", "1d"): None}
    )
    health = store.get_scheduler_health().model_dump()
    assert health["stale_features_count"] == 2
    assert health["missing_features_count"] == 1
    assert health["freshness_summary"]["stale_count"] == 1
    assert health["status"] == "degraded"
    assert len(health["reasons"]) == 2


def test_aging_features_do_not_degrade_health(store):
    new_execution(store)
    seed_freshness(store, {("A", "1d"): 7200})
    assert store.get_scheduler_health().model_dump()["status"] == "healthy"


def test_recent_failures_are_the_unresolved_ones_newest_first(store):
    eid = new_execution(store)
    for i, symbol in enumerate(["OLD", "MID", "NEW", "FIXED"]):
        store.log_feature_computation_failure(
            symbol=symbol,
            timeframe="1h",
            error_message=f"error {symbol}",
            execution_id=eid,
            failed_at=T0 - timedelta(minutes=40 - 10 * i),
        )
    store.resolve_feature_computation_failures(symbol="FIXED", timeframe="1h", resolved_at=T0)
    health = store.get_scheduler_health(recent_failures_limit=2).model_dump()
    assert health["open_failures_count"] == 3
    assert [f["symbol"] for f in health["recent_failures"]] == ["NEW", "MID"]
    first = health["recent_failures"][0]
    assert {"symbol", "timeframe", "error", "failed_at"} <= set(first)
    assert (first["timeframe"], first["error"]) == ("1h", "error NEW")
    assert first["failed_at"] == T0 - timedelta(minutes=20)
    assert health["status"] == "degraded"
    assert "3 unresolved feature computation failures" in health["reasons"]


def test_alerts_list_pairs_failing_the_threshold_times_in_a_row(engine, clock):
    store = make_store(engine, clock, failure_alert_threshold=3)
    for i in range(3):
        eid = new_execution(store, started_at=T0 - timedelta(hours=3 - i))
        store.log_feature_computation_failure(
            symbol="XYZ",
            timeframe="1h",
            error_message=f"try {i}",
            execution_id=eid,
            failed_at=T0 - timedelta(hours=3 - i),
        )
        if i < 2:
            store.log_feature_computation_failure(
                symbol="ABC",
                timeframe="1d",
                error_message="x",
                execution_id=eid,
                failed_at=T0 - timedelta(hours=3 - i),
            )
    alerts = store.get_scheduler_health().model_dump()["alerts"]
    assert alerts == [
        {
            "symbol": "XYZ",
            "timeframe": "1h",
            "consecutive_failures": 3,
            "error": "try 2",
            "failed_at": T0 - timedelta(hours=1),
        }
    ]
    store.log_symbol_computation_status(
        execution_id=eid, symbol="XYZ", timeframe="1h", status="completed", completed_at=T0
    )
    assert store.get_scheduler_health().model_dump()["alerts"] == []


def test_zero_symbols_is_a_valid_empty_world(engine, clock):
    store = make_store(engine, clock, monitored_pairs=[])
    eid = store.create_scheduler_execution_log(started_at=T0, total_symbols=0)
    store.update_scheduler_execution_log(execution_id=eid, completed_at=T0, status="completed")
    health = store.get_scheduler_health().model_dump()
    assert (health["status"], health["total_symbols_monitored"]) == ("healthy", 0)
    report = store.get_feature_staleness_report().model_dump()
    assert report["summary"]["total_monitored"] == 0
    assert all(items == [] for items in report["by_status"].values())
    (execution,) = store.get_execution_history().model_dump()["executions"]
    assert execution["success_rate"] is None
    assert execution["duration_seconds"] == 0.0


def test_store_arguments_are_validated(engine, clock):
    with pytest.raises(ValueError):
        ObservabilityStore(engine, failure_alert_threshold=0)
    with pytest.raises(ValueError):
        ObservabilityStore(engine, monitored_pairs=[("AAPL", "")])
    naive = ObservabilityStore(engine, clock=lambda: datetime(2024, 1, 1))
    with pytest.raises(NaiveDatetimeError, match="clock"):
        naive.get_scheduler_health().model_dump()


# -- get_execution_history -----------------------------------------------------------------------

SPEC_EXECUTION_KEYS = {
    "execution_id",
    "started_at",
    "completed_at",
    "duration_seconds",
    "total_symbols",
    "successful_symbols",
    "failed_symbols",
    "total_records_processed",
    "status",
    "error_message",
    "success_rate",
}


def test_execution_history_has_the_spec_shape_newest_first(store):
    ids = []
    for hours_ago in (3, 1, 2):
        eid = new_execution(store, started_at=T0 - timedelta(hours=hours_ago), total_symbols=50)
        ids.append((hours_ago, eid))
    first = dict(ids)[1]
    store.update_scheduler_execution_log(
        execution_id=first,
        completed_at=T0 - timedelta(hours=1) + timedelta(seconds=930),
        successful_symbols=45,
        failed_symbols=5,
        total_records_processed=12500,
        status="completed",
    )
    history = store.get_execution_history(limit=2).model_dump()
    assert set(history) == {"timestamp", "executions"}
    assert history["timestamp"] == T0
    executions = history["executions"]
    assert [e["execution_id"] for e in executions] == [dict(ids)[1], dict(ids)[2]]
    top = executions[0]
    assert set(top) == SPEC_EXECUTION_KEYS
    assert top == {
        "execution_id": first,
        "started_at": T0 - timedelta(hours=1),
        "completed_at": T0 - timedelta(hours=1) + timedelta(seconds=930),
        "duration_seconds": pytest.approx(930.0),
        "total_symbols": 50,
        "successful_symbols": 45,
        "failed_symbols": 5,
        "total_records_processed": 12500,
        "status": "completed",
        "error_message": None,
        "success_rate": 90.0,
    }
    assert executions[1]["success_rate"] == 0.0


def test_success_rate_is_rounded_to_one_decimal(store):
    eid = new_execution(store, total_symbols=3)
    store.update_scheduler_execution_log(execution_id=eid, successful_symbols=1)
    assert store.get_execution_history().model_dump()["executions"][0]["success_rate"] == 33.3


# -- JSON ----------------------------------------------------------------------------------------


def test_timestamps_format_like_the_spec():
    at = datetime(2024, 11, 13, 19, 30, 0, 987654, tzinfo=UTC)
    assert format_utc(at) == "2024-11-13T19:30:00Z"
    assert format_utc(datetime(2024, 11, 14, 4, 30, tzinfo=TOKYO)) == "2024-11-13T19:30:00Z"
    assert format_utc(at, timespec="microseconds") == "2024-11-13T19:30:00.987654Z"
    with pytest.raises(NaiveDatetimeError):
        format_utc(datetime(2024, 1, 1))


def test_every_report_survives_json(store):
    eid = new_execution(store)
    store.log_feature_computation_failure(
        symbol="XYZ", timeframe="1h", error_message="x", execution_id=eid
    )
    seed_freshness(store, {("AAPL", "1d"): 5, ("NONE", "1d"): None})
    for body in (
        store.get_scheduler_health().model_dump(mode="json"),
        store.get_feature_staleness_report().model_dump(mode="json"),
        store.get_execution_history().model_dump(mode="json"),
    ):
        text = json.dumps(body)
        assert "2024-11-13T19:30:00Z" in text
