"""Waiting for queued runs: each run reported as it ends, a bounded wait naming what is left.
(Submitting to a real daemon and Celery workers is in e2e/test_celery.py.)"""

from __future__ import annotations

import io
import uuid

import dagster as dg
import pytest

from market_pipeline.cli.run_queue import Progress, QueuedRun, wait_for_runs


def _queued(instance: dg.DagsterInstance) -> dg.DagsterRun:
    """A run not yet started (a queued run needs a code-location origin; the wait treats both
    as unfinished)."""
    run = dg.DagsterRun(
        job_name="market_data_job", run_id=str(uuid.uuid4()), status=dg.DagsterRunStatus.NOT_STARTED
    )
    return instance.add_run(run)


def test_each_finished_run_is_reported_with_its_id_and_status(live_instance):
    failed, queued = _queued(live_instance), _queued(live_instance)
    live_instance.report_run_failed(failed)
    runs = [
        QueuedRun(failed.run_id, "A|1d", "B|1d", 4),
        QueuedRun(queued.run_id, "C|1d", "C|1d", 1),
    ]
    out = io.StringIO()
    with pytest.raises(TimeoutError) as raised:
        wait_for_runs(live_instance, runs, Progress(out, 2, 5), timeout=0.2)
    assert f"run {failed.run_id} failure (4 pairs)" in out.getvalue()
    assert queued.run_id not in out.getvalue()
    # The error names each unfinished run and its status; the finished one is not in it.
    assert f"{queued.run_id} (NOT_STARTED)" in str(raised.value)
    assert failed.run_id not in str(raised.value)
    assert runs[0].status == dg.DagsterRunStatus.FAILURE


def test_a_terminal_gets_a_bar_that_ends_with_a_newline(live_instance):
    done = _queued(live_instance)
    live_instance.report_run_failed(done)

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    out = Terminal()
    runs = [QueuedRun(done.run_id, "A|1d", "A|1d", 1)]
    wait_for_runs(live_instance, runs, Progress(out, 1, 1))
    text = out.getvalue()
    assert "[" + "#" * 30 + "] 1/1 runs, 1/1 pairs, 0 running\n" in text
