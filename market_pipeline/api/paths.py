"""Paths, limits and defaults of the admin API."""

from __future__ import annotations

API_TITLE = "market_pipeline admin API"
API_VERSION = "1.0.0"

HEALTH_PATH = "/api/v1/admin/scheduler-health"
STALENESS_PATH = "/api/v1/admin/features/staleness"
HISTORY_PATH = "/api/v1/admin/scheduler/execution-history"
COVERAGE_PATH = "/api/v1/admin/features/coverage"
HEALTH_PROBE_PATH = "/healthz"
READINESS_PATH = "/readyz"
LIVENESS_PATH = "/livez"
OPENAPI_PATH = "/openapi.json"
METRICS_PATH = "/metrics"

STALENESS_DEFAULT_LIMIT = 50
HISTORY_DEFAULT_LIMIT = 20

MAX_QUERY_BYTES = 2048
"""Longest query string accepted, in bytes; longer ones are answered 414."""

MAX_QUERY_FIELDS = 16
"""Most ``name=value`` pairs parsed from one query string."""

DEFAULT_CACHE_SECONDS = 1.0
"""How long the store-backed endpoints reuse a rendered answer (see :class:`ResponseCache`)."""

SCHEMA_RECHECK_SECONDS = 30.0
"""``/readyz`` connects every time but re-reads the migration state only this often once it was
current (a failed query re-checks at once)."""

MAX_BODY_BYTES = 1024
"""Largest request body declared (``Content-Length``) before a 413; no endpoint reads one."""

SHOWN_CHARS = 40
"""Most characters of client input echoed in an error message."""

# The dashboard: its JSON reads (token rules and cache as above), its page and the page's files.
DASHBOARD_PAIRS_PATH = "/api/v1/admin/dashboard/pairs"
DASHBOARD_FAILURES_PATH = "/api/v1/admin/dashboard/failures"
DASHBOARD_PAIR_PATH = "/api/v1/admin/dashboard/pair"
FAILURES_DEFAULT_LIMIT = 100
PAIR_DETAIL_DEFAULT_LIMIT = 20

ROOT_PATH = "/"
DASHBOARD_PATH = "/dashboard"
DASHBOARD_ASSET_PATH = "/dashboard/static/{version}/{name}"
"""The page's scripts, style and icon; ``version`` is a digest of them all, so they can be cached
for a year and a new release is fetched at once."""

DEFAULT_POLL_SECONDS = 15.0
"""How often the page re-reads the endpoints, unless ``/dashboard?poll=<seconds>`` says."""
MIN_POLL_SECONDS = 0.25
MAX_POLL_SECONDS = 3600.0
