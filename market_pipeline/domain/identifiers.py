"""Execution ids: UUIDs, accepted in any form :class:`uuid.UUID` parses, kept canonical."""

from __future__ import annotations

import uuid


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
