"""Bearer-token authentication of the admin endpoints (constant-time compare)."""

from __future__ import annotations

import hashlib
import hmac

from starlette.requests import Request

from market_pipeline.api.responses import ApiError


def _digest(value: bytes) -> bytes:
    # Comparing fixed-length digests keeps the token's length out of the timing as well.
    return hashlib.sha256(value).digest()


def presented_token_is_valid(request: Request, token: str | None) -> bool:
    """Whether ``request`` carries ``Authorization: Bearer <token>`` (constant-time compare).

    True when no token is configured.
    """
    if token is None:
        return True
    header = request.headers.get("authorization", "")
    scheme, _, credentials = header.strip().partition(" ")
    if scheme.lower() != "bearer":
        return False
    # Header values are decoded as latin-1; encoding back gives the bytes that were sent.
    presented = credentials.strip().encode("latin-1")
    return hmac.compare_digest(_digest(presented), _digest(token.encode("utf-8")))


def require_token(request: Request) -> None:
    """Raise a 401 :class:`ApiError` unless the request presents the configured admin token."""
    token = request.app.state.admin_token
    if presented_token_is_valid(request, token):
        return
    header = request.headers.get("authorization")
    if header is None:
        detail = "this endpoint requires the header 'Authorization: Bearer <admin token>'"
        challenge = 'Bearer realm="market_pipeline"'
    else:
        detail = "the bearer token is missing, malformed or wrong"
        challenge = 'Bearer realm="market_pipeline", error="invalid_token"'
    raise ApiError(401, "unauthorized", detail, headers={"WWW-Authenticate": challenge})


def require_metrics_token(request: Request) -> None:
    """Raise a 401 unless ``/metrics`` may be read: open when neither the metrics token nor the
    admin token is set, else either one is accepted (scrapers carry their own credentials)."""
    tokens = [t for t in (request.app.state.metrics_token, request.app.state.admin_token) if t]
    if not tokens or any(presented_token_is_valid(request, token) for token in tokens):
        return
    raise ApiError(
        401,
        "unauthorized",
        "this endpoint requires the header 'Authorization: Bearer <metrics or admin token>'",
        headers={"WWW-Authenticate": 'Bearer realm="market_pipeline"'},
    )
