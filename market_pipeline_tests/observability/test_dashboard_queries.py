"""The dashboard's reads (``ObservabilityStore.dashboard()``) on SQLite and PostgreSQL.

Data is written through the store, as the run mirror writes it; time comes from a fixed clock.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from market_pipeline.database.engine import temporary_postgres_database
from market_pipeline.database.tables import (
    feature_computation_failures,
    feature_freshness,
    scheduler_execution_log,
    symbol_computation_status,
)
from market_pipeline.domain.dashboard import UNCLASSIFIED
from market_pipeline.observability.store import ObservabilityStore
from market_pipeline_tests.support.postgres import migrated_engine

T0 = datetime(2024, 11, 13, 19, 30, tzinfo=UTC)
PAIRS = [("AAPL", "1d"), ("AAPL", "5m"), ("AAPL", "1h"), ("BTC-USD", "1d"), ("XYZ", "1h")]
CLASSES = {"AAPL": "equity", "BTC-USD": "crypto"}
UI = "http://dagster.example:3000/"


@pytest.fixture(scope="module")
def pg_module_engine(pg_server):
    with temporary_postgres_database(pg_server, prefix="mp_test") as url:
        yield from migrated_engine(url)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def engine(request, tmp_path):
    """A migrated, empty database on each backend (PostgreSQL: one per module, emptied)."""
    if request.param == "sqlite":
        yield from migrated_engine(f"sqlite:///{tmp_path / 'market_pipeline.db'}")
        return
    eng = request.getfixturevalue("pg_module_engine")
    with eng.begin() as conn:
        for table in (
            feature_computation_failures,
            symbol_computation_status,
            feature_freshness,
            scheduler_execution_log,
        ):
            conn.execute(table.delete())
    yield eng


@pytest.fixture
def store(engine) -> ObservabilityStore:
    return ObservabilityStore(engine, monitored_pairs=PAIRS, clock=lambda: T0)


def _execution(store: ObservabilityStore, started: datetime, status: str = "completed") -> str:
    eid = store.create_scheduler_execution_log(started_at=started, total_symbols=3)
    store.update_scheduler_execution_log(
        execution_id=eid, completed_at=started + timedelta(seconds=30), status=status
    )
    return eid


def _seed(store: ObservabilityStore) -> dict[str, str]:
    """AAPL/1d fresh, AAPL/5m aging, AAPL/1h stale, BTC-USD/1d failing twice (never computed),
    XYZ/1h missing; XYZ/1h also failed once and was fixed later."""
    first = _execution(store, T0 - timedelta(hours=3))
    second = _execution(store, T0 - timedelta(hours=1))
    store.update_feature_freshness_many(
        [
            {
                "symbol": "AAPL",
                "timeframe": "1d",
                "last_computed_at": T0 - timedelta(minutes=10),
                "data_point_count": 300,
                "last_bar_at": T0 - timedelta(days=1),
            },
            {
                "symbol": "AAPL",
                "timeframe": "5m",
                "last_computed_at": T0 - timedelta(hours=2),
                "data_point_count": 50,
            },
            {
                "symbol": "AAPL",
                "timeframe": "1h",
                "last_computed_at": T0 - timedelta(days=2),
                "data_point_count": 80,
            },
        ],
        now=T0,
    )
    for eid, at, error in (
        (first, T0 - timedelta(hours=3), "first error"),
        (second, T0 - timedelta(hours=1), '<script>alert(1)</script>"</td>'),
    ):
        store.log_feature_computation_failure(
            symbol="BTC-USD", timeframe="1d", error_message=error, execution_id=eid, failed_at=at
        )
    store.log_feature_computation_failure(
        symbol="XYZ",
        timeframe="1h",
        error_message="old",
        execution_id=first,
        failed_at=T0 - timedelta(hours=3),
    )
    for eid, status, at in ((first, "failed", 3), (second, "completed", 1)):
        store.log_symbol_computation_status(
            execution_id=eid,
            symbol="XYZ",
            timeframe="1h",
            status=status,
            records_processed=10 * at,
            started_at=T0 - timedelta(hours=at),
            completed_at=T0 - timedelta(hours=at) + timedelta(seconds=5),
            error_message="old" if status == "failed" else None,
        )
    return {"first": first, "second": second}


def test_pairs_lists_every_monitored_pair_in_universe_order_with_its_status(store):
    _seed(store)

    report = store.dashboard(asset_classes=CLASSES).pairs()

    assert [(p.symbol, p.timeframe) for p in report.pairs] == PAIRS
    by_pair = {(p.symbol, p.timeframe): p for p in report.pairs}
    assert [by_pair[pair].cell_status for pair in PAIRS] == [
        "fresh",
        "aging",
        "stale",
        "failed",
        "missing",
    ]
    assert by_pair[("BTC-USD", "1d")].status == "missing"
    assert by_pair[("AAPL", "1d")].staleness_seconds == 600
    assert by_pair[("AAPL", "1d")].last_bar_at == T0 - timedelta(days=1)
    assert by_pair[("AAPL", "1d")].asset_class == "equity"
    assert by_pair[("XYZ", "1h")].asset_class == UNCLASSIFIED
    assert report.summary.total_monitored == 5 and report.summary.missing_count == 2
    assert report.failed_count == 1
    assert report.timeframes == ["5m", "1h", "1d"]


def test_a_pairs_open_failure_carries_its_error_retries_and_since_when(store):
    ids = _seed(store)

    (failing,) = [p for p in store.dashboard().pairs().pairs if p.failure is not None]

    assert (failing.symbol, failing.timeframe) == ("BTC-USD", "1d")
    assert failing.failure.error == '<script>alert(1)</script>"</td>'  # stored verbatim
    assert failing.failure.retry_count == 1
    assert failing.failure.first_failed_at == T0 - timedelta(hours=3)
    assert failing.failure.failed_at == T0 - timedelta(hours=1)
    assert failing.failure.execution_id == ids["second"]


def test_without_monitored_pairs_every_freshness_row_is_listed(engine):
    store = ObservabilityStore(engine, clock=lambda: T0)
    _seed(store)

    report = store.dashboard().pairs()

    assert [(p.symbol, p.timeframe) for p in report.pairs] == [
        ("AAPL", "1d"),
        ("AAPL", "1h"),
        ("AAPL", "5m"),
    ]


def test_open_failures_are_newest_first_capped_and_counted_in_full(store):
    _seed(store)
    store.log_feature_computation_failure(
        symbol="AAPL", timeframe="5m", error_message="newest", failed_at=T0 - timedelta(minutes=5)
    )
    reads = store.dashboard()

    everything = reads.open_failures(limit=10)
    capped = reads.open_failures(limit=1)

    assert [(f.symbol, f.timeframe) for f in everything.failures] == [
        ("AAPL", "5m"),
        ("BTC-USD", "1d"),
    ]  # XYZ/1h was resolved by its later success
    assert everything.total_open == 2
    assert [f.error for f in capped.failures] == ["newest"] and capped.total_open == 2
    assert everything.failures[1].retry_count == 1
    assert everything.failures[1].first_failed_at == T0 - timedelta(hours=3)


def test_no_open_failure_is_an_empty_list(store):
    report = store.dashboard().open_failures()

    assert report.failures == [] and report.total_open == 0


def test_pair_detail_has_freshness_status_rows_failures_and_the_dagster_link(store):
    ids = _seed(store)

    detail = store.dashboard(dagster_ui_url=UI).pair_detail("XYZ", "1h")

    assert detail.pair.cell_status == "missing" and detail.pair.failure is None
    assert [(r.execution_id, r.status, r.execution_status) for r in detail.status_rows] == [
        (ids["second"], "completed", "completed"),
        (ids["first"], "failed", "completed"),
    ]
    assert detail.status_rows[1].error_message == "old"
    assert detail.status_rows[0].records_processed == 10
    assert [(f.error, f.resolved) for f in detail.failures] == [("old", True)]
    assert detail.failures[0].resolved_at is not None
    assert detail.dagster_url == (
        "http://dagster.example:3000/assets/quant_features?partition=XYZ%7C1h"
    )


def test_pair_detail_of_a_failing_pair_shows_its_open_failure(store):
    _seed(store)

    detail = store.dashboard().pair_detail("BTC-USD", "1d", limit=5)

    assert detail.pair.cell_status == "failed"
    assert detail.pair.failure.retry_count == 1
    assert [f.resolved for f in detail.failures] == [False]
    assert detail.status_rows == [] and detail.dagster_url is None


def test_pair_detail_of_a_fresh_pair_has_its_freshness_fields(store):
    _seed(store)

    detail = store.dashboard().pair_detail("AAPL", "1d")

    assert detail.pair.status == "fresh" and detail.pair.data_point_count == 300
    assert detail.pair.last_computed_at == T0 - timedelta(minutes=10)


def test_pair_detail_of_a_pair_the_dashboard_does_not_show_is_none(store, engine):
    _seed(store)
    unmonitored = ObservabilityStore(engine, clock=lambda: T0)

    assert store.dashboard().pair_detail("MSFT", "1h") is None
    assert store.dashboard().pair_detail("AAPL", "15m") is None
    assert unmonitored.dashboard().pair_detail("BTC-USD", "1d") is None  # no freshness row
    assert unmonitored.dashboard().pair_detail("AAPL", "5m").pair.status == "aging"


def test_pair_detail_limits_its_lists(store):
    _seed(store)

    detail = store.dashboard().pair_detail("XYZ", "1h", limit=1)

    assert len(detail.status_rows) == 1 and detail.status_rows[0].status == "completed"
    with pytest.raises(ValueError, match="limit"):
        store.dashboard().pair_detail("XYZ", "1h", limit=0)


def test_a_pair_late_beyond_tolerance_shows_late_with_its_data_time(engine):
    from market_pipeline.domain.lag_rules import DataLagRules, PairSchedule

    schedules = {
        ("BTC-USD", "1h"): PairSchedule("24/7", 0, "crypto"),
        ("ETH-USD", "1h"): PairSchedule("24/7", 0, "crypto"),
    }
    store = ObservabilityStore(
        engine,
        monitored_pairs=list(schedules),
        clock=lambda: T0,
        data_lag_rules=DataLagRules(schedules, tolerances={"1h": 3600}),
    )
    store.update_feature_freshness_many(
        [
            {
                "symbol": symbol,
                "timeframe": "1h",
                "last_computed_at": T0 - timedelta(minutes=5),
                "data_point_count": 50,
                "last_bar_at": bar,
            }
            # 19:30: the 18:00 bar is due. BTC has it; ETH stopped at 14:00 (4 bars, 4.5 h).
            for symbol, bar in (
                ("BTC-USD", datetime(2024, 11, 13, 18, tzinfo=UTC)),
                ("ETH-USD", datetime(2024, 11, 13, 14, tzinfo=UTC)),
            )
        ],
        now=T0 - timedelta(minutes=5),
    )
    reads = store.dashboard(asset_classes={"BTC-USD": "crypto", "ETH-USD": "crypto"})
    cells = {p.symbol: p for p in reads.pairs().pairs}
    assert (cells["BTC-USD"].cell_status, cells["BTC-USD"].data_status) == ("fresh", "current")
    eth = cells["ETH-USD"]
    assert (eth.cell_status, eth.status, eth.data_status) == ("late", "fresh", "late")
    assert eth.bars_behind == 4
    assert eth.expected_last_bar_at == datetime(2024, 11, 13, 18, tzinfo=UTC)
    detail = reads.pair_detail("ETH-USD", "1h")
    assert detail is not None
    assert (detail.pair.cell_status, detail.pair.bars_behind) == ("late", 4)
