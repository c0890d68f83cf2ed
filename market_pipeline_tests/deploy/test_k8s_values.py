"""deploy/k8s: the Helm values for Dagster's chart and the code location's Dockerfile, checked for
structure (no cluster or Docker engine runs here, and the chart's values.schema.json ships only
with the chart itself). Each check is something a typo would break at `helm install` or at run
launch: a key the chart does not read, a module or port that does not match, a probe on a path
the admin API does not serve, a secret written into the file."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest
import yaml

from market_pipeline.api.handlers import ROUTES
from market_pipeline.config import settings as settings_module

K8S = Path(__file__).resolve().parents[2] / "deploy" / "k8s"
# Top-level keys of the dagster chart 1.13 that these values may set.
CHART_KEYS = {
    "global",
    "dagster-user-deployments",
    "dagsterWebserver",
    "runLauncher",
    "postgresql",
    "generatePostgresqlPasswordSecret",
    "dagsterDaemon",
    "extraManifests",
    "computeLogManager",
    "serviceAccount",
    "ingress",
}
RUN_LAUNCHERS = {"K8sRunLauncher", "CeleryK8sRunLauncher"}


@pytest.fixture(scope="module")
def values() -> dict:
    return yaml.safe_load((K8S / "values.yaml").read_text())


@pytest.fixture(scope="module")
def dockerfile() -> str:
    return (K8S / "Dockerfile").read_text()


def _admin_api(values: dict) -> dict:
    [deployment] = [m for m in values["extraManifests"] if m["kind"] == "Deployment"]
    return deployment


def test_only_keys_of_the_chart_are_set(values):
    assert set(values) <= CHART_KEYS, set(values) - CHART_KEYS


def test_the_user_deployment_serves_this_package_from_the_image_the_dockerfile_builds(
    values, dockerfile
):
    [deployment] = values["dagster-user-deployments"]["deployments"]
    assert values["dagster-user-deployments"]["enabled"] is True
    assert {"name", "image", "dagsterApiGrpcArgs", "port"} <= set(deployment)
    assert set(deployment["image"]) == {"repository", "tag", "pullPolicy"}
    assert deployment["image"]["tag"] != "latest"
    args = deployment["dagsterApiGrpcArgs"]
    module = args[args.index("--module-name") + 1]
    assert importlib.util.find_spec(module) is not None
    cmd = re.search(r"^CMD (\[.*\])", dockerfile, flags=re.MULTILINE | re.DOTALL)
    assert cmd and module in cmd.group(1) and str(deployment["port"]) in cmd.group(1)
    assert re.search(rf"^EXPOSE .*\b{deployment['port']}\b", dockerfile, flags=re.MULTILINE)


def test_runs_are_launched_on_kubernetes_with_monitoring_and_a_queue(values):
    assert values["runLauncher"]["type"] in RUN_LAUNCHERS
    daemon = values["dagsterDaemon"]
    assert daemon["runCoordinator"]["type"] == "QueuedRunCoordinator"
    assert daemon["runCoordinator"]["config"]["queuedRunCoordinator"]["maxConcurrentRuns"] >= 1
    assert daemon["runMonitoring"]["enabled"] is True


def test_the_instance_is_an_external_postgresql_whose_password_is_a_secret(values):
    pg = values["postgresql"]
    assert pg["enabled"] is False and pg["postgresqlHost"]
    assert pg["postgresqlScheme"] == "postgresql+psycopg2"  # SQLAlchemy 2.1 needs the driver
    assert "postgresqlPassword" not in pg
    assert values["generatePostgresqlPasswordSecret"] is False
    assert values["global"]["postgresqlSecretName"]


def test_the_admin_api_has_probes_on_paths_it_serves_and_the_same_image(values, dockerfile):
    deployment = _admin_api(values)
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    served = {path for path, _handler, _auth in ROUTES}
    assert container["livenessProbe"]["httpGet"]["path"] == "/livez" in served
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz" in served
    command = container["command"]
    assert command[:2] == ["market-pipeline", "serve"]
    port = int(command[command.index("--port") + 1])
    assert container["ports"][0]["containerPort"] == port
    assert re.search(rf"^EXPOSE .*\b{port}\b", dockerfile, flags=re.MULTILINE)
    [code] = values["dagster-user-deployments"]["deployments"]
    assert container["image"] == f"{code['image']['repository']}:{code['image']['tag']}"
    [service] = [m for m in values["extraManifests"] if m["kind"] == "Service"]
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]


def test_every_environment_variable_set_is_one_the_package_reads(values):
    names = set()
    for deployment in values["dagster-user-deployments"]["deployments"]:
        names |= {e["name"] for e in deployment.get("env", [])}
    [container] = _admin_api(values)["spec"]["template"]["spec"]["containers"]
    names |= {e["name"] for e in container.get("env", [])}
    known = set(re.findall(r"``(MARKET_PIPELINE_[A-Z_]+)``", settings_module.__doc__ or ""))
    assert names - {"DAGSTER_HOME"} <= known, names - known


def test_no_secret_value_is_written_in_the_values(values):
    def walk(node, path=""):
        if isinstance(node, dict):
            for key, value in node.items():
                yield from walk(value, f"{path}.{key}")
        elif isinstance(node, list):
            for i, value in enumerate(node):
                yield from walk(value, f"{path}[{i}]")
        else:
            yield path, node

    for path, value in walk(values):
        leaf = path.rsplit(".", 1)[-1].lower()
        assert not (("password" in leaf or "token" in leaf) and value), path
    env_values = [
        e.get("value", "")
        for d in values["dagster-user-deployments"]["deployments"]
        for e in d.get("env", [])
    ]
    assert not any("://" in str(v) for v in env_values)  # URLs (with credentials) are secrets
