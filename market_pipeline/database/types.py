"""Column types that behave the same on SQLite and PostgreSQL.

Timestamps are timezone-aware UTC everywhere: TIMESTAMPTZ on PostgreSQL, a fixed-width ISO 8601
string on SQLite (which has no time type), so that text order is time order on both.
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.types import TypeDecorator

from market_pipeline.domain.identifiers import canonical_uuid
from market_pipeline.domain.timestamps import ensure_utc

_SQLITE_FORMAT = "%Y-%m-%d %H:%M:%S.%f+00:00"


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
