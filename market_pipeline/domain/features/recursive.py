"""The recursive features (EMAs, MACD, Wilder RSI and ATR, OBV, VWAP): one compiled row loop.

numba is imported the first time :func:`scan` is called, so only processes that compute features
pay for it. The windows the loop uses are defined here, not imported: numba freezes the globals
of :func:`scan_rows` into its machine code, and its ``cache=True`` only notices edits to this file.
"""

from __future__ import annotations

import functools
import math
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

_EMA_FAST, _EMA_SLOW, _MACD_SIGNAL = 12, 26, 9
_RSI_WINDOW = 14
_ATR_WINDOW = 14
_MACD_SIGNAL_AT = _EMA_SLOW - 1 + _MACD_SIGNAL - 1  # first signal value: bar 33

# Output columns of the compiled row scan, in its argument order.
SCANNED: tuple[str, ...] = (
    "ema_12",
    "ema_26",
    "macd",
    "macd_signal",
    "macd_hist",
    "rsi_14",
    "atr_14",
    "obv",
    "vwap",
)


class RowScan(Protocol):
    """The call signature of :func:`scan_rows`, compiled or not."""

    def __call__(
        self,
        high: NDArray[np.float64],
        low: NDArray[np.float64],
        close: NDArray[np.float64],
        volume: NDArray[np.float64],
        new_session: NDArray[np.bool_],
        daily: NDArray[np.bool_],
        width: int,
        ema_fast: NDArray[np.float64],
        ema_slow: NDArray[np.float64],
        macd: NDArray[np.float64],
        macd_signal: NDArray[np.float64],
        macd_hist: NDArray[np.float64],
        rsi: NDArray[np.float64],
        atr: NDArray[np.float64],
        obv: NDArray[np.float64],
        vwap: NDArray[np.float64],
        /,
    ) -> None: ...


@functools.cache
def scan() -> RowScan:
    """:func:`scan_rows` compiled with numba, on first use (only processes that compute pay).

    ``cache=True`` keeps the machine code next to this module (or in numba's user cache
    directory), so a new process loads it (~1 s with numba's import) instead of compiling it
    (~3 s). Where no cache directory is writable, it is compiled in memory instead.
    """
    import numba
    from numba import types

    # One explicit signature, so that read-only inputs (pandas hands those out) and writable ones
    # share one compiled specialisation.
    inputs = types.Array(types.float64, 1, "C", readonly=True)
    flags = types.Array(types.bool_, 1, "C", readonly=True)
    outputs = types.Array(types.float64, 1, "C")
    signature = types.void(*(inputs,) * 4, flags, flags, types.int64, *(outputs,) * len(SCANNED))
    # error_model="numpy": 0/0 is NaN (an RSI with AG = AL = 0), not a ZeroDivisionError.
    try:
        return numba.njit(signature, cache=True, nogil=True, error_model="numpy")(scan_rows)
    except RuntimeError:  # "cannot cache function ...: no locator available"
        return numba.njit(signature, nogil=True, error_model="numpy")(scan_rows)


def scan_rows(
    high: NDArray[np.float64],
    low: NDArray[np.float64],
    close: NDArray[np.float64],
    volume: NDArray[np.float64],
    new_session: NDArray[np.bool_],
    daily: NDArray[np.bool_],
    width: int,
    ema_fast: NDArray[np.float64],
    ema_slow: NDArray[np.float64],
    macd: NDArray[np.float64],
    macd_signal: NDArray[np.float64],
    macd_hist: NDArray[np.float64],
    rsi: NDArray[np.float64],
    atr: NDArray[np.float64],
    obv: NDArray[np.float64],
    vwap: NDArray[np.float64],
) -> None:
    """EMAs, MACD, RSI, ATR, OBV and VWAP of each row, all in one pass along the row.

    Flat arrays of a block, ``width`` cells per row (one series, NaN padding at its end);
    ``daily`` has one flag per row. Called compiled, through :func:`scan`; one long loop on
    purpose, since every feature reads the same bar in the same iteration.

    Each smoothed feature is NaN before its seed bar ``s``; at ``s`` it is the seed, the plain
    mean of its first ``n`` inputs summed left to right; after it, ``y = decay * y + alpha * x``
    (two rounded products, then their rounded sum: no fused multiply-add). The inputs of the
    Wilder features are undefined on bar 0 (no previous close). NaN inputs propagate like the
    arithmetic does (``max``/``min`` of a NaN is NaN, as numpy's), so a recursive feature stays
    NaN after a NaN price. OBV and VWAP are running sums from the row's first bar; the VWAP of a
    session is the running sums minus their value before the session's first bar.
    """
    nan = np.nan
    a_fast = 2.0 / (_EMA_FAST + 1)
    a_slow = 2.0 / (_EMA_SLOW + 1)
    a_signal = 2.0 / (_MACD_SIGNAL + 1)
    a_rsi = 1.0 / _RSI_WINDOW
    a_atr = 1.0 / _ATR_WINDOW
    d_fast, d_slow, d_signal = 1.0 - a_fast, 1.0 - a_slow, 1.0 - a_signal
    d_rsi, d_atr = 1.0 - a_rsi, 1.0 - a_atr
    fast_at, slow_at, signal_at = _EMA_FAST - 1, _EMA_SLOW - 1, _MACD_SIGNAL_AT
    for row in range(close.size // width):
        start = row * width
        intraday = not daily[row]
        y_fast = y_slow = y_signal = gain_avg = loss_avg = y_atr = 0.0
        obv_sum = pv_sum = v_sum = pv_before = v_before = 0.0
        prev = nan
        for t in range(width):
            i = start + t
            c = close[i]

            # EMA 12 and 26, seeded with the SMA of their first n closes.
            if t < fast_at:
                y_fast = c if t == 0 else y_fast + c
                e_fast = nan
            else:
                if t == fast_at:
                    y_fast = (y_fast + c) / _EMA_FAST
                else:
                    y_fast = d_fast * y_fast + a_fast * c
                e_fast = y_fast
            if t < slow_at:
                y_slow = c if t == 0 else y_slow + c
                e_slow = nan
            else:
                if t == slow_at:
                    y_slow = (y_slow + c) / _EMA_SLOW
                else:
                    y_slow = d_slow * y_slow + a_slow * c
                e_slow = y_slow
            ema_fast[i], ema_slow[i] = e_fast, e_slow

            # MACD and its EMA 9 signal, seeded with the SMA of the first 9 MACD values.
            m = e_fast - e_slow
            if t < signal_at:
                y_signal = m if t == slow_at else y_signal + m
                signal = nan
            else:
                if t == signal_at:
                    y_signal = (y_signal + m) / _MACD_SIGNAL
                else:
                    y_signal = d_signal * y_signal + a_signal * m
                signal = y_signal
            macd[i], macd_signal[i], macd_hist[i] = m, signal, m - signal

            # Close change into the bar (undefined on bar 0): gains and losses, OBV's sign, and
            # the true range max(H, C_prev) - min(L, C_prev) (max(H - L, |H - C_prev|,
            # |L - C_prev|) for L <= H: the same difference of the same two prices).
            hi, lo_ = high[i], low[i]
            change = c - prev
            # gain = max(change, 0) and loss = gain - change, NaN where the change is NaN.
            if change >= 0.0 or math.isnan(change):
                gain = change
            else:
                gain = 0.0
            loss = gain - change
            # Explicit comparisons rather than max()/min(): NaN must win, and a tie keeps H (L).
            if math.isnan(hi) or math.isnan(prev):
                upper = nan
            elif hi >= prev:
                upper = hi
            else:
                upper = prev
            if math.isnan(lo_) or math.isnan(prev):
                lower = nan
            elif lo_ <= prev:
                lower = lo_
            else:
                lower = prev
            true_range = upper - lower

            # Wilder RSI and ATR: seeded with the mean of the first 14 values (bars 1..14).
            if t < _RSI_WINDOW:
                if t == 1:
                    gain_avg, loss_avg = gain, loss
                elif t > 1:
                    gain_avg, loss_avg = gain_avg + gain, loss_avg + loss
                rsi[i] = nan
            else:
                if t == _RSI_WINDOW:
                    gain_avg = (gain_avg + gain) / _RSI_WINDOW
                    loss_avg = (loss_avg + loss) / _RSI_WINDOW
                else:
                    gain_avg = d_rsi * gain_avg + a_rsi * gain
                    loss_avg = d_rsi * loss_avg + a_rsi * loss
                rsi[i] = gain_avg / (gain_avg + loss_avg) * 100.0
            if t < _ATR_WINDOW:
                if t == 1:
                    y_atr = true_range
                elif t > 1:
                    y_atr = y_atr + true_range
                atr[i] = nan
            else:
                if t == _ATR_WINDOW:
                    y_atr = (y_atr + true_range) / _ATR_WINDOW
                else:
                    y_atr = d_atr * y_atr + a_atr * true_range
                atr[i] = y_atr

            # OBV from 0: + V on an up close, - V on a down close, + 0 * V when unchanged.
            vol = volume[i]
            if t > 0:
                if change > 0.0:
                    sign = 1.0
                elif change < 0.0:
                    sign = -1.0
                elif change == 0.0:
                    sign = 0.0
                else:
                    sign = nan
                obv_sum = obv_sum + sign * vol
            obv[i] = obv_sum

            # VWAP: per session on intraday rows; the bar's typical price on daily rows. Adding
            # zero volumes leaves a float unchanged, so a session without volume yet has exactly
            # 0 and gets NaN.
            typical = (hi + lo_ + c) / 3.0
            if intraday:
                if new_session[i]:
                    pv_before, v_before = pv_sum, v_sum
                if t == 0:
                    pv_sum, v_sum = typical * vol, vol
                else:
                    pv_sum, v_sum = pv_sum + typical * vol, v_sum + vol
                session_volume = v_sum - v_before
                vwap[i] = nan if session_volume <= 0.0 else (pv_sum - pv_before) / session_volume
            else:
                vwap[i] = typical if vol > 0.0 else nan
            prev = c
