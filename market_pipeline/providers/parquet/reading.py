"""Reading one pair's rows from Parquet with the time bounds pushed down to pyarrow."""

from __future__ import annotations

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

FILE_COLUMNS = ("timestamp", "open", "high", "low", "close", "volume")
TIMESTAMP_UNITS = ("s", "ms", "us", "ns")
_NS_PER_UNIT = {"s": 1_000_000_000, "ms": 1_000_000, "us": 1_000, "ns": 1}
_WIDEN_FACTOR = 8
_MAX_WIDENINGS = 6
"""Overlap windows grow 8x per retry; after 6 (262,144 bar lengths) the read has no lower bound."""
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
    dataset = _open(source)
    stamps = _TimestampColumn.of(dataset.schema, source)
    if since is None:
        frame = _read(dataset, source, stamps, lower=None, upper=until)
        return _trim(frame, lower=None, upper=until)
    span = bar * max(overlap_bars, 1)
    for attempt in range(_MAX_WIDENINGS + 1):
        lower = None if attempt == _MAX_WIDENINGS else since - span
        frame = _read(dataset, source, stamps, lower=lower, upper=until)
        earlier = frame["ts"][frame["ts"] < since]  # NaT never compares below
        before = np.unique(earlier.dt.tz_localize(None).to_numpy("datetime64[ns]"))
        if overlap_bars == 0 or len(before) >= overlap_bars or lower is None:
            break
        span *= _WIDEN_FACTOR
    start = since
    if overlap_bars and len(before):
        start = pd.Timestamp(before[-min(overlap_bars, len(before))], tz="UTC")
    return _trim(frame, lower=start, upper=until)


def _trim(frame: pd.DataFrame, *, lower: pd.Timestamp | None, upper: pd.Timestamp) -> pd.DataFrame:
    instants = frame["ts"]
    keep = instants.isna() | (instants <= upper)
    if lower is not None:
        keep &= instants.isna() | (instants >= lower)
    return frame.loc[keep.to_numpy()].reset_index(drop=True)


def _open(source: BarSource) -> ds.Dataset:
    where = source.where
    if not source.location.exists():
        raise ProviderError(f"{where} does not exist")
    try:
        return ds.dataset(str(source.location), format="parquet")
    except (pa.ArrowInvalid, OSError) as exc:
        raise ProviderError(f"{where} cannot be read as Parquet: {_short(exc)}") from None


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

    def bound(self, instant: pd.Timestamp, *, side: int) -> pa.Scalar:
        """``instant`` as a scalar of the column's type; ``side`` -1 for a lower bound, +1
        for an upper one (wall times are widened, dates rounded outwards)."""
        if self.kind == "wall":
            wall = instant.tz_convert(self.timezone).tz_localize(None) + side * _WALL_TIME_MARGIN
            return pa.scalar(wall.as_unit("ns").value // _NS_PER_UNIT[self.unit]).cast(self.type)
        if self.kind == "date":
            day = instant.tz_convert("UTC").normalize().tz_localize(None)
            return pa.scalar(day.date(), type=pa.date32()).cast(self.type)
        value = instant.as_unit("ns").value // _NS_PER_UNIT[self.unit]
        if self.kind == "epoch":
            return pa.scalar(value, type=self.type)
        return pa.scalar(value).cast(pa.timestamp(self.unit)).cast(self.type)

    def instants(self, column: pa.ChunkedArray) -> pd.Series:
        """The column as ``datetime64[ns, UTC]``; values that are no instant become NaT."""
        return self._instants(column).astype("datetime64[ns, UTC]")

    def _instants(self, column: pa.ChunkedArray) -> pd.Series:
        if self.kind == "epoch":
            counts = pc.cast(column, pa.int64())
            return _series(pc.cast(counts, pa.timestamp(self.unit))).dt.tz_localize("UTC")
        if self.kind == "date":
            casted = pc.cast(column, pa.timestamp("s"))
            return _series(casted).dt.tz_localize("UTC")
        if self.kind == "zoned":
            return _series(column).dt.tz_convert("UTC")
        return (
            _series(column)
            .dt.tz_localize(self.timezone, ambiguous="NaT", nonexistent="NaT")
            .dt.tz_convert("UTC")
        )


def _series(column: pa.ChunkedArray) -> pd.Series:
    series = column.to_pandas()
    if series.dt.tz is not None:
        return series.astype(f"datetime64[ns, {series.dt.tz}]")
    return series.astype("datetime64[ns]")


def _read(
    dataset: ds.Dataset,
    source: BarSource,
    stamps: _TimestampColumn,
    *,
    lower: pd.Timestamp | None,
    upper: pd.Timestamp,
) -> pd.DataFrame:
    field = ds.field(stamps.name)
    wanted = field <= stamps.bound(upper, side=1)
    if lower is not None:
        wanted &= field >= stamps.bound(lower, side=-1)
    # Rows without a timestamp pass, so that the validation counts them instead of them vanishing.
    expression = wanted | field.is_null()
    names = [source.columns[c] for c in FILE_COLUMNS]
    try:
        table = dataset.to_table(columns=names, filter=expression)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OSError) as exc:
        raise ProviderError(f"{source.where} cannot be read: {_short(exc)}") from None
    frame = pd.DataFrame({"ts": stamps.instants(table.column(stamps.name))})
    for ours, raw in zip(FILE_COLUMNS[1:], RAW_COLUMNS[1:], strict=True):
        frame[raw] = table.column(source.columns[ours]).to_pandas()
    return frame


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
