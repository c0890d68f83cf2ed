"""Column types that behave the same on SQLite and PostgreSQL.

Timestamps are timezone-aware UTC everywhere: TIMESTAMPTZ on PostgreSQL, a fixed-width ISO 8601
string on SQLite (which has no time type), so that text order is time order on both.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.types import TypeDecorator

_SQLITE_FORMAT = "%Y-%m-%d %H:%M:%S.%f+00:00"


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


def format_sqlite_ts(value: datetime) -> str:
    return ensure_utc(value).strftime(_SQLITE_FORMAT)


def parse_sqlite_ts(text: str) -> datetime:
    parsed = datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


class UTCDateTime(TypeDecorator):
    """An aware UTC datetime; naive input is rejected, other zones are converted to UTC."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def load_dialect_impl(self, dialect):
        if dialect.name == "sqlite":
            return dialect.type_descriptor(sa.String(32))
        return dialect.type_descriptor(sa.DateTime(timezone=True))

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if dialect.name == "sqlite":
            return format_sqlite_ts(value)
        return ensure_utc(value)

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        if isinstance(value, str):
            return parse_sqlite_ts(value)
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class MalformedIdError(ValueError):
    """An execution id that is not a UUID."""


def canonical_uuid(value: str | uuid.UUID, *, name: str = "execution_id") -> str:
    """The canonical dashed lower-case form of a UUID, or a clear error naming the bad value."""
    if isinstance(value, uuid.UUID):
        return str(value)
    if not isinstance(value, str):
        raise MalformedIdError(f"{name} must be a UUID string, got {type(value).__name__}")
    try:
        return str(uuid.UUID(value.strip()))
    except ValueError:
        shown = value if len(value) <= 64 else value[:64] + "..."
        raise MalformedIdError(f"{name} {shown!r} is not a valid UUID") from None


class UUIDString(TypeDecorator):
    """A UUID carried as its canonical string: native UUID on PostgreSQL, TEXT on SQLite."""

    impl = sa.String(36)
    cache_ok = True

    def load_dialect_impl(self, dialect):
        if dialect.name == "postgresql":
            return dialect.type_descriptor(postgresql.UUID(as_uuid=False))
        return dialect.type_descriptor(sa.String(36))

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        return canonical_uuid(value)

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        return str(value)
