"""Per-pair serialization on PostgreSQL: session advisory locks held while a pair is refreshed.

A refresh reads a pair's newest bar and history, fetches, writes bars and then features computed
from what it read. Two runs on the same pairs at once (the daily schedule over a manual backfill,
or two Celery workers) could interleave: one computes features from bars the other replaces
meanwhile, and the stored features no longer equal a full-history computation of the stored bars.
So each chunk of pairs is refreshed under one advisory lock per pair, taken on a connection of
its own: a second run waits for the pairs it shares with the first and then sees its bars.

- Locks are taken in ascending key order and held until the chunk is done, and nothing else is
  waited for while holding them, so two runs never deadlock whatever pairs they share.
- They are session locks: a worker that dies (SIGKILL, OOM) loses its connection and the server
  releases its locks with it; a run never leaves a pair locked.
- The key is (namespace, crc32 of ``SYMBOL|timeframe``): two pairs whose crc32 collide just share
  a lock, which costs waiting, never correctness.

SQLite has one writer per database file and is the single-process default: nothing is locked.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from market_pipeline.domain.partition_keys import key_of

LOCK_NAMESPACE = 0x6D70  # "mp": the first key of every lock, so other users of locks can coexist

Pair = tuple[str, str]


def pair_lock_key(pair: Pair) -> int:
    """The second key of a pair's advisory lock: crc32 of its partition key as a signed int4."""
    value = zlib.crc32(key_of(*pair).encode("utf-8"))
    return value - (1 << 32) if value >= (1 << 31) else value


@contextmanager
def locked_pairs(engine: Engine, pairs: Iterable[Pair]) -> Iterator[None]:
    """Hold the advisory lock of every pair in ``pairs`` (PostgreSQL) for the ``with`` block."""
    keys = sorted({pair_lock_key(p) for p in pairs})
    if engine.dialect.name != "postgresql" or not keys:
        yield
        return
    lock = sa.text("SELECT pg_advisory_lock(:namespace, :key)")
    with engine.connect() as conn:
        try:
            for key in keys:
                conn.execute(lock, {"namespace": LOCK_NAMESPACE, "key": key})
            # Session locks outlive the transaction: end it so the connection is not left
            # idle in a transaction (holding a snapshot) for the whole chunk.
            conn.commit()
            yield
        finally:
            # A pooled connection must go back without the locks.
            conn.rollback()
            conn.execute(sa.text("SELECT pg_advisory_unlock_all()"))
            conn.commit()
