"""The features of one block: returns, volatility, SMAs, Bollinger bands, z-score, then the rest.

A block is a 2-D array of series (rows) by bar position (columns), NaN-padded at the end of short
rows. Each windowed feature is a handful of numpy passes over the whole block; the recursive ones
are handed to the compiled row loop of :mod:`.recursive`.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numpy.typing import NDArray

from market_pipeline.domain.features.columns import FEATURE_COLUMNS, FEATURE_INDEX
from market_pipeline.domain.features.recursive import SCANNED, scan
from market_pipeline.domain.features.rolling import STD_REL_EPSILON, WindowSums, window_variance

_VOL_WINDOW = 20
_SMA_FAST, _SMA_SLOW = 20, 50
_BB_WINDOW, _BB_WIDTH = 20, 2.0

# Scratch buffers of the kernel, each one block of cells.
(_S1, _S2, _SQ, _STD, _CENTRED, _TMP) = range(6)
_N_SCRATCH = 6


class BlockBars(NamedTuple):
    """The per-bar inputs of a block, each of shape (rows, width), or flat over all series."""

    high: NDArray[np.float64]
    low: NDArray[np.float64]
    close: NDArray[np.float64]
    volume: NDArray[np.float64]
    new_session: NDArray[np.bool_]

    def block(self, span: slice, shape: tuple[int, int]) -> BlockBars:
        """Bars ``span`` of flat bars as a block of shape ``shape``: views, no copies."""
        return BlockBars(
            self.high[span].reshape(shape),
            self.low[span].reshape(shape),
            self.close[span].reshape(shape),
            self.volume[span].reshape(shape),
            self.new_session[span].reshape(shape),
        )


def _column(res: NDArray[np.float64], name: str) -> NDArray[np.float64]:
    """Feature ``name`` of the block result ``res``: a (rows, width) view."""
    column: NDArray[np.float64] = res[FEATURE_INDEX[name]]
    return column


def _flat(res: NDArray[np.float64], name: str) -> NDArray[np.float64]:
    """Feature ``name`` of the block result ``res``: a flat view, row after row."""
    return _column(res, name).reshape(-1)


class Kernel:
    """Computes all features of a block into ``res`` with preallocated scratch buffers.

    Every intermediate lives in one workspace allocated once per call and reused by every block:
    allocating a dozen fresh arrays per block costs more in page faults than the arithmetic.
    """

    def __init__(self, cells: int) -> None:
        self._cells = cells
        self._scratch: NDArray[np.float64] = np.empty((_N_SCRATCH, cells))
        self._flags: NDArray[np.bool_] = np.empty(cells, dtype=bool)
        self._sums = WindowSums(cells, max_window=_SMA_SLOW)  # the widest window summed
        self._inputs: BlockBars | None = None
        self._result: NDArray[np.float64] | None = None

    def padded_inputs(self, shape: tuple[int, int]) -> BlockBars:
        """Input buffers for a block of series of unequal length: NaN bars, new sessions."""
        m = shape[0] * shape[1]
        if self._inputs is None:
            high, low, close, volume = np.empty((4, self._cells))
            self._inputs = BlockBars(high, low, close, volume, np.empty(self._cells, dtype=bool))
        views = self._inputs.block(slice(m), shape)
        for view in views[:4]:
            view.fill(np.nan)
        views.new_session.fill(True)
        return views

    def padded_result(self, shape: tuple[int, int]) -> NDArray[np.float64]:
        """Result buffer for a padded block, of shape (len(FEATURE_COLUMNS), *shape)."""
        if self._result is None:
            self._result = np.empty((len(FEATURE_COLUMNS), self._cells))
        return self._result[:, : shape[0] * shape[1]].reshape(len(FEATURE_COLUMNS), *shape)

    def run(
        self,
        bars: BlockBars,
        *,
        sqrt_bars_per_year: NDArray[np.float64],
        daily: NDArray[np.bool_],
        res: NDArray[np.float64],
    ) -> None:
        """Write all features of the block into ``res``, of shape (features, rows, width).

        ``sqrt_bars_per_year`` (the annualisation factor) and ``daily`` have one entry per row.
        """
        width = bars.close.shape[1]
        close = bars.close.reshape(-1)
        log_return = self._returns(close, res)
        self._volatility(log_return, sqrt_bars_per_year, res)
        std = self._smas_and_std(bars.close, res)
        self._bollinger_and_zscore(close, std, res)
        # The recursive features (EMAs, MACD, RSI, ATR, OBV, VWAP): one compiled pass per row.
        scan()(
            bars.high.reshape(-1),
            bars.low.reshape(-1),
            close,
            bars.volume.reshape(-1),
            bars.new_session.reshape(-1),
            daily,
            width,
            *(_flat(res, name) for name in SCANNED),
        )

    def _returns(self, close: NDArray[np.float64], res: NDArray[np.float64]) -> NDArray[np.float64]:
        """Simple and log returns of the flat closes; returns the flat log returns.

        Shifted operations run on the flat block; column 0 (which would mix two rows) is then set
        to NaN.
        """
        simple, log_return = _flat(res, "simple_return"), _flat(res, "log_return")
        np.divide(close[1:], close[:-1], out=simple[1:])
        np.log(simple[1:], out=log_return[1:])
        simple[1:] -= 1.0
        nonpositive = self._flags[: close.size]
        np.less_equal(close, 0.0, out=nonpositive)
        if nonpositive.any():
            bad = nonpositive[1:] | nonpositive[:-1]
            simple[1:][bad] = np.nan
            log_return[1:][bad] = np.nan
        _column(res, "simple_return")[:, 0] = np.nan
        _column(res, "log_return")[:, 0] = np.nan
        return log_return

    def _volatility(
        self,
        log_return: NDArray[np.float64],
        sqrt_bars_per_year: NDArray[np.float64],
        res: NDArray[np.float64],
    ) -> None:
        """Sample std (ddof=1) of 20 log returns, annualised per row.

        Returns are close to zero-mean, so their sums need no centring.
        """
        rows, width = res.shape[1:]
        m = log_return.size
        s1, s2, sq, std, tmp = (self._scratch[k, :m] for k in (_S1, _S2, _SQ, _STD, _TMP))
        self._sums.prepare(log_return)
        self._sums.window(_VOL_WINDOW, s1, width)
        np.multiply(log_return, log_return, out=sq)
        self._sums.prepare(sq)
        self._sums.window(_VOL_WINDOW, s2, width)
        window_variance(
            log_return, s1, s2, _VOL_WINDOW, 1, std, tmp, self._flags[:m], zero_below_rms=True
        )
        np.sqrt(std, out=std)
        np.multiply(
            std.reshape(rows, width), sqrt_bars_per_year[:, None], out=_column(res, "volatility_20")
        )

    def _smas_and_std(
        self, close: NDArray[np.float64], res: NDArray[np.float64]
    ) -> NDArray[np.float64]:
        """SMA 20 and 50 of the (rows, width) closes; returns the flat population std of 20.

        Both come from sums of closes centred on each row's first close (smaller magnitudes, so
        the sum-of-squares variance keeps its precision). The std is a scratch buffer, valid
        until the next step reuses it.
        """
        rows, width = close.shape
        m = close.size
        s2, sq, std, centred, tmp = (self._scratch[k, :m] for k in (_S2, _SQ, _STD, _CENTRED, _TMP))
        reference = close[:, :1]
        np.subtract(close, reference, out=centred.reshape(rows, width))
        self._sums.prepare(centred)
        sma20, sma50 = _flat(res, "sma_20"), _flat(res, "sma_50")
        self._sums.window(_SMA_FAST, sma20, width)
        self._sums.window(_SMA_SLOW, sma50, width)
        np.multiply(centred, centred, out=sq)
        self._sums.prepare(sq)
        self._sums.window(_BB_WINDOW, s2, width)
        window_variance(close.reshape(-1), sma20, s2, _BB_WINDOW, 0, std, tmp, self._flags[:m])
        for name, n in (("sma_20", _SMA_FAST), ("sma_50", _SMA_SLOW)):
            sma = _column(res, name)
            sma /= n
            sma += reference
        scale_sq = tmp  # free again once the variance is done
        np.multiply(sma20, sma20, out=scale_sq)
        scale_sq *= STD_REL_EPSILON**2
        self._std_from_variance(std, scale_sq)
        return std

    def _bollinger_and_zscore(
        self, close: NDArray[np.float64], std: NDArray[np.float64], res: NDArray[np.float64]
    ) -> None:
        """Bollinger bands SMA20 +/- 2 std and the z-score (NaN where std is 0), flat."""
        sma20 = _flat(res, "sma_20")
        np.copyto(_flat(res, "bb_middle"), sma20)
        band = self._scratch[_TMP, : close.size]
        np.multiply(std, _BB_WIDTH, out=band)
        np.add(sma20, band, out=_flat(res, "bb_upper"))
        np.subtract(sma20, band, out=_flat(res, "bb_lower"))
        zscore = _flat(res, "zscore_20")
        np.subtract(close, sma20, out=zscore)
        np.divide(zscore, std, out=zscore)
        zero_std = self._flags[: close.size]
        np.equal(std, 0.0, out=zero_std)
        np.copyto(zscore, np.nan, where=zero_std)

    def _std_from_variance(self, var: NDArray[np.float64], scale_sq: NDArray[np.float64]) -> None:
        """sqrt in place; a std at or below STD_REL_EPSILON * scale becomes exactly 0."""
        small = self._flags[: var.size]
        np.less_equal(var, scale_sq, out=small)
        np.copyto(var, 0.0, where=small)
        np.sqrt(var, out=var)
