"""Checks of what the store is given: one rule per kind of value, each error naming the value.

Keyword arguments only. Datetimes must be timezone-aware (naive ones raise ``NaiveDatetimeError``:
their zone would be a guess) and are stored and returned in UTC. Execution ids are UUIDs, kept
canonical. Error messages of any length and content are stored (see
:func:`sanitize_error_message`). ``limit`` arguments are integers from 1 to ``MAX_LIMIT``;
anything else raises ``ValueError``, which the API turns into a 400.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence, Set
from datetime import datetime, timedelta
from typing import Any

from market_pipeline.domain.reports import MAX_LIMIT
from market_pipeline.domain.timestamps import ensure_utc

MAX_ERROR_LENGTH = 4000
"""Longest error message stored, in characters (the truncation marker included)."""

TRUNCATION_MARKER = " ...[truncated, {total} characters in all]"
"""Appended to an error message cut to :data:`MAX_ERROR_LENGTH`."""


EXECUTION_STATUSES = ("running", "completed", "failed")
SYMBOL_STATUSES = ("pending", "in_progress", "completed", "failed")
TERMINAL_STATUSES = ("completed", "failed")
ZERO = timedelta(0)


def id_str(value: Any) -> str | None:
    """An execution id as returned: its string (drivers may hand back ``uuid.UUID``)."""
    return None if value is None else str(value)


class UnknownExecutionError(LookupError):
    """A well-formed execution id that no ``scheduler_execution_log`` row has."""

    def __init__(self, execution_id: str) -> None:
        self.execution_id = execution_id
        super().__init__(
            f"unknown execution_id {execution_id!r}: no scheduler execution has this id "
            "(create it with create_scheduler_execution_log first)"
        )


def sanitize_error_message(message: str) -> str:
    """``message`` made storable on every backend and cut to :data:`MAX_ERROR_LENGTH` characters.

    NUL becomes U+FFFD (PostgreSQL TEXT cannot hold NUL), lone surrogates become ``?`` (they
    cannot be encoded as UTF-8). A longer text keeps its beginning and ends with
    :data:`TRUNCATION_MARKER`, so the result is exactly ``MAX_ERROR_LENGTH`` characters long.
    """
    if not isinstance(message, str):
        raise TypeError(f"error_message must be a str, got {type(message).__name__}")
    text = message.replace("\x00", "\ufffd").encode("utf-8", "replace").decode("utf-8")
    if len(text) > MAX_ERROR_LENGTH:
        marker = TRUNCATION_MARKER.format(total=len(text))
        text = text[: MAX_ERROR_LENGTH - len(marker)] + marker
    return text


def check_limit(value: int, name: str = "limit") -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an integer from 1 to {MAX_LIMIT}, got {value!r}")
    if not 1 <= value <= MAX_LIMIT:
        raise ValueError(f"{name} must be from 1 to {MAX_LIMIT}, got {value}")
    return value


def check_count(value: int, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
    if value < 0:
        raise ValueError(f"{name} must be >= 0, got {value}")
    return value


def check_duration(value: float | None, name: str = "duration_seconds") -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} must be a number of seconds, got {value!r}")
    if math.isnan(value) or math.isinf(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value}")
    return float(value)


def check_key(value: str, name: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{name} must be a non-empty string, got {value!r}")
    if "\x00" in value:
        raise ValueError(f"{name} {value!r} contains a NUL character")
    return value


def check_status(value: str, allowed: tuple[str, ...], what: str) -> str:
    if value not in allowed:
        raise ValueError(f"{what} status {value!r} is not one of {', '.join(allowed)}")
    return value


def check_fields(raw: Any, allowed: Set[str], required: Sequence[str]) -> None:
    """A bulk row must be a mapping with only ``allowed`` keys and every ``required`` one."""
    if not isinstance(raw, Mapping):
        raise TypeError(f"expected a mapping, got {type(raw).__name__}")
    unknown = set(raw) - allowed
    if unknown:
        raise ValueError(f"unknown field(s) {', '.join(sorted(unknown))}")
    for name in required:
        if name not in raw:
            raise ValueError(f"{name} is required")


def optional_utc(value: datetime | None, name: str) -> datetime | None:
    return None if value is None else ensure_utc(value, name=name)


def optional_message(value: str | None) -> str | None:
    return None if value is None else sanitize_error_message(value)


def duration_between(
    started_at: datetime | None, completed_at: datetime | None, what: str
) -> float | None:
    if started_at is None or completed_at is None:
        return None
    seconds = (completed_at - started_at).total_seconds()
    if seconds < 0:
        raise ValueError(
            f"{what}: completed_at {completed_at.isoformat()} is before started_at "
            f"{started_at.isoformat()}"
        )
    return seconds
