"""Dagster's state for the metrics, read by a thread of its own every few seconds instead of at
scrape time.

A scrape then costs only our own reads, and a Dagster database that hangs or fails cannot hang
or fail the scrape: it shows as ``market_pipeline_dagster_instance_up 0`` once the newest good
reading is older than ``stale_after_seconds``, with that reading's age beside it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from market_pipeline.observability.metrics.dagster_state import DagsterReading, read_dagster

logger = logging.getLogger("market_pipeline.metrics")

DEFAULT_INTERVAL_SECONDS = 5.0
FIRST_READING_WAIT_SECONDS = 2.0
"""How long the first scrape waits for the first reading before it reports the instance down."""


@dataclass(frozen=True)
class DagsterState:
    reading: DagsterReading | None  # the newest good reading, however old
    up: bool  # the newest attempt succeeded and its reading is recent enough


class DagsterWatch:
    """Reads ``instance`` every ``interval_seconds`` in a daemon thread, from its first use until
    :meth:`stop`."""

    def __init__(
        self,
        instance: Any,
        interval_seconds: float = DEFAULT_INTERVAL_SECONDS,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        if interval_seconds <= 0:
            raise ValueError(f"interval_seconds must be positive, got {interval_seconds}")
        self.instance = instance
        self.interval_seconds = interval_seconds
        # A reading missed by three rounds (a hung or failing database) no longer counts as up.
        self.stale_after_seconds = 3 * interval_seconds
        self.clock = clock
        self._guard = threading.Lock()
        self._reading: DagsterReading | None = None
        self._last_ok = False
        self._attempted = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def state(self, now: datetime, wait: float = FIRST_READING_WAIT_SECONDS) -> DagsterState:
        """The newest reading; the first call starts the thread and waits up to ``wait`` s."""
        self.start()
        self._attempted.wait(wait)
        with self._guard:
            reading, ok = self._reading, self._last_ok
        recent = (
            reading is not None
            and (now - reading.read_at).total_seconds() <= self.stale_after_seconds
        )
        return DagsterState(reading=reading, up=ok and recent)

    def refresh(self) -> None:
        """One reading now (the thread's round; tests call it to read at a chosen moment)."""
        try:
            reading = read_dagster(self.instance, self.clock())
        except Exception as exc:  # noqa: BLE001 - a broken instance must not end the watch
            with self._guard:
                was_ok, self._last_ok = self._last_ok, False
            if was_ok or not self._attempted.is_set():
                logger.warning("metrics: cannot read the Dagster instance: %s", exc)
        else:
            with self._guard:
                self._reading, self._last_ok = reading, True
        finally:
            self._attempted.set()

    def start(self) -> None:
        with self._guard:
            if self._thread is not None or self._stopping.is_set():
                return
            self._thread = threading.Thread(
                target=self._rounds, name="metrics-dagster-watch", daemon=True
            )
            self._thread.start()

    def stop(self) -> None:
        """Ends the thread; a round in progress finishes in the background (daemon thread)."""
        self._stopping.set()
        with self._guard:
            thread = self._thread
        if thread is not None:
            thread.join(timeout=self.interval_seconds)

    def _rounds(self) -> None:
        while not self._stopping.is_set():
            self.refresh()
            self._stopping.wait(self.interval_seconds)
