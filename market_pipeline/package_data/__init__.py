"""Files shipped inside the package: SQL migrations, Dagster instance templates, universes, the
dashboard page.

They are package data, so a wheel installed outside the checkout has them too; code finds them
through these functions, never through the checkout's layout.
"""

from __future__ import annotations

from pathlib import Path

_HERE = Path(__file__).resolve().parent


def sql_dir() -> Path:
    """The folder of numbered migrations, one subfolder per dialect (``sqlite``, ``postgresql``)."""
    return _HERE / "sql"


def instance_template(postgres: bool, *, celery: bool = False) -> Path:
    """The Dagster instance template: SQLite storage, or PostgreSQL (``DAGSTER_PG_URL``), with
    runs launched on Celery workers when ``celery`` (``DAGSTER_CELERY_BROKER_URL`` too)."""
    if postgres and celery:
        return _HERE / "instance" / "dagster.celery.yaml"
    return _HERE / "instance" / ("dagster.postgres.yaml" if postgres else "dagster.yaml")


def celery_worker_config() -> Path:
    """The ``-y`` file of ``dagster-celery worker start``: broker and backend from the
    environment, as the instance's run launcher has them."""
    return _HERE / "instance" / "celery_worker.yaml"


def demo_universe() -> Path:
    """The bundled demo universe: 50 symbols x 5 timeframes, synthetic provider."""
    return _HERE / "universes" / "demo.yaml"


def dashboard_dir() -> Path:
    """The dashboard page's template, scripts, style and icon (served by the admin API)."""
    return _HERE / "dashboard"
