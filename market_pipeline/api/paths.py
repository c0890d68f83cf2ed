"""Paths, limits and defaults of the admin API."""

from __future__ import annotations

API_TITLE = "market_pipeline admin API"
API_VERSION = "1.0.0"

HEALTH_PATH = "/api/v1/admin/scheduler-health"
STALENESS_PATH = "/api/v1/admin/features/staleness"
HISTORY_PATH = "/api/v1/admin/scheduler/execution-history"
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
