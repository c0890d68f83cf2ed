"""The csv provider: file naming, formats, incremental reads with overlap, and file errors."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from market_pipeline.domain.timeframes import Timeframe
from market_pipeline.domain.validation import validate_bars
from market_pipeline.providers import (
    CsvFileProvider,
    ProviderConfigError,
    ProviderError,
    build_provider,
)

H1 = Timeframe.parse("1h")
UNTIL = datetime(2024, 3, 12, 0, 0, tzinfo=UTC)
HEADER = "timestamp,open,high,low,close,volume\n"


def bar_lines(count: int, start: str = "2024-03-11T00:00:00Z") -> str:
    first = pd.Timestamp(start)
    return "".join(
        f"{(first + timedelta(hours=i)).isoformat()},"
        f"{100 + i},{102 + i},{99 + i},{101 + i},{10 * i}\n"
        for i in range(count)
    )


def write(folder: Path, text: str, name: str = "AAPL_1h.csv") -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def fetch(folder: Path, since=None, until=UNTIL, symbol="AAPL", **options) -> pd.DataFrame:
    provider = CsvFileProvider(path=folder, **options)
    return provider.fetch_bars(symbol, "equity", H1, since=since, until=until)


def at(hour: int) -> datetime:
    return datetime(2024, 3, 11, hour, tzinfo=UTC)


# --- reading -----------------------------------------------------------------------------------


def test_first_fetch_returns_every_row_of_symbol_timeframe_file(tmp_path):
    write(tmp_path, HEADER + bar_lines(10))
    write(tmp_path, HEADER + bar_lines(3), name="AAPL_1d.csv")

    raw = fetch(tmp_path)

    assert list(raw.columns) == ["ts", "open", "high", "low", "close", "volume"]
    assert len(raw) == 10
    assert raw["close"].iloc[9] == 110


def test_timestamps_are_returned_as_the_file_text_for_validation_to_parse(tmp_path):
    write(tmp_path, HEADER + bar_lines(1))

    raw = fetch(tmp_path)

    assert raw["ts"].iloc[0] == "2024-03-11T00:00:00+00:00"


def test_offsets_are_converted_to_utc_and_naive_timestamps_mean_utc(tmp_path):
    write(
        tmp_path,
        HEADER
        + "2024-03-11T09:30:00-04:00,1,2,0.5,1.5,10\n"
        + "2024-03-11T15:30:00+01:00,1,2,0.5,1.5,10\n"
        + "2024-03-11 16:30:00,1,2,0.5,1.5,10\n",
    )

    bars = validate_bars(fetch(tmp_path), timeframe=H1).bars

    assert list(bars["ts"]) == [
        pd.Timestamp("2024-03-11T13:30:00Z"),
        pd.Timestamp("2024-03-11T14:30:00Z"),
        pd.Timestamp("2024-03-11T16:30:00Z"),
    ]


def test_columns_may_come_in_any_order_with_any_case_and_extras_are_ignored(tmp_path):
    write(
        tmp_path,
        "Volume, Close ,vwap,Low,High,Open,Timestamp\n"
        "10,101,100.5,99,102,100,2024-03-11T00:00:00Z\n",
    )

    raw = fetch(tmp_path)

    assert list(raw.columns) == ["ts", "open", "high", "low", "close", "volume"]
    assert raw.iloc[0].tolist() == ["2024-03-11T00:00:00Z", 100, 102, 99, 101, 10]


def test_rows_stamped_after_until_are_left_for_a_later_run(tmp_path):
    write(tmp_path, HEADER + bar_lines(10))

    raw = fetch(tmp_path, until=at(4))

    assert len(raw) == 5  # 00:00 .. 04:00


def test_bad_cells_reach_validation_as_rows_to_reject_not_a_failed_file(tmp_path):
    write(
        tmp_path,
        HEADER
        + bar_lines(2)
        + "not a time,1,2,0.5,1.5,10\n"
        + "2024-03-11T05:00:00Z,abc,2,0.5,1.5,10\n",
    )

    result = validate_bars(fetch(tmp_path))

    assert result.rejected["unparsable_timestamp"] == 1
    assert result.rejected["missing_price"] == 1
    assert len(result.bars) == 2


def test_header_only_file_gives_no_bars(tmp_path):
    write(tmp_path, HEADER)

    assert fetch(tmp_path).empty


# --- incremental reads -------------------------------------------------------------------------


def test_incremental_fetch_returns_rows_from_since_plus_three_overlap_rows_by_default(tmp_path):
    write(tmp_path, HEADER + bar_lines(24))

    raw = fetch(tmp_path, since=at(10))

    parsed = pd.to_datetime(raw["ts"], utc=True)
    assert parsed.iloc[0] == pd.Timestamp(at(7))  # 07:00, 08:00, 09:00 re-read
    assert parsed.iloc[-1] == pd.Timestamp(at(23))
    assert len(raw) == 17


def test_overlap_counts_rows_present_in_the_file_not_clock_time(tmp_path):
    # Gaps (a weekend, a halt): the overlap still reaches back three bars.
    lines = bar_lines(2, "2024-03-08T20:00:00Z") + bar_lines(2, "2024-03-11T13:00:00Z")
    write(tmp_path, HEADER + lines)

    raw = fetch(tmp_path, since=at(14))

    assert pd.to_datetime(raw["ts"], utc=True).iloc[0] == pd.Timestamp("2024-03-08T20:00:00Z")


def test_overlap_bars_is_configurable_and_zero_means_none(tmp_path):
    write(tmp_path, HEADER + bar_lines(24))

    assert len(fetch(tmp_path, since=at(10), overlap_bars=1)) == 15
    assert len(fetch(tmp_path, since=at(10), overlap_bars=0)) == 14


def test_incremental_fetch_picks_up_rows_appended_since_the_last_run(tmp_path):
    path = write(tmp_path, HEADER + bar_lines(5))
    first = validate_bars(fetch(tmp_path, until=at(23))).bars
    with path.open("a", encoding="utf-8") as handle:
        handle.write(bar_lines(3, "2024-03-11T05:00:00Z"))

    later = validate_bars(fetch(tmp_path, since=first["ts"].iloc[-1], until=at(23))).bars

    assert list(later["ts"]) == [pd.Timestamp(at(h)) for h in range(1, 8)]


def test_incremental_fetch_with_offsets_in_the_file_compares_in_utc(tmp_path):
    write(
        tmp_path,
        HEADER
        + "".join(
            f"2024-03-11T{h:02d}:00:00-04:00,1,2,0.5,1.5,10\n" for h in range(10)
        ),  # 04:00Z .. 13:00Z
    )

    raw = fetch(tmp_path, since=at(10), overlap_bars=0)

    assert raw["ts"].iloc[0] == "2024-03-11T06:00:00-04:00"


def test_unparsable_rows_are_returned_on_incremental_fetches_too(tmp_path):
    write(tmp_path, HEADER + bar_lines(5) + "garbage,1,2,0.5,1.5,10\n")

    raw = fetch(tmp_path, since=at(4), overlap_bars=0)

    assert validate_bars(raw).rejected["unparsable_timestamp"] == 1


def test_out_of_range_timestamp_is_left_for_validation_to_reject(tmp_path):
    write(tmp_path, HEADER + bar_lines(5) + "9999-01-01T00:00:00Z,1,2,0.5,1.5,10\n")

    raw = fetch(tmp_path, since=at(4))

    assert validate_bars(raw).rejected["unparsable_timestamp"] == 1


# --- errors ------------------------------------------------------------------------------------


def test_missing_file_fails_naming_the_file(tmp_path):
    with pytest.raises(ProviderError) as info:
        fetch(tmp_path)

    assert str(tmp_path / "AAPL_1h.csv") in str(info.value)
    assert "does not exist" in str(info.value)
    assert "AAPL 1h" in str(info.value)


def test_empty_file_fails_naming_the_file(tmp_path):
    path = write(tmp_path, "")

    with pytest.raises(ProviderError, match=rf"{path}.* is empty"):
        fetch(tmp_path)


def test_missing_columns_fail_naming_them_and_the_file(tmp_path):
    path = write(tmp_path, "timestamp,open,high,low\n2024-03-11T00:00:00Z,1,2,0.5\n")

    with pytest.raises(ProviderError) as info:
        fetch(tmp_path)

    assert str(path) in str(info.value)
    assert "missing column(s) close, volume" in str(info.value)


def test_file_that_is_not_utf8_fails_as_unreadable(tmp_path):
    (tmp_path / "AAPL_1h.csv").write_bytes(HEADER.encode() + b"\xff\xfe\x00bad,1,2,3,4,5\n")

    with pytest.raises(ProviderError, match="cannot be read"):
        fetch(tmp_path)


def test_malformed_csv_fails_as_unreadable(tmp_path):
    write(tmp_path, HEADER + '2024-03-11T00:00:00Z,1,2,0.5,1.5,10\n"unclosed,1,2,3,4,5\n')

    with pytest.raises(ProviderError, match=r"AAPL_1h\.csv cannot be read"):
        fetch(tmp_path)


def test_directory_in_place_of_the_file_fails(tmp_path):
    (tmp_path / "AAPL_1h.csv").mkdir()

    with pytest.raises(ProviderError, match="is not a regular file"):
        fetch(tmp_path)


def test_naive_since_is_refused(tmp_path):
    write(tmp_path, HEADER + bar_lines(2))

    with pytest.raises(ValueError, match="since must be timezone-aware"):
        fetch(tmp_path, since=datetime(2024, 3, 11))


# --- configuration -----------------------------------------------------------------------------


def test_relative_path_resolves_against_base_dir(tmp_path):
    provider = build_provider({"kind": "csv", "path": "bars"}, base_dir=tmp_path)

    assert provider.config()["path"] == str((tmp_path / "bars").resolve())


def test_missing_path_is_refused():
    with pytest.raises(ProviderConfigError, match="needs a path"):
        build_provider({"kind": "csv"})


def test_negative_overlap_is_refused(tmp_path):
    with pytest.raises(ProviderConfigError, match="overlap_bars must be a non-negative integer"):
        build_provider({"kind": "csv", "path": str(tmp_path), "overlap_bars": -1})


def test_incremental_fetch_of_a_large_file_returns_the_tail_and_its_overlap(tmp_path):
    ts = pd.date_range("2015-01-01", periods=100_000, freq="1min", tz="UTC")
    rows = "".join(f"{t}Z,1.0,2.0,0.5,1.5,3\n" for t in ts.strftime("%Y-%m-%dT%H:%M:%S"))
    write(tmp_path, HEADER + rows)

    raw = fetch(tmp_path, since=ts[-100].to_pydatetime(), until=ts[-1].to_pydatetime())

    assert len(raw) == 103
