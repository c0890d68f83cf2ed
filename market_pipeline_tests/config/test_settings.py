"""Settings come from the environment, one variable each, with documented defaults."""

from __future__ import annotations

from pathlib import Path

import pytest

from market_pipeline.config.settings import Settings
from market_pipeline.database.engine import normalize_db_url


def test_defaults_put_everything_under_the_git_ignored_home_of_the_checkout():
    settings = Settings.from_env({})
    repo = Path(__file__).resolve().parents[2]
    assert settings.home == repo / ".market_pipeline"
    assert settings.db_url == f"sqlite:///{repo / '.market_pipeline' / 'market_pipeline.db'}"
    assert settings.universe_path.name == "demo.yaml" and settings.universe_path.is_file()
    assert ".market_pipeline/" in (repo / ".gitignore").read_text().splitlines()


def test_environment_overrides_each_setting(tmp_path):
    settings = Settings.from_env(
        {
            "MARKET_PIPELINE_HOME": str(tmp_path),
            "MARKET_PIPELINE_DB_URL": "postgresql://u@db:5432/market",
            "MARKET_PIPELINE_UNIVERSE": str(tmp_path / "u.yaml"),
            "MARKET_PIPELINE_FAILURE_ALERT_THRESHOLD": "5",
            "MARKET_PIPELINE_ADMIN_TOKEN": "t0ken",
            "MARKET_PIPELINE_DAGSTER_UI_URL": "https://dagster.example/ui/",
        }
    )
    assert settings.home == tmp_path
    assert settings.db_url == "postgresql+psycopg2://u@db:5432/market"
    assert settings.universe_path == tmp_path / "u.yaml"
    assert settings.failure_alert_threshold == 5
    assert settings.admin_token == "t0ken"
    assert settings.dagster_ui_url == "https://dagster.example/ui"


def test_the_dagster_ui_defaults_to_where_make_dev_serves_it():
    assert Settings.from_env({}).dagster_ui_url == "http://127.0.0.1:3000"


@pytest.mark.parametrize("value", ["javascript:alert(1)", "ftp://h/x", "dagster:3000", "http://"])
def test_the_dagster_ui_url_must_be_an_absolute_http_url(value):
    with pytest.raises(ValueError, match="MARKET_PIPELINE_DAGSTER_UI_URL"):
        Settings.from_env({"MARKET_PIPELINE_DAGSTER_UI_URL": value})


@pytest.mark.parametrize("url", ["postgresql://a@h/d", "postgres://a@h/d"])
def test_bare_postgres_urls_get_the_installed_psycopg2_driver(url):
    assert normalize_db_url(url) == "postgresql+psycopg2://a@h/d"


def test_explicit_driver_and_sqlite_urls_are_kept():
    assert normalize_db_url("postgresql+psycopg2://a@h/d") == "postgresql+psycopg2://a@h/d"
    assert normalize_db_url("sqlite:////tmp/x.db") == "sqlite:////tmp/x.db"


@pytest.mark.parametrize("value", ["0", "-2", "three"])
def test_alert_threshold_must_be_a_positive_integer(value):
    with pytest.raises(ValueError, match="MARKET_PIPELINE_FAILURE_ALERT_THRESHOLD"):
        Settings.from_env({"MARKET_PIPELINE_FAILURE_ALERT_THRESHOLD": value})


@pytest.mark.parametrize("value", ["0", "-1", "soon", "inf", "nan"])
def test_the_dagster_metrics_interval_must_be_a_positive_number(value):
    with pytest.raises(ValueError, match="MARKET_PIPELINE_METRICS_DAGSTER_INTERVAL must be a pos"):
        Settings.from_env({"MARKET_PIPELINE_METRICS_DAGSTER_INTERVAL": value})


def test_the_dagster_metrics_interval_takes_fractions():
    env = {"MARKET_PIPELINE_METRICS_DAGSTER_INTERVAL": "0.5"}
    assert Settings.from_env(env).metrics_dagster_interval_seconds == 0.5
    assert Settings.from_env({}).metrics_dagster_interval_seconds == 5.0


def test_partitions_per_run_default_to_250_and_take_a_number_or_all():
    assert Settings.from_env({}).partitions_per_run == 250
    assert Settings.from_env({"MARKET_PIPELINE_PARTITIONS_PER_RUN": "60"}).partitions_per_run == 60
    assert (
        Settings.from_env({"MARKET_PIPELINE_PARTITIONS_PER_RUN": "ALL"}).partitions_per_run is None
    )


@pytest.mark.parametrize("value", ["0", "-5", "1.5", "many"])
def test_partitions_per_run_must_be_a_positive_integer_or_all(value):
    with pytest.raises(ValueError, match="MARKET_PIPELINE_PARTITIONS_PER_RUN must be a positive"):
        Settings.from_env({"MARKET_PIPELINE_PARTITIONS_PER_RUN": value})


def test_the_coverage_objective_and_retention_have_defaults_and_take_values():
    assert (
        Settings.from_env({}).coverage_objective,
        Settings.from_env({}).coverage_retention_days,
    ) == (0.99, 35)
    env = {
        "MARKET_PIPELINE_COVERAGE_OBJECTIVE": "0.995",
        "MARKET_PIPELINE_COVERAGE_RETENTION_DAYS": "90",
    }
    settings = Settings.from_env(env)
    assert (settings.coverage_objective, settings.coverage_retention_days) == (0.995, 90)


@pytest.mark.parametrize("value", ["1", "0", "1.5", "-0.1", "99%", "nan"])
def test_a_coverage_objective_outside_0_to_1_is_refused(value):
    with pytest.raises(ValueError, match="MARKET_PIPELINE_COVERAGE_OBJECTIVE must be a share"):
        Settings.from_env({"MARKET_PIPELINE_COVERAGE_OBJECTIVE": value})


@pytest.mark.parametrize(("value", "message"), [("29", "at least 30"), ("x", "positive integer")])
def test_a_coverage_retention_under_the_slo_window_is_refused(value, message):
    with pytest.raises(
        ValueError, match=f"MARKET_PIPELINE_COVERAGE_RETENTION_DAYS must be .*{message}"
    ):
        Settings.from_env({"MARKET_PIPELINE_COVERAGE_RETENTION_DAYS": value})
