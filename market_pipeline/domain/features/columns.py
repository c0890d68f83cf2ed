"""Names of the input and output columns, shared by every module of the package."""

from __future__ import annotations

FEATURE_COLUMNS: tuple[str, ...] = (
    "simple_return",
    "log_return",
    "volatility_20",
    "sma_20",
    "sma_50",
    "ema_12",
    "ema_26",
    "rsi_14",
    "macd",
    "macd_signal",
    "macd_hist",
    "bb_upper",
    "bb_middle",
    "bb_lower",
    "atr_14",
    "obv",
    "vwap",
    "zscore_20",
)

BAR_COLUMNS: tuple[str, ...] = ("ts", "open", "high", "low", "close", "volume")

# Row of each feature in the (feature, bar) arrays the computation writes into.
FEATURE_INDEX: dict[str, int] = {name: i for i, name in enumerate(FEATURE_COLUMNS)}
