"""What the HTTP vendors share: option checks, credentials from the environment, the fetch
window with its overlap, symbol mapping, and the raw frame they return."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

from market_pipeline.domain.timeframes import Timeframe
from market_pipeline.providers.base import (
    RAW_COLUMNS,
    MarketDataProvider,
    ProviderError,
    check_window,
)
from market_pipeline.providers.http.client import ErrorText, VendorClient
from market_pipeline.providers.http.limits import RateLimiter, RetryPolicy

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
GAP_MARGIN = pd.Timedelta(days=4)
"""Added to the overlap window of session-based assets, so that "3 bars before" still reaches
back over a night or a long weekend; the rows are then trimmed to the overlap exactly."""


def env_reference(value: Any, *, name: str, default: str) -> str:
    """The variable name of an ``{env: NAME}`` reference (``default`` when None).

    Literal credentials are refused: they would sit in the universe file and travel with its
    provider block into run metadata. Only the variable's name is kept."""
    if value is None:
        return default
    if isinstance(value, Mapping) and set(value) == {"env"}:
        variable = value["env"]
        if isinstance(variable, str) and _ENV_NAME.match(variable):
            return variable
    raise ValueError(
        f"{name} must be a reference to an environment variable, {{env: {default}}}: "
        "credentials are read from the environment, never written in the universe file"
    )


def read_env(variable: str, *, vendor: str, option: str) -> str:
    """The value of ``variable``; a :class:`ProviderError` saying what to set when it is unset.
    The value itself is never part of any message."""
    value = os.environ.get(variable, "")
    if not value:
        raise ProviderError(
            f"{vendor}: the environment variable {variable} is not set; set it to your "
            f"{vendor} credential ({option} in the universe's provider block names it)"
        )
    return value


def check_positive(name: str, value: Any, *, whole: bool = False) -> None:
    kinds = (int,) if whole else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds) or value <= 0:
        noun = "a positive whole number" if whole else "a positive number"
        raise ValueError(f"{name} must be {noun}, got {value!r}")


def check_symbol_map(symbols: Any) -> dict[str, str]:
    """Our symbol -> the vendor's, for the symbols whose default mapping does not fit."""
    if symbols is None:
        return {}
    if not isinstance(symbols, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) and v for k, v in symbols.items()
    ):
        raise ValueError(
            f"symbols must map universe symbols to the vendor's, e.g. {{BTC-USD: BTCUSDT}}, "
            f"got {symbols!r}"
        )
    return dict(symbols)


def check_history_start(value: Any) -> pd.Timestamp | None:
    """The first instant a first fetch asks for (None: all the vendor has)."""
    if value is None:
        return None
    try:
        start = pd.Timestamp(value)
    except (TypeError, ValueError):
        start = None
    if start is None or pd.isna(start):
        raise ValueError(f"history_start must be a date such as 2020-01-01, got {value!r}")
    return start.tz_localize("UTC") if start.tzinfo is None else start.tz_convert("UTC")


class HttpVendorProvider(MarketDataProvider):
    """Base of the HTTP vendors: builds the client and the window of each fetch."""

    vendor: str = ""

    def _set_up(
        self,
        *,
        base_url: str,
        timeout_s: float,
        concurrency: int,
        per_minute: float,
        retry: RetryPolicy,
        overlap_bars: int,
        history_start: Any,
        symbols: Any,
        error_text: ErrorText,
    ) -> None:
        if not isinstance(base_url, str) or not re.match(r"^https?://[^\s/]+", base_url):
            raise ValueError(f"base_url must be an http(s) URL, got {base_url!r}")
        check_positive("timeout_s", timeout_s)
        check_positive("concurrency", concurrency, whole=True)
        if isinstance(overlap_bars, bool) or not isinstance(overlap_bars, int) or overlap_bars < 0:
            raise ValueError(f"overlap_bars must be a non-negative integer, got {overlap_bars!r}")
        self.overlap_bars = overlap_bars
        self.history_start = check_history_start(history_start)
        self.symbol_map = check_symbol_map(symbols)
        # Twice as many pairs in progress as requests in flight (the client caps those): while
        # one thread parses and validates its answer, another's request takes the free slot.
        self.fetch_concurrency = 2 * concurrency
        self.client = VendorClient(
            vendor=self.vendor,
            base_url=base_url.rstrip("/"),
            timeout_s=float(timeout_s),
            concurrency=concurrency,
            limiter=RateLimiter(per_minute),
            retry=retry,
            error_text=error_text,
        )

    def referenced_symbols(self) -> frozenset[str]:
        return frozenset(self.symbol_map)

    def window(
        self, asset_class: str, timeframe: Timeframe, since: datetime | None, until: datetime
    ) -> tuple[pd.Timestamp | None, pd.Timestamp]:
        """The first bar start to ask for (None: all history) and the last one: a bar is
        returned once complete, so the last start asked for is ``until`` minus one bar."""
        since_ts, until_ts = check_window(since, until)
        last_start = until_ts - pd.Timedelta(seconds=timeframe.seconds)
        if since_ts is None:
            return self.history_start, last_start
        back = pd.Timedelta(seconds=timeframe.seconds) * self.overlap_bars
        if asset_class != "crypto" and self.overlap_bars:
            back += GAP_MARGIN
        return since_ts - back, last_start

    def finish(self, frame: pd.DataFrame, since: datetime | None) -> pd.DataFrame:
        """Keep the ``overlap_bars`` distinct timestamps before ``since`` and all from it on."""
        if since is None or frame.empty:
            return frame
        since_ts = pd.Timestamp(since).tz_convert("UTC")
        stamps = frame["ts"]
        earlier = np.unique(stamps[stamps < since_ts].dt.tz_localize(None).to_numpy("M8[ns]"))
        start = since_ts
        if self.overlap_bars and len(earlier):
            start = pd.Timestamp(earlier[-min(self.overlap_bars, len(earlier))], tz="UTC")
        return frame.loc[(stamps.isna() | (stamps >= start)).to_numpy()].reset_index(drop=True)


def bars_frame(ts: Any, values: np.ndarray) -> pd.DataFrame:
    """A raw frame: ``ts`` (UTC instants as ``datetime64[ns]``, or anything
    :class:`pandas.DatetimeIndex` takes, NaT allowed) and ``values``, the rows of
    :func:`numbers` for open, high, low, close and volume."""
    index = pd.DatetimeIndex(ts)
    stamps = index.tz_localize("UTC") if index.tz is None else index.tz_convert("UTC")
    columns: dict[str, Any] = {"ts": stamps.as_unit("ns").array}
    columns.update(zip(RAW_COLUMNS[1:], values, strict=True))
    # copy=False keeps the parsed rows as they are (no consolidation into a fresh block).
    return pd.DataFrame(columns, copy=False)


def numbers(columns: Sequence[Sequence[Any]]) -> np.ndarray:
    """Columns of numbers or numeric text as one float64 array (a row per column); text that
    is no number, or a missing value, becomes NaN, which the validation counts.

    numpy parses clean text itself (the common case, several times faster than pandas);
    anything else goes column by column through ``pd.to_numeric``."""
    try:
        return np.array(columns, dtype=np.float64).reshape(len(columns), -1)
    except (TypeError, ValueError):
        return np.array(
            [
                pd.to_numeric(pd.Series(list(column), dtype=object), errors="coerce").to_numpy(
                    dtype=np.float64, na_value=np.nan
                )
                for column in columns
            ],
            dtype=np.float64,
        ).reshape(len(columns), -1)


def empty_bars() -> pd.DataFrame:
    return bars_frame(np.empty(0, dtype="datetime64[ns]"), np.empty((len(RAW_COLUMNS) - 1, 0)))
