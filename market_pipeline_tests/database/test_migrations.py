"""The migration runner and the schema it builds, on SQLite and PostgreSQL (``db_url`` fixture)."""

from __future__ import annotations

import hashlib
import shutil
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import sqlalchemy as sa

from market_pipeline.database import tables
from market_pipeline.database.engine import make_engine, temporary_postgres_database
from market_pipeline.database.migrations import (
    SQL_DIR,
    MigrationError,
    applied_migrations,
    discover_migrations,
    ensure_current,
    migrate,
)

# The spec's columns (PHASE_1_OBSERVABILITY.md, "Database Schema"), verbatim, and the additions
# that 0002_scheduler_monitoring.sql marks as such.
SPEC_COLUMNS = {
    "scheduler_execution_log": {
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
    },
    "feature_computation_failures": {
        "symbol",
        "timeframe",
        "error_message",
        "execution_id",
        "retry_count",
        "resolved",
        "failed_at",
    },
    "feature_freshness": {
        "symbol",
        "timeframe",
        "last_computed_at",
        "data_point_count",
        "status",
        "staleness_seconds",
        "updated_at",
    },
    "symbol_computation_status": {
        "execution_id",
        "symbol",
        "asset_class",
        "timeframe",
        "status",
        "records_processed",
        "records_inserted",
        "features_computed",
        "started_at",
        "completed_at",
        "duration_seconds",
        "error_message",
    },
}
ADDITIONS = {
    "scheduler_execution_log": {"job_name", "run_trigger", "scheduled_for", "updated_at"},
    "feature_computation_failures": {
        "id",
        "first_failed_at",
        "resolved_at",
        "resolved_by_execution_id",
    },
    "feature_freshness": {"last_bar_at"},
    "symbol_computation_status": {"id"},
}
TIMESTAMP_COLUMNS = {
    "scheduler_execution_log": {"started_at", "completed_at", "scheduled_for", "updated_at"},
    "feature_computation_failures": {"failed_at", "first_failed_at", "resolved_at"},
    "feature_freshness": {"last_computed_at", "updated_at", "last_bar_at"},
    "symbol_computation_status": {"started_at", "completed_at"},
}
EXECUTION_ID = "6f1c2e64-5d0b-4a8e-9a53-1f2d3c4b5a69"


@pytest.fixture(scope="module")
def pg_scratch_url(pg_server) -> Iterator[str]:
    """One PostgreSQL database that ``bare_engine`` empties before each test."""
    with temporary_postgres_database(pg_server, prefix="mp_test") as url:
        yield url


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def bare_engine(request, tmp_path):
    """An engine on an empty database (nothing migrated), once per backend.

    Like conftest's ``db_url``, but PostgreSQL reuses one database per module whose schema is
    dropped and recreated before each test: creating a database per test costs ~0.75 s.
    """
    if request.param == "sqlite":
        eng = make_engine(f"sqlite:///{tmp_path / 'market_pipeline.db'}")
    else:
        eng = make_engine(request.getfixturevalue("pg_scratch_url"))
        with eng.begin() as conn:
            conn.exec_driver_sql("DROP SCHEMA public CASCADE")
            conn.exec_driver_sql("CREATE SCHEMA public")
    yield eng
    eng.dispose()


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def schema_engine(request, tmp_path_factory):
    """A migrated database per backend shared by the read-only schema tests of this module.

    Tests that write do so inside a transaction they roll back, so the database stays empty.
    """
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('schema') / 'market_pipeline.db'}"
        eng = make_engine(url)
        migrate(eng)
        yield eng
        eng.dispose()
        return
    server = request.getfixturevalue("pg_server")
    with temporary_postgres_database(server, prefix="mp_test") as url:
        eng = make_engine(url)
        try:
            migrate(eng)
            yield eng
        finally:
            eng.dispose()


@contextmanager
def rolled_back(engine) -> Iterator[sa.Connection]:
    """A connection in a transaction that is always rolled back."""
    with engine.connect() as conn:
        transaction = conn.begin()
        try:
            yield conn
        finally:
            transaction.rollback()


@pytest.fixture
def sql_copy(tmp_path) -> Path:
    """A private copy of ``sql/`` that a test may edit."""
    target = tmp_path / "sql"
    shutil.copytree(SQL_DIR, target)
    return target


def table_names(engine) -> set[str]:
    return set(sa.inspect(engine).get_table_names())


def columns(engine, table: str) -> dict[str, dict]:
    return {c["name"]: c for c in sa.inspect(engine).get_columns(table)}


def migration_rows(engine) -> list[tuple]:
    return [(m.version, m.name, m.checksum) for m in applied_migrations(engine)]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def apply_by_hand(engine, path: Path) -> None:
    """What ``psql -1 -f file`` or ``sqlite3 db < file`` would do: run the file in one go."""
    script = path.read_text(encoding="utf-8")
    if engine.dialect.name == "postgresql":
        with engine.begin() as conn:
            conn.exec_driver_sql(script)
        return
    connection = sqlite3.connect(engine.url.database)
    try:
        connection.executescript("BEGIN;\n" + script + "\nCOMMIT;")
    finally:
        connection.close()


# -- a fresh database ----------------------------------------------------------------------------


def test_migrate_builds_the_schema_from_nothing_and_records_every_file(bare_engine):
    files = discover_migrations(bare_engine.dialect.name)
    assert table_names(bare_engine) == set()
    with pytest.raises(MigrationError, match="market-pipeline migrate"):
        ensure_current(bare_engine)
    applied = migrate(bare_engine)
    assert applied == [m.name for m in files]
    assert migration_rows(bare_engine) == [(m.version, m.name, m.checksum) for m in files]
    assert set(SPEC_COLUMNS) <= table_names(bare_engine)
    ensure_current(bare_engine)


def test_migrating_again_changes_nothing(bare_engine):
    migrate(bare_engine)
    before = migration_rows(bare_engine)
    schema_before = {t: sorted(columns(bare_engine, t)) for t in table_names(bare_engine)}
    assert migrate(bare_engine) == []
    assert migration_rows(bare_engine) == before
    assert {t: sorted(columns(bare_engine, t)) for t in table_names(bare_engine)} == schema_before


# -- the schema ----------------------------------------------------------------------------------


@pytest.mark.parametrize("table", sorted(SPEC_COLUMNS))
def test_observability_tables_have_the_spec_columns_verbatim(schema_engine, table):
    reflected = set(columns(schema_engine, table))
    assert SPEC_COLUMNS[table] <= reflected, SPEC_COLUMNS[table] - reflected
    assert reflected - SPEC_COLUMNS[table] == ADDITIONS[table]


def test_reflected_tables_match_the_core_descriptions(schema_engine):
    present = table_names(schema_engine)
    for table in tables.metadata.sorted_tables:
        assert table.name in present, f"{table.name} is described but no migration creates it"
        assert set(columns(schema_engine, table.name)) == set(table.columns.keys()), table.name
        reflected = columns(schema_engine, table.name)
        for column in table.columns:
            if column.primary_key and schema_engine.dialect.name == "sqlite":
                # SQLite lets a non-INTEGER PRIMARY KEY hold NULL unless NOT NULL is spelled
                # out; scheduler_execution_log.execution_id does not spell it out.
                continue
            assert reflected[column.name]["nullable"] == column.nullable, (
                f"{table.name}.{column.name}: nullability differs from tables.py"
            )


def test_timestamps_are_timestamptz_on_postgresql_and_text_on_sqlite(schema_engine):
    for table, names in TIMESTAMP_COLUMNS.items():
        reflected = columns(schema_engine, table)
        for name in names:
            column_type = reflected[name]["type"]
            if schema_engine.dialect.name == "postgresql":
                assert isinstance(column_type, sa.DateTime), (table, name, column_type)
                assert column_type.timezone, f"{table}.{name} is TIMESTAMP without time zone"
            else:
                assert isinstance(column_type, sa.String), (table, name, column_type)


def test_execution_ids_are_uuids_on_postgresql_and_text_on_sqlite(schema_engine):
    expected = sa.Uuid if schema_engine.dialect.name == "postgresql" else sa.String
    for table, name in [
        ("scheduler_execution_log", "execution_id"),
        ("feature_computation_failures", "execution_id"),
        ("feature_computation_failures", "resolved_by_execution_id"),
        ("symbol_computation_status", "execution_id"),
    ]:
        assert isinstance(columns(schema_engine, table)[name]["type"], expected), (table, name)


def on_delete_rule(engine, table: str, fk: dict) -> str:
    if engine.dialect.name == "sqlite":  # SQLAlchemy does not reflect ON DELETE on SQLite
        with engine.connect() as conn:
            (rule,) = {
                row.on_delete for row in conn.execute(sa.text(f"PRAGMA foreign_key_list({table})"))
            }
        return rule.upper()
    return fk["options"].get("ondelete", "").upper()


def test_foreign_keys_point_at_the_execution_log(schema_engine):
    inspector = sa.inspect(schema_engine)
    for table, ondelete in [
        ("feature_computation_failures", "SET NULL"),
        ("symbol_computation_status", "CASCADE"),
    ]:
        (fk,) = inspector.get_foreign_keys(table)
        assert fk["referred_table"] == "scheduler_execution_log"
        assert fk["constrained_columns"] == ["execution_id"]
        assert fk["referred_columns"] == ["execution_id"]
        assert on_delete_rule(schema_engine, table, fk) == ondelete


def test_the_indexes_the_queries_rely_on_exist(schema_engine):
    inspector = sa.inspect(schema_engine)
    indexes = {
        table: {ix["name"]: ix for ix in inspector.get_indexes(table)} for table in SPEC_COLUMNS
    }
    log = indexes["scheduler_execution_log"]
    assert log["ix_scheduler_execution_log_started_at"]["column_names"] == ["started_at"]
    failures = indexes["feature_computation_failures"]
    open_ix = failures["ux_feature_computation_failures_open"]
    assert open_ix["unique"] and open_ix["column_names"] == ["symbol", "timeframe"]
    assert failures["ix_feature_computation_failures_failed_at"]["column_names"] == ["failed_at"]
    assert failures["ix_feature_computation_failures_execution"]["column_names"] == ["execution_id"]
    assert indexes["symbol_computation_status"]["ix_symbol_computation_status_pair"][
        "column_names"
    ][:2] == ["symbol", "timeframe"]


def insert_execution(conn, **overrides) -> None:
    row = {
        "execution_id": EXECUTION_ID,
        "started_at": "2024-11-13 02:00:00.000000+00:00",
        "status": "running",
        "updated_at": "2024-11-13 02:00:00.000000+00:00",
    }
    row.update(overrides)
    conn.execute(
        sa.text(
            "INSERT INTO scheduler_execution_log (execution_id, started_at, status, updated_at) "
            "VALUES (:execution_id, :started_at, :status, :updated_at)"
        ),
        row,
    )


@pytest.mark.parametrize(
    "statement",
    [
        "INSERT INTO feature_freshness (symbol, timeframe, data_point_count, status, updated_at) "
        "VALUES ('A', '1d', 0, 'rotten', '2024-11-13 02:00:00.000000+00:00')",
        "INSERT INTO feature_freshness (symbol, timeframe, data_point_count, status, updated_at) "
        "VALUES ('A', '1d', -1, 'fresh', '2024-11-13 02:00:00.000000+00:00')",
        "INSERT INTO symbol_computation_status (execution_id, symbol, timeframe, status) "
        f"VALUES ('{EXECUTION_ID}', 'A', '1d', 'done')",
        "INSERT INTO feature_computation_failures "
        "(symbol, timeframe, error_message, retry_count, failed_at, first_failed_at) "
        "VALUES ('A', '1d', 'x', -1, '2024-11-13 02:00:00.000000+00:00', "
        "'2024-11-13 02:00:00.000000+00:00')",
    ],
)
def test_check_constraints_reject_bad_values(schema_engine, statement):
    with rolled_back(schema_engine) as conn:
        insert_execution(conn)
        with pytest.raises(sa.exc.IntegrityError):
            conn.exec_driver_sql(statement)


def test_the_execution_status_check_rejects_unknown_statuses(schema_engine):
    with rolled_back(schema_engine) as conn:
        insert_execution(conn, status="completed")
    with rolled_back(schema_engine) as conn, pytest.raises(sa.exc.IntegrityError):
        insert_execution(conn, status="succeeded")


def test_one_open_failure_per_pair_is_enforced_by_the_database(schema_engine):
    insert = sa.text(
        "INSERT INTO feature_computation_failures "
        "(symbol, timeframe, error_message, resolved, failed_at, first_failed_at) "
        "VALUES ('A', '1d', 'x', :resolved, :at, :at)"
    ).bindparams(sa.bindparam("resolved", type_=sa.Boolean))
    at = "2024-11-13 02:00:00.000000+00:00"
    with rolled_back(schema_engine) as conn:
        conn.execute(insert, {"resolved": True, "at": at})
        conn.execute(insert, {"resolved": True, "at": at})
        conn.execute(insert, {"resolved": False, "at": at})
        with pytest.raises(sa.exc.IntegrityError):
            conn.execute(insert, {"resolved": False, "at": at})


def test_a_transaction_after_migrate_on_the_same_engine_rolls_back(bare_engine):
    # Regression: the SQLite runner once returned its pooled connection in autocommit mode.
    migrate(bare_engine)
    with rolled_back(bare_engine) as conn:
        insert_execution(conn)
    with bare_engine.connect() as conn:
        count = conn.execute(sa.text("SELECT COUNT(*) FROM scheduler_execution_log")).scalar()
    assert count == 0


# -- refusals ------------------------------------------------------------------------------------


def test_an_edited_applied_migration_is_refused_and_nothing_changes(bare_engine, sql_copy):
    dialect = bare_engine.dialect.name
    files = discover_migrations(dialect, sql_copy)
    migrate(bare_engine, sql_dir=sql_copy)
    before_rows = migration_rows(bare_engine)
    before_tables = table_names(bare_engine)

    edited = files[2].path
    edited.write_text(edited.read_text(encoding="utf-8") + "\n-- tweaked\n", encoding="utf-8")
    next_version = len(files)
    (sql_copy / dialect / f"{next_version:04d}_later.sql").write_text(
        "CREATE TABLE later_table (x INTEGER);\n"
        f"INSERT INTO schema_migrations (version, name) VALUES ({next_version}, "
        f"'{next_version:04d}_later');\n",
        encoding="utf-8",
    )
    with pytest.raises(MigrationError, match=f"{edited.name} was edited after it was applied"):
        migrate(bare_engine, sql_dir=sql_copy)
    with pytest.raises(MigrationError, match="edited"):
        ensure_current(bare_engine, sql_dir=sql_copy)
    assert migration_rows(bare_engine) == before_rows
    assert table_names(bare_engine) == before_tables


def test_a_renamed_applied_migration_is_refused(bare_engine, sql_copy):
    dialect = bare_engine.dialect.name
    migrate(bare_engine, sql_dir=sql_copy)
    original = discover_migrations(dialect, sql_copy)[1].path
    original.rename(original.with_name(original.name.replace(".sql", "_v2.sql")))
    with pytest.raises(MigrationError, match="append-only"):
        migrate(bare_engine, sql_dir=sql_copy)


def test_a_database_at_an_unknown_version_is_refused(bare_engine):
    migrate(bare_engine)
    with bare_engine.begin() as conn:
        conn.execute(
            sa.text("INSERT INTO schema_migrations (version, name) VALUES (99, '0099_future')")
        )
    before = migration_rows(bare_engine)
    with pytest.raises(MigrationError, match=r"0099.*upgrade market_pipeline"):
        migrate(bare_engine)
    with pytest.raises(MigrationError, match="0099"):
        ensure_current(bare_engine)
    assert migration_rows(bare_engine) == before


def add_broken_migration(engine, sql_dir: Path) -> int:
    dialect = engine.dialect.name
    version = len(discover_migrations(dialect, sql_dir))
    (sql_dir / dialect / f"{version:04d}_broken.sql").write_text(
        "CREATE TABLE half_done (x INTEGER);\n"
        "CREATE TABLE half_done (x INTEGER);\n"
        f"INSERT INTO schema_migrations (version, name) VALUES ({version}, "
        f"'{version:04d}_broken');\n",
        encoding="utf-8",
    )
    return version


def test_a_failing_migration_rolls_back_entirely(bare_engine, sql_copy):
    migrate(bare_engine, sql_dir=sql_copy)
    version = add_broken_migration(bare_engine, sql_copy)
    with pytest.raises(Exception, match="already exists"):
        migrate(bare_engine, sql_dir=sql_copy)
    assert "half_done" not in table_names(bare_engine)
    assert version not in {row[0] for row in migration_rows(bare_engine)}


def test_a_failing_migration_is_reported_as_a_migration_error(bare_engine, sql_copy):
    migrate(bare_engine, sql_dir=sql_copy)
    add_broken_migration(bare_engine, sql_copy)
    with pytest.raises(MigrationError, match=r"_broken\.sql failed and was rolled back"):
        migrate(bare_engine, sql_dir=sql_copy)


def test_a_file_applied_by_hand_is_adopted(bare_engine, sql_copy, tmp_path):
    dialect = bare_engine.dialect.name
    files = discover_migrations(dialect, sql_copy)
    partial = tmp_path / "partial"
    (partial / dialect).mkdir(parents=True)
    for migration in files[:2]:
        shutil.copy(migration.path, partial / dialect / migration.path.name)
    assert migrate(bare_engine, sql_dir=partial) == [m.name for m in files[:2]]

    by_hand = files[2]
    apply_by_hand(bare_engine, by_hand.path)
    assert migration_rows(bare_engine)[-1] == (by_hand.version, by_hand.name, None)

    applied = migrate(bare_engine, sql_dir=sql_copy)
    assert applied == [m.name for m in files[3:]]
    rows = {version: checksum for version, _, checksum in migration_rows(bare_engine)}
    assert rows[by_hand.version] == sha256(by_hand.path)
    assert set(SPEC_COLUMNS) <= table_names(bare_engine)
    assert migrate(bare_engine, sql_dir=sql_copy) == []
