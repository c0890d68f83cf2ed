"""`market-pipeline report --at`: freshness, data lag and health as of another instant, over a
real demo backfill of the synthetic provider on the embedded default."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta

import pytest

from market_pipeline.cli.main import main
from market_pipeline.domain.calendars import get_calendar
from market_pipeline.domain.exchange_sessions import library_calendar
from market_pipeline_tests.support.universes import write_universe


def _latest_weekday_holiday(before: date) -> date:
    """The newest Monday-Friday before ``before`` on which XNYS had no session."""
    sessions = set(library_calendar("XNYS", before - timedelta(days=400), before).sessions.date)
    day = before - timedelta(days=1)
    while day.weekday() >= 5 or day in sessions:
        day -= timedelta(days=1)
    return day


def _all_items(report: dict) -> dict:
    return {
        (item["symbol"], item["timeframe"]): item
        for listed in report["staleness"]["by_status"].values()
        for item in listed
    }


@pytest.fixture
def demo_home(tmp_path, monkeypatch, capsys):
    universe = write_universe(
        tmp_path / "u.yaml",
        [("AAPL", "equity"), ("MSFT", "equity"), ("ETH-USD", "crypto")],
        ["1h", "1d"],
        # Enough history that the latest holiday lies inside it, for 1h bars too.
        {"kind": "synthetic", "history_bars": 2500},
    )
    monkeypatch.setenv("MARKET_PIPELINE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MARKET_PIPELINE_UNIVERSE", str(universe))
    monkeypatch.delenv("MARKET_PIPELINE_DB_URL", raising=False)
    monkeypatch.setenv("DAGSTER_HOME", "")
    assert main(["demo"]) == 0
    capsys.readouterr()
    return tmp_path


def _report_at(capsys, at: str) -> dict:
    assert main(["report", "--json", "--at", at]) == 0
    return json.loads(capsys.readouterr().out)


def test_the_demo_reported_at_a_holiday_has_its_equity_pairs_current(demo_home, capsys):
    holiday = _latest_weekday_holiday(datetime.now(UTC).date())
    at = datetime(holiday.year, holiday.month, holiday.day, 20, 0, tzinfo=UTC)
    report = _report_at(capsys, at.isoformat())
    assert report["health"]["timestamp"] == at.strftime("%Y-%m-%dT%H:%M:%SZ")
    items = _all_items(report)
    xnys = get_calendar("XNYS")
    before_holiday = datetime.fromtimestamp(
        xnys.session_closed_by(int(at.timestamp())).day * 86400, UTC
    ).strftime("%Y-%m-%dT%H:%M:%SZ")
    for symbol in ("AAPL", "MSFT"):
        daily, hourly = items[(symbol, "1d")], items[(symbol, "1h")]
        # As of the holiday the newest stored bar is the session before it (the bars stored
        # since are not counted), and it is the one due: the holiday makes nothing late.
        assert daily["last_bar_at"] == daily["expected_last_bar_at"] == before_holiday
        assert (daily["data_status"], daily["bars_behind"]) == ("current", 0)
        assert hourly["last_bar_at"] == hourly["expected_last_bar_at"]
        assert hourly["last_bar_at"] < at.strftime("%Y-%m-%dT00:00:00Z")
        assert hourly["data_status"] == "current"
    # Crypto trades through the holiday: its due daily bar is the previous UTC day.
    eth = items[("ETH-USD", "1d")]
    yesterday = (at - timedelta(days=1)).strftime("%Y-%m-%dT00:00:00Z")
    assert eth["last_bar_at"] == eth["expected_last_bar_at"] == yesterday
    assert report["health"]["data_summary"]["current_count"] == 6
    # The demo's run started after the holiday: as of then, no execution had run.
    assert report["health"]["last_execution"] is None
    assert report["history"]["executions"] == []


def test_report_at_an_instant_in_the_past_rates_freshness_as_of_then(demo_home, capsys):
    now = _report_at(capsys, datetime.now(UTC).isoformat())
    assert {i["status"] for i in _all_items(now).values()} == {"fresh"}
    two_days_later = datetime.now(UTC) + timedelta(days=2)
    later = _report_at(capsys, two_days_later.isoformat())
    assert {i["status"] for i in _all_items(later).values()} == {"stale"}
    assert later["health"]["status"] == "degraded"
    # A week ago the stored computations lie in the future of the instant: staleness 0.
    past = _report_at(capsys, (datetime.now(UTC) - timedelta(days=7)).isoformat())
    assert {i["staleness_seconds"] for i in _all_items(past).values()} == {0}
    assert past["health"]["timestamp"] < now["health"]["timestamp"]
    # The text report takes --at too, with its data-time section and the coverage SLI.
    assert main(["report", "--at", "2026-11-27T18:30:00Z"]) == 0
    text = capsys.readouterr().out
    assert "as of 2026-11-27 18:30:00Z" in text
    assert "Data time (is the newest due bar stored?)" in text
    assert "Coverage SLI (objective 99.00%" in text
    assert past["coverage"]["objective"] == 0.99


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("2026-11-27 18:30", "has no timezone"),
        ("yesterday", "is not an ISO 8601 instant"),
    ],
)
def test_report_at_refuses_text_that_is_not_an_aware_instant(demo_home, capsys, value, message):
    assert main(["report", "--at", value]) == 2
    err = capsys.readouterr().err
    assert "--at" in err and message in err
