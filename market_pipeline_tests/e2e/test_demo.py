"""`market-pipeline demo` (what `make demo` runs): backfill, mirror, report that matches."""

from __future__ import annotations

import re

import sqlalchemy as sa

from market_pipeline.cli.commands import serve_command
from market_pipeline.cli.main import main
from market_pipeline.database.tables import symbol_computation_status
from market_pipeline_tests.support.universes import write_universe


def test_demo_backfills_mirrors_and_reports_what_it_did_and_reruns_incrementally(
    tmp_path, monkeypatch, capsys
):
    universe = write_universe(
        tmp_path / "u.yaml",
        [("AAPL", "equity"), ("MSFT", "equity"), ("BADCO", "equity"), ("ETH-USD", "crypto")],
        ["1h", "1d"],
        {"kind": "synthetic", "fail_symbols": ["BADCO"], "history_bars": 300},
    )
    monkeypatch.setenv("MARKET_PIPELINE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MARKET_PIPELINE_UNIVERSE", str(universe))
    monkeypatch.delenv("MARKET_PIPELINE_DB_URL", raising=False)
    monkeypatch.setenv("DAGSTER_HOME", "")  # unset for the demo, restored after the test

    assert main(["demo"]) == 0
    out = capsys.readouterr().out
    # The demo times its own backfill (the runs only: not migrations, mirroring or the report).
    assert re.search(r"^backfill of 8 pairs in 1 run\(s\): .+ in \d+\.\d s$", out, re.MULTILINE)
    assert "Scheduler health: DEGRADED" in out  # BADCO has never been computed
    assert re.search(r"completed, started .*, 3 symbols ok, 1 failed", out)
    # Freshness table: 6 fresh pairs, BADCO's 2 missing, of 8.
    assert re.search(r"^6\s+0\s+0\s+2\s+8\s*$", out, re.MULTILINE)
    assert "BADCO" in out and "injected failure" in out
    # Data time: the demo samples the coverage SLI once; BADCO's 2 pairs have no bar. (A bar
    # that completes between the backfill and the report leaves its pair late: 6 or 5 current.)
    data = re.search(r"^([56])\s+([01])\s+0\s+2\s+0\s*$", out, re.MULTILINE)
    assert data and int(data[1]) + int(data[2]) == 6
    assert re.search(r"^1h\s+1\s+(75\.00|62\.50)%", out, re.MULTILINE)
    # It ends with the dashboard's address and the command that serves this very store.
    dashboard, serve = out.rstrip().splitlines()[-2:]
    assert dashboard == "Dashboard: http://127.0.0.1:8000/dashboard"
    assert serve.startswith("Serve it:  ") and serve.endswith("/market-pipeline serve")
    assert f"MARKET_PIPELINE_HOME={tmp_path / 'home'}" in serve
    assert f"MARKET_PIPELINE_UNIVERSE={universe}" in serve
    assert (tmp_path / "home" / "market_pipeline.db").is_file()
    assert (tmp_path / "home" / "dagster_home" / "dagster.yaml").is_file()
    # The demo mirrors through the reconciler, which must know the universe's asset classes.
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'home' / 'market_pipeline.db'}")
    s = symbol_computation_status
    with engine.connect() as conn:
        classes = dict(conn.execute(sa.select(s.c.symbol, s.c.asset_class).distinct()).all())
    engine.dispose()
    assert classes == {"AAPL": "equity", "MSFT": "equity", "BADCO": "equity", "ETH-USD": "crypto"}

    assert main(["demo"]) == 0  # a second demo is an incremental refresh of the same store
    out = capsys.readouterr().out
    assert "up to date" in out
    assert re.search(r"^backfill of 8 pairs in 1 run\(s\): .+ in \d+\.\d s$", out, re.MULTILINE)
    history = out[out.index("Recent executions") :]
    assert len(re.findall(r"completed\s+3/4", history)) == 2


def test_the_serve_command_names_the_settings_in_use_but_never_a_password():
    command = serve_command(
        {
            "MARKET_PIPELINE_HOME": "/srv/market data",
            "MARKET_PIPELINE_DB_URL": "postgresql+psycopg2://u:s3cret@db:5432/market",
            "MARKET_PIPELINE_ADMIN_TOKEN": "t0ken",
        }
    )

    assert command.startswith("MARKET_PIPELINE_HOME='/srv/market data' ")
    assert 'MARKET_PIPELINE_DB_URL="$MARKET_PIPELINE_DB_URL"' in command
    assert "s3cret" not in command and "t0ken" not in command
    assert command.endswith("market-pipeline serve")
