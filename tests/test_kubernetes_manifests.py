"""deploy/kubernetes: valid for Kubernetes 1.37 (its JSON schemas, strict: no unknown field), and
consistent with Beacon itself (queues, settings, time limits, probes)."""

from __future__ import annotations

import re
from pathlib import Path

import kubernetes_validate
import pytest
import yaml
from django.conf import settings

ROOT = Path(__file__).resolve().parent.parent
MANIFESTS = ROOT / "deploy" / "kubernetes"
KUBERNETES_VERSION = "1.37.0"
# Keys of the Secret that are not Beacon settings: the release job's DATABASE_URL, KEDA's host.
NOT_SETTINGS = {"DATABASE_DIRECT_URL", "RABBITMQ_KEDA_HOST"}


def _resources() -> list[dict]:
    found = []
    for path in sorted(MANIFESTS.glob("*.yaml")):
        found += [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    return found


def _one(kind: str, name: str) -> dict:
    matches = [r for r in _resources() if r["kind"] == kind and r["metadata"]["name"] == name]
    assert len(matches) == 1, f"{kind}/{name}: {len(matches)} found"
    return matches[0]


def _container(deployment: dict) -> dict:
    return deployment["spec"]["template"]["spec"]["containers"][0]


def _env(container: dict) -> dict[str, str]:
    return {item["name"]: item.get("value") for item in container.get("env", [])}


def _workers() -> list[dict]:
    return [r for r in _resources() if r["kind"] == "Deployment" and r["metadata"]["name"].startswith("beacon-worker-")]


@pytest.mark.parametrize("resource", [r for r in _resources() if not r["apiVersion"].startswith("keda.sh/")],
                         ids=lambda r: f"{r['kind']}/{r['metadata']['name']}")
def test_every_kubernetes_resource_is_valid_against_the_schemas(resource: dict) -> None:
    kubernetes_validate.validate(resource, KUBERNETES_VERSION, strict=True)


def test_a_worker_deployment_per_celery_queue_each_consuming_only_its_queue() -> None:
    queues = {settings.CELERY_TASK_DEFAULT_QUEUE, *(route["queue"] for route in settings.CELERY_TASK_ROUTES.values())}

    consumed = {_env(_container(worker))["WORKER_QUEUES"] for worker in _workers()}

    assert consumed == queues
    config = _one("ConfigMap", "beacon-config")["data"]
    assert config["DISPATCH_SENDS_INLINE"] == "false"  # sends go through their channel's workers


def test_workers_shut_down_warm_for_longer_than_any_task_may_run() -> None:
    for worker in _workers():
        grace = worker["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
        assert grace > settings.CELERY_TASK_TIME_LIMIT, worker["metadata"]["name"]


def test_keda_scales_each_worker_deployment_on_its_own_queue() -> None:
    scaled = [r for r in _resources() if r["kind"] == "ScaledObject"]
    secret_keys = set(_one("Secret", "beacon-secrets")["stringData"])
    auth = _one("TriggerAuthentication", "beacon-rabbitmq")

    assert {s["spec"]["scaleTargetRef"]["name"] for s in scaled} == {w["metadata"]["name"] for w in _workers()}
    for scaled_object in scaled:
        worker = _one("Deployment", scaled_object["spec"]["scaleTargetRef"]["name"])
        (trigger,) = scaled_object["spec"]["triggers"]
        assert trigger["type"] == "rabbitmq"
        assert trigger["metadata"]["queueName"] == _env(_container(worker))["WORKER_QUEUES"]
        assert trigger["authenticationRef"]["name"] == auth["metadata"]["name"]
        assert 1 <= scaled_object["spec"]["minReplicaCount"] <= scaled_object["spec"]["maxReplicaCount"]
    assert {ref["key"] for ref in auth["spec"]["secretTargetRef"]} <= secret_keys


def test_beat_runs_as_a_single_replica_replaced_not_rolled() -> None:
    beat = _one("Deployment", "beacon-beat")

    assert beat["spec"]["replicas"] == 1
    assert beat["spec"]["strategy"]["type"] == "Recreate"


def test_web_probes_liveness_on_healthz_and_readiness_on_readyz_with_an_allowed_host() -> None:
    web = _container(_one("Deployment", "beacon-web"))
    allowed = _one("ConfigMap", "beacon-config")["data"]["ALLOWED_HOSTS"].split(",")

    assert web["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert web["readinessProbe"]["httpGet"]["path"].startswith("/readyz")
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        hosts = [h["value"] for h in web[probe]["httpGet"]["httpHeaders"] if h["name"] == "Host"]
        assert hosts and hosts[0] in allowed, probe


def test_every_deployment_but_beat_has_a_disruption_budget_selecting_it() -> None:
    budgets = [r for r in _resources() if r["kind"] == "PodDisruptionBudget"]
    for deployment in (r for r in _resources() if r["kind"] == "Deployment" and r["metadata"]["name"] != "beacon-beat"):
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert any(b["spec"]["selector"]["matchLabels"].items() <= labels.items() for b in budgets), \
            deployment["metadata"]["name"]


def test_the_release_job_migrates_straight_to_postgresql() -> None:
    job = _one("Job", "beacon-release")
    container = job["spec"]["template"]["spec"]["containers"][0]

    assert container["args"] == ["release"]
    (database_url,) = [item for item in container["env"] if item["name"] == "DATABASE_URL"]
    assert database_url["valueFrom"]["secretKeyRef"]["key"] == "DATABASE_DIRECT_URL"


def test_every_setting_the_manifests_set_is_a_documented_beacon_setting() -> None:
    documented = set(re.findall(r"^#? ?([A-Z][A-Z0-9_]+)=", (ROOT / ".env.example").read_text(), re.MULTILINE))
    names = set(_one("ConfigMap", "beacon-config")["data"]) | set(_one("Secret", "beacon-secrets")["stringData"])
    for deployment in (r for r in _resources() if r["kind"] == "Deployment"):
        names |= set(_env(_container(deployment)))

    assert names - NOT_SETTINGS - documented == set()
