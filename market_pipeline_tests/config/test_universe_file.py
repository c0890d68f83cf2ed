"""The universe file: loading, helpers and every refusal with a message naming file and entry."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from market_pipeline.config.universe_file import load_universe
from market_pipeline.domain.universe import SymbolSpec, Universe, UniverseError
from market_pipeline.package_data import demo_universe

MINIMAL = {
    "provider": {"kind": "synthetic"},
    "symbols": [
        {"symbol": "AAPL", "asset_class": "equity"},
        {"symbol": "BTC-USD", "asset_class": "crypto"},
    ],
    "timeframes": ["1h", "1d"],
}


def write(tmp_path: Path, content: object, name: str = "universe.yaml") -> Path:
    path = tmp_path / name
    text = content if isinstance(content, str) else yaml.safe_dump(content, sort_keys=False)
    path.write_text(text, encoding="utf-8")
    return path


def with_changes(**changes: object) -> dict:
    data = dict(MINIMAL)
    data.update(changes)
    return data


def refusal(tmp_path: Path, content: object) -> str:
    path = write(tmp_path, content)
    with pytest.raises(UniverseError) as info:
        load_universe(path)
    message = str(info.value)
    assert str(path) in message, message
    return message


# --- loading ----------------------------------------------------------------------------------


def test_minimal_file_loads_symbols_timeframes_provider_and_source(tmp_path):
    path = write(tmp_path, MINIMAL)

    universe = load_universe(path)

    assert universe.symbols == (
        SymbolSpec("AAPL", "equity"),
        SymbolSpec("BTC-USD", "crypto"),
    )
    assert universe.timeframes == ("1h", "1d")
    assert universe.provider["kind"] == "synthetic"
    assert universe.source == str(path)


def test_pairs_are_every_symbol_with_every_timeframe_in_file_order(tmp_path):
    universe = load_universe(write(tmp_path, MINIMAL))

    assert universe.pairs == [("AAPL", "1h"), ("AAPL", "1d"), ("BTC-USD", "1h"), ("BTC-USD", "1d")]


def test_symbol_names_and_asset_class_lookup(tmp_path):
    universe = load_universe(write(tmp_path, MINIMAL))

    assert universe.symbol_names == ("AAPL", "BTC-USD")
    assert universe.asset_class_of("BTC-USD") == "crypto"


def test_asset_class_of_unknown_symbol_names_symbol_and_universe(tmp_path):
    universe = load_universe(write(tmp_path, MINIMAL))

    with pytest.raises(UniverseError, match=r"'MSFT' is not in the universe .*universe\.yaml"):
        universe.asset_class_of("MSFT")


def test_adding_a_symbol_and_a_timeframe_is_a_file_edit(tmp_path):
    data = with_changes(
        symbols=[*MINIMAL["symbols"], {"symbol": "EURUSD", "asset_class": "fx"}],
        timeframes=["1h", "1d", "4h"],
    )

    universe = load_universe(write(tmp_path, data))

    assert ("EURUSD", "4h") in universe.pairs
    assert len(universe.pairs) == 9


def test_bundled_demo_universe_is_50_symbols_by_5_timeframes_on_synthetic_data():
    universe = load_universe(demo_universe())

    assert len(universe.symbols) == 50
    assert universe.timeframes == ("1m", "5m", "15m", "1h", "1d")
    assert len(universe.pairs) == 250
    assert universe.provider["kind"] == "synthetic"
    assert {spec.asset_class for spec in universe.symbols} == {"equity", "crypto", "fx"}


def test_settings_name_the_universe_file_and_default_to_the_demo(tmp_path):
    from market_pipeline.config.settings import Settings

    path = write(tmp_path, MINIMAL)

    assert Settings.from_env({"MARKET_PIPELINE_UNIVERSE": str(path)}).universe_path == path
    assert Settings.from_env({}).universe_path == demo_universe()


def test_relative_csv_path_resolves_against_the_yaml_folder(tmp_path, monkeypatch):
    folder = tmp_path / "config"
    folder.mkdir()
    monkeypatch.chdir(tmp_path)  # somewhere else than the file's folder
    path = write(folder, with_changes(provider={"kind": "csv", "path": "bars"}))

    universe = load_universe(path)

    assert universe.provider["path"] == str((folder / "bars").resolve())


def test_failure_injection_options_are_kept_in_the_provider_block(tmp_path):
    data = with_changes(
        provider={"kind": "synthetic", "fail_symbols": ["AAPL"], "bad_row_symbols": ["BTC-USD"]}
    )

    universe = load_universe(write(tmp_path, data))

    assert universe.provider["fail_symbols"] == ["AAPL"]
    assert universe.provider["bad_row_symbols"] == ["BTC-USD"]


def test_universe_is_immutable(tmp_path):
    universe = load_universe(write(tmp_path, MINIMAL))

    with pytest.raises(AttributeError):
        universe.timeframes = ("1m",)  # type: ignore[misc]
    assert isinstance(universe, Universe)


# --- refusals ---------------------------------------------------------------------------------


def test_missing_file_is_refused_naming_it(tmp_path):
    path = tmp_path / "nowhere.yaml"

    with pytest.raises(UniverseError, match=r"nowhere\.yaml does not exist"):
        load_universe(path)


def test_invalid_yaml_is_refused_naming_the_file(tmp_path):
    message = refusal(tmp_path, "symbols: [unclosed\n")

    assert "not valid YAML" in message


def test_non_mapping_document_is_refused(tmp_path):
    message = refusal(tmp_path, "- just\n- a list\n")

    assert "expected a mapping" in message


def test_unknown_top_level_key_is_refused_naming_it(tmp_path):
    message = refusal(tmp_path, with_changes(timeframe=["1h"]))

    assert "unknown key(s) 'timeframe'" in message


def test_missing_top_level_key_is_refused_naming_it(tmp_path):
    data = {key: value for key, value in MINIMAL.items() if key != "timeframes"}

    message = refusal(tmp_path, data)

    assert "missing key(s) timeframes" in message


def test_unknown_key_in_a_symbol_entry_is_refused_naming_the_entry(tmp_path):
    data = with_changes(symbols=[{"symbol": "AAPL", "asset_class": "equity", "sector": "tech"}])

    message = refusal(tmp_path, data)

    assert "symbols[0]" in message
    assert "'sector'" in message


def test_missing_asset_class_is_refused_naming_the_entry(tmp_path):
    data = with_changes(symbols=[MINIMAL["symbols"][0], {"symbol": "MSFT"}])

    message = refusal(tmp_path, data)

    assert "symbols[1]" in message
    assert "missing key(s) asset_class" in message


def test_unknown_asset_class_is_refused_listing_the_known_ones(tmp_path):
    data = with_changes(symbols=[{"symbol": "GLD", "asset_class": "commodity"}])

    message = refusal(tmp_path, data)

    assert "'commodity'" in message
    assert "equity, crypto, fx" in message


def test_duplicate_symbol_is_refused_naming_both_entries(tmp_path):
    data = with_changes(symbols=[*MINIMAL["symbols"], {"symbol": "AAPL", "asset_class": "equity"}])

    message = refusal(tmp_path, data)

    assert "symbols[2]: duplicate symbol 'AAPL'" in message
    assert "symbols[0]" in message


def test_symbols_differing_only_in_case_are_duplicates(tmp_path):
    data = with_changes(symbols=[*MINIMAL["symbols"], {"symbol": "aapl", "asset_class": "equity"}])

    message = refusal(tmp_path, data)

    assert "duplicate symbol 'aapl'" in message


@pytest.mark.parametrize("symbol", ["AAPL|1h", "A,B", "BRK B", "ÄPFEL", "A/B", "A:B"])
def test_symbol_with_a_character_partition_keys_cannot_carry_is_refused(tmp_path, symbol):
    data = with_changes(symbols=[{"symbol": symbol, "asset_class": "equity"}])

    message = refusal(tmp_path, data)

    assert repr(symbol) in message
    assert "'|' separates the dimensions" in message
    assert "',' separates keys" in message


def test_symbol_longer_than_32_characters_is_refused(tmp_path):
    data = with_changes(symbols=[{"symbol": "A" * 33, "asset_class": "equity"}])

    message = refusal(tmp_path, data)

    assert "1-32 characters" in message


def test_symbol_containing_a_partition_range_separator_is_refused(tmp_path):
    data = with_changes(symbols=[{"symbol": "A...B", "asset_class": "equity"}])

    message = refusal(tmp_path, data)

    assert "'...' separates the ends of a Dagster partition key range" in message


def test_unquoted_yaml_boolean_symbol_is_refused_with_a_hint_to_quote_it(tmp_path):
    text = (
        "provider: {kind: synthetic}\ntimeframes: [1d]\n"
        "symbols:\n  - {symbol: ON, asset_class: equity}\n"
    )

    message = refusal(tmp_path, text)

    assert "not text" in message
    assert "quote it" in message


def test_empty_symbol_list_is_refused(tmp_path):
    message = refusal(tmp_path, with_changes(symbols=[]))

    assert "symbols must be a non-empty list" in message


def test_empty_timeframes_are_refused(tmp_path):
    message = refusal(tmp_path, with_changes(timeframes=[]))

    assert "timeframes must be a non-empty list" in message


@pytest.mark.parametrize("code", ["1w", "60s", "0m", "2d", "hourly"])
def test_bad_timeframe_is_refused_naming_it(tmp_path, code):
    message = refusal(tmp_path, with_changes(timeframes=["1h", code]))

    assert "timeframes[1]" in message
    assert repr(code) in message


def test_duplicate_timeframe_is_refused(tmp_path):
    message = refusal(tmp_path, with_changes(timeframes=["1h", "1d", "1h"]))

    assert "timeframes[2]: duplicate timeframe '1h' (listed twice)" in message


def test_timeframes_of_equal_duration_are_duplicates(tmp_path):
    message = refusal(tmp_path, with_changes(timeframes=["1h", "60m"]))

    assert "duplicate timeframe '60m' (the same duration as '1h')" in message


def test_unknown_provider_kind_is_refused_listing_the_known_ones(tmp_path):
    message = refusal(tmp_path, with_changes(provider={"kind": "bloomberg"}))

    assert "unknown provider kind 'bloomberg'" in message
    assert "alpaca, binance, csv, parquet, synthetic" in message


def test_provider_without_kind_is_refused(tmp_path):
    message = refusal(tmp_path, with_changes(provider={"path": "/data"}))

    assert "missing key 'kind'" in message


def test_csv_provider_without_path_is_refused(tmp_path):
    message = refusal(tmp_path, with_changes(provider={"kind": "csv"}))

    assert "provider kind 'csv' needs a path" in message


def test_unknown_provider_option_is_refused_listing_the_allowed_ones(tmp_path):
    message = refusal(tmp_path, with_changes(provider={"kind": "synthetic", "fail": ["AAPL"]}))

    assert "unknown key(s) 'fail'" in message
    assert "fail_symbols" in message


def test_bad_provider_option_value_is_refused(tmp_path):
    message = refusal(tmp_path, with_changes(provider={"kind": "synthetic", "history_bars": 0}))

    assert "history_bars must be between 1" in message


def test_failure_injection_for_a_symbol_outside_the_universe_is_refused(tmp_path):
    data = with_changes(provider={"kind": "synthetic", "fail_symbols": ["AAPL", "XYZ"]})

    message = refusal(tmp_path, data)

    assert "names symbol(s) not in the universe: XYZ" in message


# --- calendars and the provider's grace ---------------------------------------------------------


def test_each_asset_class_has_a_default_calendar(tmp_path):
    data = with_changes(symbols=[*MINIMAL["symbols"], {"symbol": "EURUSD", "asset_class": "fx"}])

    universe = load_universe(write(tmp_path, data))

    assert universe.calendars == {"equity": "XNYS", "crypto": "24/7", "fx": "FX"}
    assert [universe.calendar_of(s) for s in universe.symbol_names] == ["XNYS", "24/7", "FX"]


def test_the_file_may_name_the_calendar_of_an_asset_class(tmp_path):
    universe = load_universe(write(tmp_path, with_changes(calendars={"equity": "XLON"})))

    assert universe.calendar_of("AAPL") == "XLON"
    assert universe.calendar_of("BTC-USD") == "24/7"


def test_a_symbol_may_name_its_own_calendar(tmp_path):
    data = with_changes(
        symbols=[
            *MINIMAL["symbols"],
            {"symbol": "VOD", "asset_class": "equity", "calendar": "XLON"},
        ]
    )

    universe = load_universe(write(tmp_path, data))

    assert universe.calendar_of("VOD") == "XLON"
    assert universe.calendar_of("AAPL") == "XNYS"
    assert universe.symbols[2] == SymbolSpec("VOD", "equity", calendar="XLON")


def test_calendar_of_an_unknown_symbol_names_symbol_and_universe(tmp_path):
    universe = load_universe(write(tmp_path, MINIMAL))

    with pytest.raises(UniverseError, match=r"'MSFT' is not in the universe .*universe\.yaml"):
        universe.calendar_of("MSFT")


def test_an_unknown_calendar_of_a_symbol_is_refused_naming_the_entry(tmp_path):
    data = with_changes(symbols=[{"symbol": "VOD", "asset_class": "equity", "calendar": "XLNO"}])

    message = refusal(tmp_path, data)

    assert "symbols[0]: symbol 'VOD'" in message
    assert "unknown calendar 'XLNO'" in message
    assert "did you mean XLON" in message


def test_an_unknown_calendar_of_an_asset_class_is_refused_naming_it(tmp_path):
    message = refusal(tmp_path, with_changes(calendars={"crypto": "24/365"}))

    assert "calendars.crypto: unknown calendar '24/365'" in message


def test_calendars_for_an_unknown_asset_class_are_refused(tmp_path):
    message = refusal(tmp_path, with_changes(calendars={"bonds": "XNYS"}))

    assert "calendars: unknown key(s) 'bonds'" in message
    assert "equity, crypto, fx" in message


def test_calendars_that_are_not_a_mapping_are_refused(tmp_path):
    message = refusal(tmp_path, with_changes(calendars=["XNYS"]))

    assert "calendars: expected a mapping" in message


def test_the_provider_grace_is_kept_apart_from_the_block_that_builds_the_provider(tmp_path):
    data = with_changes(provider={"kind": "synthetic", "grace_seconds": 90})

    universe = load_universe(write(tmp_path, data))

    assert universe.grace_seconds == 90
    assert "grace_seconds" not in universe.provider
    assert load_universe(write(tmp_path, MINIMAL, "plain.yaml")).grace_seconds == 0


@pytest.mark.parametrize("grace", [-1, 1.5, "60", True, 7 * 86400 + 1])
def test_a_bad_provider_grace_is_refused(tmp_path, grace):
    message = refusal(
        tmp_path, with_changes(provider={"kind": "csv", "path": ".", "grace_seconds": grace})
    )

    assert "provider: grace_seconds must be a whole number of seconds" in message
    assert repr(grace) in message


# --- data-lag rules ----------------------------------------------------------------------------


def test_the_data_lag_rules_carry_calendars_grace_and_tolerances(tmp_path):
    data = with_changes(
        provider={"kind": "synthetic", "grace_seconds": 120},
        data_lag_tolerance_seconds={"1h": 900},
    )

    rules = load_universe(write(tmp_path, data)).data_lag_rules()

    aapl = rules.schedule_of(("AAPL", "1d"))
    assert (aapl.calendar, aapl.grace_seconds, aapl.asset_class) == ("XNYS", 120, "equity")
    assert rules.schedule_of(("BTC-USD", "1h")).calendar == "24/7"
    assert rules.tolerance_seconds("1h") == 900
    # The default: the refreshing schedule's period plus one bar of at most an hour.
    assert rules.tolerance_seconds("1d") == 86400 + 3600


@pytest.mark.parametrize(
    ("tolerances", "expected"),
    [
        ({"5m": 60}, "'5m' is not a timeframe of the universe (expected one of 1h, 1d)"),
        ({"1h": -1}, "1h: expected whole seconds from 0 to 2592000, got -1"),
        ({"1h": "2h"}, "1h: expected whole seconds from 0 to 2592000, got '2h'"),
        ([900], "expected a mapping of timeframe to seconds"),
    ],
)
def test_bad_data_lag_tolerances_are_refused_naming_the_entry(tmp_path, tolerances, expected):
    message = refusal(tmp_path, with_changes(data_lag_tolerance_seconds=tolerances))

    assert f"data_lag_tolerance_seconds: {expected}" in message
