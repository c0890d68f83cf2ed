"""Bars from CSV files, one per pair: ``<path>/<SYMBOL>_<timeframe>.csv`` (e.g. ``AAPL_1h.csv``).

Provider block::

    provider:
      kind: csv
      path: /data/bars          # relative paths resolve against the universe file's folder
      overlap_bars: 3           # rows before `since` re-read on incremental fetches (default 3)

File format: a header row naming at least ``timestamp,open,high,low,close,volume`` (any order;
names are matched case-insensitively and ignoring surrounding spaces; other columns are
ignored), then one row per bar. Timestamps are ISO 8601, converted to UTC: with an offset
(``2024-03-11T09:30:00-04:00``, ``...Z``) or without one, which means UTC. The timestamp of an
intraday bar is its start; daily bars should be stamped 00:00 UTC of their session date.

Reading. The first materialization of a pair (``since=None``) returns the whole file. Later ones
(``since`` set) return the rows stamped at or after ``since`` plus the ``overlap_bars`` rows just
before it, because vendors revise their latest bars after the fact; storage upserts them. Rows
whose timestamp cannot be parsed are always returned (as-is) so that the validation counts them
instead of them vanishing. Rows stamped after ``until`` are left for a later run. The whole file is
read each time (a CSV cannot be searched by time); pandas' C parser reads only the needed columns.

Errors (``ProviderError``, naming the file): missing file, unreadable file (permissions, not
UTF-8, malformed CSV), empty file (no header), missing columns.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from market_pipeline.domain.timeframes import Timeframe
from market_pipeline.domain.validation import parse_timestamps
from market_pipeline.providers.base import (
    RAW_COLUMNS,
    MarketDataProvider,
    ProviderConfigError,
    ProviderError,
    check_window,
    register_provider,
)

DEFAULT_OVERLAP_BARS = 3
FILE_COLUMNS = ("timestamp", "open", "high", "low", "close", "volume")
_NUMERIC_COLUMNS = FILE_COLUMNS[1:]
_SAFE_SYMBOL = re.compile(r"^[A-Za-z0-9._-]+$")


@register_provider
class CsvFileProvider(MarketDataProvider):
    """Bars from ``<path>/<SYMBOL>_<timeframe>.csv`` (see the module docstring)."""

    kind = "csv"

    def __init__(self, *, path: str | Path, overlap_bars: int = DEFAULT_OVERLAP_BARS) -> None:
        if not isinstance(path, (str, Path)) or not str(path).strip():
            raise ValueError(f"path must be a folder name, got {path!r}")
        if isinstance(overlap_bars, bool) or not isinstance(overlap_bars, int) or overlap_bars < 0:
            raise ValueError(f"overlap_bars must be a non-negative integer, got {overlap_bars!r}")
        self.path = Path(path).expanduser()
        self.overlap_bars = overlap_bars
        self._config = {"kind": self.kind, "path": str(self.path), "overlap_bars": overlap_bars}

    @classmethod
    def from_config(
        cls, config: Mapping[str, Any], *, base_dir: Path | None = None
    ) -> CsvFileProvider:
        """Like the default, but a relative ``path`` resolves against ``base_dir`` (the
        universe file's folder), or the current directory when None."""
        if "path" not in config:
            raise ProviderConfigError(
                "provider kind 'csv' needs a path: the folder holding <SYMBOL>_<timeframe>.csv"
            )
        path = config["path"]
        if isinstance(path, str) and path.strip():
            folder = Path(path.strip()).expanduser()
            if not folder.is_absolute():
                folder = (base_dir if base_dir is not None else Path.cwd()) / folder
            config = {**config, "path": str(folder.resolve())}
        return super().from_config(config, base_dir=base_dir)

    def file_for(self, symbol: str, timeframe: Timeframe | str) -> Path:
        """The file holding the bars of one pair."""
        return self.path / f"{symbol}_{timeframe}.csv"

    def fetch_bars(
        self,
        symbol: str,
        asset_class: str,
        timeframe: Timeframe,
        *,
        since: datetime | None,
        until: datetime,
    ) -> pd.DataFrame:
        """Rows of the pair's file; ``ts`` holds the file's timestamp text, unparsed."""
        if not _SAFE_SYMBOL.match(symbol):
            raise ProviderError(f"csv provider: {symbol!r} {timeframe}: symbol cannot name a file")
        since_ts, until_ts = check_window(since, until)
        file = self.file_for(symbol, timeframe)
        frame = _read_bars_file(file, f"csv provider: {symbol} {timeframe}")
        if frame.empty:
            return frame
        parsed = parse_timestamps(frame["ts"])  # the same rules as the validation
        instants = parsed.dt.tz_localize(None).to_numpy("datetime64[ns]")
        unparsable = np.isnat(instants)
        keep = instants <= _naive_utc(until_ts)
        if since_ts is not None:
            keep &= instants >= self._overlap_start(instants, _naive_utc(since_ts))
        keep |= unparsable
        return frame.loc[keep].reset_index(drop=True)

    def _overlap_start(self, instants: np.ndarray, since: np.datetime64) -> np.datetime64:
        """``since`` moved back over the ``overlap_bars`` distinct timestamps just before it."""
        if self.overlap_bars == 0:
            return since
        before = np.unique(instants[instants < since])  # sorted; NaT never compares below
        if len(before) == 0:
            return since
        return before[max(0, len(before) - self.overlap_bars)]


def _naive_utc(value: pd.Timestamp) -> np.datetime64:
    return np.datetime64(value.tz_convert("UTC").tz_localize(None).as_unit("ns").value, "ns")


def _read_bars_file(file: Path, context: str) -> pd.DataFrame:
    """The file's six columns renamed to :data:`RAW_COLUMNS`, timestamps as text."""
    where = f"{context}: file {file}"
    if not file.exists():
        raise ProviderError(f"{where} does not exist")
    if not file.is_file():
        raise ProviderError(f"{where} is not a regular file")
    try:
        header = pd.read_csv(file, nrows=0, encoding="utf-8")
    except pd.errors.EmptyDataError:
        raise ProviderError(
            f"{where} is empty (expected a header row {','.join(FILE_COLUMNS)})"
        ) from None
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, ValueError) as exc:
        raise ProviderError(f"{where} cannot be read: {_short(exc)}") from None
    names = {str(name).strip().lower(): name for name in header.columns}
    missing = [column for column in FILE_COLUMNS if column not in names]
    if missing:
        found = ", ".join(str(c) for c in header.columns) or "none"
        raise ProviderError(f"{where} is missing column(s) {', '.join(missing)} (found: {found})")
    usecols = [names[column] for column in FILE_COLUMNS]
    rename = {names[column]: raw for column, raw in zip(FILE_COLUMNS, RAW_COLUMNS, strict=True)}
    # Fast path: numbers as float64. A cell that is not a number makes the C parser refuse the
    # file; then read the numbers as text and let the validation reject those rows one by one.
    dtypes: dict[str, Any] = {names["timestamp"]: str}
    try:
        frame = pd.read_csv(
            file,
            usecols=usecols,
            encoding="utf-8",
            dtype={**dtypes, **{names[c]: "float64" for c in _NUMERIC_COLUMNS}},
        )
    except ValueError as exc:
        if isinstance(exc, UnicodeDecodeError):
            raise ProviderError(f"{where} cannot be read: {_short(exc)}") from None
        try:
            frame = pd.read_csv(file, usecols=usecols, encoding="utf-8", dtype=str)
        except (OSError, UnicodeDecodeError, pd.errors.ParserError, ValueError) as inner:
            raise ProviderError(f"{where} cannot be read: {_short(inner)}") from None
    except (OSError, pd.errors.ParserError) as exc:
        raise ProviderError(f"{where} cannot be read: {_short(exc)}") from None
    return frame.rename(columns=rename)[list(RAW_COLUMNS)]


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
