"""`market-pipeline reconcile`: mirrors runs made without any daemon, once, on both backends."""

from __future__ import annotations

import sqlalchemy as sa

from market_pipeline.cli.main import main
from market_pipeline.database.engine import make_engine
from market_pipeline_tests.support.universes import write_universe


def _executions(db_url: str) -> list[tuple[str, int, int]]:
    engine = make_engine(db_url)
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT status, successful_symbols, failed_symbols FROM scheduler_execution_log "
                "ORDER BY started_at"
            )
        ).all()
    engine.dispose()
    return [tuple(r) for r in rows]


def test_reconcile_mirrors_cli_backfills_once(tmp_path, db_url, monkeypatch, capsys):
    universe = write_universe(
        tmp_path / "u.yaml",
        [("AAPL", "equity"), ("BADCO", "equity")],
        ["1d"],
        {"kind": "synthetic", "fail_symbols": ["BADCO"], "history_bars": 100},
    )
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.setenv("MARKET_PIPELINE_DB_URL", db_url)
    monkeypatch.setenv("MARKET_PIPELINE_UNIVERSE", str(universe))
    monkeypatch.setenv("MARKET_PIPELINE_HOME", str(tmp_path / "mp_home"))

    assert main(["migrate"]) == 0
    assert main(["backfill", "--allow-failures"]) == 0
    assert main(["backfill", "--symbols", "AAPL"]) == 0
    capsys.readouterr()
    assert _executions(db_url) == []  # no daemon: nothing mirrored yet

    assert main(["reconcile"]) == 0
    assert "2 runs scanned" in capsys.readouterr().out
    assert _executions(db_url) == [("completed", 1, 1), ("completed", 1, 0)]

    assert main(["reconcile"]) == 0
    out = capsys.readouterr().out
    assert "0 mirrored, 2 already mirrored" in out
    assert main(["reconcile", "--full"]) == 0
    assert "2 mirrored" in capsys.readouterr().out
    assert _executions(db_url) == [("completed", 1, 1), ("completed", 1, 0)]
