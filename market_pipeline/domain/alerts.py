"""The ERROR log line of a repeated failure: stable and greppable, for log-based alerting."""

from __future__ import annotations

from market_pipeline.domain.reports import Alert

REPEATED_FAILURE_MESSAGE = "REPEATED_FEATURE_FAILURE"
"""Prefix of the line logged for a pair that failed ``threshold`` times in a row."""

_ERROR_CHARS = 300


def format_alert(alert: Alert, threshold: int) -> str:
    """``REPEATED_FEATURE_FAILURE symbol=... timeframe=... consecutive_failures=N ...``, with
    the error on one line and cut to 300 characters."""
    error = " ".join(alert.error.split())[:_ERROR_CHARS]
    return (
        f"{REPEATED_FAILURE_MESSAGE} symbol={alert.symbol} timeframe={alert.timeframe} "
        f"consecutive_failures={alert.consecutive_failures} threshold={threshold} "
        f"error={error}"
    )
