"""The windowed features of one block: returns, volatility, SMAs, Bollinger bands, z-score.

A block is a 2-D array of series (rows) by bar position (columns), NaN-padded at the end of short
rows. Every feature here is a handful of numpy passes over the whole block; the recursive ones
are handed to the compiled row loop of :mod:`.recursive`.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from market_pipeline.domain.features.columns import FEATURE_COLUMNS, FEATURE_INDEX
from market_pipeline.domain.features.recursive import SCANNED, scan

# A standard deviation at or below this fraction of the window's scale is round-off, treated as 0.
STD_REL_EPSILON = 1e-10
# Sum-of-squares variance is exact to ~3e-15 * S2; below this fraction of S2 recompute two-pass.
_CANCELLATION_TOLERANCE = 1e-5

_VOL_WINDOW = 20
_SMA_FAST, _SMA_SLOW = 20, 50
_BB_WINDOW, _BB_WIDTH = 20, 2.0

# Scratch buffers of the kernel, each one block of cells.
(_S1, _S2, _SQ, _STD, _CENTRED, _TMP) = range(6)
_N_SCRATCH = 6
_N_LEVELS = _SMA_SLOW.bit_length() - 1  # doubling levels 2, 4, ..., 32 for windows up to 50


class Kernel:
    """Computes all features of a block into ``res`` with preallocated scratch buffers.

    Every intermediate lives in one workspace allocated once per call and reused by every block:
    allocating a dozen fresh arrays per block costs more in page faults than the arithmetic.
    """

    def __init__(self, cells: int) -> None:
        self._cells = cells
        self._scratch = np.empty((_N_SCRATCH, cells))
        self._levels = np.empty((_N_LEVELS, cells))
        self._flags = np.empty(cells, dtype=bool)
        self._inputs: tuple[np.ndarray, ...] | None = None
        self._result: np.ndarray | None = None
        self._x = self._scratch[0]
        self._level_cache: dict[int, np.ndarray] = {}

    # Padded blocks (series of unequal length) are copied into these.
    def padded_inputs(self, shape: tuple[int, int]) -> tuple[np.ndarray, ...]:
        m = shape[0] * shape[1]
        if self._inputs is None:
            self._inputs = (*np.empty((4, self._cells)), np.empty(self._cells, dtype=bool))
        views = tuple(buf[:m].reshape(shape) for buf in self._inputs)
        for view in views[:4]:
            view.fill(np.nan)
        views[4].fill(True)
        return views

    def padded_result(self, shape: tuple[int, int]) -> np.ndarray:
        if self._result is None:
            self._result = np.empty((len(FEATURE_COLUMNS), self._cells))
        return self._result[:, : shape[0] * shape[1]].reshape(len(FEATURE_COLUMNS), *shape)

    # Sliding-window sums by pairwise doubling: level w holds x[i] + ... + x[i + w - 1]. A window
    # of any width is a few additions of levels, so its round-off is local to it (no running total
    # that drifts) and windows that run from one row into the next are masked afterwards.
    def _prepare_sums(self, x: np.ndarray) -> None:
        self._x = x
        self._level_cache = {1: x}

    def _level(self, width: int) -> np.ndarray:
        if width not in self._level_cache:
            half = self._level(width // 2)
            count = max(self._x.size - width + 1, 0)
            out = self._levels[width.bit_length() - 2, :count]
            np.add(half[:count], half[width // 2 : width // 2 + count], out=out)
            self._level_cache[width] = out
        return self._level_cache[width]

    def _window_sums(self, n: int, out: np.ndarray, width: int) -> None:
        """``out[t]``: sum of the n values ending at flat index t; NaN in each row's first n-1."""
        count = self._x.size - n + 1
        if count > 0:
            parts = [1 << k for k in range(n.bit_length() - 1, -1, -1) if n >> k & 1]
            target = out[n - 1 :]
            if len(parts) == 1:
                np.copyto(target, self._level(parts[0])[:count])
            else:
                first, second = self._level(parts[0]), self._level(parts[1])
                np.add(first[:count], second[parts[0] : parts[0] + count], out=target)
                shift = parts[0] + parts[1]
                for part in parts[2:]:
                    target += self._level(part)[shift : shift + count]
                    shift += part
        out.reshape(-1, width)[:, : n - 1] = np.nan

    def _variance(
        self,
        x: np.ndarray,
        s1: np.ndarray,
        s2: np.ndarray,
        n: int,
        ddof: int,
        out: np.ndarray,
        *,
        zero_below_rms: bool = False,
    ) -> None:
        """Window variance from window sums ``s1``, ``s2`` of (x - per-row constant), into ``out``.

        Windows whose sum-of-squares formula cancels badly are recomputed two-pass from ``x``;
        windows whose values are all equal get exactly 0. With ``zero_below_rms`` (sums of ``x``
        itself), a variance at or below STD_REL_EPSILON**2 times the mean square is set to 0:
        only recomputed windows can be that small, since the others have dev > 1e-5 * s2.
        """
        m = x.size
        tmp, suspicious = self._scratch[_TMP, :m], self._flags[:m]
        np.multiply(s1, s1, out=out)
        out /= n
        np.subtract(s2, out, out=out)
        np.multiply(s2, _CANCELLATION_TOLERANCE, out=tmp)
        np.less_equal(out, tmp, out=suspicious)
        if suspicious.any():
            windows = sliding_window_view(x, n)
            found = np.flatnonzero(suspicious)
            for chunk in np.array_split(found, -(-found.size // 65536)):
                w = windows[chunk - (n - 1)]
                exact = ((w - w.mean(axis=1, keepdims=True)) ** 2).sum(axis=1)
                exact[w.max(axis=1) == w.min(axis=1)] = 0.0
                if zero_below_rms:
                    mean_square = (w * w).sum(axis=1) / n
                    exact[exact / (n - ddof) <= STD_REL_EPSILON**2 * mean_square] = 0.0
                out[chunk] = exact
        # A negative dev can only come from cancellation, and those windows were just recomputed.
        out /= n - ddof

    def _std_from_variance(self, var: np.ndarray, scale_sq: np.ndarray) -> None:
        """sqrt in place; a std at or below STD_REL_EPSILON * scale becomes exactly 0."""
        small = self._flags[: var.size]
        np.less_equal(var, scale_sq, out=small)
        np.copyto(var, 0.0, where=small)
        np.sqrt(var, out=var)

    def run(
        self,
        high: np.ndarray,
        low: np.ndarray,
        close: np.ndarray,
        volume: np.ndarray,
        new_session: np.ndarray,
        *,
        sqrt_bars_per_year: np.ndarray,
        daily: np.ndarray,
        res: np.ndarray,
    ) -> None:
        """Write all features of the block (inputs of shape (rows, width)) into ``res``."""
        rows, width = close.shape
        m = rows * width
        scratch = self._scratch[:, :m]
        h, lo, c, v = (a.reshape(-1) for a in (high, low, close, volume))

        def feature(name: str) -> np.ndarray:
            return res[FEATURE_INDEX[name]]

        def flat(name: str) -> np.ndarray:
            return res[FEATURE_INDEX[name]].reshape(-1)

        # Returns. Shifted operations run on the flat block; column 0 (which would mix two rows)
        # is then set to NaN.
        simple, logret = flat("simple_return"), flat("log_return")
        np.divide(c[1:], c[:-1], out=simple[1:])
        np.log(simple[1:], out=logret[1:])
        simple[1:] -= 1.0
        nonpositive = self._flags[:m]
        np.less_equal(c, 0.0, out=nonpositive)
        if nonpositive.any():
            bad = nonpositive[1:] | nonpositive[:-1]
            simple[1:][bad] = np.nan
            logret[1:][bad] = np.nan
        feature("simple_return")[:, 0] = np.nan
        feature("log_return")[:, 0] = np.nan

        # Volatility: sample std (ddof=1) of 20 log returns, annualised per series. Returns are
        # close to zero-mean, so their sums need no centring.
        s1, s2, sq, std = scratch[_S1], scratch[_S2], scratch[_SQ], scratch[_STD]
        self._prepare_sums(logret)
        self._window_sums(_VOL_WINDOW, s1, width)
        np.multiply(logret, logret, out=sq)
        self._prepare_sums(sq)
        self._window_sums(_VOL_WINDOW, s2, width)
        self._variance(logret, s1, s2, _VOL_WINDOW, 1, std, zero_below_rms=True)
        np.sqrt(std, out=std)
        np.multiply(
            std.reshape(rows, width), sqrt_bars_per_year[:, None], out=feature("volatility_20")
        )

        # SMAs and the population std of closes, from sums of closes centred on each series' first
        # close (smaller magnitudes, so the sum-of-squares variance keeps its precision).
        reference = close[:, :1]
        centred = scratch[_CENTRED]
        np.subtract(close, reference, out=centred.reshape(rows, width))
        self._prepare_sums(centred)
        sma20, sma50 = flat("sma_20"), flat("sma_50")
        self._window_sums(_SMA_FAST, sma20, width)
        self._window_sums(_SMA_SLOW, sma50, width)
        np.multiply(centred, centred, out=sq)
        self._prepare_sums(sq)
        self._window_sums(_BB_WINDOW, s2, width)
        self._variance(c, sma20, s2, _BB_WINDOW, 0, std)
        for name, n in (("sma_20", _SMA_FAST), ("sma_50", _SMA_SLOW)):
            sma = feature(name)
            sma /= n
            sma += reference
        scale_sq = scratch[_TMP]
        np.multiply(sma20, sma20, out=scale_sq)
        scale_sq *= STD_REL_EPSILON**2
        self._std_from_variance(std, scale_sq)

        # Bollinger bands and z-score.
        np.copyto(flat("bb_middle"), sma20)
        band = scratch[_TMP]
        np.multiply(std, _BB_WIDTH, out=band)
        np.add(sma20, band, out=flat("bb_upper"))
        np.subtract(sma20, band, out=flat("bb_lower"))
        zscore = flat("zscore_20")
        np.subtract(c, sma20, out=zscore)
        np.divide(zscore, std, out=zscore)
        zero_std = self._flags[:m]
        np.equal(std, 0.0, out=zero_std)
        np.copyto(zscore, np.nan, where=zero_std)

        # The recursive features (EMAs, MACD, RSI, ATR, OBV, VWAP): one compiled pass per row.
        scan()(
            h,
            lo,
            c,
            v,
            new_session.reshape(-1),
            daily,
            width,
            *(flat(name) for name in SCANNED),
        )

