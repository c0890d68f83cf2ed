"""Bodies of the API's own answers (errors, probes), as models like the spec's bodies."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from market_pipeline.domain.reports import HealthStatus, UtcTimestamp


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Error(_Body):
    """Every refusal: a machine-readable code and what was wrong, for a person."""

    error: str = Field(description="machine-readable code")
    detail: str = Field(description="what was wrong, for a person")


class HealthProbe(_Body):
    """The scheduler health as a status code: 200 healthy, 503 degraded."""

    status: HealthStatus
    timestamp: UtcTimestamp
    reasons: list[str]


class Readiness(_Body):
    """Whether the database answers and its schema is current (the reason only with a token)."""

    status: Literal["ready", "unavailable"]
    checks: dict[str, str] | None = None
    error: str | None = None
    detail: str | None = None


class Liveness(_Body):
    """The process serves HTTP."""

    status: Literal["alive"]


READY = Readiness(status="ready", checks={"database": "ok", "schema": "ok"})
ALIVE = Liveness(status="alive")
