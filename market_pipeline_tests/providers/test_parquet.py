"""The parquet provider: timestamp types, column mapping, both layouts, pushed-down windows."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from market_pipeline.config.universe_file import universe_from_mapping
from market_pipeline.domain.timeframes import Timeframe
from market_pipeline.domain.universe import UniverseError
from market_pipeline.domain.validation import validate_bars
from market_pipeline.providers import ProviderConfigError, ProviderError, build_provider

H1 = Timeframe.parse("1h")
D1 = Timeframe.parse("1d")
UNTIL = datetime(2026, 3, 1, tzinfo=UTC)
STAMPS = pd.date_range("2026-01-05 14:00", periods=200, freq="1h", tz="UTC")


def _prices(n: int, *, scale: float = 1.0) -> dict[str, np.ndarray]:
    close = (100 + np.sin(np.arange(n))) * scale
    return {
        "open": close,
        "high": close + 1,
        "low": close - 1,
        "close": close,
        "volume": np.full(n, 1000.0),
    }


def _write(path: Path, stamps: pa.Array, *, ts_name="timestamp", row_group_size=None, **extra):
    n = len(stamps)
    table = pa.table({ts_name: stamps, **_prices(n), **extra})
    pq.write_table(table, path, row_group_size=row_group_size)


def _provider(folder: Path, **options):
    return build_provider({"kind": "parquet", "path": str(folder), **options})


def _stamp_variants() -> dict[str, tuple[pa.Array, dict]]:
    """The same instants as each kind of timestamp column, with the options it needs."""
    utc_ns = STAMPS.as_unit("ns").asi8
    new_york = STAMPS.tz_convert("America/New_York")
    return {
        "s-utc": (pa.array(STAMPS, type=pa.timestamp("s", tz="UTC")), {}),
        "ms-tokyo": (
            pa.array(STAMPS.tz_convert("Asia/Tokyo"), pa.timestamp("ms", "Asia/Tokyo")),
            {},
        ),
        "us-naive-utc": (pa.array(STAMPS.tz_localize(None), type=pa.timestamp("us")), {}),
        "ns-naive-new-york": (
            pa.array(new_york.tz_localize(None), type=pa.timestamp("ns")),
            {"timezone": "America/New_York"},
        ),
        "epoch-ms": (pa.array(utc_ns // 1_000_000, type=pa.int64()), {"timestamp_unit": "ms"}),
        "epoch-s-int32": (
            pa.array(utc_ns // 1_000_000_000, type=pa.int32()),
            {"timestamp_unit": "s"},
        ),
    }


@pytest.mark.parametrize("variant", sorted(_stamp_variants()))
def test_every_timestamp_type_reads_as_the_same_utc_instants(tmp_path, variant):
    stamps, options = _stamp_variants()[variant]
    _write(tmp_path / "AAPL_1h.parquet", stamps)
    bars = _provider(tmp_path, **options).fetch_bars("AAPL", "equity", H1, since=None, until=UNTIL)
    assert str(bars["ts"].dtype) == "datetime64[ns, UTC]"
    assert list(bars["ts"]) == list(STAMPS)
    np.testing.assert_array_equal(bars["close"].to_numpy(), _prices(len(STAMPS))["close"])


def test_dates_mean_midnight_utc_of_the_date(tmp_path):
    days = pd.date_range("2026-01-05", periods=10, freq="1D")
    _write(tmp_path / "AAPL_1d.parquet", pa.array(days.date, type=pa.date32()))
    bars = _provider(tmp_path).fetch_bars("AAPL", "equity", D1, since=None, until=UNTIL)
    assert list(bars["ts"]) == list(days.tz_localize("UTC"))


def test_mapped_column_names_are_read(tmp_path):
    n = len(STAMPS)
    table = pa.table(
        {
            "t": pa.array(STAMPS, type=pa.timestamp("ms", tz="UTC")),
            "o": _prices(n)["open"],
            "h": _prices(n)["high"],
            "l": _prices(n)["low"],
            "c": _prices(n)["close"],
            "vol": _prices(n)["volume"],
            "vwap": np.zeros(n),
        }
    )
    pq.write_table(table, tmp_path / "BTC-USD_1h.parquet")
    columns = {
        "timestamp": "t",
        "open": "o",
        "high": "h",
        "low": "l",
        "close": "c",
        "volume": "vol",
    }
    bars = _provider(tmp_path, columns=columns).fetch_bars(
        "BTC-USD", "crypto", H1, since=None, until=UNTIL
    )
    assert list(bars.columns) == ["ts", "open", "high", "low", "close", "volume"]
    assert len(bars) == n


def test_a_missing_column_names_the_file_our_name_and_the_mapped_one(tmp_path):
    _write(tmp_path / "AAPL_1h.parquet", pa.array(STAMPS))
    provider = _provider(tmp_path, columns={"volume": "vol"})
    with pytest.raises(ProviderError) as err:
        provider.fetch_bars("AAPL", "equity", H1, since=None, until=UNTIL)
    message = str(err.value)
    assert "AAPL_1h.parquet" in message
    assert "volume (as 'vol')" in message
    assert "found: timestamp, open" in message


def test_integer_timestamps_without_a_unit_are_refused_not_guessed(tmp_path):
    _write(tmp_path / "AAPL_1h.parquet", pa.array(STAMPS.asi8 // 1_000_000))
    with pytest.raises(ProviderError, match="set timestamp_unit"):
        _provider(tmp_path).fetch_bars("AAPL", "equity", H1, since=None, until=UNTIL)


def test_text_timestamps_are_refused_with_the_types_accepted(tmp_path):
    _write(tmp_path / "AAPL_1h.parquet", pa.array(STAMPS.strftime("%Y-%m-%dT%H:%M:%SZ")))
    with pytest.raises(
        ProviderError, match=r"has type (large_)?string; expected an Arrow timestamp"
    ):
        _provider(tmp_path).fetch_bars("AAPL", "equity", H1, since=None, until=UNTIL)


def test_a_missing_file_and_a_file_that_is_not_parquet_name_the_file(tmp_path):
    with pytest.raises(ProviderError, match=r"file .*AAPL_1h.parquet does not exist"):
        _provider(tmp_path).fetch_bars("AAPL", "equity", H1, since=None, until=UNTIL)
    (tmp_path / "AAPL_1h.parquet").write_text("timestamp,open\n")
    with pytest.raises(ProviderError, match=r"AAPL_1h.parquet cannot be read as Parquet"):
        _provider(tmp_path).fetch_bars("AAPL", "equity", H1, since=None, until=UNTIL)


def test_rows_without_a_timestamp_are_returned_for_the_validation_to_count(tmp_path):
    stamps = pa.array([*STAMPS[:5], None, *STAMPS[5:10]], type=pa.timestamp("us", tz="UTC"))
    _write(tmp_path / "AAPL_1h.parquet", stamps)
    provider = _provider(tmp_path)
    for since in (None, STAMPS[8].to_pydatetime()):
        bars = provider.fetch_bars("AAPL", "equity", H1, since=since, until=UNTIL)
        assert validate_bars(bars, timeframe=H1).rejected["unparsable_timestamp"] == 1


def test_the_hive_layout_reads_only_the_pairs_partition(tmp_path):
    frames = []
    for symbol, scale in (("AAPL", 1.0), ("MSFT", 3.0)):
        for timeframe in ("1h", "1d"):
            frame = pd.DataFrame({"timestamp": STAMPS, **_prices(len(STAMPS), scale=scale)})
            frames.append(frame.assign(symbol=symbol, timeframe=timeframe))
    table = pa.Table.from_pandas(pd.concat(frames), preserve_index=False)
    pq.write_to_dataset(table, tmp_path / "lake", partition_cols=["symbol", "timeframe"])
    assert (tmp_path / "lake" / "symbol=MSFT" / "timeframe=1h").is_dir()

    provider = _provider(tmp_path / "lake", layout="hive")
    bars = provider.fetch_bars("MSFT", "equity", H1, since=None, until=UNTIL)
    assert len(bars) == len(STAMPS)
    np.testing.assert_allclose(bars["close"], _prices(len(STAMPS), scale=3.0)["close"])
    with pytest.raises(ProviderError, match=r"folder .*symbol=TSLA/timeframe=1h does not exist"):
        provider.fetch_bars("TSLA", "equity", H1, since=None, until=UNTIL)


def test_an_incremental_fetch_starts_overlap_bars_before_since_across_a_weekend(tmp_path):
    sessions = pd.bdate_range("2026-01-05", "2026-02-27", tz="UTC")  # weekdays only
    _write(tmp_path / "AAPL_1d.parquet", pa.array(sessions, type=pa.timestamp("ms", tz="UTC")))
    monday = pd.Timestamp("2026-02-16", tz="UTC")
    bars = _provider(tmp_path).fetch_bars(
        "AAPL", "equity", D1, since=monday.to_pydatetime(), until=UNTIL
    )
    # Three bars before Monday are Wednesday to Friday: beyond "3 days back" (a weekend).
    assert bars["ts"].iloc[0] == pd.Timestamp("2026-02-11", tz="UTC")
    assert bars["ts"].iloc[-1] == sessions[-1]
    bars = _provider(tmp_path, overlap_bars=0).fetch_bars(
        "AAPL", "equity", D1, since=monday.to_pydatetime(), until=datetime(2026, 2, 18, tzinfo=UTC)
    )
    assert list(bars["ts"]) == list(sessions[(sessions >= monday) & (sessions <= "2026-02-18")])


def _clobber_row_group(path: Path, index: int) -> None:
    """Overwrite the data pages of one row group with garbage, leaving the footer intact."""
    metadata = pq.ParquetFile(path).metadata
    group = metadata.row_group(index)
    raw = bytearray(path.read_bytes())
    for column in range(group.num_columns):
        chunk = group.column(column)
        start = chunk.dictionary_page_offset or chunk.data_page_offset
        raw[start : start + chunk.total_compressed_size] = b"\xff" * chunk.total_compressed_size
    path.write_bytes(bytes(raw))


def test_an_incremental_fetch_never_reads_the_row_groups_before_its_window(tmp_path):
    file = tmp_path / "AAPL_1h.parquet"
    _write(file, pa.array(STAMPS, type=pa.timestamp("ns", tz="UTC")), row_group_size=50)
    _clobber_row_group(file, 0)  # rows 0-49: only a read that decodes them can notice
    provider = _provider(tmp_path)
    with pytest.raises(ProviderError, match="cannot be read"):
        provider.fetch_bars("AAPL", "equity", H1, since=None, until=UNTIL)
    since = STAMPS[180].to_pydatetime()
    bars = provider.fetch_bars("AAPL", "equity", H1, since=since, until=UNTIL)
    assert list(bars["ts"]) == list(STAMPS[177:])


def test_rows_after_until_are_left_for_a_later_run(tmp_path):
    _write(tmp_path / "AAPL_1h.parquet", pa.array(STAMPS))
    until = STAMPS[99].to_pydatetime()
    bars = _provider(tmp_path).fetch_bars("AAPL", "equity", H1, since=None, until=until)
    assert bars["ts"].iloc[-1] == STAMPS[99] and len(bars) == 100


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"layout": "delta"}, "layout must be one of files, hive"),
        ({"timezone": "Mars/Olympus"}, "not a known IANA time zone"),
        ({"timestamp_unit": "minutes"}, "timestamp_unit must be one of s, ms, us, ns"),
        ({"columns": {"time": "t"}}, "unknown name(s) 'time'"),
        ({"columns": {"open": "x", "close": "x"}}, "map to the same file column"),
        ({"overlap_bars": -1}, "overlap_bars must be a non-negative integer"),
    ],
)
def test_bad_options_are_refused_when_the_universe_loads(tmp_path, options, message):
    data = {
        "provider": {"kind": "parquet", "path": "bars", **options},
        "symbols": [{"symbol": "AAPL", "asset_class": "equity"}],
        "timeframes": ["1h"],
    }
    with pytest.raises(UniverseError) as err:
        universe_from_mapping(data, source="u.yaml", base_dir=tmp_path)
    assert "u.yaml: provider" in str(err.value) and message in str(err.value)


def test_a_relative_path_resolves_against_the_universe_folder(tmp_path):
    provider = build_provider({"kind": "parquet", "path": "lake"}, base_dir=tmp_path)
    assert provider.config()["path"] == str((tmp_path / "lake").resolve())
    assert build_provider(provider.config()).config() == provider.config()
    with pytest.raises(ProviderConfigError, match="needs a path"):
        build_provider({"kind": "parquet"})


def test_a_file_rewritten_in_place_is_read_afresh_even_with_the_same_size_and_time(tmp_path):
    # Parsed footers are kept between reads: a rewrite within the file system's time tick
    # must still be seen, revised prices and moved row groups alike.
    file = tmp_path / "AAPL_1h.parquet"
    stamps = pa.array(STAMPS, type=pa.timestamp("ns", tz="UTC"))
    _write(file, stamps, row_group_size=50)
    provider = _provider(tmp_path)
    first = provider.fetch_bars("AAPL", "equity", H1, since=None, until=UNTIL)
    times = (file.stat().st_atime_ns, file.stat().st_mtime_ns)
    revised = pa.table({"timestamp": stamps, **_prices(len(STAMPS), scale=2.0)})
    pq.write_table(revised, file, row_group_size=40)
    os.utime(file, ns=times)
    again = provider.fetch_bars("AAPL", "equity", H1, since=None, until=UNTIL)
    np.testing.assert_allclose(again["close"].to_numpy(), 2 * first["close"].to_numpy())
    since = STAMPS[180].to_pydatetime()
    update = provider.fetch_bars("AAPL", "equity", H1, since=since, until=UNTIL)
    np.testing.assert_allclose(update["close"].to_numpy(), 2 * first["close"].to_numpy()[177:])


def test_rows_appended_since_the_last_read_are_found(tmp_path):
    file = tmp_path / "AAPL_1h.parquet"
    _write(file, pa.array(STAMPS[:150], type=pa.timestamp("ns", tz="UTC")), row_group_size=50)
    provider = _provider(tmp_path)
    since = STAMPS[140].to_pydatetime()
    assert (
        provider.fetch_bars("AAPL", "equity", H1, since=since, until=UNTIL)["ts"].iloc[-1]
        == (STAMPS[149])
    )
    _write(file, pa.array(STAMPS, type=pa.timestamp("ns", tz="UTC")), row_group_size=50)
    bars = provider.fetch_bars("AAPL", "equity", H1, since=since, until=UNTIL)
    assert list(bars["ts"]) == list(STAMPS[137:])


def test_epoch_timestamps_beyond_the_nanosecond_range_are_refused_not_wrapped(tmp_path):
    seconds = STAMPS.as_unit("s").asi8.copy()
    seconds[-1] = 10**11  # the year 5138: as nanoseconds it would overflow
    _write(tmp_path / "AAPL_1h.parquet", pa.array(seconds, type=pa.int64()))
    provider = _provider(tmp_path, timestamp_unit="s")
    with pytest.raises(ProviderError, match=r"AAPL_1h\.parquet: timestamps out of range"):
        provider.fetch_bars("AAPL", "equity", H1, since=None, until=UNTIL)
