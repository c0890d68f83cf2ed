"""The ``market-pipeline`` command: migrate, backfill, report, demo, reconcile, serve."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from market_pipeline.cli import commands
from market_pipeline.config.settings import Settings


class CliError(Exception):
    """An expected failure, printed as one line without a traceback."""


def _add_report(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="print the scheduler health, staleness and history report")
    p.add_argument("--limit", type=int, default=20, help="pairs listed per freshness status")
    p.add_argument("--history", type=int, default=10, help="executions listed")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.add_argument(
        "--at",
        metavar="ISO8601",
        help="evaluate freshness, data lag and health as of this instant (with a zone, e.g. "
        "2026-11-27T18:30:00Z) over what is stored now: for post-mortems and previews",
    )
    p.set_defaults(func=commands.report)


def _add_backfill(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "backfill",
        help="refresh bars and features of the universe (or a part) in bulk runs of at most "
        "MARKET_PIPELINE_PARTITIONS_PER_RUN pairs: in this process, or queued with --submit",
    )
    p.add_argument("--symbols", nargs="+", help="only these symbols (default: all)")
    p.add_argument("--timeframes", nargs="+", help="only these timeframes (default: all)")
    p.add_argument(
        "--allow-failures", action="store_true", help="exit 0 even when some pairs failed"
    )
    p.add_argument(
        "--submit",
        action="store_true",
        help="submit the runs to the instance's run queue (a dagster-daemon launches them with "
        "the instance's run launcher, e.g. on Celery workers) and wait for them",
    )
    p.add_argument(
        "--workspace",
        type=Path,
        help="with --submit: the workspace YAML whose 'market_pipeline' location the runs name "
        "(default: the module market_pipeline.definitions)",
    )
    p.add_argument(
        "--timeout",
        type=_positive_float,
        help="with --submit: fail after this many seconds if runs are still unfinished",
    )
    p.set_defaults(func=commands.backfill)


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {text!r}")
    return value


def _add_reconcile(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "reconcile",
        help="mirror Dagster runs not yet in the observability tables (since the stored watermark)",
    )
    p.add_argument("--since", help="look at runs updated after this ISO time (UTC if no zone)")
    p.add_argument("--full", action="store_true", help="re-project runs already mirrored too")
    p.set_defaults(func=commands.reconcile)


def _add_serve(sub: argparse._SubParsersAction) -> None:
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
    p.set_defaults(func=commands.serve)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="market-pipeline",
        description="Keep a market-data store current and observable (a Dagster project).",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser(
        "dagster-home",
        help="prepare the Dagster instance folder (DAGSTER_HOME) and print its path",
    ).set_defaults(func=commands.dagster_home)
    sub.add_parser(
        "migrate", help="apply pending SQL migrations to MARKET_PIPELINE_DB_URL"
    ).set_defaults(func=commands.migrate)
    _add_report(sub)
    _add_backfill(sub)
    sub.add_parser(
        "demo", help="migrate, backfill the universe, mirror the run and print the health report"
    ).set_defaults(func=commands.demo)
    _add_reconcile(sub)
    _add_serve(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = Settings.from_env()
        result: int = args.func(settings, args)
        return result
    except Exception as exc:
        if _is_user_error(exc):
            print(f"market-pipeline {args.command}: error: {exc}", file=sys.stderr)
            return 2
        raise


def _is_user_error(exc: Exception) -> bool:
    from market_pipeline.database.engine import DatabaseUnavailableError
    from market_pipeline.database.migrations import MigrationError
    from market_pipeline.domain.universe import UniverseError

    return isinstance(
        exc,
        DatabaseUnavailableError
        | MigrationError
        | UniverseError
        | CliError
        | ValueError
        | TimeoutError,
    )


if __name__ == "__main__":
    sys.exit(main())
