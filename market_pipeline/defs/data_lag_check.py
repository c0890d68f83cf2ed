"""``bars_current_check``: is each pair's newest due bar stored? (data time, per partition)

Reported inside bulk runs for every refreshed pair, and between runs by the freshness sensor
for the pairs whose data status changed. WARN: a late vendor is a finding, not a failed run.
"""

from __future__ import annotations

import json

import dagster as dg

from market_pipeline.defs.partitions import partitioned_check_spec
from market_pipeline.domain.data_lag import DataLag
from market_pipeline.domain.names import BARS_CURRENT_CHECK, OHLCV_BARS
from market_pipeline.domain.partition_keys import key_of
from market_pipeline.domain.timestamps import format_utc

OHLCV_BARS_KEY = dg.AssetKey(OHLCV_BARS)


def bars_current_check_spec(partitions_def: dg.PartitionsDefinition) -> dg.AssetCheckSpec:
    return partitioned_check_spec(
        BARS_CURRENT_CHECK,
        OHLCV_BARS_KEY,
        partitions_def,
        "The newest bar due by the pair's exchange calendar (sessions, holidays, early "
        "closes) and the provider's grace is stored.",
    )


def bars_current_evaluation(
    pair: tuple[str, str], lag: DataLag | None, tolerance_seconds: int
) -> dg.AssetCheckEvaluation:
    """The check result of one pair from its data lag (None: not evaluable, which passes)."""
    if lag is None:
        return dg.AssetCheckEvaluation(
            asset_key=OHLCV_BARS_KEY,
            check_name=BARS_CURRENT_CHECK,
            passed=True,
            partition=key_of(*pair),
            severity=dg.AssetCheckSeverity.WARN,
            description="no calendar bounds cover now: data lag not evaluated",
        )
    behind = lag.bars_behind or 0
    description = {
        "current": "the newest due bar is stored",
        "missing": "no bar is stored",
        "late": f"{behind} due bar(s) missing; lag {int(lag.data_lag_seconds or 0)} s "
        f"(tolerance {tolerance_seconds} s)",
    }[lag.data_status]
    metadata: dict[str, dg.RawMetadataValue] = {
        "data_status": dg.MetadataValue.text(lag.data_status),
        "expected_last_bar_at": dg.MetadataValue.text(format_utc(lag.expected_last_bar_at)),
        "tolerance_seconds": dg.MetadataValue.int(tolerance_seconds),
    }
    if lag.last_bar_at is not None:
        metadata["last_bar_at"] = dg.MetadataValue.text(format_utc(lag.last_bar_at))
        metadata["bars_behind"] = dg.MetadataValue.int(behind)
        metadata["data_lag_seconds"] = dg.MetadataValue.float(float(lag.data_lag_seconds or 0.0))
    return dg.AssetCheckEvaluation(
        asset_key=OHLCV_BARS_KEY,
        check_name=BARS_CURRENT_CHECK,
        passed=lag.data_status == "current",
        partition=key_of(*pair),
        severity=dg.AssetCheckSeverity.WARN,
        description=description,
        metadata=metadata,
    )


MAX_CHANGES_PER_TICK = 1000
"""Most check results one sensor tick reports; the rest follow on the next ticks."""


def changed_statuses(
    lags: dict[tuple[str, str], DataLag | None], cursor: str | None
) -> tuple[list[tuple[tuple[str, str], DataLag | None]], str]:
    """The pairs whose data state differs from the one last reported, at most
    :data:`MAX_CHANGES_PER_TICK`; and the cursor once those are reported.

    The cursor keeps, for the pairs last reported other than ``current``, their status and
    stored bar (``late@2026-11-27T17:30:00Z``): a run in between stores a newer bar and reports
    the check passed, so a pair that stalls again on that newer bar is reported again. Pairs
    that left the universe are dropped from it."""
    reported: dict[str, str] = json.loads(cursor) if cursor else {}
    keys = {key_of(*pair): pair for pair in lags}
    reported = {key: state for key, state in reported.items() if key in keys}
    changed = []
    for key, pair in keys.items():
        lag = lags[pair]
        state = _state(lag)
        if reported.get(key, "current") != state:
            changed.append((pair, lag))
            if state == "current":
                reported.pop(key, None)
            else:
                reported[key] = state
            if len(changed) == MAX_CHANGES_PER_TICK:
                break
    return changed, json.dumps(reported, sort_keys=True)


def _state(lag: DataLag | None) -> str:
    if lag is None or lag.data_status == "current":
        return "current"
    stored = "none" if lag.last_bar_at is None else format_utc(lag.last_bar_at)
    return f"{lag.data_status}@{stored}"
