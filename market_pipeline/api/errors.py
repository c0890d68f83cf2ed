"""Exception handlers and the body limit: every refusal is JSON, never a stack trace."""

from __future__ import annotations

import logging

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from market_pipeline.api.paths import MAX_BODY_BYTES, OPENAPI_PATH, SHOWN_CHARS
from market_pipeline.api.responses import ApiError, error_response

logger = logging.getLogger("market_pipeline.api")


class BodyLimitMiddleware:
    """Refuses a request whose declared body exceeds :data:`MAX_BODY_BYTES` with a JSON 413.

    No endpoint reads a body, so an undeclared (chunked) one is simply never read; this only
    makes the refusal of a large upload explicit and JSON like every other error.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            length = Headers(scope=scope).get("content-length", "0")
            if not length.isdigit() or int(length) > MAX_BODY_BYTES:
                response = error_response(
                    413,
                    "request_too_large",
                    f"request bodies are limited to {MAX_BODY_BYTES} bytes; no endpoint takes one",
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


# --------------------------------------------------------------------------------------------
# Error handlers
# --------------------------------------------------------------------------------------------


async def api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return error_response(exc.status_code, exc.error, exc.detail, headers=exc.headers)


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        return error_response(
            404, "not_found", f"no endpoint at this path; the API is described at {OPENAPI_PATH}"
        )
    if exc.status_code == 405:
        allowed = (exc.headers or {}).get("Allow", "GET, HEAD")
        return error_response(
            405,
            "method_not_allowed",
            f"method {request.method[:SHOWN_CHARS]!r} is not allowed here; use {allowed}",
            headers={"Allow": allowed},
        )
    return error_response(
        exc.status_code, "bad_request", str(exc.detail)[:200], headers=dict(exc.headers or {})
    )


async def unexpected_error(request: Request, exc: Exception) -> Response:
    # The last resort: the traceback goes to the log, never to the client.
    logger.exception("unhandled error under %s %s", request.method, request.url.path)
    return error_response(500, "internal_error", "the server failed; see its log")
