"""validate_bars: every rejection reason is counted, never stored; clean output shape."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from market_pipeline.domain.timeframes import Timeframe
from market_pipeline.domain.validation import (
    BAR_COLUMNS,
    REJECTION_REASONS,
    BarValidationError,
    validate_bars,
)

T0 = datetime(2024, 3, 11, 13, 30, tzinfo=UTC)


def good_rows(n: int = 3) -> list[dict]:
    return [
        {
            "ts": (T0 + timedelta(hours=i)).isoformat(),
            "open": 100.0 + i,
            "high": 102.0 + i,
            "low": 99.0 + i,
            "close": 101.0 + i,
            "volume": 1000.0,
        }
        for i in range(n)
    ]


def frame(rows: list[dict]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=list(BAR_COLUMNS))


def rejected_only(result, reason: str, count: int = 1) -> None:
    expected = dict.fromkeys(REJECTION_REASONS, 0)
    expected[reason] = count
    assert result.rejected == expected


def test_clean_rows_pass_unchanged_with_utc_nanosecond_timestamps_and_float_columns():
    result = validate_bars(frame(good_rows()))

    assert list(result.bars.columns) == list(BAR_COLUMNS)
    assert str(result.bars["ts"].dtype) == "datetime64[ns, UTC]"
    assert all(result.bars[c].dtype == np.float64 for c in BAR_COLUMNS[1:])
    assert result.bars["ts"].iloc[0] == pd.Timestamp(T0)
    assert result.rows_in == 3 and result.rows_rejected == 0
    rejected_only(result, "missing_price", 0)


def test_every_reason_key_is_present_even_when_zero():
    result = validate_bars(frame(good_rows()))

    assert tuple(result.rejected) == REJECTION_REASONS


def test_output_is_sorted_by_time_with_a_fresh_index():
    raw = frame(list(reversed(good_rows())))
    raw.index = [10, 20, 30]

    bars = validate_bars(raw).bars

    assert bars["ts"].is_monotonic_increasing
    assert list(bars.index) == [0, 1, 2]


def test_offsets_are_converted_to_utc_and_naive_text_means_utc():
    rows = good_rows(2)
    rows[0]["ts"] = "2024-03-11T09:30:00-04:00"
    rows[1]["ts"] = "2024-03-11T14:30:00"

    bars = validate_bars(frame(rows)).bars

    assert list(bars["ts"]) == [
        pd.Timestamp("2024-03-11T13:30:00Z"),
        pd.Timestamp("2024-03-11T14:30:00Z"),
    ]


def test_tz_aware_datetime_column_is_converted_to_utc():
    raw = frame(good_rows(1))
    raw["ts"] = pd.Series([pd.Timestamp("2024-03-11 09:30", tz="America/New_York")])

    bars = validate_bars(raw).bars

    assert bars["ts"].iloc[0] == pd.Timestamp("2024-03-11T13:30:00Z")
    assert str(bars["ts"].dtype) == "datetime64[ns, UTC]"


def test_naive_datetime_column_is_read_as_utc():
    raw = frame(good_rows(1))
    raw["ts"] = pd.Series([pd.Timestamp("2024-03-11 13:30")])

    assert validate_bars(raw).bars["ts"].iloc[0] == pd.Timestamp("2024-03-11T13:30:00Z")


@pytest.mark.parametrize("bad", ["not a time", "", None, "11/03/2024 13:30", "2024-13-45T00:00:00"])
def test_unparsable_timestamp_is_rejected_and_counted(bad):
    rows = good_rows()
    rows[1]["ts"] = bad

    result = validate_bars(frame(rows))

    rejected_only(result, "unparsable_timestamp")
    assert len(result.bars) == 2


def test_timestamp_outside_the_nanosecond_range_is_unparsable():
    rows = good_rows()
    rows[0]["ts"] = "9999-01-01T00:00:00Z"

    rejected_only(validate_bars(frame(rows)), "unparsable_timestamp")


@pytest.mark.parametrize("column", ["open", "high", "low", "close"])
@pytest.mark.parametrize("bad", [float("nan"), None, float("inf"), "n/a"])
def test_missing_or_non_finite_price_is_rejected_and_counted(column, bad):
    rows = good_rows()
    rows[2][column] = bad

    result = validate_bars(frame(rows))

    rejected_only(result, "missing_price")
    assert len(result.bars) == 2


@pytest.mark.parametrize("column", ["open", "high", "low", "close"])
def test_zero_or_negative_price_is_rejected_and_counted(column):
    rows = good_rows()
    rows[0][column] = 0.0
    rows[1][column] = -5.0

    result = validate_bars(frame(rows))

    rejected_only(result, "nonpositive_price", 2)
    assert len(result.bars) == 1


@pytest.mark.parametrize(
    "change",
    [
        {"high": 100.5},  # below the close (101)
        {"high": 99.5, "low": 99.0},  # below the open (100)
        {"low": 100.5},  # above the open
        {"low": 101.5, "high": 102.0},  # above the body
    ],
)
def test_ohlc_invariant_violation_is_rejected_and_counted(change):
    rows = good_rows()
    rows[0].update(change)

    result = validate_bars(frame(rows))

    rejected_only(result, "ohlc_violation")
    assert result.bars["ts"].iloc[0] == pd.Timestamp(T0 + timedelta(hours=1))


def test_flat_bar_with_all_prices_equal_is_valid():
    rows = good_rows(1)
    rows[0].update(open=100.0, high=100.0, low=100.0, close=100.0)

    assert validate_bars(frame(rows)).rows_rejected == 0


def test_negative_volume_is_rejected_and_counted():
    rows = good_rows()
    rows[1]["volume"] = -1.0

    rejected_only(validate_bars(frame(rows)), "negative_volume")


def test_zero_volume_is_valid():
    rows = good_rows()
    rows[1]["volume"] = 0.0

    assert validate_bars(frame(rows)).rows_rejected == 0


def test_missing_volume_keeps_the_bar_with_zero_volume_and_counts_it_as_filled():
    rows = good_rows()
    rows[1]["volume"] = None

    result = validate_bars(frame(rows))

    assert result.rows_rejected == 0
    assert result.bars["volume"].iloc[1] == 0.0
    assert result.volume_filled == 1


def test_duplicated_timestamp_keeps_the_last_row_and_counts_the_others():
    rows = good_rows(2)
    revised = dict(rows[0], close=100.5)
    rows.append(revised)

    result = validate_bars(frame(rows))

    rejected_only(result, "duplicate_timestamp")
    assert len(result.bars) == 2
    assert result.bars["close"].iloc[0] == 100.5


def test_same_instant_written_with_different_offsets_is_a_duplicate():
    rows = good_rows(2)
    rows[1]["ts"] = "2024-03-11T09:30:00-04:00"  # = T0

    rejected_only(validate_bars(frame(rows)), "duplicate_timestamp")


def test_bad_copy_of_a_duplicated_timestamp_does_not_displace_the_good_one():
    rows = good_rows(1)
    rows.append(dict(rows[0], close=float("nan")))

    result = validate_bars(frame(rows))

    rejected_only(result, "missing_price")
    assert result.bars["close"].iloc[0] == 101.0


def test_a_row_breaking_several_rules_is_counted_once_under_the_first():
    rows = good_rows()
    rows[0].update(ts="garbage", close=float("nan"), volume=-1.0)

    result = validate_bars(frame(rows))

    rejected_only(result, "unparsable_timestamp")
    assert result.rows_in == 3


def test_counts_add_up_to_rows_in():
    rows = good_rows(8)
    rows[0]["ts"] = "x"
    rows[1]["open"] = None
    rows[2]["low"] = -1
    rows[3]["high"] = 1.0
    rows[4]["volume"] = -3
    rows.append(dict(rows[5]))

    result = validate_bars(frame(rows))

    assert result.rows_in == 9
    assert result.rows_rejected == 6
    assert len(result.bars) + result.rows_rejected == result.rows_in
    assert all(count == 1 for count in result.rejected.values())


def test_metadata_flattens_the_counts():
    rows = good_rows()
    rows[0]["close"] = None

    metadata = validate_bars(frame(rows)).metadata()

    assert metadata["rows_in"] == 3
    assert metadata["rows_kept"] == 2
    assert metadata["rejected_missing_price"] == 1
    assert metadata["rejected_duplicate_timestamp"] == 0


def test_extra_columns_are_dropped():
    raw = frame(good_rows())
    raw["vwap"] = 1.0

    assert list(validate_bars(raw).bars.columns) == list(BAR_COLUMNS)


def test_numeric_text_prices_are_accepted():
    raw = frame(good_rows()).astype(dict.fromkeys(BAR_COLUMNS[1:], str))

    result = validate_bars(raw)

    assert result.rows_rejected == 0
    assert result.bars["open"].iloc[0] == 100.0


def test_empty_frame_gives_empty_bars_with_the_right_dtypes():
    result = validate_bars(frame([]))

    assert result.rows_in == 0
    assert len(result.bars) == 0
    assert str(result.bars["ts"].dtype) == "datetime64[ns, UTC]"
    assert result.bars["close"].dtype == np.float64


def test_missing_column_raises_naming_it():
    raw = frame(good_rows()).drop(columns=["volume", "low"])

    with pytest.raises(BarValidationError, match=r"missing required column\(s\) low, volume"):
        validate_bars(raw, timeframe=Timeframe.parse("1h"))


def test_numeric_timestamps_are_refused_rather_than_guessed():
    raw = frame(good_rows())
    raw["ts"] = [1710163800, 1710167400, 1710171000]

    with pytest.raises(BarValidationError, match="column ts holds numbers"):
        validate_bars(raw)


def test_a_large_frame_of_valid_bars_is_kept_whole():
    n = 200_000
    ts = pd.date_range("2020-01-01", periods=n, freq="1min", tz="UTC")
    raw = pd.DataFrame(
        {
            "ts": ts.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "open": 10.0,
            "high": 11.0,
            "low": 9.0,
            "close": 10.5,
            "volume": 5.0,
        }
    )

    result = validate_bars(raw)

    assert len(result.bars) == n
