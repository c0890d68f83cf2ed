"""Client-side limits shared by the HTTP vendors: a rate limiter and the retry schedule."""

from __future__ import annotations

import email.utils
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime


class RateLimiter:
    """A token bucket shared by every thread of one provider: ``per_minute`` units a minute,
    with bursts of at most one second's worth (so a cold start does not spend a minute's budget
    at once). :meth:`pause` stops every caller until a vendor-given time (``Retry-After``)."""

    def __init__(
        self,
        per_minute: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if isinstance(per_minute, bool) or not isinstance(per_minute, (int, float)):
            raise ValueError(f"rate limit must be a number per minute, got {per_minute!r}")
        if per_minute <= 0:
            raise ValueError(f"rate limit must be positive, got {per_minute!r}")
        self.per_second = float(per_minute) / 60.0
        self.capacity = max(1.0, self.per_second)
        self._tokens = self.capacity
        self._clock = clock
        self._sleep = sleep
        self._updated = clock()
        self._paused_until = 0.0
        self._lock = threading.Lock()

    def acquire(self, cost: float = 1.0) -> float:
        """Wait until ``cost`` units are available and take them; return the seconds waited."""
        cost = min(float(cost), self.capacity)
        waited = 0.0
        while True:
            with self._lock:
                now = self._clock()
                elapsed = max(0.0, now - self._updated)
                self._tokens = min(self.capacity, self._tokens + elapsed * self.per_second)
                self._updated = now
                wait = self._paused_until - now
                if wait <= 0:
                    if self._tokens >= cost:
                        self._tokens -= cost
                        return waited
                    wait = (cost - self._tokens) / self.per_second
            self._sleep(wait)
            waited += wait

    def paused_for(self) -> float:
        """Seconds the current pause has left (0 when none)."""
        with self._lock:
            return max(0.0, self._paused_until - self._clock())

    def pause(self, seconds: float) -> None:
        """Hold every caller for ``seconds`` from now (the vendor said to back off)."""
        with self._lock:
            self._paused_until = max(self._paused_until, self._clock() + seconds)


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded retries with exponential backoff and full jitter.

    Try ``n`` (1-based) that failed waits a uniform random time in
    ``[0, min(max_backoff_s, backoff_s * 2**(n-1))]`` (full jitter spreads the retries of many
    concurrent callers), or the vendor's ``Retry-After`` when it gave one and it is longer. A
    ``Retry-After`` beyond ``max_retry_after_s`` is not waited for: the fetch fails at once
    (a ban of hours has no place inside a run).
    """

    max_tries: int = 4
    backoff_s: float = 0.5
    max_backoff_s: float = 30.0
    max_retry_after_s: float = 60.0

    def __post_init__(self) -> None:
        if isinstance(self.max_tries, bool) or not isinstance(self.max_tries, int):
            raise ValueError(f"max_tries must be a whole number, got {self.max_tries!r}")
        if not 1 <= self.max_tries <= 20:
            raise ValueError(f"max_tries must be from 1 to 20, got {self.max_tries!r}")
        for name in ("backoff_s", "max_backoff_s", "max_retry_after_s"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ValueError(f"{name} must be a non-negative number of seconds, got {value!r}")

    def delay(self, failed_try: int, retry_after: float | None, rng: random.Random) -> float:
        """Seconds to wait after try ``failed_try`` failed."""
        ceiling = min(self.max_backoff_s, self.backoff_s * 2 ** (failed_try - 1))
        jittered = rng.uniform(0.0, ceiling)
        return max(jittered, retry_after or 0.0)


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds a ``Retry-After`` header asks for: delta-seconds or an HTTP date; None when
    absent or unreadable."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())
