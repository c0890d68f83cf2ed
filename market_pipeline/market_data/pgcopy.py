"""PostgreSQL binary COPY payloads built and read with numpy, without a Python loop per row.

Text COPY needs every float formatted as text (pandas ``to_csv`` of 1M bars takes seconds); the
binary format carries the IEEE doubles and int64 timestamps as they are. A row is an int16 field
count followed by, per field, an int32 byte length (-1 for NULL) and the big-endian value.

Our market-data tables are all shaped ``(symbol, timeframe, ts, float, float, ...)``, and rows come
in chunks of one (symbol, timeframe) pair. Within a chunk, rows that share a NULL pattern share one
fixed layout, so each such group is one numpy structured array written with ``tobytes()``.
Reading back rows of ``(int8 key, timestamptz, float8 NOT NULL, ...)`` is the same in reverse:
every row has one fixed width, so the whole stream is one ``np.frombuffer``.
"""

from __future__ import annotations

import io
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

_HEADER = b"PGCOPY\n\xff\r\n\x00" + (0).to_bytes(4, "big") + (0).to_bytes(4, "big")
_TRAILER = (-1).to_bytes(2, "big", signed=True)
_SIGNATURE = _HEADER[:11]
# PostgreSQL timestamps count microseconds from 2000-01-01 00:00 UTC.
_PG_EPOCH_US = 946_684_800_000_000


@dataclass(frozen=True)
class PairChunk:
    """Rows of one pair: ``ts`` (datetime64, UTC) and ``values`` (n x k float64; NaN -> NULL)."""

    symbol: str
    timeframe: str
    ts: np.ndarray
    values: np.ndarray


def timestamps_to_pg(values: np.ndarray) -> np.ndarray:
    """datetime64 (any unit, UTC) to PostgreSQL's int64 microseconds since 2000-01-01."""
    return values.astype("datetime64[us]").astype(np.int64) - _PG_EPOCH_US


def build_copy_payload(chunks: Iterable[PairChunk]) -> bytes:
    """The binary COPY stream for ``(symbol, timeframe, ts, *values)`` rows of all chunks."""
    out = io.BytesIO()
    out.write(_HEADER)
    for chunk in chunks:
        if len(chunk.ts):
            out.write(_chunk_bytes(chunk))
    out.write(_TRAILER)
    return out.getvalue()


def _chunk_bytes(chunk: PairChunk) -> bytes:
    values = np.asarray(chunk.values, dtype=np.float64)
    _, n_values = values.shape
    if n_values > 62:
        raise ValueError("at most 62 float columns per COPY row")
    null = ~np.isfinite(values)
    ts = timestamps_to_pg(np.asarray(chunk.ts))
    sym = chunk.symbol.encode("utf-8")
    tf = chunk.timeframe.encode("utf-8")
    if not null.any():
        return _block(sym, tf, ts, values, np.zeros(n_values, dtype=bool))
    pattern = null.astype(np.int64) @ (np.int64(1) << np.arange(n_values, dtype=np.int64))
    parts = []
    for code in np.unique(pattern):
        rows = np.flatnonzero(pattern == code)
        parts.append(_block(sym, tf, ts[rows], values[rows], null[rows[0]]))
    return b"".join(parts)


def _block(sym: bytes, tf: bytes, ts: np.ndarray, values: np.ndarray, null: np.ndarray) -> bytes:
    fields = [
        ("n", ">i2"),
        ("l_sym", ">i4"),
        ("sym", f"S{len(sym)}"),
        ("l_tf", ">i4"),
        ("tf", f"S{len(tf)}"),
        ("l_ts", ">i4"),
        ("ts", ">i8"),
    ]
    for j, is_null in enumerate(null):
        fields.append((f"l{j}", ">i4"))
        if not is_null:
            fields.append((f"v{j}", ">f8"))
    block = np.empty(len(ts), dtype=np.dtype(fields))
    block["n"] = 3 + len(null)
    block["l_sym"] = len(sym)
    block["sym"] = sym
    block["l_tf"] = len(tf)
    block["tf"] = tf
    block["l_ts"] = 8
    block["ts"] = ts
    for j, is_null in enumerate(null):
        if is_null:
            block[f"l{j}"] = -1
        else:
            block[f"l{j}"] = 8
            block[f"v{j}"] = values[:, j]
    return block.tobytes()


@dataclass(frozen=True)
class CopiedRows:
    """Rows read from a binary COPY: ``key`` (int64), ``ts`` (datetime64[us], UTC) and ``values``
    (n x k float64), in the order the server sent them."""

    key: np.ndarray
    ts: np.ndarray
    values: np.ndarray


def parse_keyed_rows(payload: bytes, n_values: int) -> CopiedRows:
    """Parse the binary COPY output of ``SELECT <bigint>, <timestamptz>, <k float8 NOT NULL>``.

    Raises ``ValueError`` on anything else (another header, a NULL, a row of other fields), so a
    changed query cannot be misread as numbers.
    """
    if payload[:11] != _SIGNATURE or len(payload) < 21:
        raise ValueError("not a PostgreSQL binary COPY stream")
    extension = int.from_bytes(payload[15:19], "big")
    start = 19 + extension
    if payload[-2:] != _TRAILER:
        raise ValueError("binary COPY stream without its trailer")
    fields = [("n", ">i2"), ("l_key", ">i4"), ("key", ">i8"), ("l_ts", ">i4"), ("ts", ">i8")]
    for j in range(n_values):
        fields += [(f"l{j}", ">i4"), (f"v{j}", ">f8")]
    layout = np.dtype(fields)
    body = memoryview(payload)[start:-2]
    if len(body) % layout.itemsize:
        raise ValueError(
            f"binary COPY rows are not {2 + n_values} non-NULL 8-byte fields each "
            "(a NULL or another column type)"
        )
    rows = np.frombuffer(body, dtype=layout)
    lengths = [rows["l_key"], rows["l_ts"], *(rows[f"l{j}"] for j in range(n_values))]
    if (rows["n"] != 2 + n_values).any() or any((length != 8).any() for length in lengths):
        raise ValueError(f"binary COPY rows are not {2 + n_values} non-NULL 8-byte fields each")
    values = np.empty((len(rows), n_values), dtype=np.float64)
    for j in range(n_values):
        values[:, j] = rows[f"v{j}"]
    ts = (rows["ts"].astype(np.int64) + _PG_EPOCH_US).astype("datetime64[us]")
    return CopiedRows(rows["key"].astype(np.int64), ts, values)
