"""Quant features: checked against TA-Lib on real daily data, by hand and against references.

Real data (installs from PyPI, no network at test time): S&P 500 daily bars 1999-2018 from
``arch.data.sp500`` and AAPL daily bars 2000-2013 from ``bokeh_sampledata.stocks``.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import talib
from numpy.lib.stride_tricks import sliding_window_view

from market_pipeline.domain.features import (
    FEATURE_COLUMNS,
    compute_features,
    compute_features_many,
    compute_features_stacked,
)

RTOL = 1e-9


# --------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------


def _sp500() -> pd.DataFrame:
    from arch.data import sp500

    raw = sp500.load()
    return pd.DataFrame(
        {
            "ts": pd.DatetimeIndex(raw.index).tz_localize("UTC"),
            "open": raw["Open"].to_numpy(float),
            "high": raw["High"].to_numpy(float),
            "low": raw["Low"].to_numpy(float),
            "close": raw["Close"].to_numpy(float),
            "volume": raw["Volume"].to_numpy(float),
        }
    )


def _aapl() -> pd.DataFrame:
    from bokeh_sampledata import stocks

    raw = stocks.AAPL  # unadjusted prices: the 2005 split is a real-data jump, fine for these
    return pd.DataFrame(
        {
            "ts": pd.to_datetime(raw["date"]).tz_localize("UTC"),
            **{
                name: np.asarray(raw[name], dtype=float)
                for name in ("open", "high", "low", "close", "volume")
            },
        }
    )


DATASETS = {"sp500": _sp500, "aapl": _aapl}


@pytest.fixture(scope="module", params=sorted(DATASETS))
def real(request: pytest.FixtureRequest) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(bars, features) for one real daily equity series."""
    bars = DATASETS[request.param]()
    assert len(bars) > 3000 and bars["ts"].is_monotonic_increasing
    return bars, compute_features(bars, asset_class="equity", timeframe="1d")


def _bars(close, *, high=None, low=None, volume=None, ts=None, freq="1D") -> pd.DataFrame:
    close = np.asarray(close, dtype=float)
    n = len(close)
    if ts is None:
        ts = pd.date_range("2024-01-01", periods=n, freq=freq, tz="UTC")
    return pd.DataFrame(
        {
            "ts": ts,
            "open": close,
            "high": close if high is None else np.asarray(high, float),
            "low": close if low is None else np.asarray(low, float),
            "close": close,
            "volume": np.full(n, 1000.0) if volume is None else np.asarray(volume, float),
        }
    )


def _assert_close(actual, expected, *, rtol=RTOL, atol=0.0) -> None:
    """Equal within tolerance, with NaN exactly where the reference has NaN."""
    actual, expected = np.asarray(actual, float), np.asarray(expected, float)
    np.testing.assert_array_equal(np.isnan(actual), np.isnan(expected))
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol)


def _assert_no_inf(features: pd.DataFrame) -> None:
    assert not np.isinf(features[list(FEATURE_COLUMNS)].to_numpy()).any()


def _first_valid(values) -> int:
    return int(np.flatnonzero(~np.isnan(np.asarray(values, float)))[0])


# --------------------------------------------------------------------------------------------
# Contract
# --------------------------------------------------------------------------------------------


def test_feature_columns_are_the_stored_contract():
    assert FEATURE_COLUMNS == (
        "simple_return", "log_return", "volatility_20", "sma_20", "sma_50", "ema_12", "ema_26",
        "rsi_14", "macd", "macd_signal", "macd_hist", "bb_upper", "bb_middle", "bb_lower",
        "atr_14", "obv", "vwap", "zscore_20",
    )  # fmt: skip


def test_output_has_ts_and_float_features_in_input_order_and_index(real):
    bars, features = real
    assert list(features.columns) == ["ts", *FEATURE_COLUMNS]
    assert (features.dtypes[list(FEATURE_COLUMNS)] == np.float64).all()
    assert features.index.equals(bars.index)
    assert features["ts"].equals(bars["ts"])


def test_no_inf_on_real_data(real):
    _assert_no_inf(real[1])


# --------------------------------------------------------------------------------------------
# Against TA-Lib on real data
# --------------------------------------------------------------------------------------------


def test_sma_matches_talib(real):
    bars, features = real
    close = bars["close"].to_numpy()
    _assert_close(features["sma_20"], talib.SMA(close, 20))
    _assert_close(features["sma_50"], talib.SMA(close, 50))


def test_ema_is_sma_seeded_like_talib(real):
    bars, features = real
    close = bars["close"].to_numpy()
    for n in (12, 26):
        _assert_close(features[f"ema_{n}"], talib.EMA(close, n))
        assert _first_valid(features[f"ema_{n}"]) == n - 1
        assert features[f"ema_{n}"].iloc[n - 1] == pytest.approx(close[:n].mean(), rel=1e-12)


def test_rsi_matches_talib_wilder(real):
    bars, features = real
    _assert_close(features["rsi_14"], talib.RSI(bars["close"].to_numpy(), 14))
    assert _first_valid(features["rsi_14"]) == 14


def test_macd_matches_talib_after_its_warm_up(real):
    # TA-Lib seeds MACD's fast EMA at bar 25 from closes 14..25 (so that both EMAs start together)
    # instead of from closes 0..11; the difference decays by (11/13) per bar, so from bar 300 on
    # both agree to round-off. Compare absolutely, relative to the price level (MACD crosses 0).
    bars, features = real
    close = bars["close"].to_numpy()
    macd, signal, hist = talib.MACD(close, 12, 26, 9)
    atol = 1e-9 * np.abs(close).max()
    for name, reference in (("macd", macd), ("macd_signal", signal), ("macd_hist", hist)):
        np.testing.assert_allclose(features[name].to_numpy()[300:], reference[300:], atol=atol)


def test_macd_is_difference_of_own_seeded_emas_and_signal_is_sma_seeded_ema9(real):
    bars, features = real
    close = bars["close"].to_numpy()
    atol = 1e-12 * np.abs(close).max()
    expected_macd = talib.EMA(close, 12) - talib.EMA(close, 26)
    _assert_close(features["macd"], expected_macd, rtol=0, atol=atol)
    assert _first_valid(features["macd"]) == 25
    expected_signal = np.full(len(close), np.nan)
    expected_signal[25:] = talib.EMA(features["macd"].to_numpy()[25:], 9)
    _assert_close(features["macd_signal"], expected_signal, rtol=0, atol=atol)
    assert _first_valid(features["macd_signal"]) == 33
    _assert_close(features["macd_hist"], features["macd"] - features["macd_signal"], rtol=0)


def test_bollinger_matches_talib_population_std(real):
    bars, features = real
    upper, middle, lower = talib.BBANDS(
        bars["close"].to_numpy(), timeperiod=20, nbdevup=2, nbdevdn=2, matype=0
    )
    _assert_close(features["bb_upper"], upper)
    _assert_close(features["bb_middle"], middle)
    _assert_close(features["bb_lower"], lower)


def test_atr_matches_talib_wilder(real):
    bars, features = real
    high, low, close = (bars[name].to_numpy() for name in ("high", "low", "close"))
    _assert_close(features["atr_14"], talib.ATR(high, low, close, 14))
    assert _first_valid(features["atr_14"]) == 14


def test_obv_starts_at_zero_where_talib_starts_at_first_volume(real):
    bars, features = real
    close, volume = bars["close"].to_numpy(), bars["volume"].to_numpy()
    assert features["obv"].iloc[0] == 0.0
    _assert_close(features["obv"], talib.OBV(close, volume) - volume[0], rtol=0)


# --------------------------------------------------------------------------------------------
# Against plain references on real data
# --------------------------------------------------------------------------------------------


def test_returns_are_plain_ratios_with_nan_on_first_bar(real):
    bars, features = real
    close = bars["close"].to_numpy()
    expected_simple = np.concatenate([[np.nan], close[1:] / close[:-1] - 1.0])
    expected_log = np.concatenate([[np.nan], np.log(close[1:] / close[:-1])])
    _assert_close(features["simple_return"], expected_simple, rtol=1e-12)
    _assert_close(features["log_return"], expected_log, rtol=1e-12)


def test_volatility_is_sample_std_of_20_log_returns_times_sqrt_252_for_daily_equity(real):
    bars, features = real
    close = bars["close"].to_numpy()
    log_returns = np.log(close[1:] / close[:-1])
    expected = np.full(len(close), np.nan)
    expected[20:] = sliding_window_view(log_returns, 20).std(axis=1, ddof=1) * math.sqrt(252)
    _assert_close(features["volatility_20"], expected)


def test_zscore_uses_population_std_of_20_closes(real):
    bars, features = real
    close = bars["close"].to_numpy()
    windows = sliding_window_view(close, 20)
    expected = np.full(len(close), np.nan)
    expected[19:] = (close[19:] - windows.mean(axis=1)) / windows.std(axis=1, ddof=0)
    _assert_close(features["zscore_20"], expected)


def test_daily_vwap_is_the_typical_price_of_the_bar(real):
    bars, features = real
    expected = (bars["high"] + bars["low"] + bars["close"]) / 3.0
    _assert_close(features["vwap"], expected, rtol=1e-15)


# --------------------------------------------------------------------------------------------
# Hand-computed conventions
# --------------------------------------------------------------------------------------------

# Wilder's RSI example series (as used by StockCharts); 20 closes.
RSI_CLOSES = [
    44.34, 44.09, 44.15, 43.61, 44.33, 44.83, 45.10, 45.42, 45.84, 46.08,
    45.89, 46.03, 45.61, 46.28, 46.28, 46.00, 46.03, 46.41, 46.22, 45.64,
]  # fmt: skip


def test_rsi_on_hand_computed_series():
    changes = np.diff(RSI_CLOSES)
    gains, losses = np.maximum(changes, 0.0), np.maximum(-changes, 0.0)
    avg_gain, avg_loss = gains[:14].sum() / 14, losses[:14].sum() / 14
    expected = [np.nan] * 14 + [100 - 100 / (1 + avg_gain / avg_loss)]
    for gain, loss in zip(gains[14:], losses[14:], strict=True):
        avg_gain = (avg_gain * 13 + gain) / 14
        avg_loss = (avg_loss * 13 + loss) / 14
        expected.append(100 - 100 / (1 + avg_gain / avg_loss))
    features = compute_features(_bars(RSI_CLOSES), asset_class="equity", timeframe="1d")
    _assert_close(features["rsi_14"], expected, rtol=1e-12)
    assert features["rsi_14"].iloc[14] == pytest.approx(70.46, abs=0.005)


def test_rsi_is_100_when_there_are_no_losses():
    features = compute_features(_bars(np.arange(1.0, 31.0)), asset_class="equity", timeframe="1d")
    assert (features["rsi_14"].iloc[14:] == 100.0).all()


def test_rsi_of_a_series_that_never_moved_is_nan():
    # AG = AL = 0 is 0/0: NaN, like every division by zero here (TA-Lib says 0, 50 would invent
    # a neutral reading).
    features = compute_features(_bars(np.full(30, 7.0)), asset_class="equity", timeframe="1d")
    assert features["rsi_14"].isna().all()
    assert np.isnan(talib.RSI(np.full(30, 7.0), 14)[:14]).all()


def test_rsi_keeps_a_value_through_a_flat_stretch_after_moves():
    closes = np.concatenate([RSI_CLOSES, np.full(30, RSI_CLOSES[-1])])
    features = compute_features(_bars(closes), asset_class="equity", timeframe="1d")
    assert features["rsi_14"].iloc[14:].notna().all()


def test_ema_seed_and_recursion_on_hand_computed_series():
    closes = np.arange(1.0, 16.0) ** 1.5
    alpha = 2 / 13
    expected = [np.nan] * 11 + [closes[:12].mean()]
    for price in closes[12:]:
        expected.append(expected[-1] + alpha * (price - expected[-1]))
    features = compute_features(_bars(closes), asset_class="equity", timeframe="1d")
    _assert_close(features["ema_12"], expected, rtol=1e-13)


def test_atr_first_value_is_mean_of_first_14_true_ranges():
    rng = np.random.default_rng(7)
    close = 50 + rng.normal(0, 1, 20).cumsum()
    high, low = close + rng.uniform(0, 1, 20), close - rng.uniform(0, 1, 20)
    true_range = [
        max(high[t] - low[t], abs(high[t] - close[t - 1]), abs(low[t] - close[t - 1]))
        for t in range(1, 20)
    ]
    expected = [np.nan] * 14 + [sum(true_range[:14]) / 14]
    for tr in true_range[14:]:
        expected.append((expected[-1] * 13 + tr) / 14)
    features = compute_features(
        _bars(close, high=high, low=low), asset_class="equity", timeframe="1d"
    )
    _assert_close(features["atr_14"], expected, rtol=1e-13)


def test_obv_adds_volume_on_up_close_subtracts_on_down_and_ignores_unchanged():
    bars = _bars([10, 11, 11, 9, 12], volume=[100, 200, 300, 400, 500])
    features = compute_features(bars, asset_class="equity", timeframe="1d")
    assert features["obv"].tolist() == [0.0, 200.0, 200.0, -200.0, 300.0]


def test_returns_are_nan_across_non_positive_prices():
    features = compute_features(
        _bars([1.0, 2.0, 0.0, 3.0, -1.0, 2.0, 4.0]), asset_class="equity", timeframe="1d"
    )
    expected = [np.nan, 1.0, np.nan, np.nan, np.nan, np.nan, 1.0]
    _assert_close(features["simple_return"], expected, rtol=0)
    _assert_close(features["log_return"], [x if np.isnan(x) else math.log(2) for x in expected])
    _assert_no_inf(features)


@pytest.mark.parametrize(
    ("asset_class", "timeframe", "bars_per_year"),
    [
        ("equity", "1d", 252),
        ("equity", "1h", 1638),
        ("equity", "5m", 19656),
        ("crypto", "1d", 365),
        ("crypto", "1h", 8760),
        ("fx", "1d", 260),
        ("fx", "1h", 6240),
    ],
)
def test_volatility_is_annualised_by_bars_per_year_of_asset_class_and_timeframe(
    asset_class, timeframe, bars_per_year
):
    closes = 100 * np.exp(np.random.default_rng(3).normal(0, 0.01, 40).cumsum())
    features = compute_features(
        _bars(closes, freq="5min"), asset_class=asset_class, timeframe=timeframe
    )
    log_returns = np.log(closes[1:] / closes[:-1])
    expected = np.std(log_returns[-20:], ddof=1) * math.sqrt(bars_per_year)
    assert features["volatility_20"].iloc[-1] == pytest.approx(expected, rel=1e-12)
    assert features["volatility_20"].iloc[:20].isna().all()


# --------------------------------------------------------------------------------------------
# VWAP sessions
# --------------------------------------------------------------------------------------------


def _vwap_reference(bars: pd.DataFrame, tz: str) -> np.ndarray:
    """Session VWAP computed the obvious way: group by local calendar date, cumulate."""
    typical = (bars["high"] + bars["low"] + bars["close"]) / 3.0
    session = bars["ts"].dt.tz_convert(tz).dt.date
    pv = (typical * bars["volume"]).groupby(session).cumsum()
    volume = bars["volume"].groupby(session).cumsum()
    return (pv / volume.where(volume > 0)).to_numpy()


def _intraday_bars(timestamps: list[str], seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n = len(timestamps)
    close = 100 + rng.normal(0, 1, n).cumsum()
    return _bars(
        close,
        high=close + rng.uniform(0, 1, n),
        low=close - rng.uniform(0, 1, n),
        volume=rng.integers(1, 1000, n).astype(float),
        ts=pd.DatetimeIndex(timestamps).tz_convert("UTC"),
    )


def test_equity_vwap_resets_on_new_york_date_across_dst_changes():
    timestamps = [
        # Friday 2024-03-08 (EST, UTC-5): 20:30 and 01:30 UTC are the same New York date.
        "2024-03-08T14:30Z", "2024-03-08T20:30Z", "2024-03-09T01:30Z",
        # Sunday night: 03:30 UTC is 23:30 EDT on 03-10, 04:30 UTC is 00:30 EDT on 03-11
        # (with a fixed UTC-5 offset both would still be 03-10).
        "2024-03-11T03:30Z", "2024-03-11T04:30Z", "2024-03-11T13:30Z",
        # Back to EST on 2024-11-03: 04:30 UTC on 11-04 is 23:30 EST on 11-03, 05:30 is 11-04.
        "2024-11-04T03:30Z", "2024-11-04T04:30Z", "2024-11-04T05:30Z", "2024-11-04T14:30Z",
    ]  # fmt: skip
    bars = _intraday_bars(timestamps)
    features = compute_features(bars, asset_class="equity", timeframe="1h")
    expected = _vwap_reference(bars, "America/New_York")
    _assert_close(features["vwap"], expected, rtol=1e-12)
    typical = ((bars["high"] + bars["low"] + bars["close"]) / 3.0).to_numpy()
    # A session's first bar has VWAP = its typical price: exactly where New York's date changes.
    first_of_session = np.isclose(features["vwap"], typical, rtol=1e-14)
    assert np.flatnonzero(first_of_session).tolist() == [0, 3, 4, 6, 8]


def test_equity_5m_vwap_matches_reference_over_weeks_spanning_dst():
    # Regular-session 5-minute bars for three weeks around the March 2024 DST change.
    days = pd.bdate_range("2024-03-01", "2024-03-22", tz="America/New_York")
    opens = days + pd.Timedelta(hours=9, minutes=30)
    utc = opens.tz_convert(None).to_numpy()
    grid = (utc[:, None] + np.arange(78) * np.timedelta64(5, "m")).ravel()
    bars = _intraday_bars(list(pd.DatetimeIndex(grid).tz_localize("UTC")), seed=3)
    features = compute_features(bars, asset_class="equity", timeframe="5m")
    _assert_close(features["vwap"], _vwap_reference(bars, "America/New_York"), rtol=1e-12)


def test_vwap_with_negative_prices_still_resets_per_session():
    # Negative prices (e.g. oil futures in April 2020) make cumulative price x volume decrease.
    timestamps = [f"2024-03-{d:02d}T{h:02d}:30Z" for d in (11, 12) for h in range(13, 20)]
    bars = _intraday_bars(timestamps, seed=4)
    for name in ("high", "low", "close", "open"):
        bars[name] -= 100.0
    assert (bars["close"] < 0).any() and (bars["close"] > 0).any()
    features = compute_features(bars, asset_class="equity", timeframe="1h")
    _assert_close(features["vwap"], _vwap_reference(bars, "America/New_York"), rtol=1e-12)


def test_crypto_vwap_resets_at_utc_midnight():
    timestamps = [
        "2024-03-10T22:00Z",
        "2024-03-10T23:00Z",
        "2024-03-11T00:00Z",
        "2024-03-11T01:00Z",
    ]
    bars = _intraday_bars(timestamps, seed=1)
    features = compute_features(bars, asset_class="crypto", timeframe="1h")
    _assert_close(features["vwap"], _vwap_reference(bars, "UTC"), rtol=1e-12)


@pytest.mark.parametrize("unit", ["s", "ms", "us", "ns"])
def test_vwap_sessions_do_not_depend_on_the_unit_of_ts(unit):
    # Local dates are computed from ts in its own unit, across the March 2024 DST change.
    stamps = pd.date_range("2024-03-08T12:00Z", "2024-03-12T12:00Z", freq="30min")
    bars = _intraday_bars(list(stamps), seed=5)
    bars["ts"] = bars["ts"].dt.as_unit(unit)
    for asset_class, tz in (("equity", "America/New_York"), ("crypto", "UTC")):
        features = compute_features(bars, asset_class=asset_class, timeframe="30m")
        _assert_close(features["vwap"], _vwap_reference(bars, tz), rtol=1e-12)


def test_vwap_is_nan_until_the_session_has_volume():
    timestamps = ["2024-03-11T13:30Z", "2024-03-11T14:30Z", "2024-03-11T15:30Z",
                  "2024-03-12T13:30Z", "2024-03-12T14:30Z"]  # fmt: skip
    bars = _intraday_bars(timestamps, seed=2)
    bars["volume"] = [0.0, 0.0, 10.0, 0.0, 5.0]
    features = compute_features(bars, asset_class="equity", timeframe="1h")
    typical = ((bars["high"] + bars["low"] + bars["close"]) / 3.0).to_numpy()
    assert features["vwap"].isna().tolist() == [True, True, False, True, False]
    assert features["vwap"].iloc[2] == pytest.approx(typical[2], rel=1e-14)
    assert features["vwap"].iloc[4] == pytest.approx(typical[4], rel=1e-14)


def test_daily_vwap_is_nan_on_zero_volume():
    features = compute_features(
        _bars([10.0, 11.0, 12.0], volume=[5.0, 0.0, 1.0]), asset_class="equity", timeframe="1d"
    )
    assert features["vwap"].isna().tolist() == [False, True, False]


# --------------------------------------------------------------------------------------------
# Edge cases
# --------------------------------------------------------------------------------------------


def test_empty_frame_gives_empty_output_with_the_columns():
    features = compute_features(_bars([]), asset_class="equity", timeframe="1d")
    assert features.empty
    assert list(features.columns) == ["ts", *FEATURE_COLUMNS]


def test_series_shorter_than_windows_gives_nan_there_without_error():
    features = compute_features(_bars([10.0, 11.0, 10.5]), asset_class="crypto", timeframe="1h")
    window_features = [
        c for c in FEATURE_COLUMNS if c not in ("simple_return", "log_return", "obv", "vwap")
    ]
    assert features[window_features].isna().all().all()
    assert features["simple_return"].iloc[1] == pytest.approx(0.1)
    assert features["obv"].tolist() == [0.0, 1000.0, 0.0]


def test_flat_prices_give_zero_volatility_and_nan_for_divisions_by_zero():
    features = compute_features(_bars(np.full(60, 42.0)), asset_class="equity", timeframe="1d")
    assert (features["volatility_20"].iloc[20:] == 0.0).all()
    assert features["zscore_20"].isna().all()
    assert (features["bb_upper"].iloc[19:] == 42.0).all()
    assert (features["bb_lower"].iloc[19:] == 42.0).all()
    assert (features["atr_14"].iloc[14:] == 0.0).all()
    assert (features["macd"].iloc[25:] == 0.0).all()
    _assert_no_inf(features)


def test_std_of_a_constant_window_after_large_moves_is_exactly_zero():
    # pandas' online rolling std leaves round-off (~1e-2 here) on such windows; a z-score would
    # then be huge instead of undefined.
    rng = np.random.default_rng(11)
    closes = np.concatenate([1e6 + rng.normal(0, 5e4, 200), np.full(45, 1234.5678)])
    features = compute_features(_bars(closes), asset_class="equity", timeframe="1d")
    flat_window = slice(200 + 19, None)
    assert (features["bb_upper"].iloc[flat_window] == features["bb_middle"].iloc[flat_window]).all()
    assert features["zscore_20"].iloc[flat_window].isna().all()
    assert (features["volatility_20"].iloc[200 + 20 :] == 0.0).all()
    _assert_no_inf(features)


def test_zero_volume_everywhere_gives_nan_vwap_and_zero_obv():
    bars = _intraday_bars([f"2024-03-11T{h:02d}:30Z" for h in range(13, 20)])
    bars["volume"] = 0.0
    features = compute_features(bars, asset_class="equity", timeframe="1h")
    assert features["vwap"].isna().all()
    assert (features["obv"] == 0.0).all()
    _assert_no_inf(features)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_a_missing_or_infinite_price_never_becomes_inf(bad):
    closes = 100 + np.random.default_rng(5).normal(0, 1, 80).cumsum()
    closes[40] = bad
    features = compute_features(_bars(closes), asset_class="equity", timeframe="1d")
    _assert_no_inf(features)
    assert features["sma_20"].iloc[39] == pytest.approx(closes[20:40].mean())
    assert features["sma_20"].iloc[40:60].isna().all()
    assert features["sma_20"].iloc[60] == pytest.approx(closes[41:61].mean())


def test_naive_timestamps_are_rejected():
    bars = _bars([1.0, 2.0])
    bars["ts"] = bars["ts"].dt.tz_localize(None)
    with pytest.raises(ValueError, match="tz-aware"):
        compute_features(bars, asset_class="equity", timeframe="1d")


def test_unsorted_timestamps_are_rejected():
    bars = _bars([1.0, 2.0, 3.0]).iloc[[0, 2, 1]].reset_index(drop=True)
    with pytest.raises(ValueError, match="strictly increasing"):
        compute_features(bars, asset_class="equity", timeframe="1d")


@pytest.mark.parametrize(("asset_class", "timeframe"), [("bonds", "1d"), ("equity", "1w")])
def test_unknown_asset_class_or_timeframe_is_rejected(asset_class, timeframe):
    with pytest.raises(ValueError):
        compute_features(_bars([1.0, 2.0]), asset_class=asset_class, timeframe=timeframe)


# --------------------------------------------------------------------------------------------
# Causality and batching
# --------------------------------------------------------------------------------------------


def test_prefix_gives_bit_identical_values_to_the_full_computation():
    bars = _sp500()
    full = compute_features(bars, asset_class="equity", timeframe="1d")
    for cut in (1, 14, 34, 250, 2517, len(bars) - 1):
        prefix = compute_features(bars.iloc[:cut], asset_class="equity", timeframe="1d")
        np.testing.assert_array_equal(
            prefix[list(FEATURE_COLUMNS)].to_numpy(),
            full[list(FEATURE_COLUMNS)].iloc[:cut].to_numpy(),
            err_msg=f"prefix of {cut} bars differs from the full computation",
        )


def _mixed_series() -> list[tuple[str, pd.DataFrame, str, str]]:
    """Series of many lengths, classes and timeframes: several padded and unpadded blocks."""
    rng = np.random.default_rng(42)
    series = []
    lengths = [0, 3, 60, 2000, 2000, 2000, 1999, 777, 4000] + [1500] * 40
    kinds = [("equity", "5m"), ("crypto", "1h"), ("fx", "1d"), ("equity", "1d")]
    for i, n in enumerate(lengths):
        asset_class, timeframe = kinds[i % len(kinds)]
        step = {"5m": "5min", "1h": "1h", "1d": "1D"}[timeframe]
        close = 50 * np.exp(rng.normal(0, 0.01, n).cumsum())
        bars = _bars(
            close,
            high=close * (1 + rng.uniform(0, 0.01, n)),
            low=close * (1 - rng.uniform(0, 0.01, n)),
            volume=rng.integers(0, 100, n).astype(float),
            ts=pd.date_range("2024-03-01T13:30Z", periods=n, freq=step),
        )
        series.append((f"s{i}", bars, asset_class, timeframe))
    return series


def test_batched_results_equal_per_series_results():
    series = _mixed_series()
    batched = compute_features_many(series)
    assert list(batched) == [key for key, *_ in series]
    for key, bars, asset_class, timeframe in series:
        single = compute_features(bars, asset_class=asset_class, timeframe=timeframe)
        pd.testing.assert_frame_equal(batched[key], single, check_exact=True)


@pytest.mark.parametrize("shift_last_by_days", [0, 1])
def test_batched_series_on_one_bar_grid_equal_per_series_results(shift_last_by_days):
    # Equal-length intraday series on the same timestamps share one session lookup; a series of
    # the same length on other dates must not.
    days = pd.bdate_range("2024-03-06", "2024-03-14", tz="America/New_York")
    utc = (days + pd.Timedelta(hours=9, minutes=30)).tz_convert(None).to_numpy()
    grid = pd.DatetimeIndex((utc[:, None] + np.arange(13) * np.timedelta64(30, "m")).ravel())
    series = []
    for i in range(4):
        stamps = grid + pd.Timedelta(days=shift_last_by_days if i == 3 else 0)
        bars = _intraday_bars(list(stamps.tz_localize("UTC")), seed=10 + i)
        series.append((i, bars, "equity", "30m"))
    batched = compute_features_many(series)
    for key, bars, asset_class, timeframe in series:
        single = compute_features(bars, asset_class=asset_class, timeframe=timeframe)
        pd.testing.assert_frame_equal(batched[key], single, check_exact=True)
        expected = _vwap_reference(bars, "America/New_York")
        _assert_close(batched[key]["vwap"], expected, rtol=1e-12)


def test_stacked_frame_equals_batched_results():
    series = _mixed_series()
    stacked = compute_features_stacked(
        pd.concat([bars for _, bars, *_ in series], ignore_index=True),
        lengths=[len(bars) for _, bars, *_ in series],
        asset_classes=[asset_class for *_, asset_class, _ in series],
        timeframes=[timeframe for *_, timeframe in series],
    )
    expected = pd.concat(list(compute_features_many(series).values()), ignore_index=True)
    pd.testing.assert_frame_equal(stacked, expected, check_exact=True)


def test_duplicate_keys_are_rejected():
    bars = _bars([1.0, 2.0])
    with pytest.raises(ValueError, match="duplicate"):
        compute_features_many([("a", bars, "equity", "1d"), ("a", bars, "equity", "1d")])


def test_stacked_lengths_must_cover_the_frame():
    bars = _bars([1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="add up to 2"):
        compute_features_stacked(bars, lengths=[2], asset_classes=["equity"], timeframes=["1d"])


def test_timestamps_displayed_in_another_zone_are_the_same_instants_and_come_back_in_utc():
    bars = _intraday_bars([f"2024-03-11T{h:02d}:30Z" for h in range(13, 20)])
    shown_in_new_york = bars.assign(ts=bars["ts"].dt.tz_convert("America/New_York"))
    expected = compute_features(bars, asset_class="equity", timeframe="1h")
    actual = compute_features(shown_in_new_york, asset_class="equity", timeframe="1h")
    pd.testing.assert_frame_equal(actual, expected, check_exact=True)
    assert str(actual["ts"].dt.tz) == "UTC"


def test_a_tokyo_listing_s_vwap_resets_on_tokyo_sessions_not_new_york_dates():
    # XTKS hourly bars of 2024-11-13 and -14 (09:00-15:00 JST = 00:00-06:00 UTC). New York's
    # date changes at 05:00 UTC, in the middle of each Tokyo session.
    timestamps = [f"2024-11-{d}T{h:02d}:00Z" for d in (13, 14) for h in (0, 1, 3, 4, 5)]
    bars = _intraday_bars(timestamps, seed=5)
    tokyo = compute_features(bars, asset_class="equity", timeframe="1h", session_tz="Asia/Tokyo")
    _assert_close(tokyo["vwap"], _vwap_reference(bars, "Asia/Tokyo"), rtol=1e-12)
    typical = ((bars["high"] + bars["low"] + bars["close"]) / 3.0).to_numpy()
    assert np.flatnonzero(np.isclose(tokyo["vwap"], typical, rtol=1e-14)).tolist() == [0, 5]
    # The default (New York dates) would cut each session at 05:00 UTC.
    default = compute_features(bars, asset_class="equity", timeframe="1h")
    assert not np.allclose(default["vwap"], tokyo["vwap"], equal_nan=True)
    many = compute_features_many(
        [("T", bars, "equity", "1h"), ("N", bars, "equity", "1h")],
        session_timezones={"T": "Asia/Tokyo"},
    )
    _assert_close(many["T"]["vwap"], tokyo["vwap"], rtol=1e-15)
    _assert_close(many["N"]["vwap"], default["vwap"], rtol=1e-15)
