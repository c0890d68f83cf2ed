"""Bars from Parquet files through pyarrow: one file per pair, or a hive-partitioned dataset.

Provider block::

    provider:
      kind: parquet
      path: /data/lake/bars     # relative paths resolve against the universe file's folder
      layout: files             # files: <path>/<SYMBOL>_<timeframe>.parquet (the default)
                                # hive:  <path>/symbol=<SYMBOL>/timeframe=<timeframe>/*.parquet
      columns:                  # our name -> the file's column name (default: the same names)
        timestamp: time
        volume: vol
      timestamp_unit: ms        # only for integer timestamps: s, ms, us or ns since the epoch
      timezone: UTC             # only for timestamps without a zone: the zone they are wall
                                # times of (default UTC); zoned timestamps are already instants
      overlap_bars: 3           # bars before `since` re-read on incremental fetches (default 3)

Timestamps may be Arrow timestamps of any unit, with or without a time zone, or integers since
the epoch (then ``timestamp_unit`` is required: the unit is never guessed). Dates (``date32``)
mean 00:00 UTC of that date, as daily bars are stamped. The timestamp of an intraday bar is its
start.

Reading. The first fetch of a pair (``since=None``) reads the whole file. Later ones read only
the rows from ``overlap_bars`` bars before ``since`` to ``until``: the bounds are pushed down to
the Parquet row groups, read through pyarrow only when their timestamp min/max statistics reach
the window, so the cost follows the rows wanted (and the writer's row-group size) rather than
the file's length. (pyarrow.dataset's own filter does the same pruning, but its scan and
``to_pandas`` cost more than a small read; see :mod:`.reading`.) A file's parsed footer is
kept while its footer bytes stay the same (:mod:`.footers`). Because
markets close (nights, weekends), "3 bars before" is not a fixed duration: the window starts
``overlap_bars`` bar lengths back and is widened until it holds that many earlier bars (or the
file's start). Rows stamped after ``until`` are left for a later run.

Errors (``ProviderError``, naming the file or folder): missing, unreadable or not Parquet,
missing columns, a timestamp column of another type, integer timestamps without a unit.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd

from market_pipeline.domain.timeframes import Timeframe
from market_pipeline.providers.base import (
    MarketDataProvider,
    ProviderConfigError,
    ProviderError,
    check_window,
    register_provider,
)
from market_pipeline.providers.parquet.reading import (
    FILE_COLUMNS,
    TIMESTAMP_UNITS,
    BarSource,
    check_timezone,
    read_window,
)

DEFAULT_OVERLAP_BARS = 3
LAYOUTS = ("files", "hive")
_SAFE_SYMBOL_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-")


@register_provider
class ParquetProvider(MarketDataProvider):
    """Bars from Parquet files (see the module docstring)."""

    kind = "parquet"

    def __init__(
        self,
        *,
        path: str | Path,
        layout: str = "files",
        columns: Mapping[str, str] | None = None,
        timestamp_unit: str | None = None,
        timezone: str = "UTC",
        overlap_bars: int = DEFAULT_OVERLAP_BARS,
    ) -> None:
        if not isinstance(path, (str, Path)) or not str(path).strip():
            raise ValueError(f"path must be a folder name, got {path!r}")
        if layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {', '.join(LAYOUTS)}, got {layout!r}")
        if isinstance(overlap_bars, bool) or not isinstance(overlap_bars, int) or overlap_bars < 0:
            raise ValueError(f"overlap_bars must be a non-negative integer, got {overlap_bars!r}")
        if timestamp_unit is not None and timestamp_unit not in TIMESTAMP_UNITS:
            raise ValueError(
                f"timestamp_unit must be one of {', '.join(TIMESTAMP_UNITS)}, got "
                f"{timestamp_unit!r}"
            )
        self.path = Path(path).expanduser()
        self.layout = layout
        self.column_names = _column_names(columns)
        self.timestamp_unit = timestamp_unit
        self.timezone = check_timezone(timezone)
        self.overlap_bars = overlap_bars
        self._config = {
            "kind": self.kind,
            "path": str(self.path),
            "layout": layout,
            "columns": dict(self.column_names),
            "timestamp_unit": timestamp_unit,
            "timezone": self.timezone,
            "overlap_bars": overlap_bars,
        }

    @classmethod
    def from_config(
        cls, config: Mapping[str, Any], *, base_dir: Path | None = None
    ) -> ParquetProvider:
        """Like the default, but a relative ``path`` resolves against ``base_dir``."""
        if "path" not in config:
            raise ProviderConfigError(
                "provider kind 'parquet' needs a path: the folder of the files or the dataset"
            )
        path = config["path"]
        if isinstance(path, str) and path.strip():
            folder = Path(path.strip()).expanduser()
            if not folder.is_absolute():
                folder = (base_dir if base_dir is not None else Path.cwd()) / folder
            config = {**config, "path": str(folder.resolve())}
        return super().from_config(config, base_dir=base_dir)

    def location_of(self, symbol: str, timeframe: Timeframe | str) -> Path:
        """The file (``files``) or folder (``hive``) holding one pair's bars."""
        if self.layout == "hive":
            return self.path / f"symbol={symbol}" / f"timeframe={timeframe}"
        return self.path / f"{symbol}_{timeframe}.parquet"

    def fetch_bars(
        self,
        symbol: str,
        asset_class: str,
        timeframe: Timeframe,
        *,
        since: datetime | None,
        until: datetime,
    ) -> pd.DataFrame:
        """Rows of the pair's file or partition; ``ts`` as ``datetime64[ns, UTC]``."""
        if not symbol or not set(symbol) <= _SAFE_SYMBOL_CHARS:
            raise ProviderError(
                f"parquet provider: {symbol!r} {timeframe}: symbol cannot name a file"
            )
        since_ts, until_ts = check_window(since, until)
        source = BarSource(
            location=self.location_of(symbol, timeframe),
            columns=self.column_names,
            timestamp_unit=self.timestamp_unit,
            timezone=self.timezone,
            context=f"parquet provider: {symbol} {timeframe}",
            what="folder" if self.layout == "hive" else "file",
        )
        return read_window(
            source,
            since=since_ts,
            until=until_ts,
            bar=pd.Timedelta(seconds=timeframe.seconds),
            overlap_bars=self.overlap_bars,
        )


def _column_names(columns: Mapping[str, str] | None) -> dict[str, str]:
    """Our column name -> the file's, for all six columns (unnamed ones keep our name)."""
    if columns is None:
        columns = {}
    if not isinstance(columns, Mapping):
        raise ValueError(
            f"columns must map our names ({', '.join(FILE_COLUMNS)}) to the file's, got {columns!r}"
        )
    unknown = [key for key in columns if key not in FILE_COLUMNS]
    if unknown:
        raise ValueError(
            f"columns: unknown name(s) {', '.join(repr(k) for k in unknown)}; the names to map "
            f"are {', '.join(FILE_COLUMNS)}"
        )
    for key, value in columns.items():
        if not isinstance(value, str) or not value:
            raise ValueError(f"columns.{key} must be a column name, got {value!r}")
    names = {column: columns.get(column, column) for column in FILE_COLUMNS}
    if len(set(names.values())) != len(names):
        raise ValueError(f"columns: two of our columns map to the same file column: {names}")
    return names
