"""Synthetic bars: deterministic, realistic-looking OHLCV for any symbol, with failure injection.

Used by the demo universe and by tests. Provider block::

    provider:
      kind: synthetic
      history_bars: 2000        # bars returned when since is None (default 2000)
      seed: 0                   # changes every series at once (default 0)
      fail_symbols: [XYZ]       # fetch_bars raises ProviderError for these symbols
      fail_message: "..."       # text added to that error (to show how errors are displayed)
      bad_row_symbols: [ABC]    # these symbols get bad rows amid good ones (see below)

Conventions (all times UTC, timestamps are bar starts):

- Sessions. Equities trade in the real XNYS sessions (exchange_calendars: holidays skipped,
  early closes at 13:00 New York) from 1990 to 2035, and 09:30-16:00 New York on every weekday
  outside those years; intraday bars are anchored at the open, so 1h bars start at 09:30,
  10:30, ... 15:30 and the last one is a 30-minute bar ending at the 16:00 close (on an early
  close the 12:30 bar is the last, cut at 13:00). Crypto trades
  24/7 and FX 24/5 from Sunday 22:00 UTC to Friday 22:00 UTC; their intraday bars sit on the
  UTC grid (multiples of the bar length since 1970-01-01 00:00 UTC).
- Daily bars are stamped 00:00 UTC of their session date: the New York date for equities (the
  bar covers 09:30-16:00 New York), the UTC date for crypto (00:00-24:00 UTC), and for FX the date
  on which the FX day closes at 22:00 UTC (it opened 22:00 UTC the day before); FX and equity
  daily bars exist on weekdays only.
- A bar is returned once complete: its end (start + length, or the session close) is <= until.
- History. ``since=None`` returns the last ``history_bars`` (default 2,000) complete bars: for
  equities about 5 sessions of 1m, 26 of 5m, 77 of 15m, 286 (~1.1 years) of 1h and ~8 years of
  1d bars. With ``since`` it returns every complete bar with ``ts >= since`` (no overlap), at
  most 5 million per call. Nothing exists before 1900-01-01.

Determinism. The log-price is a function of the symbol and of the time alone, built by the Levy
(Brownian-bridge) construction: independent anchors every 2**20 minutes (~2 years, which keeps
price levels sane) and, inside, tent functions at dyadic scales down to about a quarter of the
bar length whose heights come from a counter-based hash (splitmix64) of (seed, symbol, scale,
position). The coarse path is therefore shared by all timeframes of a symbol (a daily close is
close to the last 1m close), scales below the bar add a small per-bar term, and high, low and
volume use a hash of (seed, symbol, timeframe, bar start). Nothing is accumulated from the start
of the request, so a bar has the same values whether it comes from a full-history call or from an
incremental one, in any process. Seeds come from ``zlib.crc32``, never from ``hash()``.

Bad rows (``bad_row_symbols``): in a fetch of n >= 4 bars, the rows at positions (2i+1)n//8 get,
in order, an OHLC violation (high below the body), a NaN close, a zero low (non-positive price)
and an exact duplicate row inserted after it (a duplicated timestamp); fewer bars get the first
kinds only. The validation rejects exactly one row per kind.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

import pandas as pd

from market_pipeline.domain.timeframes import ASSET_CLASSES, Timeframe
from market_pipeline.providers.base import (
    MarketDataProvider,
    ProviderError,
    check_window,
    register_provider,
)
from market_pipeline.providers.synthetic.bad_rows import inject_bad_rows
from market_pipeline.providers.synthetic.grid import EPOCH, MAX_BARS_PER_FETCH, SECOND, bar_grid
from market_pipeline.providers.synthetic.prices import synthetic_bars

DEFAULT_HISTORY_BARS = 2000


@register_provider
class SyntheticProvider(MarketDataProvider):
    """Deterministic synthetic bars (see the module docstring for every convention)."""

    kind = "synthetic"

    def __init__(
        self,
        *,
        history_bars: int = DEFAULT_HISTORY_BARS,
        seed: int = 0,
        fail_symbols: Iterable[str] = (),
        fail_message: str | None = None,
        bad_row_symbols: Iterable[str] = (),
    ) -> None:
        if isinstance(history_bars, bool) or not isinstance(history_bars, int):
            raise ValueError(f"history_bars must be an integer, got {history_bars!r}")
        if not 1 <= history_bars <= MAX_BARS_PER_FETCH:
            raise ValueError(
                f"history_bars must be between 1 and {MAX_BARS_PER_FETCH}, got {history_bars}"
            )
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ValueError(f"seed must be an integer, got {seed!r}")
        if fail_message is not None and not isinstance(fail_message, str):
            raise ValueError(f"fail_message must be text, got {fail_message!r}")
        self.history_bars = history_bars
        self.seed = seed
        self.fail_symbols = _symbol_set("fail_symbols", fail_symbols)
        self.bad_row_symbols = _symbol_set("bad_row_symbols", bad_row_symbols)
        self._config = {
            "kind": self.kind,
            "history_bars": history_bars,
            "seed": seed,
            "fail_symbols": sorted(self.fail_symbols),
            "bad_row_symbols": sorted(self.bad_row_symbols),
        }
        self.fail_message = fail_message
        if fail_message is not None:
            self._config["fail_message"] = fail_message

    def referenced_symbols(self) -> frozenset[str]:
        return self.fail_symbols | self.bad_row_symbols

    def fetch_bars(
        self,
        symbol: str,
        asset_class: str,
        timeframe: Timeframe,
        *,
        since: datetime | None,
        until: datetime,
    ) -> pd.DataFrame:
        """Bars of one pair; ``ts`` is ``datetime64[ns, UTC]`` (see the module docstring)."""
        if symbol in self.fail_symbols:
            detail = f": {self.fail_message}" if self.fail_message else ""
            raise ProviderError(
                f"synthetic provider: injected failure for {symbol} {timeframe}{detail}"
            )
        if asset_class not in ASSET_CLASSES:
            raise ProviderError(
                f"synthetic provider: {symbol} {timeframe}: unknown asset class {asset_class!r}"
            )
        check_window(since, until)
        until_s = (until - EPOCH) // SECOND  # floor: the last whole second
        since_s = None if since is None else -((EPOCH - since) // SECOND)  # ceil
        stamp, start, end, session_pos = bar_grid(
            asset_class, timeframe, since_s, until_s, self.history_bars, symbol
        )
        frame = synthetic_bars(
            symbol, asset_class, timeframe, self.seed, stamp, start, end, session_pos
        )
        if symbol in self.bad_row_symbols:
            frame = inject_bad_rows(frame)
        return frame


def _symbol_set(name: str, values: Iterable[str]) -> frozenset[str]:
    if isinstance(values, str) or not all(isinstance(v, str) for v in values):
        raise ValueError(f"{name} must be a list of symbols, got {values!r}")
    return frozenset(values)
