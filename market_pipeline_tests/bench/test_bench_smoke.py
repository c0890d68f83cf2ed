"""The benchmark suite's smoke run: every case runs at tiny sizes and writes its records.

This keeps ``python -m bench`` from rotting; it asserts the shape of the results, never a time.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
REQUIRED = ("name", "value", "unit", "baseline", "baseline_value", "ratio", "direction")

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


@pytest.mark.timeout(600)
def test_bench_smoke_writes_every_case_with_positive_figures(pg_server, tmp_path):
    output = tmp_path / "latest.json"
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--smoke", "--output", str(output)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=590,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    records = json.loads(output.read_text())
    assert isinstance(records, list) and records
    prefixes = {
        "store:",
        "backfill:",
        "scale out:",
        "demo on SQLite:",
        "write path:",
        "features:",
        "mirror:",
        "api ",
        "metrics:",
        "dashboard:",
        "vendors:",
        "scale curve:",
    }
    assert {p for p in prefixes if any(r["name"].startswith(p) for r in records)} == prefixes
    for record in records:
        for key in REQUIRED:
            assert key in record, (key, record["name"])
        assert record["value"] > 0 and math.isfinite(record["value"]), record
        assert record["baseline_value"] > 0, record
        assert record["ratio"] == pytest.approx(
            record["value"] / record["baseline_value"], rel=1e-3
        )
        assert record["direction"] in ("lower is better", "higher is better")
        machine = record["machine"]
        assert machine["cores"] >= 1 and machine["memory_gb"] > 0 and machine["smoke"] is True
    assert "benchmark" in done.stdout  # the table was printed
