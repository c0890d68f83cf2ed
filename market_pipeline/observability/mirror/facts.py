"""What the mirror knows of one run, as plain data: read from Dagster by :mod:`.events`,
projected by :mod:`.projection` (which therefore needs no Dagster to be tested)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class Materialized:
    """One partition of one asset materialized in the run."""

    timestamp: float
    metadata: Mapping[str, Any]  # plain values


@dataclass(frozen=True)
class StepFailure:
    """A failed step: the per-pair errors of our ``Failure``, or the error of the whole step."""

    timestamp: float
    failed_partitions: Mapping[str, str]
    error: str


@dataclass(frozen=True)
class RunFacts:
    """What the projection needs of one run of the market-data assets."""

    run_id: str
    job_name: str
    status: str  # the DagsterRunStatus value, e.g. "SUCCESS"
    tags: Mapping[str, str]
    started: float  # start time, or creation time before the run started
    ended: float | None  # end time; the last update time of a finished run without one
    update_timestamp: datetime
    planned: Mapping[str, frozenset[str]]  # asset name -> partition keys
    done: Mapping[str, Mapping[str, Materialized]]  # asset name -> key -> materialization
    step_failures: tuple[StepFailure, ...] = ()
    run_failure: tuple[float, str] | None = None
    canceled_at: float | None = None
