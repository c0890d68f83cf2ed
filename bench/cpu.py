"""CPU-seconds spent by this process (and its children) and by the local PostgreSQL server.

What bounds a run on a small machine is often not its wall time but the cores it keeps busy: the
Python side (Dagster's bookkeeping, our refresh threads) and the server side (inserts, COPYs).
Read from ``/proc`` (Linux), summed over every ``postgres`` process of the machine, so a
measurement taken while other work hits the same server counts that work too.
"""

from __future__ import annotations

import os
import resource
from dataclasses import dataclass
from pathlib import Path

_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class CpuSeconds:
    python: float
    postgres: float

    @property
    def total(self) -> float:
        return self.python + self.postgres

    def __sub__(self, other: CpuSeconds) -> CpuSeconds:
        return CpuSeconds(self.python - other.python, self.postgres - other.postgres)


def _postgres_seconds() -> float:
    ticks = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if not (entry / "comm").read_text().startswith("postgres"):
                continue
            # Fields after the command: utime, stime, cutime, cstime are the 12th to 15th.
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # the process ended meanwhile
            continue
        ticks += sum(int(value) for value in fields[11:15])
    return ticks / _TICKS


def cpu_now() -> CpuSeconds:
    """Cumulative CPU-seconds so far: subtract two readings to get an interval's."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    python = own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime
    return CpuSeconds(python=python, postgres=_postgres_seconds())
