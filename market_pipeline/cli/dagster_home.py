"""The Dagster instance folder (``DAGSTER_HOME``) that the CLI and ``make`` targets use."""

from __future__ import annotations

import os
import shutil
from collections.abc import MutableMapping
from pathlib import Path

from market_pipeline.config.settings import Settings
from market_pipeline.package_data import instance_template


def prepare_dagster_home(
    settings: Settings, environ: MutableMapping[str, str] = os.environ
) -> Path:
    """Make sure ``DAGSTER_HOME`` names a folder holding a dagster.yaml, and return it.

    Without ``DAGSTER_HOME`` the instance lives in ``$MARKET_PIPELINE_HOME/dagster_home`` (our
    folder: its dagster.yaml is rewritten from the shipped template each time, SQLite storage,
    or the PostgreSQL template when ``DAGSTER_PG_URL`` is set, the Celery one when
    ``DAGSTER_CELERY_BROKER_URL`` is set too). A ``DAGSTER_HOME`` of the user's
    own only gets a dagster.yaml when it has none.
    """
    source = instance_template(
        postgres=bool(environ.get("DAGSTER_PG_URL")),
        celery=bool(environ.get("DAGSTER_CELERY_BROKER_URL")),
    )
    given = environ.get("DAGSTER_HOME")
    home = Path(given).expanduser().resolve() if given else settings.home / "dagster_home"
    home.mkdir(parents=True, exist_ok=True)
    target = home / "dagster.yaml"
    if not given or not target.exists():
        shutil.copyfile(source, target)
    environ["DAGSTER_HOME"] = str(home)
    return home
