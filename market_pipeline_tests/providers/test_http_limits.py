"""The rate limiter and retry schedule the HTTP vendors share, on a fake clock."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest

from market_pipeline.providers.http.limits import RateLimiter, RetryPolicy, parse_retry_after


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def test_the_limiter_allows_a_seconds_burst_then_spaces_requests_at_the_rate():
    clock = FakeClock()
    limiter = RateLimiter(120, clock=clock, sleep=clock.sleep)  # 2 a second
    for _ in range(2):
        assert limiter.acquire() == 0.0
    assert limiter.acquire() == pytest.approx(0.5)
    assert limiter.acquire() == pytest.approx(0.5)
    assert clock.now == pytest.approx(1.0)


def test_a_weighted_request_takes_its_weight():
    clock = FakeClock()
    limiter = RateLimiter(600, clock=clock, sleep=clock.sleep)  # 10 units a second
    for _ in range(5):
        limiter.acquire(2)
    assert limiter.acquire(2) == pytest.approx(0.2)


def test_a_pause_holds_every_caller_until_it_ends():
    clock = FakeClock()
    limiter = RateLimiter(6000, clock=clock, sleep=clock.sleep)
    limiter.pause(3.0)
    assert limiter.acquire() == pytest.approx(3.0)
    assert limiter.acquire() == 0.0


def test_backoff_grows_exponentially_within_full_jitter_and_respects_retry_after():
    policy = RetryPolicy(max_tries=6, backoff_s=0.5, max_backoff_s=4.0)
    rng = random.Random(7)
    for failed_try, ceiling in ((1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (5, 4.0)):
        delays = [policy.delay(failed_try, None, rng) for _ in range(200)]
        assert min(delays) >= 0.0 and max(delays) <= ceiling
        assert max(delays) > 0.8 * ceiling  # the jitter spans the range, not a fixed value
    assert policy.delay(1, 10.0, rng) == 10.0


def test_retry_after_reads_seconds_and_http_dates():
    now = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    assert parse_retry_after("120") == 120.0
    assert parse_retry_after("Thu, 01 Jan 2026 12:00:30 GMT", now=now) == 30.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_tries": 0}, "max_tries must be from 1 to 20"),
        ({"backoff_s": -1}, "backoff_s must be a non-negative number"),
    ],
)
def test_bad_retry_settings_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        RetryPolicy(**kwargs)
