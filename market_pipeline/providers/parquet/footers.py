"""Parsed Parquet footers, kept between reads of a file that has not changed.

An incremental read touches one or two row groups; parsing the footer (schema, row-group
statistics) again on every call, and walking the statistics group by group in Python, would be
a large part of its cost. The footer's bytes are still read every time (two small reads at the
file's end) and the parsed footer reused only when they are the same bytes: file times are too
coarse to tell a file rewritten within the same tick, and equal footer bytes mean the same row
groups at the same offsets whatever else changed.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import BinaryIO

import numpy as np
import pyarrow.parquet as pq

MAX_FOOTERS = 4096
"""Files whose footers are kept (the least recently used go first); a footer is a few KB."""

_MAGIC = b"PAR1"


@dataclass(frozen=True)
class GroupBounds:
    """One column's statistics over the row groups, in the values' stored units."""

    logical_type: str
    """The column's Parquet logical type as lower-case JSON (it says the stored unit)."""
    low: np.ndarray
    high: np.ndarray
    known: np.ndarray
    """False where a group has no min/max, holds nulls, or bounds that are not integers: such
    groups are always read."""


@dataclass
class _Footer:
    raw: bytes
    """The footer's bytes as stored."""
    metadata: pq.FileMetaData
    bounds: dict[str, GroupBounds | None] = field(default_factory=dict)


@dataclass(frozen=True)
class ParquetPart:
    """One open Parquet file and its footer."""

    file: pq.ParquetFile
    footer: _Footer

    @property
    def num_row_groups(self) -> int:
        return self.footer.metadata.num_row_groups

    def bounds(self, name: str) -> GroupBounds | None:
        """The statistics of the column at path ``name`` (None: no such leaf column)."""
        if name not in self.footer.bounds:
            self.footer.bounds[name] = _bounds(self.footer.metadata, name)
        return self.footer.bounds[name]


_footers: OrderedDict[str, _Footer] = OrderedDict()
_lock = threading.Lock()


def open_parquet(path: str, stack: ExitStack) -> ParquetPart:
    """The file at ``path``, closed with ``stack``; its footer is parsed at most once per
    version of the file. Raises what ``open`` and pyarrow raise for a missing file or one that
    is no Parquet."""
    handle = stack.enter_context(open(path, "rb"))  # noqa: SIM115 - closed by the stack
    raw = _footer_bytes(handle)
    with _lock:
        footer = _footers.get(path)
        if footer is not None and raw is not None and footer.raw == raw:
            _footers.move_to_end(path)
        else:
            footer = None
    # pre_buffer coalesces reads for remote stores; on a local disk it only adds work.
    file = pq.ParquetFile(handle, metadata=footer.metadata if footer else None, pre_buffer=False)
    if footer is None:
        footer = _Footer(raw or b"", file.metadata)
        if raw is None:  # no plain footer (encrypted, or no Parquet: pyarrow said so above)
            return ParquetPart(file, footer)
        with _lock:
            _footers[path] = footer
            while len(_footers) > MAX_FOOTERS:
                _footers.popitem(last=False)
    return ParquetPart(file, footer)


def _footer_bytes(handle: BinaryIO) -> bytes | None:
    """The serialized footer: the file ends with it, its length (4 bytes, little-endian) and
    ``PAR1``. None when the file does not end so."""
    size = os.fstat(handle.fileno()).st_size
    if size < 12:
        return None
    handle.seek(-8, os.SEEK_END)
    tail = handle.read(8)
    length = int.from_bytes(tail[:4], "little")
    if tail[4:] != _MAGIC or length > size - 12:
        return None
    handle.seek(-8 - length, os.SEEK_END)
    raw = handle.read(length)
    handle.seek(0)
    return raw


def forget_footers() -> None:
    """Drop every kept footer."""
    with _lock:
        _footers.clear()


def _bounds(metadata: pq.FileMetaData, name: str) -> GroupBounds | None:
    schema = metadata.schema
    index = next((i for i in range(len(schema)) if schema.column(i).path == name), None)
    if index is None:
        return None
    count = metadata.num_row_groups
    low, high = np.zeros(count, dtype=np.int64), np.zeros(count, dtype=np.int64)
    known = np.zeros(count, dtype=bool)
    for number in range(count):
        stats = metadata.row_group(number).column(index).statistics
        if stats is None or not stats.has_min_max or stats.null_count:
            continue
        lo, hi = stats.min_raw, stats.max_raw
        if isinstance(lo, int) and isinstance(hi, int):
            low[number], high[number], known[number] = lo, hi, True
    logical_type = str(schema.column(index).logical_type.to_json()).lower()
    return GroupBounds(logical_type, low, high, known)
