"""Query strings: each parameter known and given once, ``limit`` an integer in range."""

from __future__ import annotations

import re
from collections.abc import Sequence
from urllib.parse import parse_qsl

from starlette.requests import Request

from market_pipeline.api.paths import MAX_QUERY_BYTES, MAX_QUERY_FIELDS
from market_pipeline.api.responses import ApiError, shown
from market_pipeline.domain.reports import MAX_LIMIT

_LIMIT_TEXT = re.compile(r"[0-9]{1,10}")


def parse_query(request: Request, allowed: Sequence[str]) -> dict[str, str]:
    """The query parameters of ``request``, each given at most once and all in ``allowed``.

    Raises :class:`ApiError` (414 or 400) for a query string that is too long, holds raw
    non-ASCII bytes or percent-encoded bytes that are not UTF-8, has too many fields, repeats a
    parameter or names one the endpoint does not take.
    """
    raw: bytes = request.scope.get("query_string", b"")
    if len(raw) > MAX_QUERY_BYTES:
        raise ApiError(
            414,
            "query_too_long",
            f"the query string is {len(raw)} bytes long; at most {MAX_QUERY_BYTES} are accepted",
        )
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError:
        raise ApiError(
            400,
            "invalid_query_string",
            "the query string holds raw non-ASCII bytes; percent-encode its UTF-8 bytes",
        ) from None
    try:
        pairs = parse_qsl(
            text,
            keep_blank_values=True,
            encoding="utf-8",
            errors="strict",
            max_num_fields=MAX_QUERY_FIELDS,
        )
    except UnicodeDecodeError:
        raise ApiError(
            400,
            "invalid_query_string",
            "the query string holds percent-encoded bytes that are not UTF-8",
        ) from None
    except ValueError:
        raise ApiError(
            400,
            "invalid_query_string",
            f"the query string has more than {MAX_QUERY_FIELDS} parameters",
        ) from None
    names = [name for name, _ in pairs]
    unknown = sorted({name for name in names if name not in allowed})
    if unknown:
        accepted = ", ".join(allowed) if allowed else "no query parameters"
        raise ApiError(
            400,
            "unknown_parameter",
            f"unknown query parameter(s) {', '.join(shown(name) for name in unknown)}; "
            f"this endpoint accepts {accepted}",
        )
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ApiError(
            400,
            "repeated_parameter",
            f"query parameter(s) {', '.join(repeated)} given more than once; give each once",
        )
    return dict(pairs)


def parse_limit(params: dict[str, str], default: int) -> int:
    """``limit`` from the query: a decimal integer from 1 to :data:`MAX_LIMIT`, else a 400."""
    text = params.get("limit")
    if text is None:
        return default
    if not _LIMIT_TEXT.fullmatch(text):
        raise ApiError(
            400,
            "invalid_parameter",
            f"limit must be an integer from 1 to {MAX_LIMIT}, got {shown(text)}",
        )
    value = int(text)
    if not 1 <= value <= MAX_LIMIT:
        raise ApiError(
            400,
            "invalid_parameter",
            f"limit must be from 1 to {MAX_LIMIT}, got {value}",
        )
    return value
