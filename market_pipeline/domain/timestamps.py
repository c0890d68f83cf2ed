"""Time is UTC and timezone-aware everywhere: the checks and the one text format of instants."""

from __future__ import annotations

from datetime import UTC, datetime


class NaiveDatetimeError(ValueError):
    """A datetime without a timezone was given where an aware one is required."""


def ensure_utc(value: datetime, *, name: str = "timestamp") -> datetime:
    """Return ``value`` converted to UTC; refuse naive datetimes, whose zone is a guess."""
    if not isinstance(value, datetime):
        raise TypeError(f"{name} must be a datetime, got {type(value).__name__}")
    if value.tzinfo is None or value.tzinfo.utcoffset(value) is None:
        raise NaiveDatetimeError(
            f"{name} {value.isoformat()} has no timezone: pass an aware datetime "
            "(e.g. datetime.now(UTC))"
        )
    return value.astimezone(UTC)


def format_utc(value: datetime, *, timespec: str = "seconds") -> str:
    """``value`` (aware) as ISO 8601 UTC ending in ``Z``: ``YYYY-MM-DDTHH:MM:SSZ`` by default;
    ``timespec`` as for :meth:`datetime.isoformat` keeps sub-second digits."""
    return ensure_utc(value).isoformat(timespec=timespec).replace("+00:00", "Z")


def parse_utc(text: object) -> datetime | None:
    """An ISO 8601 instant as an aware UTC datetime (no offset means UTC); ``None`` for
    anything that is not such a string."""
    if not text or not isinstance(text, str):
        return None
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def parse_instant(text: str, *, what: str) -> datetime:
    """An ISO 8601 instant given by a user, with its zone, as aware UTC; ``ValueError`` naming
    ``what`` for text that is not one or that has no zone (a local time would be a guess)."""
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"{what}: {text!r} is not an ISO 8601 instant such as 2026-11-27T18:30:00Z"
        ) from None
    if parsed.tzinfo is None or parsed.tzinfo.utcoffset(parsed) is None:
        raise ValueError(
            f"{what}: {text!r} has no timezone; add one such as Z or +00:00 (times are UTC)"
        )
    return parsed.astimezone(UTC)
