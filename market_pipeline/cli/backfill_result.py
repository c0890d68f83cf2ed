"""The outcome of one backfill, whichever way its runs were executed."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class BackfillResult:
    """The runs of one backfill and whether any of them had failed pairs."""

    run_ids: list[str] = field(default_factory=list)
    failed_runs: list[str] = field(default_factory=list)
    pairs: int = 0

    @property
    def success(self) -> bool:
        return not self.failed_runs

    def summary(self) -> str:
        state = "succeeded" if self.success else f"{len(self.failed_runs)} run(s) had failed pairs"
        return f"backfill of {self.pairs} pairs in {len(self.run_ids)} run(s): {state}"
