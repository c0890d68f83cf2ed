"""Quant features of OHLCV bars, computed for many series at once.

numpy and pandas plus one numba-compiled loop: no Dagster, no database. The values are the
textbook ones, so any of them can be checked against TA-Lib or by hand; the tests in
``market_pipeline_tests/domain/test_features.py`` do exactly that on real daily data.

Entry points: :func:`compute_features` (one series), :func:`compute_features_many` (a dict of
series) and :func:`compute_features_stacked` (series back to back in one long frame: the fastest,
no per-series pandas objects). All three give bit-identical values for the same series.

Conventions (bar ``t`` of a series has O, H, L, C, V; ``t`` is its 0-based position in the series;
``n`` is the window; NaN is stored as NULL and means "undefined here"):

- ``simple_return`` = C_t / C_{t-1} - 1, ``log_return`` = ln(C_t / C_{t-1}); NaN on the first bar
  and wherever C_t <= 0 or C_{t-1} <= 0 (never -inf, never forward-filled across gaps).
- ``volatility_20``: sample standard deviation (ddof=1) of the last 20 log returns, times
  sqrt(bars per year) of the series' asset class and timeframe (``Timeframe.bars_per_year``:
  1d equity 252, 1h crypto 8,760, ...). First value at t = 20; NaN if the window has a NaN return.
- ``sma_20``, ``sma_50``: plain means; NaN for the first n-1 bars.
- ``ema_12``, ``ema_26``: alpha = 2/(n+1), seeded with the SMA of the first n closes at t = n-1
  (TA-Lib and StockCharts; pandas ``ewm(adjust=False)`` seeds at the first close instead).
- ``rsi_14``: Wilder. Average gain AG and loss AL seeded with the plain mean of the first 14 close
  changes (first RSI at t = 14), then ``avg = (avg * 13 + x) / 14``. RSI = 100 * AG / (AG + AL),
  which is 100 - 100 / (1 + AG/AL) without dividing by AL: AL = 0 < AG gives 100. **A series that
  has not moved since its first bar (AG = AL = 0) gives NaN**: 0/0 is undefined, like every other
  division by zero here (TA-Lib returns 0, which reads as "extremely oversold"; 50 would invent a
  neutral reading). After any move the Wilder averages stay positive, so a later flat stretch
  keeps a value.
- ``macd`` = EMA12 - EMA26, each EMA seeded with the SMA of its own first n closes (first MACD at
  t = 25); ``macd_signal`` = EMA9 of MACD seeded with the SMA of the first 9 MACD values (first
  at t = 33); ``macd_hist`` = macd - macd_signal. TA-Lib's MACD seeds its fast EMA at t = 25 from
  closes 14..25 instead; the difference decays by 11/13 per bar (negligible after ~200 bars).
- ``bb_upper`` / ``bb_middle`` / ``bb_lower``: SMA20 +/- 2 population standard deviations (ddof=0).
- ``atr_14``: true range max(H - L, |H - C_{t-1}|, |L - C_{t-1}|), undefined on bar 0; Wilder
  smoothing seeded with the mean of the first 14 true ranges (first ATR at t = 14).
- ``obv``: 0 on the first bar, then + V on an up close, - V on a down close, + 0 when unchanged
  (TA-Lib's OBV starts at V_0 instead: it is this one plus V_0).
- ``vwap``: on intraday timeframes, cumulative typical price (H + L + C)/3 times volume over
  cumulative volume, **reset at each session**; a session is a calendar date in
  ``SESSION_TIMEZONE[asset_class]`` (New York for equities, so the reset follows DST; UTC days
  for crypto and FX). **On daily bars each bar is its own session**, so the VWAP is the bar's
  typical price: the same definition at the only granularity the bar gives (a rolling VWAP would
  be a different feature under the same name). No volume yet in the session gives NaN.
- ``zscore_20`` = (C - SMA20) / std20, std20 the population std (ddof=0) of Bollinger; NaN when
  std20 is 0.

Zero standard deviations: a window whose values are all equal has std exactly 0 (not the round-off
a running-sum formula leaves), and a std at or below ``STD_REL_EPSILON`` (1e-10) times the window's
scale (|SMA| for closes, RMS for log returns) is 0 too: that is round-off in the inputs (e.g.
adjustment factors), not a move (a one-tick move is above 1e-8 of the price on the markets we
store). Volatility is then 0; anything divided by such a std, by zero volume or by AG + AL = 0 is
NaN: never inf, never an exception.

How it is computed: series are rows of padded 2-D blocks (similar lengths together, ~64k cells per
block, all temporaries in one reused workspace). The windowed features are numpy passes over a
whole block: rolling sums add shifted slices by pairwise doubling (round-off ~log2(n) ulps and
local to the window, no running total that drifts); the variance uses sums of closes centred on
the series' first close, and a window whose sum-of-squares formula cancels badly (dev <= 1e-5 *
sum of squares) is recomputed two-pass. The recursive features (EMA, MACD and its signal, Wilder
RSI and ATR, OBV, VWAP) are one loop along each row that computes all of them in the same pass,
each smoothed one with the plain recursion ``y = decay * y + alpha * x`` from its SMA seed (two
rounded products and their rounded sum, no fused multiply-add: the textbook formula in float64).
That loop is compiled with numba on first use, with ``cache=True``: the first call in a process
pays ~1 s (numba's import and loading the cached machine code), ~3 s where it has to compile.
Each value depends only on bars at or before it, through the same arithmetic whatever follows, so
a prefix of a series gives bit-identical values to the corresponding rows of the full computation
(tested): recomputing a series over its full stored history keeps stored values equal to a
full-history computation.

Modules: :mod:`.api` (the entry points, input checks and the output frame), :mod:`.layout`
(series -> padded blocks, VWAP session starts), :mod:`.windowed` (the numpy passes of one block),
:mod:`.rolling` (their sliding-window sums), :mod:`.recursive` (the compiled row loop) and
:mod:`.columns` (column names).

Inputs are expected validated: finite prices with low <= high, non-negative volumes, ``ts``
strictly increasing within each series (checked). A NaN price never turns into inf: windows that
contain it are NaN and, as in TA-Lib, the recursive features (EMA, RSI, MACD, ATR, OBV, VWAP) stay
NaN after it.
"""

from market_pipeline.domain.features.api import (
    compute_features,
    compute_features_many,
    compute_features_stacked,
)
from market_pipeline.domain.features.columns import BAR_COLUMNS, FEATURE_COLUMNS
from market_pipeline.domain.features.rolling import STD_REL_EPSILON

__all__ = [
    "BAR_COLUMNS",
    "FEATURE_COLUMNS",
    "STD_REL_EPSILON",
    "compute_features",
    "compute_features_many",
    "compute_features_stacked",
]
