"""The ``market-pipeline`` command: migrate, backfill, report, demo, serve."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from market_pipeline.config.settings import Settings
from market_pipeline.package_data import instance_template


class CliError(Exception):
    """An expected failure, printed as one line without a traceback."""


def prepare_dagster_home(settings: Settings, environ=os.environ) -> Path:
    """Make sure ``DAGSTER_HOME`` names a folder holding a dagster.yaml, and return it.

    Without ``DAGSTER_HOME`` the instance lives in ``$MARKET_PIPELINE_HOME/dagster_home`` (our
    folder: its dagster.yaml is rewritten from the committed one each time, SQLite storage, or
    ``dagster.postgres.yaml`` when ``DAGSTER_PG_URL`` is set). A ``DAGSTER_HOME`` of the user's
    own only gets a dagster.yaml when it has none.
    """
    source = instance_template(postgres=bool(environ.get("DAGSTER_PG_URL")))
    given = environ.get("DAGSTER_HOME")
    home = Path(given).expanduser().resolve() if given else settings.home / "dagster_home"
    home.mkdir(parents=True, exist_ok=True)
    target = home / "dagster.yaml"
    if not given or not target.exists():
        shutil.copyfile(source, target)
    environ["DAGSTER_HOME"] = str(home)
    return home


def _engine(settings: Settings):
    from market_pipeline.database.engine import make_engine

    return make_engine(settings.db_url)


def cmd_dagster_home(settings: Settings, args: argparse.Namespace) -> int:
    print(prepare_dagster_home(settings))
    return 0


def cmd_migrate(settings: Settings, args: argparse.Namespace) -> int:
    from market_pipeline.database.engine import describe_url
    from market_pipeline.database.migrations import migrate

    engine = _engine(settings)
    try:
        applied = migrate(engine)
    finally:
        engine.dispose()
    where = describe_url(settings.db_url)
    if applied:
        print(f"applied {len(applied)} migration(s) to {where}: {', '.join(applied)}")
    else:
        print(f"{where} is up to date")
    return 0


def _store(settings: Settings, engine):
    from market_pipeline.database.migrations import ensure_current
    from market_pipeline.domain.universe import load_universe
    from market_pipeline.observability.store import ObservabilityStore

    ensure_current(engine)
    universe = load_universe(settings.universe_path)
    return ObservabilityStore(
        engine,
        monitored_pairs=universe.pairs,
        failure_alert_threshold=settings.failure_alert_threshold,
    )


def cmd_report(settings: Settings, args: argparse.Namespace) -> int:
    from market_pipeline.observability.report import build_report, render_text
    from market_pipeline.observability.store import to_json_ready

    engine = _engine(settings)
    try:
        report = build_report(_store(settings, engine), staleness_limit=args.limit,
                              history_limit=args.history)
    finally:
        engine.dispose()
    if args.json:
        print(json.dumps(to_json_ready(report), indent=2))
    else:
        print(render_text(report))
    return 0


def cmd_backfill(settings: Settings, args: argparse.Namespace) -> int:
    from market_pipeline.cli.launcher import run_backfill

    prepare_dagster_home(settings)
    result = run_backfill(settings, symbols=args.symbols, timeframes=args.timeframes)
    print(result.summary())
    return 0 if result.success or args.allow_failures else 1


def cmd_demo(settings: Settings, args: argparse.Namespace) -> int:
    from market_pipeline.cli.launcher import run_backfill

    home = prepare_dagster_home(settings)
    print(f"Dagster home: {home}")
    cmd_migrate(settings, args)
    started = time.perf_counter()
    result = run_backfill(settings)
    print(f"{result.summary()} in {time.perf_counter() - started:.1f} s")
    _reconcile_if_available(settings)
    args.limit, args.history, args.json = 10, 5, False
    return cmd_report(settings, args)


def _reconcile_if_available(settings: Settings) -> None:
    try:
        from market_pipeline.observability.mirror import reconcile_instance
    except ImportError:
        return
    import dagster as dg

    engine = _engine(settings)
    try:
        with dg.DagsterInstance.get() as instance:
            summary = reconcile_instance(instance, _store(settings, engine))
        print(f"mirrored runs into the observability tables: {summary}")
    finally:
        engine.dispose()


def cmd_reconcile(settings: Settings, args: argparse.Namespace) -> int:
    from datetime import UTC, datetime

    import dagster as dg

    from market_pipeline.domain.universe import load_universe
    from market_pipeline.observability.mirror import reconcile_instance

    since = None
    if args.since:
        since = datetime.fromisoformat(args.since)
        since = since.replace(tzinfo=UTC) if since.tzinfo is None else since
    prepare_dagster_home(settings)
    universe = load_universe(settings.universe_path)
    classes = {s: universe.asset_class_of(s) for s in universe.symbol_names}
    engine = _engine(settings)
    try:
        with dg.DagsterInstance.get() as instance:
            summary = reconcile_instance(
                instance, _store(settings, engine), since=since, full=args.full,
                asset_classes=classes,
            )
    finally:
        engine.dispose()
    print(f"mirrored runs into the observability tables: {summary}")
    for message in summary.error_messages[:10]:
        print(f"  {message}", file=sys.stderr)
    return 1 if summary.errors else 0


def cmd_serve(settings: Settings, args: argparse.Namespace) -> int:
    from market_pipeline.api.server import serve

    serve(args.host, args.port, allow_public=args.allow_public_without_token, settings=settings)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="market-pipeline",
        description="Keep a market-data store current and observable (a Dagster project).",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser(
        "dagster-home",
        help="prepare the Dagster instance folder (DAGSTER_HOME) and print its path",
    )
    p.set_defaults(func=cmd_dagster_home)

    p = sub.add_parser("migrate", help="apply pending SQL migrations to MARKET_PIPELINE_DB_URL")
    p.set_defaults(func=cmd_migrate)

    p = sub.add_parser("report", help="print the scheduler health, staleness and history report")
    p.add_argument("--limit", type=int, default=20, help="pairs listed per freshness status")
    p.add_argument("--history", type=int, default=10, help="executions listed")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser(
        "backfill", help="refresh bars and features of the universe (or a part) in one bulk run"
    )
    p.add_argument("--symbols", nargs="+", help="only these symbols (default: all)")
    p.add_argument("--timeframes", nargs="+", help="only these timeframes (default: all)")
    p.add_argument(
        "--allow-failures", action="store_true", help="exit 0 even when some pairs failed"
    )
    p.set_defaults(func=cmd_backfill)

    p = sub.add_parser(
        "demo", help="migrate, backfill the universe, mirror the run and print the health report"
    )
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser(
        "reconcile",
        help="mirror Dagster runs not yet in the observability tables (since the stored watermark)",
    )
    p.add_argument("--since", help="look at runs updated after this ISO time (UTC if no zone)")
    p.add_argument("--full", action="store_true", help="re-project runs already mirrored too")
    p.set_defaults(func=cmd_reconcile)

    p = sub.add_parser(
        "serve", help="serve the admin HTTP API (scheduler health, staleness, execution history)"
    )
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="port to listen on (default 8000)")
    p.add_argument(
        "--allow-public-without-token",
        action="store_true",
        help="serve a non-loopback address although MARKET_PIPELINE_ADMIN_TOKEN is not set",
    )
    p.set_defaults(func=cmd_serve)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = Settings.from_env()
        return args.func(settings, args)
    except Exception as exc:  # noqa: BLE001 - known errors become one line, others re-raise
        if _is_user_error(exc):
            print(f"market-pipeline {args.command}: error: {exc}", file=sys.stderr)
            return 2
        raise


def _is_user_error(exc: Exception) -> bool:
    from market_pipeline.database.engine import DatabaseUnavailableError
    from market_pipeline.database.migrations import MigrationError
    from market_pipeline.domain.universe import UniverseError

    return isinstance(exc, DatabaseUnavailableError | MigrationError | UniverseError | CliError | ValueError)


if __name__ == "__main__":
    sys.exit(main())
