"""The dashboard's pure rules: what a cell shows, and the link to a partition in the Dagster UI."""

from __future__ import annotations

import pytest

from market_pipeline.domain.dashboard import cell_status, dagster_partition_url


@pytest.mark.parametrize("freshness", ["fresh", "aging", "stale", "missing"])
def test_an_open_failure_outranks_every_freshness_status(freshness):
    assert cell_status(freshness, True) == "failed"
    assert cell_status(freshness, False) == freshness


@pytest.mark.parametrize(
    ("base", "symbol", "expected"),
    [
        (
            "http://127.0.0.1:3000",
            "AAPL",
            "http://127.0.0.1:3000/assets/quant_features?partition=AAPL%7C1d",
        ),
        (
            "https://dagster.example/ui/",
            "BRK.B",
            "https://dagster.example/ui/assets/quant_features?partition=BRK.B%7C1d",
        ),
    ],
)
def test_the_partition_link_is_the_assets_page_with_the_encoded_multi_partition_key(
    base, symbol, expected
):
    assert dagster_partition_url(base, "quant_features", symbol, "1d") == expected
