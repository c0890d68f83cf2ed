"""Timeframes and asset classes: bar durations, bars per year, trading sessions.

Pure Python, no Dagster. Every other module asks this one what a timeframe means.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta

ASSET_CLASSES = ("equity", "crypto", "fx")

# Bars per year for annualising volatility (see notes/quant-features.md). US equities trade a
# 6.5 h regular session on 252 days; crypto trades 24/7 on 365 days; FX 24/5 on 260 days.
_SESSION_MINUTES_PER_DAY = {"equity": 390, "crypto": 1440, "fx": 1440}
_TRADING_DAYS_PER_YEAR = {"equity": 252, "crypto": 365, "fx": 260}

# Exchange-local time zone whose calendar date defines a trading session (intraday VWAP resets
# at each session). Crypto and FX sessions are counted in UTC days.
SESSION_TIMEZONE = {"equity": "America/New_York", "crypto": "UTC", "fx": "UTC"}

_TIMEFRAME_RE = re.compile(r"^([1-9][0-9]*)(m|h|d)$")
_UNIT_SECONDS = {"m": 60, "h": 3600, "d": 86400}


class TimeframeError(ValueError):
    """A timeframe string that is not of the form <n>m, <n>h or <n>d."""


@dataclass(frozen=True, order=True)
class Timeframe:
    """A bar duration such as ``1m``, ``5m``, ``1h`` or ``1d``."""

    seconds: int
    code: str

    @classmethod
    def parse(cls, code: str) -> Timeframe:
        match = _TIMEFRAME_RE.match(str(code).strip())
        if not match:
            raise TimeframeError(
                f"unknown timeframe {code!r}: expected <n>m, <n>h or <n>d (e.g. 1m, 5m, 1h, 1d)"
            )
        seconds = int(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        if seconds > 86400:
            raise TimeframeError(
                f"timeframe {code!r} is longer than one day, which is not supported"
            )
        return cls(seconds=seconds, code=str(code).strip())

    @property
    def duration(self) -> timedelta:
        return timedelta(seconds=self.seconds)

    @property
    def is_intraday(self) -> bool:
        return self.seconds < 86400

    @property
    def pandas_freq(self) -> str:
        """The pandas offset alias of one bar (``1min``, ``5min``, ``1h``, ``1D``)."""
        if self.seconds % 86400 == 0:
            return f"{self.seconds // 86400}D"
        if self.seconds % 3600 == 0:
            return f"{self.seconds // 3600}h"
        return f"{self.seconds // 60}min"

    def bars_per_year(self, asset_class: str) -> float:
        """Bars in one year of trading for this timeframe and asset class."""
        check_asset_class(asset_class)
        days = _TRADING_DAYS_PER_YEAR[asset_class]
        if not self.is_intraday:
            return float(days)
        return days * _SESSION_MINUTES_PER_DAY[asset_class] * 60 / self.seconds

    def __str__(self) -> str:
        return self.code


def check_asset_class(asset_class: str) -> str:
    if asset_class not in ASSET_CLASSES:
        raise ValueError(
            f"unknown asset class {asset_class!r}: expected one of {', '.join(ASSET_CLASSES)}"
        )
    return asset_class
