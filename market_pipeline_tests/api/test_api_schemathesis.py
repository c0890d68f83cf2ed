"""A property-based run of schemathesis against the served OpenAPI document.

Schemathesis generates valid and invalid requests for every operation of ``/openapi.json``
(coverage and fuzzing phases, a bounded number of examples, a fixed seed) and runs all its checks:
no 5xx, status codes and bodies as documented, invalid input rejected, valid input accepted,
unsupported methods refused, and auth enforced (it also sends requests without the token). The
data is healthy so that ``/healthz`` answers 200: its 503 when degraded is by design and tested
in ``test_api_probes.py``.
"""

from __future__ import annotations

import subprocess
import sys
from datetime import timedelta

from market_pipeline.api.app import ROUTES, create_app
from market_pipeline.domain.lag_rules import DataLagRules, PairSchedule
from market_pipeline.observability.store import ObservabilityStore
from market_pipeline_tests.support.api import (
    MONITORED_PAIRS,
    TOKEN,
    running_server,
    seed_healthy,
    settings_for_store,
)

MAX_EXAMPLES = 12
SEED = 20241113


def test_schemathesis_finds_no_server_error_or_schema_violation(engine, db_url, tmp_path):
    schedules = {pair: PairSchedule("24/7", 0, "equity") for pair in MONITORED_PAIRS}
    store = ObservabilityStore(
        engine, monitored_pairs=MONITORED_PAIRS, data_lag_rules=DataLagRules(schedules)
    )
    now = seed_healthy(store)
    # Data time in every body: one pair current, one late (within tolerance, so health stays
    # healthy and /healthz 200), the rest missing (no bar), and a coverage sample.
    current, _, late = MONITORED_PAIRS[:3]
    store.update_feature_freshness_many(
        [
            {
                "symbol": symbol,
                "timeframe": tf,
                "last_computed_at": now,
                "data_point_count": 10,
                "last_bar_at": bar,
            }
            for (symbol, tf), bar in ((current, now), (late, now - timedelta(hours=2)))
        ]
    )
    store.data_time.record_coverage_sample()
    app = create_app(settings_for_store(db_url, tmp_path, token=TOKEN), store=store)

    with running_server(app) as url:
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "schemathesis.cli",
                "run",
                f"{url}/openapi.json",
                "--header",
                f"Authorization: Bearer {TOKEN}",
                "--checks",
                "all",
                "--phases",
                "examples,coverage,fuzzing",
                "--max-examples",
                str(MAX_EXAMPLES),
                "--seed",
                str(SEED),
                "--workers",
                "2",
                "--request-timeout",
                "10",
                "--no-color",
            ],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=240,
            check=False,
        )

    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    # Every operation but the document itself (schemathesis does not test the schema's own URL).
    assert f"Tested: {len(ROUTES) - 1}" in result.stdout, result.stdout[-3000:]
    assert "No issues found" in result.stdout
