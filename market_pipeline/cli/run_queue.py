"""Submit a backfill's runs to the instance's run queue and wait for them to finish.

The runs are created from the code location (as ``dagster job launch`` and the UI create them),
so the daemon's run coordinator can launch them with the instance's run launcher: a run worker
process on this machine (stock), or a Celery worker (``dagster.celery.yaml``). This process only
submits and watches; it never executes a step.

Dagster has no public API for submitting a run outside the UI and its CLI, so this module uses the
few internal calls ``dagster job launch`` makes (workspace context, ``create_run``,
``submit_run``), pinned with the Dagster version.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import dagster as dg
from dagster._core.definitions.selector import JobSubsetSelector
from dagster._core.workspace.context import WorkspaceProcessContext, WorkspaceRequestContext
from dagster._core.workspace.load_target import ModuleTarget, WorkspaceFileTarget

from market_pipeline.cli.backfill_result import BackfillResult
from market_pipeline.config.settings import Settings
from market_pipeline.config.universe_file import load_universe
from market_pipeline.domain.names import (
    MARKET_DATA_JOB,
    RANGE_END_TAG,
    RANGE_START_TAG,
    TRIGGER_TAG,
)
from market_pipeline.domain.partition_keys import pairs_in_range, partition_ranges

LOCATION_NAME = "market_pipeline"
"""The code location name workspace.yaml and the daemon use: a queued run names its location."""
DEFINITIONS_MODULE = "market_pipeline.definitions"
POLL_SECONDS = 0.5
NOT_STARTED_HINT_SECONDS = 60.0
_FINISHED = {dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED}


@dataclass
class QueuedRun:
    run_id: str
    start: str
    end: str
    pairs: int
    status: dg.DagsterRunStatus = dg.DagsterRunStatus.QUEUED


def _load_target(workspace: Path | None) -> WorkspaceFileTarget | ModuleTarget:
    if workspace is not None:
        return WorkspaceFileTarget(paths=[str(workspace)])
    return ModuleTarget(
        module_name=DEFINITIONS_MODULE,
        attribute=None,
        working_directory=None,
        location_name=LOCATION_NAME,
    )


def _create_runs(
    instance: dg.DagsterInstance,
    request: WorkspaceRequestContext,
    ranges: list[tuple[str, str, int]],
    tags: dict[str, str],
) -> list[QueuedRun]:
    """One run of the market-data job per range, each submitted to the run queue."""
    location = request.get_code_location(LOCATION_NAME)
    (repository,) = location.get_repositories().values()
    remote_job = location.get_job(
        JobSubsetSelector(
            location_name=location.name,
            repository_name=repository.name,
            job_name=MARKET_DATA_JOB,
            op_selection=None,
        )
    )
    # Every run has the same plan (one step; the range is in the tags), so it is built once.
    plan = location.get_execution_plan(
        remote_job, {}, step_keys_to_execute=None, known_state=None, instance=instance
    ).execution_plan_snapshot
    runs = []
    for start, end, pairs in ranges:
        run = instance.create_run(
            job_name=remote_job.name,
            run_id=None,
            run_config={},
            resolved_op_selection=None,
            step_keys_to_execute=plan.step_keys_to_execute,
            op_selection=None,
            status=None,
            root_run_id=None,
            parent_run_id=None,
            tags={**remote_job.tags, **tags, RANGE_START_TAG: start, RANGE_END_TAG: end},
            job_snapshot=remote_job.job_snapshot,
            execution_plan_snapshot=plan,
            parent_job_snapshot=remote_job.parent_job_snapshot,
            remote_job_origin=remote_job.get_remote_origin(),
            job_code_origin=remote_job.get_python_origin(),
            asset_selection=None,
            asset_check_selection=None,
            asset_graph=repository.asset_graph,
        )
        instance.submit_run(run.run_id, request)
        runs.append(QueuedRun(run.run_id, start, end, pairs))
    return runs


class Progress:
    """Progress on ``out``: a bar redrawn in place on a terminal, a line per finished run
    otherwise (logs and CI)."""

    def __init__(self, out: TextIO, total_runs: int, total_pairs: int) -> None:
        self.out, self.total_runs, self.total_pairs = out, total_runs, total_pairs
        self.tty = out.isatty()

    def submitted(self, run: QueuedRun) -> None:
        print(
            f"queued run {run.run_id}: {run.start}...{run.end} ({run.pairs} pairs)", file=self.out
        )

    def finished(self, run: QueuedRun, runs: Sequence[QueuedRun]) -> None:
        if self.tty:
            self.out.write("\r\x1b[K")
        print(f"run {run.run_id} {run.status.value.lower()} ({run.pairs} pairs)", file=self.out)
        self.redraw(runs)

    def redraw(self, runs: Sequence[QueuedRun]) -> None:
        if not self.tty:
            return
        done = [r for r in runs if r.status in _FINISHED]
        started = sum(1 for r in runs if r.status == dg.DagsterRunStatus.STARTED)
        pairs = sum(r.pairs for r in done)
        width = 30
        filled = width * pairs // max(1, self.total_pairs)
        self.out.write(
            f"\r[{'#' * filled}{'.' * (width - filled)}] {len(done)}/{self.total_runs} runs, "
            f"{pairs}/{self.total_pairs} pairs, {started} running"
        )
        if len(done) == self.total_runs:
            self.out.write("\n")
        self.out.flush()


def wait_for_runs(
    instance: dg.DagsterInstance,
    runs: list[QueuedRun],
    progress: Progress,
    *,
    timeout: float | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> None:
    """Poll the instance until every run is finished, reporting each as it ends; ``TimeoutError``
    naming the unfinished runs after ``timeout`` seconds."""
    began = clock()
    hinted = False
    by_id = {r.run_id: r for r in runs}
    while True:
        for record in instance.get_run_records(dg.RunsFilter(run_ids=list(by_id))):
            run = by_id[record.dagster_run.run_id]
            status = record.dagster_run.status
            if status != run.status:
                run.status = status
                if status in _FINISHED:
                    progress.finished(run, runs)
        progress.redraw(runs)
        waiting = [r for r in runs if r.status not in _FINISHED]
        if not waiting:
            return
        elapsed = clock() - began
        if (
            not hinted
            and elapsed > NOT_STARTED_HINT_SECONDS
            and all(r.status == dg.DagsterRunStatus.QUEUED for r in runs)
        ):
            hinted = True
            print(
                "no run has left the queue yet: the run queue needs a running dagster-daemon "
                "on this instance",
                file=sys.stderr,
            )
        if timeout is not None and elapsed > timeout:
            raise TimeoutError(
                f"{len(waiting)} run(s) unfinished after {timeout:.0f} s: "
                + ", ".join(f"{r.run_id} ({r.status.value})" for r in waiting)
            )
        time.sleep(POLL_SECONDS)


def submit_backfill(
    settings: Settings,
    *,
    symbols: Sequence[str] | None = None,
    timeframes: Sequence[str] | None = None,
    trigger: str = "manual",
    workspace: Path | None = None,
    timeout: float | None = None,
    out: TextIO = sys.stdout,
) -> BackfillResult:
    """Queue one run per range of at most ``settings.partitions_per_run`` pairs on the current
    instance (``DAGSTER_HOME``), wait for all of them and return their outcome."""
    universe = load_universe(settings.universe_path)
    ranges = [
        (start, end, pairs_in_range(universe, start, end))
        for start, end in partition_ranges(
            universe, symbols, timeframes, max_partitions_per_run=settings.partitions_per_run
        )
    ]
    result = BackfillResult(pairs=sum(p for _, _, p in ranges))
    progress = Progress(out, len(ranges), result.pairs)
    with dg.DagsterInstance.get() as instance:
        with WorkspaceProcessContext(
            instance=instance,
            version=dg.__version__,
            read_only=False,
            workspace_load_target=_load_target(workspace),
        ) as context:
            runs = _create_runs(
                instance, context.create_request_context(), ranges, {TRIGGER_TAG: trigger}
            )
        for run in runs:
            progress.submitted(run)
        progress.redraw(runs)
        wait_for_runs(instance, runs, progress, timeout=timeout)
    result.run_ids = [r.run_id for r in runs]
    result.failed_runs = [r.run_id for r in runs if r.status != dg.DagsterRunStatus.SUCCESS]
    return result
