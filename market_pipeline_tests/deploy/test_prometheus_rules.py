"""The shipped Prometheus and Alertmanager files: checked by promtool and amtool, every alert unit
tested firing and not firing, and every metric the rules name present in a real exposition, so a
wrong metric name or a broken rule fails CI."""

from __future__ import annotations

import re
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from market_pipeline.domain.lag_rules import DataLagRules, PairSchedule
from market_pipeline.observability.metrics.collector import PipelineCollector, metrics_registry
from market_pipeline.observability.metrics.dagster_watch import DagsterWatch
from market_pipeline.observability.metrics.families import MetricsConfig
from market_pipeline.observability.store import ObservabilityStore

REPO = Path(__file__).resolve().parents[2]
PROMETHEUS = REPO / "deploy" / "prometheus"
ALERTMANAGER = REPO / "deploy" / "alertmanager" / "alertmanager.yml"
RULE_FILES = sorted((PROMETHEUS / "rules").glob("*.yml"))
ALERT_TESTS = PROMETHEUS / "tests" / "alerts_test.yml"
METRIC_NAME = re.compile(r"\bmarket_pipeline_[a-z_]+\b")


def _run(*argv: str | Path, cwd: Path = PROMETHEUS) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [str(a) for a in argv], cwd=cwd, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def _rules() -> list[dict]:
    return [
        rule
        for path in RULE_FILES
        for group in yaml.safe_load(path.read_text())["groups"]
        for rule in group["rules"]
    ]


def _alerts() -> list[dict]:
    return [rule for rule in _rules() if "alert" in rule]


def test_promtool_accepts_the_config_and_the_rules():
    _run("promtool", "check", "config", "prometheus.yml")
    _run("promtool", "check", "rules", *RULE_FILES)


def test_promtool_unit_tests_of_the_alerts_pass():
    assert "SUCCESS" in _run("promtool", "test", "rules", ALERT_TESTS).stdout


def test_amtool_accepts_the_alertmanager_example():
    _run("amtool", "check-config", ALERTMANAGER)


def test_every_alert_is_tested_firing_and_not_firing():
    firing, silent = set(), set()
    for case in yaml.safe_load(ALERT_TESTS.read_text())["tests"]:
        for check in case.get("alert_rule_test", []):
            (firing if check["exp_alerts"] else silent).add(check["alertname"])
    names = {rule["alert"] for rule in _alerts()}
    assert names - firing == set(), "never shown firing"
    assert names - silent == set(), "never shown not firing"


def test_every_alert_has_severity_scope_summary_and_a_runbook_section():
    readme = (REPO / "README.md").read_text()
    anchors = {
        re.sub(r"[^a-z0-9 -]", "", heading.strip().lower()).replace(" ", "-")
        for heading in re.findall(r"^#+ (.+)$", readme, flags=re.MULTILINE)
    }
    for rule in _alerts():
        name = rule["alert"]
        assert rule["labels"]["severity"] in ("critical", "warning"), name
        assert rule["labels"]["scope"] in ("scheduler", "pairs", "pair"), name
        assert rule["annotations"]["summary"], name
        runbook = rule["annotations"]["runbook"]
        assert runbook.startswith("README.md#"), name
        assert runbook.removeprefix("README.md#") in anchors, f"{name}: no section {runbook}"


def _exposed_names(engine, instance) -> set[str]:
    """Every family and sample name of a real exposition with data in every family."""
    now = datetime.now(UTC)
    pairs = [("AAA", "1h"), ("BBB", "1h")]
    schedules = {pair: PairSchedule("24/7", 0, "equity") for pair in pairs}
    store = ObservabilityStore(
        engine, monitored_pairs=pairs, data_lag_rules=DataLagRules(schedules)
    )
    store.update_feature_freshness(
        symbol="AAA", timeframe="1h", last_computed_at=now, data_point_count=5
    )
    store.data_time.record_coverage_sample()
    execution = store.create_scheduler_execution_log(started_at=now - timedelta(minutes=1))
    store.update_scheduler_execution_log(
        execution_id=execution, completed_at=now, status="completed"
    )
    store.log_feature_computation_failure(
        symbol="BBB", timeframe="1h", error_message="boom", execution_id=execution
    )
    config = MetricsConfig(
        provider="synthetic",
        asset_classes={"AAA": "equity", "BBB": "equity"},
        timeframes=("1h",),
        expected_interval_seconds=900,
        failure_alert_threshold=3,
        per_pair=True,
    )
    watch = DagsterWatch(instance)
    try:
        text = generate_latest(metrics_registry(PipelineCollector(store, config, watch))).decode()
    finally:
        watch.stop()
    families = list(text_string_to_metric_families(text))
    return {f.name for f in families} | {s.name for f in families for s in f.samples}


@pytest.mark.parametrize("source", ["rules", "rule unit tests"])
def test_every_metric_the_rules_name_is_exported(source, engine, live_instance):
    if source == "rules":
        text = "\n".join(rule["expr"] for rule in _rules())
    else:
        text = ALERT_TESTS.read_text()
    named = set(METRIC_NAME.findall(text))
    assert named, "no metric names found"
    assert named - _exposed_names(engine, live_instance) == set()
