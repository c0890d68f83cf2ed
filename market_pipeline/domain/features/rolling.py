"""Sliding-window statistics over a flat block of rows: sums by pairwise doubling, variances.

Window sums: level ``w`` holds ``x[i] + ... + x[i + w - 1]`` for every flat index ``i``; a window
of any width is a few additions of levels, so its round-off is ~log2(n) ulps and local to it (no
running total that drifts). Windows that run from one row into the next are masked afterwards.
Variances come from the window sums of ``x`` and ``x**2``, recomputed two-pass where that
formula cancels badly.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from numpy.typing import NDArray

# A standard deviation at or below this fraction of the window's scale is round-off, treated as 0.
STD_REL_EPSILON = 1e-10
# Sum-of-squares variance is exact to ~3e-15 * S2; below this fraction of S2 recompute two-pass.
_CANCELLATION_TOLERANCE = 1e-5
# Windows recomputed two-pass per numpy call, to bound the (windows x n) temporaries.
_TWO_PASS_CHUNK = 65536


class WindowSums:
    """Window sums of one array at a time, with the doubling levels in a reused buffer.

    Call :meth:`prepare` with the array, then :meth:`window` for each width wanted: the levels
    are computed once per array and shared by its windows (20 = 16 + 4 and 50 = 32 + 16 + 2
    use the same chain of levels).
    """

    def __init__(self, cells: int, max_window: int) -> None:
        # Levels 2, 4, ..., up to the largest power of two in max_window (32 for 50).
        self._levels: NDArray[np.float64] = np.empty((max_window.bit_length() - 1, cells))
        self._x: NDArray[np.float64] = np.empty(0)
        self._cache: dict[int, NDArray[np.float64]] = {}

    def prepare(self, x: NDArray[np.float64]) -> None:
        """Sum windows of ``x`` (flat) from now on; ``x`` must stay unchanged until the next."""
        self._x = x
        self._cache = {1: x}

    def _level(self, width: int) -> NDArray[np.float64]:
        if width not in self._cache:
            half = self._level(width // 2)
            count = max(self._x.size - width + 1, 0)
            out = self._levels[width.bit_length() - 2, :count]
            np.add(half[:count], half[width // 2 : width // 2 + count], out=out)
            self._cache[width] = out
        return self._cache[width]

    def window(self, n: int, out: NDArray[np.float64], width: int) -> None:
        """``out[t]``: sum of the n values ending at flat index t; NaN in each row's first n-1.

        ``width`` is the row length of the block.
        """
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


def window_variance(
    x: NDArray[np.float64],
    s1: NDArray[np.float64],
    s2: NDArray[np.float64],
    n: int,
    ddof: int,
    out: NDArray[np.float64],
    tmp: NDArray[np.float64],
    suspicious: NDArray[np.bool_],
    *,
    zero_below_rms: bool = False,
) -> None:
    """Window variance from window sums ``s1``, ``s2`` of (x - per-row constant), into ``out``.

    Windows whose sum-of-squares formula cancels badly are recomputed two-pass from ``x``;
    windows whose values are all equal get exactly 0. With ``zero_below_rms`` (sums of ``x``
    itself), a variance at or below STD_REL_EPSILON**2 times the mean square is set to 0:
    only recomputed windows can be that small, since the others have dev > 1e-5 * s2.
    ``tmp`` and ``suspicious`` are scratch buffers of the size of ``x``.
    """
    np.multiply(s1, s1, out=out)
    out /= n
    np.subtract(s2, out, out=out)
    np.multiply(s2, _CANCELLATION_TOLERANCE, out=tmp)
    np.less_equal(out, tmp, out=suspicious)
    if suspicious.any():
        windows = sliding_window_view(x, n)
        found = np.flatnonzero(suspicious)
        for chunk in np.array_split(found, -(-found.size // _TWO_PASS_CHUNK)):
            w = windows[chunk - (n - 1)]
            exact = ((w - w.mean(axis=1, keepdims=True)) ** 2).sum(axis=1)
            exact[w.max(axis=1) == w.min(axis=1)] = 0.0
            if zero_below_rms:
                mean_square = (w * w).sum(axis=1) / n
                exact[exact / (n - ddof) <= STD_REL_EPSILON**2 * mean_square] = 0.0
            out[chunk] = exact
    # A negative dev can only come from cancellation, and those windows were just recomputed.
    out /= n - ddof
