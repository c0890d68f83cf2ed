"""What each ``market-pipeline`` sub-command does; imports are deferred so ``--help`` is fast."""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from market_pipeline.api.server import DEFAULT_HOST, DEFAULT_PORT
from market_pipeline.cli.dagster_home import prepare_dagster_home
from market_pipeline.config.settings import Settings
from market_pipeline.domain.timestamps import parse_instant

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from market_pipeline.observability.mirror import ReconcileSummary
    from market_pipeline.observability.store import ObservabilityStore


def _engine(settings: Settings) -> Engine:
    from market_pipeline.database.engine import make_engine

    return make_engine(settings.db_url)


def _store(settings: Settings, engine: Engine, *, at: datetime | None = None) -> ObservabilityStore:
    from market_pipeline.config.universe_file import load_universe
    from market_pipeline.database.migrations import ensure_current
    from market_pipeline.observability.store import ObservabilityStore

    ensure_current(engine)
    universe = load_universe(settings.universe_path)
    fixed = at  # as of ``--at``: the clock stands at that instant
    return ObservabilityStore(
        engine,
        monitored_pairs=universe.pairs,
        failure_alert_threshold=settings.failure_alert_threshold,
        data_lag_rules=universe.data_lag_rules(),
        clock=(lambda: datetime.now(UTC)) if fixed is None else (lambda: fixed),
        as_of=fixed is not None,
    )


def dagster_home(settings: Settings, args: argparse.Namespace) -> int:
    print(prepare_dagster_home(settings))
    return 0


def migrate(settings: Settings, args: argparse.Namespace) -> int:
    from market_pipeline.database.engine import describe_url
    from market_pipeline.database.migrations import migrate as apply_migrations

    engine = _engine(settings)
    try:
        applied = apply_migrations(engine)
    finally:
        engine.dispose()
    where = describe_url(settings.db_url)
    if applied:
        print(f"applied {len(applied)} migration(s) to {where}: {', '.join(applied)}")
    else:
        print(f"{where} is up to date")
    return 0


def report(settings: Settings, args: argparse.Namespace) -> int:
    from market_pipeline.domain.report_text import render_text
    from market_pipeline.observability.report import build_report

    at_text = getattr(args, "at", None)  # the demo reports through here without --at
    at = None if at_text is None else parse_instant(at_text, what="--at")
    engine = _engine(settings)
    try:
        built = build_report(
            _store(settings, engine, at=at),
            staleness_limit=args.limit,
            history_limit=args.history,
            coverage_objective=settings.coverage_objective,
        )
    finally:
        engine.dispose()
    if args.json:
        print(json.dumps(built.model_dump(mode="json"), indent=2))
    else:
        print(render_text(built))
    return 0


def backfill(settings: Settings, args: argparse.Namespace) -> int:
    prepare_dagster_home(settings)
    if args.submit:
        from market_pipeline.cli.run_queue import submit_backfill

        result = submit_backfill(
            settings,
            symbols=args.symbols,
            timeframes=args.timeframes,
            workspace=args.workspace,
            timeout=args.timeout,
        )
    else:
        from market_pipeline.cli.launcher import run_backfill

        result = run_backfill(settings, symbols=args.symbols, timeframes=args.timeframes)
    print(result.summary())
    return 0 if result.success or args.allow_failures else 1


def demo(settings: Settings, args: argparse.Namespace) -> int:
    from market_pipeline.cli.launcher import run_backfill

    home = prepare_dagster_home(settings)
    print(f"Dagster home: {home}")
    migrate(settings, args)
    started = time.perf_counter()
    result = run_backfill(settings)
    print(f"{result.summary()} in {time.perf_counter() - started:.1f} s")
    summary = _reconcile(settings)
    print(f"mirrored runs into the observability tables: {summary}")
    _sample_coverage(settings)
    args.limit, args.history, args.json = 10, 5, False
    status = report(settings, args)
    print()
    print(f"Dashboard: http://{DEFAULT_HOST}:{DEFAULT_PORT}/dashboard")
    print(f"Serve it:  {serve_command()}")
    return status


def _sample_coverage(settings: Settings) -> None:
    """One coverage sample, as the freshness sensor takes between runs (no daemon runs here)."""
    engine = _engine(settings)
    try:
        _store(settings, engine).data_time.record_coverage_sample(
            retention_days=settings.coverage_retention_days
        )
    finally:
        engine.dispose()


_SERVE_ENV = ("MARKET_PIPELINE_HOME", "MARKET_PIPELINE_UNIVERSE", "MARKET_PIPELINE_DB_URL")


def serve_command(environ: dict[str, str] | None = None) -> str:
    """The shell command that serves the admin API (and the dashboard) over what this process
    used: the settings variables that are set, then this installation's ``market-pipeline``.
    A database URL holding a password is referred to, never printed."""
    from sqlalchemy.engine import make_url

    env = dict(os.environ) if environ is None else environ
    words = []
    for name in _SERVE_ENV:
        value = env.get(name)
        if not value:
            continue
        if name == "MARKET_PIPELINE_DB_URL" and make_url(value).password:
            words.append(f'{name}="${name}"')
        else:
            words.append(f"{name}={shlex.quote(value)}")
    script = os.path.join(os.path.dirname(sys.executable), "market-pipeline")
    program = script if os.path.exists(script) else "market-pipeline"
    return " ".join([*words, shlex.quote(program), "serve"])


def reconcile(settings: Settings, args: argparse.Namespace) -> int:
    since = None
    if args.since:
        since = datetime.fromisoformat(args.since)
        since = since.replace(tzinfo=UTC) if since.tzinfo is None else since
    prepare_dagster_home(settings)
    summary = _reconcile(settings, since=since, full=args.full)
    print(f"mirrored runs into the observability tables: {summary}")
    for message in summary.error_messages[:10]:
        print(f"  {message}", file=sys.stderr)
    return 1 if summary.errors else 0


def _reconcile(
    settings: Settings, *, since: datetime | None = None, full: bool = False
) -> ReconcileSummary:
    """Mirror the instance's runs into our tables, with the universe's asset classes."""
    import dagster as dg

    from market_pipeline.config.universe_file import load_universe
    from market_pipeline.observability.mirror import reconcile_instance

    universe = load_universe(settings.universe_path)
    classes = {s: universe.asset_class_of(s) for s in universe.symbol_names}
    engine = _engine(settings)
    try:
        with dg.DagsterInstance.get() as instance:
            return reconcile_instance(
                instance, _store(settings, engine), since=since, full=full, asset_classes=classes
            )
    finally:
        engine.dispose()


def serve(settings: Settings, args: argparse.Namespace) -> int:
    from market_pipeline.api.server import serve as serve_api

    # The instance the other commands use, so /metrics reports its daemons and run queue.
    prepare_dagster_home(settings)
    serve_api(args.host, args.port, allow_public=args.allow_public_without_token, settings=settings)
    return 0
