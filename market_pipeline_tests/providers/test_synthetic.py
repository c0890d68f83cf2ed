"""The synthetic provider: realistic invariants, sessions, determinism, incremental fetches,
failure injection and speed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pytest

from market_pipeline.domain.timeframes import Timeframe
from market_pipeline.domain.validation import validate_bars
from market_pipeline.providers import (
    ProviderConfigError,
    ProviderError,
    SyntheticProvider,
    build_provider,
)

NEW_YORK = ZoneInfo("America/New_York")
# A Wednesday afternoon in New York, three days after the 2024 switch to daylight saving time
# (Sunday 10 March), so 5m and 15m histories straddle it.
UNTIL = datetime(2024, 3, 13, 19, 47, 12, tzinfo=UTC)
TIMEFRAMES = ["1m", "5m", "15m", "1h", "1d"]
CASES = [("AAPL", "equity"), ("BTC-USD", "crypto"), ("EURUSD", "fx")]


def tf(code: str) -> Timeframe:
    return Timeframe.parse(code)


def fetch(symbol="AAPL", asset_class="equity", timeframe="1h", since=None, until=UNTIL, **opts):
    provider = SyntheticProvider(**opts)
    return provider.fetch_bars(symbol, asset_class, tf(timeframe), since=since, until=until)


@pytest.fixture(scope="module")
def histories() -> dict[tuple[str, str], pd.DataFrame]:
    provider = SyntheticProvider(history_bars=600)
    return {
        (symbol, code): provider.fetch_bars(symbol, asset_class, tf(code), since=None, until=UNTIL)
        for symbol, asset_class in CASES
        for code in TIMEFRAMES
    }


# --- shape and realism -------------------------------------------------------------------------


def test_raw_frame_has_the_interface_columns_and_utc_nanosecond_timestamps():
    bars = fetch()

    assert list(bars.columns) == ["ts", "open", "high", "low", "close", "volume"]
    assert str(bars["ts"].dtype) == "datetime64[ns, UTC]"


def test_whole_history_is_history_bars_long_default_2000():
    assert len(fetch()) == 2000
    assert len(fetch(history_bars=123)) == 123


@pytest.mark.parametrize("symbol,asset_class", CASES)
@pytest.mark.parametrize("code", TIMEFRAMES)
def test_bars_pass_validation_untouched(histories, symbol, asset_class, code):
    bars = histories[(symbol, code)]

    result = validate_bars(bars, timeframe=tf(code))

    assert result.rows_rejected == 0
    assert result.volume_filled == 0
    assert (bars["high"] >= bars[["open", "close"]].max(axis=1)).all()
    assert (bars["low"] <= bars[["open", "close"]].min(axis=1)).all()
    assert (bars[["open", "high", "low", "close"]] > 0).all().all()
    assert (bars["volume"] >= 0).all()
    assert bars["ts"].is_monotonic_increasing and bars["ts"].is_unique


@pytest.mark.parametrize("symbol,asset_class", CASES)
def test_volume_is_mostly_positive_and_varies(histories, symbol, asset_class):
    volume = histories[(symbol, "5m")]["volume"]

    assert (volume > 0).mean() > 0.98
    assert volume.std() > 0


def test_some_intraday_bars_have_zero_volume():
    bars = fetch("BTC-USD", "crypto", "1m", history_bars=20_000)

    assert 0 < (bars["volume"] == 0).sum() < 200


@pytest.mark.parametrize(
    "symbol,asset_class,low,high",
    [
        ("BTC-USD", "crypto", 6_000, 600_000),
        ("EURUSD", "fx", 0.4, 3.0),
        ("AAPL", "equity", 1, 5000),
    ],
)
def test_price_levels_are_sane_for_the_symbol(symbol, asset_class, low, high):
    closes = fetch(symbol, asset_class, "1d")["close"]

    assert closes.between(low, high).all()


def test_returns_look_like_a_random_walk_not_noise_around_a_level():
    closes = fetch("MSFT", "equity", "1m", history_bars=5000)["close"]
    returns = np.log(closes).diff().dropna()

    assert abs(returns.autocorr()) < 0.1
    assert 1e-5 < returns.std() < 5e-3  # per-minute moves of a stock


# --- sessions ----------------------------------------------------------------------------------


@pytest.mark.parametrize("code", ["1m", "5m", "15m", "1h"])
def test_equity_bars_lie_inside_the_new_york_session_on_weekdays(histories, code):
    local = histories[("AAPL", code)]["ts"].dt.tz_convert(NEW_YORK)
    minutes = local.dt.hour * 60 + local.dt.minute

    assert (local.dt.day_of_week < 5).all()
    assert minutes.min() >= 9 * 60 + 30
    assert (minutes + tf(code).seconds // 60).max() <= 16 * 60 + 30  # 1h: 15:30 bar is short
    assert (minutes < 16 * 60).all()


def test_equity_sessions_open_at_0930_new_york_across_the_dst_switch():
    bars = fetch("AAPL", "equity", "15m", history_bars=26 * 6)
    first_bars = bars.groupby(bars["ts"].dt.tz_convert(NEW_YORK).dt.date)["ts"].min()

    opens_utc = {day.isoformat(): ts.strftime("%H:%M") for day, ts in first_bars.items()}
    assert opens_utc["2024-03-08"] == "14:30"  # EST, UTC-5
    assert opens_utc["2024-03-11"] == "13:30"  # EDT, UTC-4
    whole_sessions = first_bars.iloc[1:]  # the history may start mid-session
    assert all(t.tz_convert(NEW_YORK).strftime("%H:%M") == "09:30" for t in whole_sessions)


def test_equity_session_has_390_one_minute_bars_and_7_hourly_bars():
    one_minute = fetch("AAPL", "equity", "1m", history_bars=2000)
    hourly = fetch("AAPL", "equity", "1h", history_bars=70)

    per_day_1m = one_minute.groupby(one_minute["ts"].dt.tz_convert(NEW_YORK).dt.date).size()
    per_day_1h = hourly.groupby(hourly["ts"].dt.tz_convert(NEW_YORK).dt.date).size()
    assert (per_day_1m.iloc[1:-1] == 390).all()  # whole sessions; the ends may be partial
    assert (per_day_1h.iloc[1:-1] == 7).all()
    hours = sorted(set(hourly["ts"].dt.tz_convert(NEW_YORK).dt.strftime("%H:%M")))
    assert hours == ["09:30", "10:30", "11:30", "12:30", "13:30", "14:30", "15:30"]


def test_daily_bars_are_stamped_midnight_utc_on_weekdays_for_equity_and_fx(histories):
    for symbol in ("AAPL", "EURUSD"):
        ts = histories[(symbol, "1d")]["ts"]
        assert (ts == ts.dt.normalize()).all()
        assert (ts.dt.day_of_week < 5).all()


def test_crypto_trades_every_day_around_the_clock(histories):
    daily = histories[("BTC-USD", "1d")]["ts"]
    hourly = histories[("BTC-USD", "1h")]["ts"]

    assert set(daily.dt.day_of_week) == set(range(7))
    assert (hourly.diff().dropna() == pd.Timedelta(hours=1)).all()


def test_fx_pauses_from_friday_2200_to_sunday_2200_utc(histories):
    ts = histories[("EURUSD", "1h")]["ts"]
    week_hour = ts.dt.day_of_week * 24 + ts.dt.hour  # Monday 00:00 = 0

    closed = (week_hour >= 4 * 24 + 22) & (week_hour < 6 * 24 + 22)
    assert not closed.any()
    gaps = ts.diff().dropna()
    assert set(gaps) == {pd.Timedelta(hours=1), pd.Timedelta(hours=49)}


def test_only_bars_complete_at_until_are_returned():
    bars = fetch("BTC-USD", "crypto", "1h")  # UNTIL is 19:47:12: the 19:00 bar is unfinished

    assert bars["ts"].iloc[-1] == pd.Timestamp("2024-03-13T18:00:00Z")


def test_daily_equity_bar_appears_after_the_new_york_close():
    close = datetime(2024, 3, 13, 20, 0, tzinfo=UTC)  # 16:00 New York (EDT)

    before_close = fetch("AAPL", "equity", "1d", until=close - timedelta(minutes=1))
    after_close = fetch("AAPL", "equity", "1d", until=close)

    assert before_close["ts"].iloc[-1] == pd.Timestamp("2024-03-12T00:00:00Z")
    assert after_close["ts"].iloc[-1] == pd.Timestamp("2024-03-13T00:00:00Z")


# --- determinism and incremental fetches -------------------------------------------------------


def test_same_pair_gives_identical_bars_from_separate_providers():
    again = SyntheticProvider().fetch_bars("AAPL", "equity", tf("1h"), since=None, until=UNTIL)

    pd.testing.assert_frame_equal(fetch(), again, check_exact=True)


def test_series_differ_between_symbols_timeframes_and_seeds():
    base = fetch("AAPL")["close"].to_numpy()

    assert not np.array_equal(base, fetch("MSFT")["close"].to_numpy())
    assert not np.array_equal(base, fetch(seed=1)["close"].to_numpy())
    hourly_highs = fetch("AAPL", timeframe="1h")["high"].to_numpy()[-5:]
    assert not np.array_equal(hourly_highs, fetch("AAPL", timeframe="30m")["high"].to_numpy()[-5:])


def test_incremental_fetch_returns_bars_from_since_identical_to_the_full_history():
    full = fetch("AAPL", "equity", "5m")
    since = full["ts"].iloc[1500].to_pydatetime()

    later = fetch("AAPL", "equity", "5m", since=since)

    assert later["ts"].iloc[0] == since
    pd.testing.assert_frame_equal(later, full.iloc[1500:].reset_index(drop=True), check_exact=True)


def test_incremental_fetch_after_time_moves_on_extends_the_history_without_changing_it():
    earlier = fetch("EURUSD", "fx", "15m", until=UNTIL - timedelta(days=2))
    since = earlier["ts"].iloc[-10].to_pydatetime()

    later = fetch("EURUSD", "fx", "15m", since=since)

    overlap = later.iloc[:10].reset_index(drop=True)
    expected = earlier.iloc[-10:].reset_index(drop=True)
    pd.testing.assert_frame_equal(overlap, expected, check_exact=True)
    assert len(later) > 10


def test_since_between_bars_starts_at_the_next_bar():
    since = datetime(2024, 3, 13, 14, 7, 30, tzinfo=UTC)

    bars = fetch("BTC-USD", "crypto", "5m", since=since)

    assert bars["ts"].iloc[0] == pd.Timestamp("2024-03-13T14:10:00Z")


def test_since_after_until_gives_no_bars():
    bars = fetch(since=UNTIL + timedelta(days=1))

    assert bars.empty
    assert list(bars.columns) == ["ts", "open", "high", "low", "close", "volume"]


def test_daily_close_follows_the_same_path_as_intraday_bars():
    after_close = datetime(2024, 3, 13, 21, 0, tzinfo=UTC)
    daily = fetch("AAPL", "equity", "1d", history_bars=3, until=after_close)
    minute = fetch("AAPL", "equity", "1m", history_bars=390, until=after_close)

    assert daily["ts"].iloc[-1] == pd.Timestamp("2024-03-13T00:00:00Z")
    assert minute["ts"].iloc[-1] == pd.Timestamp("2024-03-13T19:59:00Z")  # 15:59 New York
    assert daily["close"].iloc[-1] == pytest.approx(minute["close"].iloc[-1], rel=0.01)
    assert daily["open"].iloc[-1] == pytest.approx(minute["open"].iloc[0], rel=0.01)


def test_naive_until_is_refused():
    with pytest.raises(ValueError, match="until must be timezone-aware"):
        fetch(until=datetime(2024, 3, 13, 12, 0))


def test_window_too_large_for_one_fetch_is_refused_naming_the_pair():
    with pytest.raises(ProviderError, match="BTC-USD 1m: the window"):
        fetch("BTC-USD", "crypto", "1m", since=datetime(1990, 1, 1, tzinfo=UTC))


# --- failure injection -------------------------------------------------------------------------


def test_fail_symbols_raise_a_provider_error_naming_the_pair():
    provider = build_provider({"kind": "synthetic", "fail_symbols": ["XYZ"]})

    with pytest.raises(ProviderError, match="synthetic provider: injected failure for XYZ 1h"):
        provider.fetch_bars("XYZ", "equity", tf("1h"), since=None, until=UNTIL)
    assert len(provider.fetch_bars("AAPL", "equity", tf("1h"), since=None, until=UNTIL)) == 2000


def test_fail_message_is_added_verbatim_to_the_injected_error():
    payload = '<script>alert(1)</script> "quoted" </td>'
    provider = build_provider(
        {"kind": "synthetic", "fail_symbols": ["XYZ"], "fail_message": payload}
    )

    with pytest.raises(ProviderError) as raised:
        provider.fetch_bars("XYZ", "equity", tf("1h"), since=None, until=UNTIL)
    assert str(raised.value) == f"synthetic provider: injected failure for XYZ 1h: {payload}"
    assert build_provider(provider.config()).config()["fail_message"] == payload


def test_fail_message_must_be_text():
    with pytest.raises(ProviderConfigError, match="fail_message must be text"):
        build_provider({"kind": "synthetic", "fail_symbols": ["XYZ"], "fail_message": 3})


def test_bad_row_symbols_get_one_row_of_each_bad_kind_amid_good_rows():
    provider = build_provider({"kind": "synthetic", "bad_row_symbols": ["ABC"]})

    raw = provider.fetch_bars("ABC", "equity", tf("1h"), since=None, until=UNTIL)
    result = validate_bars(raw)

    assert result.rejected == {
        "unparsable_timestamp": 0,
        "missing_price": 1,
        "nonpositive_price": 1,
        "ohlc_violation": 1,
        "negative_volume": 0,
        "duplicate_timestamp": 1,
    }
    assert len(raw) == 2001
    assert len(result.bars) == 1997


def test_bad_rows_appear_in_short_incremental_fetches_too():
    provider = SyntheticProvider(bad_row_symbols=["ABC"])
    since = UNTIL - timedelta(hours=1)

    raw = provider.fetch_bars("ABC", "crypto", tf("5m"), since=since, until=UNTIL)

    assert validate_bars(raw).rows_rejected == 4


def test_other_symbols_are_unaffected_by_bad_row_injection():
    provider = SyntheticProvider(bad_row_symbols=["ABC"])

    raw = provider.fetch_bars("AAPL", "equity", tf("1h"), since=None, until=UNTIL)

    assert validate_bars(raw).rows_rejected == 0


# --- configuration -----------------------------------------------------------------------------


def test_unknown_option_is_refused_listing_the_allowed_ones():
    with pytest.raises(
        ProviderConfigError, match=r"unknown key.*'history'.*history_bars.*grace_seconds"
    ):
        build_provider({"kind": "synthetic", "history": 10})


def test_fail_symbols_must_be_a_list():
    with pytest.raises(ProviderConfigError, match="fail_symbols must be a list of symbols"):
        build_provider({"kind": "synthetic", "fail_symbols": "XYZ"})


def test_config_round_trips_with_defaults_filled_in():
    provider = build_provider({"kind": "synthetic", "fail_symbols": ["B", "A"]})

    assert provider.config() == {
        "kind": "synthetic",
        "history_bars": 2000,
        "seed": 0,
        "fail_symbols": ["A", "B"],
        "bad_row_symbols": [],
    }
    assert build_provider(provider.config()).config() == provider.config()


# --- speed -------------------------------------------------------------------------------------


def test_full_history_of_100_pairs_is_2000_bars_each():
    provider = SyntheticProvider()
    pairs = [
        (f"S{i}", ac, tf(code))
        for i, ac in enumerate(["equity"] * 16 + ["crypto"] * 2 + ["fx"] * 2)
        for code in TIMEFRAMES
    ]

    total = sum(len(provider.fetch_bars(s, ac, t, since=None, until=UNTIL)) for s, ac, t in pairs)

    assert total == 100 * 2000


def test_equity_bars_follow_real_xnys_sessions_holidays_and_early_closes():
    from market_pipeline.domain.exchange_sessions import library_calendar

    since, until = datetime(2026, 11, 1, tzinfo=UTC), datetime(2027, 1, 5, tzinfo=UTC)
    daily = fetch("AAPL", "equity", "1d", since=since, until=until)
    library = library_calendar("XNYS", since.date(), until.date())
    sessions = [d for d in library.sessions.date if d < until.date()]
    assert list(daily["ts"].dt.date) == sessions  # Thanksgiving and Christmas are skipped
    assert datetime(2026, 11, 26).date() not in set(daily["ts"].dt.date)
    hourly = fetch("AAPL", "equity", "1h", since=since, until=until)
    local = hourly["ts"].dt.tz_convert(NEW_YORK)
    per_day = local.groupby(local.dt.date).size()
    # The day after Thanksgiving and Christmas Eve close at 13:00: 09:30 ... 12:30.
    assert per_day[datetime(2026, 11, 27).date()] == 4
    assert per_day[datetime(2026, 12, 24).date()] == 4
    assert per_day[datetime(2026, 11, 30).date()] == 7
    # The early close's daily bar is complete, and fetched, at 13:00 New York = 18:00 UTC.
    friday = datetime(2026, 11, 27, tzinfo=UTC)
    before = fetch(
        "AAPL", "equity", "1d", since=friday, until=datetime(2026, 11, 27, 17, 59, tzinfo=UTC)
    )
    after = fetch(
        "AAPL", "equity", "1d", since=friday, until=datetime(2026, 11, 27, 18, 0, tzinfo=UTC)
    )
    assert (len(before), len(after)) == (0, 1)


def test_before_the_calendar_s_first_year_equities_trade_every_weekday():
    bars = fetch(
        "AAPL",
        "equity",
        "1d",
        since=datetime(1985, 11, 25, tzinfo=UTC),
        until=datetime(1985, 12, 3, tzinfo=UTC),
    )
    # 1985 lies before the XNYS calendar (1990-2035): Thanksgiving is a session there.
    assert [d.day for d in bars["ts"].dt.date] == [25, 26, 27, 28, 29, 2]
