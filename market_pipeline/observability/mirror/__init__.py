"""Mirror Dagster runs of the market-data assets into the four scheduler observability tables.

Dagster's run storage is the source of truth; our tables are a projection of it. Two paths write
the projection with the same code, so they can overlap freely:

- the run-status sensors (:mod:`market_pipeline.defs.observability_sensors`) project a run as
  soon as it starts or ends;
- the reconciler (:func:`reconcile_instance`, run by a sensor every minute and by
  ``market-pipeline reconcile``) walks the instance's run records since a stored watermark and
  projects every run that is not yet mirrored in its final state. It repairs what the sensors
  cannot see or drop: runs from before the sensors were enabled, runs that ended while the daemon
  was down or our database unreachable, runs a sensor tick skipped after an error.

Every write is an idempotent upsert keyed by run id and pair, and the finished status of the
execution row is written last, so "the row is completed/failed" means "everything else of the run
is written"; the reconciler skips exactly those runs.

Run status -> ``scheduler_execution_log.status``:

======================  ==================================================================
Dagster run status      execution status
======================  ==================================================================
QUEUED, NOT_STARTED,    not mirrored yet (the run has not started; it is picked up when it
STARTING                does, because its update time changes)
STARTED, CANCELING      ``running``
SUCCESS                 ``completed`` (``failed`` when it planned pairs and none succeeded)
FAILURE                 ``completed`` when the only failures are per-pair ones (the step's
                        ``failed_partitions``) and at least one pair succeeded, as in the spec's
                        example with 45 symbols ok and 5 failed; ``failed`` when no pair
                        succeeded or the run failed as a whole (an unexpected exception, a
                        resource that could not start, a crashed run worker)
CANCELED                ``failed`` (``error_message`` says it was canceled)
======================  ==================================================================

Counts: ``total_symbols`` is the number of distinct symbols the run planned, a symbol counts as
failed when any of its timeframes failed in the run, ``successful_symbols`` is the rest, and
``total_records_processed`` sums the bar rows fetched (``rows_fetched``) of the succeeded pairs.

Per pair (``symbol_computation_status``): ``completed`` when every asset the run selected was
materialized for the pair, ``failed`` when the run finished without that, ``in_progress`` while
the run is running. A failed pair of a run that failed (not of a canceled one: a cancellation is
no computation failure) is logged in ``feature_computation_failures`` with the real error text
(the pair's entry in ``failed_partitions``, else the underlying exception of the step or run),
once per (run, pair); a completed pair resolves the pair's open failure; and a pair whose
features were materialized gets its ``feature_freshness`` row from the materialization.

Modules: ``events`` reads a run from Dagster into plain facts, ``projection`` holds the pure
rules, ``apply`` writes a projection through the store, ``reconcile`` walks the watermark.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import dagster as dg

from market_pipeline.observability.mirror.apply import ApplyResult, apply_projection
from market_pipeline.observability.mirror.events import MIRRORED_EVENT_TYPES, read_run
from market_pipeline.observability.mirror.facts import RunFacts
from market_pipeline.observability.mirror.projection import (
    PairProjection,
    RunProjection,
    project,
    run_trigger,
)
from market_pipeline.observability.mirror.reconcile import (
    DEFAULT_WATERMARK_NAME,
    WATERMARK_OVERLAP,
    ReconcileSummary,
    reconcile_instance,
)
from market_pipeline.observability.store import ObservabilityStore

__all__ = [
    "DEFAULT_WATERMARK_NAME",
    "MIRRORED_EVENT_TYPES",
    "WATERMARK_OVERLAP",
    "ApplyResult",
    "PairProjection",
    "ReconcileSummary",
    "RunFacts",
    "RunProjection",
    "apply_projection",
    "mirror_run",
    "project_run",
    "reconcile_instance",
    "run_trigger",
]


def project_run(
    instance: dg.DagsterInstance,
    run: Any,
    *,
    partitions_def: dg.PartitionsDefinition | None = None,
) -> RunProjection | None:
    """Read one run (a ``RunRecord`` or a run id) and project it; ``None`` when it is not ours."""
    facts = read_run(instance, run, partitions_def=partitions_def)
    return None if facts is None else project(facts)


def mirror_run(
    instance: dg.DagsterInstance,
    store: ObservabilityStore,
    run: Any,
    *,
    asset_classes: Mapping[str, str],
    partitions_def: dg.PartitionsDefinition | None = None,
    logger: logging.Logger | Any | None = None,
) -> ApplyResult | None:
    """Project one run (record or id) and apply it; ``None`` when the run is not ours."""
    projection = project_run(instance, run, partitions_def=partitions_def)
    if projection is None:
        return None
    return apply_projection(store, projection, asset_classes=asset_classes, logger=logger)
