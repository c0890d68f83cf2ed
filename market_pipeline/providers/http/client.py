"""One vendor's HTTP client: connection reuse, timeouts, concurrency cap, rate limit, retries.

Every request of a provider goes through :meth:`VendorClient.get_json`, from any thread:

- one httpx transport (created on first use, so building a provider stays free of I/O) keeps
  connections alive between requests; its pool holds ``concurrency`` connections;
- at most ``concurrency`` requests are in flight at once, whatever the number of threads;
- the :class:`~market_pipeline.providers.http.limits.RateLimiter` spaces them;
- 5xx answers, timeouts, connection errors and 429 are retried up to ``max_tries`` in all, with
  exponential backoff and jitter, waiting at least what ``Retry-After`` says (and holding the
  provider's other requests as long); any other 4xx fails at once;
- failures raise :class:`VendorHttpError`: ``<vendor> <status> after <n> tries: <vendor message>``.

Headers (where credentials travel) are never logged nor put in an error.
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from market_pipeline.providers.base import ProviderError
from market_pipeline.providers.http.limits import RateLimiter, RetryPolicy, parse_retry_after

log = logging.getLogger(__name__)

ErrorText = Callable[[httpx.Response], str]
"""Reads the vendor's own error message out of a failed answer."""


_HEADERS = {
    "Accept": "application/json",
    "Accept-Encoding": "gzip, deflate",
    "User-Agent": f"market-pipeline (python-httpx/{httpx.__version__})",
}


class VendorHttpError(ProviderError):
    """A vendor request that failed for good; ``status`` is the HTTP status, or ``timeout`` /
    ``connection error``."""

    def __init__(self, message: str, *, status: int | str, tries: int) -> None:
        super().__init__(message)
        self.status = status
        self.tries = tries


@dataclass(frozen=True)
class _Failure:
    status: int | str
    message: str
    retryable: bool
    retry_after: float | None = None


def _tries(n: int) -> str:
    return f"{n} try" if n == 1 else f"{n} tries"


def _short(text: str, limit: int = 200) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


class VendorClient:
    """The HTTP side of one provider (see the module docstring)."""

    def __init__(
        self,
        *,
        vendor: str,
        base_url: str,
        timeout_s: float,
        concurrency: int,
        limiter: RateLimiter,
        retry: RetryPolicy,
        error_text: ErrorText,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.vendor = vendor
        self.base_url = base_url
        self.timeout_s = timeout_s
        self.concurrency = concurrency
        self.limiter = limiter
        self.retry = retry
        self._error_text = error_text
        self._sleep = sleep
        self._slots = threading.BoundedSemaphore(concurrency)
        self._lock = threading.Lock()
        self._transport: httpx.HTTPTransport | None = None
        self._timeout = httpx.Timeout(timeout_s).as_dict()
        self._rng = random.Random()

    def _http(self) -> httpx.HTTPTransport:
        with self._lock:
            if self._transport is None:
                self._transport = httpx.HTTPTransport(
                    limits=httpx.Limits(
                        max_connections=self.concurrency,
                        max_keepalive_connections=self.concurrency,
                    ),
                )
            return self._transport

    def close(self) -> None:
        """Close the pooled connections (a later request opens new ones)."""
        with self._lock:
            if self._transport is not None:
                self._transport.close()
                self._transport = None

    def _get(
        self, path: str, params: Mapping[str, Any], headers: Mapping[str, str] | None
    ) -> httpx.Response:
        """GET through httpx's transport, the body read and the connection back in the pool.

        Not through ``httpx.Client``: its URL merging, cookie jar, auth and redirect steps add
        CPU to every request (which bounds a concurrent fetch), and no vendor API here uses
        any of them."""
        request = httpx.Request(
            "GET",
            self.base_url + path,
            params=params,
            headers={**_HEADERS, **headers} if headers else _HEADERS,
            extensions={"timeout": self._timeout},
        )
        response = self._http().handle_request(request)
        try:
            response.read()
        finally:
            response.close()
        return response

    def get_json(
        self,
        path: str,
        params: Mapping[str, Any],
        *,
        headers: Mapping[str, str] | None = None,
        cost: float = 1.0,
        on_answer: Callable[[httpx.Response], None] | None = None,
    ) -> Any:
        """GET ``path`` and return its JSON body, retrying as the module docstring says."""
        for attempt in range(1, self.retry.max_tries + 1):
            self.limiter.acquire(cost)
            with self._slots:
                failure, response = self._once(path, params, headers, on_answer)
            # Decoded outside the slot: the body is in memory, so the slot can carry the next
            # request while this thread parses.
            if failure is None and response is not None:
                failure, body = _decoded(response, path)
                if failure is None:
                    return body
            assert failure is not None
            too_long = (failure.retry_after or 0.0) > self.retry.max_retry_after_s
            if not failure.retryable or attempt == self.retry.max_tries or too_long:
                detail = failure.message
                if too_long:
                    detail += f" (Retry-After {failure.retry_after:.0f} s: not waited for)"
                raise VendorHttpError(
                    f"{self.vendor} {failure.status} after {_tries(attempt)}: {detail}",
                    status=failure.status,
                    tries=attempt,
                )
            if failure.retry_after is not None:
                self.limiter.pause(failure.retry_after)
            wait = self.retry.delay(attempt, failure.retry_after, self._rng)
            log.warning(
                "%s %s on GET %s (try %d of %d); retrying in %.2f s",
                self.vendor,
                failure.status,
                path,
                attempt,
                self.retry.max_tries,
                wait,
            )
            self._sleep(wait)
        raise AssertionError("unreachable: the last try returns or raises")

    def _once(
        self,
        path: str,
        params: Mapping[str, Any],
        headers: Mapping[str, str] | None,
        on_answer: Callable[[httpx.Response], None] | None,
    ) -> tuple[_Failure | None, httpx.Response | None]:
        """One GET; a 200 answer comes back with its body read, anything else as a failure."""
        try:
            response = self._get(path, params, headers)
        except httpx.TimeoutException:
            return _Failure("timeout", f"no answer within {self.timeout_s:g} s", True), None
        except httpx.TransportError as exc:
            return _Failure("connection error", _short(str(exc) or type(exc).__name__), True), None
        if on_answer is not None:
            on_answer(response)
        status = response.status_code
        if status == 200:
            return None, response
        message = _short(self._error_text(response)) or response.reason_phrase
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        retryable = status == 429 or status >= 500
        if status == 418:  # Binance's IP ban; waited for only when short (see RetryPolicy)
            retryable = True
        return _Failure(status, message, retryable, retry_after), None


def _decoded(response: httpx.Response, path: str) -> tuple[_Failure | None, Any]:
    """The JSON body of a 200 answer, or a failure saying why it is none."""
    try:
        return None, json.loads(response.content)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        # Not retried: a vendor answering 200 with a broken body is no passing glitch.
        detail = (
            f"the answer to GET {path} is not valid JSON ({type(exc).__name__}: "
            f"{_short(str(exc), 80)}); it starts {_short(response.text, 60)!r}"
        )
        return _Failure(200, detail, False), None
