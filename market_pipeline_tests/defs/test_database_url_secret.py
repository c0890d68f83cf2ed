"""A database password from the environment never appears in Dagster's resource config."""

from __future__ import annotations

import dagster as dg
import pytest
from sqlalchemy.engine import make_url

from market_pipeline.cli.launcher import run_backfill
from market_pipeline.config.settings import Settings
from market_pipeline.database.engine import make_engine
from market_pipeline.database.migrations import migrate
from market_pipeline.definitions import build_definitions


@pytest.mark.postgres
def test_a_password_url_is_passed_as_an_env_var_reference_and_still_works(
    pg_database_url, small_universe, monkeypatch, tmp_path
):
    # Trust auth accepts any password, so the URL below is real and usable here.
    with_password = make_url(pg_database_url).set(password="s3cret-pw")
    url = with_password.render_as_string(hide_password=False)
    migrate(make_engine(url))
    monkeypatch.setenv("MARKET_PIPELINE_DB_URL", url)
    monkeypatch.setenv("MARKET_PIPELINE_UNIVERSE", str(small_universe))
    monkeypatch.setenv("MARKET_PIPELINE_HOME", str(tmp_path))
    settings = Settings.from_env()

    database = build_definitions(settings).resources["database"]
    assert isinstance(database.url, dg.EnvVar)
    assert "s3cret-pw" not in repr(database)

    with dg.instance_for_test() as instance:
        result = run_backfill(settings, symbols=["AAPL"], timeframes=["1d"], instance=instance)
    assert result.success


def test_a_url_without_password_is_shown_as_it_is(tmp_path, small_universe, monkeypatch):
    url = f"sqlite:///{tmp_path / 'x.db'}"
    monkeypatch.setenv("MARKET_PIPELINE_DB_URL", url)
    settings = Settings(home=tmp_path, db_url=url, universe_path=small_universe)
    assert build_definitions(settings).resources["database"].url == url
