"""Reading binary COPY output: fixed-width rows parsed at once, anything else refused."""

from __future__ import annotations

import io

import numpy as np
import pytest

from market_pipeline.market_data.pgcopy import parse_keyed_rows

pytestmark = pytest.mark.postgres


def _copy_out(pg_engine, query: str) -> bytes:
    raw = pg_engine.raw_connection()
    try:
        out = io.BytesIO()
        raw.cursor().copy_expert(f"COPY ({query}) TO STDOUT (FORMAT binary)", out)
        raw.rollback()
    finally:
        raw.close()
    return out.getvalue()


def test_keys_instants_and_doubles_come_back_as_the_server_sent_them(pg_engine):
    payload = _copy_out(
        pg_engine,
        "SELECT i::int8, timestamptz '2024-03-08 14:30:00.000001+00' + i * interval '1 hour', "
        "i / 3.0::float8, -i::float8 FROM generate_series(1, 5) AS i",
    )
    rows = parse_keyed_rows(payload, 2)
    assert rows.key.tolist() == [1, 2, 3, 4, 5]
    assert str(rows.ts[0]) == "2024-03-08T15:30:00.000001"
    assert rows.values[:, 0].tolist() == [i / 3.0 for i in range(1, 6)]
    assert rows.values[:, 1].tolist() == [-1.0, -2.0, -3.0, -4.0, -5.0]
    assert (
        parse_keyed_rows(
            _copy_out(pg_engine, "SELECT 1::int8, now(), 1.0::float8 WHERE false"), 1
        ).key.size
        == 0
    )


@pytest.mark.parametrize(
    "query",
    [
        "SELECT 1::int8, now(), NULL::float8",  # a NULL: a row of another width
        "SELECT 1::int4, now(), 1.0::float8",  # a 4-byte key
        "SELECT 1::int8, now(), 1.0::float8, 2.0::float8",  # more fields than asked for
    ],
)
def test_rows_of_another_shape_are_refused_not_misread(pg_engine, query):
    with pytest.raises(ValueError, match="non-NULL 8-byte fields"):
        parse_keyed_rows(_copy_out(pg_engine, query), 1)


def test_a_stream_that_is_not_binary_copy_is_refused():
    with pytest.raises(ValueError, match="not a PostgreSQL binary COPY stream"):
        parse_keyed_rows(b"1\t2024-01-01\t1.0\n", 1)
    good_header = b"PGCOPY\n\xff\r\n\x00" + bytes(8)
    with pytest.raises(ValueError, match="trailer"):
        parse_keyed_rows(good_header + np.zeros(3, np.uint8).tobytes(), 1)
