"""JSON answers in the spec's formats, and the error body every refusal uses."""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel
from starlette.responses import Response

from market_pipeline.api.paths import SHOWN_CHARS
from market_pipeline.api.schemas import Error

_JSON_HEADERS = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}


class ApiError(Exception):
    """A request the API refuses: answered as ``{"error": code, "detail": detail}``."""

    def __init__(
        self,
        status_code: int,
        error: str,
        detail: str,
        *,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status_code = status_code
        self.error = error
        self.detail = detail
        self.headers = headers or {}


def render_json(body: BaseModel | dict[str, Any], *, exclude_none: bool = False) -> bytes:
    """``body`` as compact UTF-8 JSON: a model in its JSON form (the spec's timestamps), or
    data that is JSON already (the OpenAPI document). ``json.dumps`` rather than pydantic's
    own encoder, whose float text (``1e-7``) differs from Python's (``1e-07``)."""
    data = (
        body.model_dump(mode="json", exclude_none=exclude_none)
        if isinstance(body, BaseModel)
        else body
    )
    return json.dumps(data, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode(
        "utf-8"
    )


def json_response(
    body: BaseModel | dict[str, Any] | bytes,
    status_code: int = 200,
    *,
    headers: dict[str, str] | None = None,
) -> Response:
    """A JSON response, never cached by proxies."""
    content = body if isinstance(body, bytes) else render_json(body)
    return Response(
        content,
        status_code=status_code,
        media_type="application/json",
        headers={**_JSON_HEADERS, **(headers or {})},
    )


def error_response(
    status_code: int, error: str, detail: str, *, headers: dict[str, str] | None = None
) -> Response:
    """The body of every refusal: ``{"error": code, "detail": message}``."""
    return json_response(Error(error=error, detail=detail), status_code, headers=headers)


def shown(text: str) -> str:
    """``repr`` of client input, cut so that an error message never echoes a huge value."""
    if len(text) > SHOWN_CHARS:
        return repr(text[:SHOWN_CHARS]) + "..."
    return repr(text)


def plain_response(body: bytes, media_type: str, status_code: int = 200) -> Response:
    """A non-JSON answer (the metrics exposition), never cached by proxies."""
    return Response(body, status_code=status_code, media_type=media_type, headers=_JSON_HEADERS)
