"""The dashboard page: ``/dashboard`` (``/`` redirects there) and the files it loads.

The page is HTML without data: its scripts read the admin JSON endpoints, sending the admin token
(when one is set) in the ``Authorization`` header from the browser's session storage. So the page
and its files are served without a token; ``data-token-required`` only tells the script to ask
for one before its first request. Everything the page loads comes from this app (no CDN): its
Content-Security-Policy allows scripts, styles, images and requests from ``'self'`` only, with no
inline script or style. The scripts, style and icon (``package_data/dashboard``) are read once,
served under a digest of their content with a one-year ``immutable`` cache and an ``ETag``.
"""

from __future__ import annotations

import hashlib
import html
import re
from dataclasses import dataclass
from pathlib import Path

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from market_pipeline.api.paths import (
    DASHBOARD_ASSET_PATH,
    DASHBOARD_PATH,
    DEFAULT_POLL_SECONDS,
    MAX_POLL_SECONDS,
    MIN_POLL_SECONDS,
    ROOT_PATH,
)
from market_pipeline.api.query import parse_query
from market_pipeline.api.responses import ApiError, shown
from market_pipeline.package_data import dashboard_dir

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'"
)
_PAGE_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}
_MEDIA_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}
_POLL_TEXT = re.compile(r"[0-9]{1,4}(\.[0-9]{1,3})?")
TEMPLATE = "dashboard.html"


@dataclass(frozen=True)
class Asset:
    """One file the page loads."""

    body: bytes
    media_type: str
    etag: str


class DashboardFiles:
    """The page template and its files, read once from ``folder``."""

    def __init__(self, folder: Path | None = None) -> None:
        root = dashboard_dir() if folder is None else folder
        self.template = (root / TEMPLATE).read_text(encoding="utf-8")
        self.assets: dict[str, Asset] = {}
        digest = hashlib.sha256()
        for path in sorted(root.iterdir()):
            media_type = _MEDIA_TYPES.get(path.suffix)
            if media_type is None:
                continue
            body = path.read_bytes()
            digest.update(path.name.encode() + b"\0" + body + b"\0")
            etag = '"' + hashlib.sha256(body).hexdigest()[:20] + '"'
            self.assets[path.name] = Asset(body, media_type, etag)
        self.version = digest.hexdigest()[:16]

    @property
    def asset_base(self) -> str:
        return f"{DASHBOARD_PATH}/static/{self.version}"

    def page(self, *, poll_seconds: float, token_required: bool) -> str:
        """The page's HTML; only configuration goes in, escaped."""
        values = {
            "assets": self.asset_base,
            "poll_seconds": f"{poll_seconds:g}",
            "token_required": "true" if token_required else "false",
        }
        text = self.template
        for name, value in values.items():
            text = text.replace("{{" + name + "}}", html.escape(value, quote=True))
        return text

    def weight(self) -> int:
        """Bytes of the page (template) and every file it loads."""
        return len(self.template.encode("utf-8")) + sum(len(a.body) for a in self.assets.values())


def _poll_seconds(params: dict[str, str]) -> float:
    text = params.get("poll")
    if text is None:
        return DEFAULT_POLL_SECONDS
    value = float(text) if _POLL_TEXT.fullmatch(text) else -1.0
    if not MIN_POLL_SECONDS <= value <= MAX_POLL_SECONDS:
        raise ApiError(
            400,
            "invalid_parameter",
            f"poll must be a number of seconds from {MIN_POLL_SECONDS:g} to "
            f"{MAX_POLL_SECONDS:g}, got {shown(text)}",
        )
    return value


async def dashboard_page(request: Request) -> Response:
    """GET /dashboard[?poll=seconds]: the page (no data, so no token needed)."""
    poll = _poll_seconds(parse_query(request, ("poll",)))
    files: DashboardFiles = request.app.state.dashboard_files
    page = files.page(poll_seconds=poll, token_required=request.app.state.admin_token is not None)
    return Response(page, media_type="text/html; charset=utf-8", headers=_PAGE_HEADERS)


async def dashboard_asset(request: Request) -> Response:
    """GET /dashboard/static/{version}/{name}: a script, the style or the icon of the page."""
    parse_query(request, ())
    files: DashboardFiles = request.app.state.dashboard_files
    asset = files.assets.get(request.path_params["name"])
    if asset is None or request.path_params["version"] != files.version:
        raise ApiError(404, "not_found", "no such dashboard file (the page names the current ones)")
    headers = {
        "ETag": asset.etag,
        "Cache-Control": "public, max-age=31536000, immutable",
        "X-Content-Type-Options": "nosniff",
    }
    if request.headers.get("if-none-match") == asset.etag:
        return Response(status_code=304, headers=headers)
    return Response(asset.body, media_type=asset.media_type, headers=headers)


async def root(request: Request) -> Response:
    """GET /: to the dashboard."""
    parse_query(request, ())
    return RedirectResponse(DASHBOARD_PATH, status_code=307)


PAGE_ROUTES = (
    (ROOT_PATH, root),
    (DASHBOARD_PATH, dashboard_page),
    (DASHBOARD_ASSET_PATH, dashboard_asset),
)
"""``(path, handler)`` of the page and its files: not API, so not in the OpenAPI document."""
