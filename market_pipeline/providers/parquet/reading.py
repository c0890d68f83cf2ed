"""Reading one pair's rows from Parquet with the time bounds pushed down to pyarrow."""

from __future__ import annotations

from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from market_pipeline.providers.base import RAW_COLUMNS, ProviderError
from market_pipeline.providers.parquet.footers import ParquetPart, open_parquet

FILE_COLUMNS = ("timestamp", "open", "high", "low", "close", "volume")
TIMESTAMP_UNITS = ("s", "ms", "us", "ns")
_NS_PER_UNIT = {"s": 1_000_000_000, "ms": 1_000_000, "us": 1_000, "ns": 1}
_WIDEN_FACTOR = 8
_MAX_WIDENINGS = 6
"""Overlap windows grow 8x per retry; after 6 (262,144 bar lengths) the read has no lower bound."""
_NAT = np.iinfo(np.int64).min  # numpy's NaT as int64
_WALL_TIME_MARGIN = pd.Timedelta(days=1)
"""Bounds on wall-clock timestamps are widened by a day (any UTC offset and DST fold fits), and
the rows are trimmed exactly once converted to instants."""


@dataclass(frozen=True)
class BarSource:
    """Where one pair's bars are and how their columns read."""

    location: Path
    columns: dict[str, str]
    timestamp_unit: str | None
    timezone: str
    context: str
    what: str = "file"
    """"file" or "folder": what ``location`` is, for messages."""

    @property
    def where(self) -> str:
        return f"{self.context}: {self.what} {self.location}"


def check_timezone(name: Any) -> str:
    """``name`` if it is an IANA time zone (``UTC``, ``America/New_York``); else ValueError."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"timezone must be an IANA time zone name such as UTC, got {name!r}")
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"timezone {name!r} is not a known IANA time zone (e.g. UTC, America/New_York)"
        ) from None
    return name


def read_window(
    source: BarSource,
    *,
    since: pd.Timestamp | None,
    until: pd.Timestamp,
    bar: pd.Timedelta,
    overlap_bars: int,
) -> pd.DataFrame:
    """The rows stamped up to ``until``, from ``overlap_bars`` distinct timestamps before
    ``since`` on (all of them when ``since`` is None); rows whose timestamp is missing or not a
    valid instant are kept, for the validation to count."""
    with ExitStack() as stack:
        files = _open(source, stack)
        stamps = _TimestampColumn.of(files[0].file.schema_arrow, source)
        until_ns = _ns(until)
        if since is None:
            table, stamp_ns, missing = _read(files, source, stamps, lower=None, upper=until)
            return _frame(table, missing | (stamp_ns <= until_ns))
        since_ns = _ns(since)
        span = bar * max(overlap_bars, 1)
        for attempt in range(_MAX_WIDENINGS + 1):
            lower = None if attempt == _MAX_WIDENINGS else since - span
            table, stamp_ns, missing = _read(files, source, stamps, lower=lower, upper=until)
            low_ns = -(2**63) if lower is None else _ns(lower)
            window = ~missing & (stamp_ns >= low_ns)
            before = np.unique(stamp_ns[window & (stamp_ns < since_ns)])
            if overlap_bars == 0 or len(before) >= overlap_bars or lower is None:
                break
            span *= _WIDEN_FACTOR
        start_ns = since_ns
        if overlap_bars and len(before):
            start_ns = int(before[-min(overlap_bars, len(before))])
        return _frame(table, missing | ((stamp_ns >= start_ns) & (stamp_ns <= until_ns)))


def _ns(value: pd.Timestamp) -> int:
    return int(value.as_unit("ns").value)


def _frame(table: dict[str, np.ndarray], keep: np.ndarray) -> pd.DataFrame:
    """The kept rows as the raw frame (``ts`` ``datetime64[ns, UTC]``, NaT where missing).

    Built from numpy arrays: pyarrow's ``to_pandas`` costs more than reading a row group.
    The arrays may be read-only views of Arrow's buffers: unless the mask copied them, the
    frame takes copies."""
    whole = bool(keep.all())
    if not whole:
        table = {name: values[keep] for name, values in table.items()}
    columns: dict[str, Any] = dict(table)
    columns["ts"] = pd.DatetimeIndex(table["ts"], tz="UTC").array
    return pd.DataFrame(columns, copy=whole)


def _open(source: BarSource, stack: ExitStack) -> list[ParquetPart]:
    """The Parquet files of the pair: the file itself, or every file under its folder (closed
    with ``stack``)."""
    where = source.where
    if not source.location.exists():
        raise ProviderError(f"{where} does not exist")
    try:
        paths = (
            sorted(ds.dataset(str(source.location), format="parquet").files)
            if source.location.is_dir()
            else [str(source.location)]
        )
        files = [open_parquet(path, stack) for path in paths]
    except (pa.ArrowInvalid, OSError) as exc:
        raise ProviderError(f"{where} cannot be read as Parquet: {_short(exc)}") from None
    if not files:
        raise ProviderError(f"{where} holds no Parquet file")
    return files


@dataclass(frozen=True)
class _TimestampColumn:
    """The timestamp column's Arrow type, and how bounds and values convert to and from it."""

    name: str
    type: pa.DataType
    kind: str  # "zoned", "wall", "date" or "epoch"
    unit: str
    timezone: str

    @classmethod
    def of(cls, schema: pa.Schema, source: BarSource) -> _TimestampColumn:
        where = source.where
        missing = [
            f"{ours} (as {theirs!r})" if ours != theirs else ours
            for ours, theirs in source.columns.items()
            if theirs not in schema.names
        ]
        if missing:
            raise ProviderError(
                f"{where} is missing column(s) {', '.join(missing)} "
                f"(found: {', '.join(schema.names) or 'none'})"
            )
        name = source.columns["timestamp"]
        kind_type = schema.field(name).type
        if pa.types.is_timestamp(kind_type):
            kind = "zoned" if kind_type.tz else "wall"
            return cls(name, kind_type, kind, kind_type.unit, kind_type.tz or source.timezone)
        if pa.types.is_date(kind_type):
            return cls(name, kind_type, "date", "s", "UTC")
        if pa.types.is_integer(kind_type):
            if source.timestamp_unit is None:
                raise ProviderError(
                    f"{where}: column {name!r} holds integers ({kind_type}); set "
                    f"timestamp_unit ({', '.join(TIMESTAMP_UNITS)}) in the provider block to say "
                    "what they count since the epoch"
                )
            return cls(name, kind_type, "epoch", source.timestamp_unit, "UTC")
        raise ProviderError(
            f"{where}: column {name!r} has type {kind_type}; expected an Arrow timestamp (any "
            "unit, with or without a time zone), a date, or integers since the epoch"
        )

    def bound_ns(self, instant: pd.Timestamp, *, side: int) -> int:
        """``instant`` in nanoseconds on the column's own clock, for row-group statistics;
        ``side`` -1 for a lower bound, +1 for an upper one (wall times are widened)."""
        if self.kind == "wall":
            wall = instant.tz_convert(self.timezone).tz_localize(None) + side * _WALL_TIME_MARGIN
            return int(wall.as_unit("ns").value)
        return int(instant.as_unit("ns").value)

    def nanoseconds(self, column: pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
        """The column as UTC nanoseconds since the epoch (NaT's value where missing), and
        where values are missing or no instant."""
        if column.null_count == 0 and (
            self.kind in ("zoned", "epoch") or (self.kind == "wall" and self.timezone == "UTC")
        ):
            # Already UTC counts of one unit: scaled in numpy, which costs less than Arrow's
            # casts on a small read; values that would overflow take Arrow's path, which says so.
            raw = pc.cast(column, pa.int64()).to_numpy()
            factor = _NS_PER_UNIT[self.unit]
            limit = (2**63 - 1) // factor
            if not len(raw) or (raw.min() >= -limit and raw.max() <= limit):
                return raw * factor, np.zeros(len(raw), dtype=bool)
        instants = self.instants(column)
        missing = pc.is_null(instants).to_numpy(zero_copy_only=False)
        stamp_ns = pc.fill_null(pc.cast(instants, pa.int64()), _NAT).to_numpy(zero_copy_only=False)
        return stamp_ns, missing

    def instants(self, column: pa.ChunkedArray) -> pa.ChunkedArray:
        """The column as Arrow ``timestamp[ns, UTC]``; values that are no instant become null.

        Done in Arrow (one cast) rather than pandas: on an incremental read of a few rows the
        conversions would otherwise cost more than the read."""
        utc_ns = pa.timestamp("ns", tz="UTC")
        if self.kind == "epoch":
            return pc.cast(pc.cast(column, pa.int64()), pa.timestamp(self.unit)).cast(utc_ns)
        if self.kind == "date":
            return pc.cast(column, pa.timestamp("s")).cast(utc_ns)
        if self.kind == "zoned" or self.timezone == "UTC":
            return pc.cast(column, pa.timestamp(self.unit, tz="UTC")).cast(utc_ns)
        # Wall times of another zone: pandas turns the nonexistent and ambiguous ones into NaT
        # (Arrow's assume_timezone can only raise or pick one).
        local = column.to_pandas().astype("datetime64[ns]")
        utc = local.dt.tz_localize(self.timezone, ambiguous="NaT", nonexistent="NaT")
        return pa.chunked_array([pa.array(utc.dt.tz_convert("UTC"), type=utc_ns)])


def _read(
    files: list[ParquetPart],
    source: BarSource,
    stamps: _TimestampColumn,
    *,
    lower: pd.Timestamp | None,
    upper: pd.Timestamp,
) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """The rows of ``files`` that may lie between the bounds, as a raw table, with their
    timestamps in ns since the epoch and where they are missing (the caller trims exactly).

    The pushdown: only the row groups whose timestamp statistics may hold rows in the window
    are read (groups without statistics, or with null timestamps, always are)."""
    names = [source.columns[c] for c in FILE_COLUMNS]
    try:
        pieces = [
            part.file.read_row_groups(groups, columns=names, use_threads=False)
            for part in files
            if (groups := _groups_in_window(part, stamps, lower, upper))
        ]
        if len(pieces) == 1:
            table = pieces[0].select(names)
        else:
            table = (
                pa.concat_tables(pieces) if pieces else files[0].file.schema_arrow.empty_table()
            ).select(names)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OSError) as exc:
        raise ProviderError(f"{source.where} cannot be read: {_short(exc)}") from None
    try:
        stamp_ns, missing = stamps.nanoseconds(table.column(stamps.name))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise ProviderError(f"{source.where}: timestamps out of range: {_short(exc)}") from None
    columns = {"ts": stamp_ns.view("datetime64[ns]")}
    for ours, raw in zip(FILE_COLUMNS[1:], RAW_COLUMNS[1:], strict=True):
        columns[raw] = table.column(source.columns[ours]).to_numpy(zero_copy_only=False)
    return columns, stamp_ns, missing


def _groups_in_window(
    part: ParquetPart,
    stamps: _TimestampColumn,
    lower: pd.Timestamp | None,
    upper: pd.Timestamp,
) -> list[int]:
    bounds = part.bounds(stamps.name)
    if bounds is None:
        return list(range(part.num_row_groups))
    per_raw = _ns_per_stored_unit(bounds.logical_type, stamps)
    high = stamps.bound_ns(upper, side=1) // per_raw
    reaches = bounds.low <= high
    if lower is not None:
        reaches &= bounds.high >= stamps.bound_ns(lower, side=-1) // per_raw
    return np.flatnonzero(reaches | ~bounds.known).tolist()


def _ns_per_stored_unit(logical_type: str, stamps: _TimestampColumn) -> int:
    """Nanoseconds in one unit of the values as stored (Parquet keeps timestamp[s] in ms)."""
    if stamps.kind == "epoch":
        return _NS_PER_UNIT[stamps.unit]
    if stamps.kind == "date":
        return 86_400 * 1_000_000_000
    for word, ns in (("nanos", 1), ("micros", 1_000), ("millis", 1_000_000)):
        if word in logical_type:
            return ns
    return _NS_PER_UNIT[stamps.unit]


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
