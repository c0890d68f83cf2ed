"""Entry point of the admin API: ``market-pipeline serve`` runs :func:`serve` under uvicorn."""

from __future__ import annotations

import ipaddress
import logging

from market_pipeline.config.settings import Settings

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000


class PublicWithoutTokenError(ValueError):
    """Serving a non-loopback address without an admin token was not declared intended."""


def is_loopback(host: str) -> bool:
    """Whether ``host`` only accepts connections from this machine (``localhost``, 127.0.0.0/8,
    ``::1``). Wildcards (``0.0.0.0``, ``::``) and every other name or address are not."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip().strip("[]")).is_loopback
    except ValueError:
        return False


def check_exposure(host: str, settings: Settings, *, allow_public: bool) -> None:
    """Refuse to expose the admin API beyond this machine without a token, unless intended."""
    if is_loopback(host) or settings.admin_token or allow_public:
        return
    raise PublicWithoutTokenError(
        f"refusing to serve the admin API on {host!r}, which other machines can reach, without "
        "a token: set MARKET_PIPELINE_ADMIN_TOKEN (clients then send 'Authorization: Bearer "
        "<token>'), bind 127.0.0.1, or pass --allow-public-without-token if an open API is "
        "intended"
    )


def serve(
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    *,
    allow_public: bool = False,
    settings: Settings | None = None,
) -> None:
    """Serve the admin API on ``host:port`` until interrupted.

    Raises :class:`PublicWithoutTokenError` for a non-loopback ``host`` without an admin token
    unless ``allow_public``; a bad universe file or database URL raises before anything listens.
    """
    import uvicorn

    from market_pipeline.api.app import create_app

    resolved = Settings.from_env() if settings is None else settings
    check_exposure(host, resolved, allow_public=allow_public)
    if not 0 <= port <= 65535:
        raise ValueError(f"port must be from 0 to 65535, got {port}")
    app = create_app(resolved)
    logging.getLogger("market_pipeline").setLevel(logging.INFO)
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_level="info",
        server_header=False,
        proxy_headers=False,
        lifespan="on",
    )
