"""The operator end to end: real processes talking the Kubernetes HTTP API.

The API server emulator, the local KServe controller and the operator
(``modelrollout run``) each run as their own process; the tests steer with
kubectl as a person would. The registry and metric ports use the static
implementations here (no MLflow or Prometheus yet). Every test reads as Given /
When / Then and asserts the InferenceService, the ModelRollout status and
conditions, and the events. The RBAC in ``deploy/`` is checked against the
calls the operator made here in tests/test_e2e_rbac.py.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from modelrollout import api
from modelrollout.sandbox.kubeapi.testing import KubeApiProcess
from processes import Kubectl, kserve_controller, operator, running, wait_for
from recorders import SpecRecorder

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[1]
SUCCESS_RATE_QUERY = "modelrollout_e2e_success_rate"


class Cluster:
    def __init__(self, kube_api: KubeApiProcess, workdir: Path) -> None:
        self.api = kube_api
        self.kubectl = Kubectl(kube_api.kubeconfig)
        self.workdir = workdir
        self.metrics = workdir / "metrics.json"
        self.metrics.write_text(json.dumps({SUCCESS_RATE_QUERY: 0.999}))
        self.operator = operator(
            workdir, kube_api.kubeconfig, MODELROLLOUT_METRICS=f"static:{self.metrics}"
        )
        self.kserve = kserve_controller(workdir, kube_api.kubeconfig)

    def namespace(self, name: str) -> str:
        self.kubectl("create", "namespace", name)
        return name

    def apply(self, namespace: str, rollout: dict[str, Any]) -> None:
        body = {"apiVersion": api.API_VERSION, "kind": api.ROLLOUT_KIND, **rollout}
        body["metadata"] = {**body.get("metadata", {}), "namespace": namespace}
        self.kubectl("apply", "-f", "-", stdin=yaml.safe_dump(body))

    def rollout(self, namespace: str, name: str) -> dict[str, Any]:
        found: dict[str, Any] = self.kubectl.json("get", "mro", name, "-n", namespace)
        return found

    def status(self, namespace: str, name: str) -> dict[str, Any]:
        found: dict[str, Any] = self.rollout(namespace, name).get("status", {})
        return found

    def isvc(self, namespace: str, name: str) -> dict[str, Any]:
        found: dict[str, Any] = self.kubectl.json("get", "isvc", name, "-n", namespace)
        return found

    def wait_phase(self, namespace: str, name: str, *phases: str, timeout: float = 60) -> dict:
        def probe() -> dict[str, Any] | None:
            status = self.status(namespace, name)
            return status if status.get("phase") in phases else None

        return wait_for(f"{namespace}/{name} in {phases}", probe, timeout)

    def events(self, namespace: str, name: str) -> list[str]:
        """Event reasons for the rollout, oldest first."""
        items = self.kubectl.json(
            "get", "events", "-n", namespace, "--field-selector", f"involvedObject.name={name}"
        )["items"]
        items.sort(key=lambda e: (e.get("firstTimestamp") or "", e["metadata"]["name"]))
        return [e["reason"] for e in items]


@pytest.fixture(scope="module")
def cluster(
    kube_api: KubeApiProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    """Given the emulator, the KServe CRD, the local KServe controller and the operator."""
    found = Cluster(kube_api, tmp_path_factory.mktemp("e2e"))
    with running(found.kubectl, found.kserve, found.operator):
        yield found


def rollout_body(name: str, version: int, steps: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "metadata": {"name": name},
        "spec": {
            "model": {"uri": f"models:/{name}/{version}"},
            "target": {
                "inferenceService": name,
                "predictor": {"model": {"modelFormat": {"name": "sklearn"}}},
            },
            "strategy": {"steps": steps},
        },
    }


def storage(name: str, version: int) -> str:
    return f"s3://models/{name}/{version}"


def start_stable(cluster: Cluster, namespace: str, name: str, steps: list[dict[str, Any]]) -> None:
    cluster.apply(namespace, rollout_body(name, 1, steps))
    status = cluster.wait_phase(namespace, name, "Succeeded")
    assert status["stable"]["storageUri"] == storage(name, 1)


def serves_alone(cluster: Cluster, namespace: str, name: str, uri: str) -> bool:
    isvc = cluster.isvc(namespace, name)
    predictor = isvc["spec"]["predictor"]
    traffic = isvc.get("status", {}).get("components", {}).get("predictor", {}).get("traffic", [])
    return (
        predictor["model"]["storageUri"] == uri
        and "canaryTrafficPercent" not in predictor
        and [t["percent"] for t in traffic] == [100]
    )


def test_an_inline_model_is_promoted_through_its_steps(cluster: Cluster) -> None:
    """Given v1 stable, when the spec names v2, then v2 walks 20% and 50% and is promoted."""
    ns = cluster.namespace("e2e-promote")
    steps = [
        {"setWeight": 20},
        {"pause": {"duration": "2s"}},
        {"setWeight": 50},
        {"pause": {"duration": "2s"}},
    ]
    start_stable(cluster, ns, "fraud", steps)
    assert serves_alone(cluster, ns, "fraud", storage("fraud", 1))
    recorder = SpecRecorder(cluster.api.kubeconfig, ns, "fraud")

    cluster.kubectl(
        "patch", "mro", "fraud", "-n", ns, "--type", "merge",
        "-p", '{"spec": {"model": {"uri": "models:/fraud/2"}}}',
    )  # fmt: skip
    paused = cluster.wait_phase(ns, "fraud", "Paused")
    table = cluster.kubectl("get", "mro", "fraud", "-n", ns).splitlines()
    assert table[0].split() == ["NAME", "PHASE", "WEIGHT", "STABLE", "CANARY", "READY", "AGE"]
    assert table[1].split()[:6] == [
        "fraud",
        "Paused",
        str(paused["canaryWeight"]),
        "1",
        "2",
        "True",
    ]
    status = cluster.wait_phase(ns, "fraud", "Succeeded", timeout=60)

    assert status["stable"]["storageUri"] == storage("fraud", 2)
    assert "canary" not in status
    assert status["canaryWeight"] == 0
    assert [h["outcome"] for h in status["history"]] == ["Initialized", "Promoted"]
    conditions = {c["type"]: (c["status"], c["reason"]) for c in status["conditions"]}
    assert conditions["Ready"] == ("True", "Serving")
    assert conditions["Progressing"] == ("False", "RolloutCompleted")
    wait_for("v2 alone", lambda: serves_alone(cluster, ns, "fraud", storage("fraud", 2)))
    assert recorder.close() == [
        (storage("fraud", 1), None),
        (storage("fraud", 2), 20),
        (storage("fraud", 2), 50),
        (storage("fraud", 2), None),
    ]
    reasons = cluster.events(ns, "fraud")
    for reason in ("Initialized", "RolloutStarted", "TrafficWeightUpdated", "RolloutPromoted"):
        assert reason in reasons
    assert reasons.count("StepAdvanced") == 4


def test_an_abort_annotation_rolls_back_to_stable(cluster: Cluster) -> None:
    """Given a canary waiting at 20%, when someone annotates abort, then stable serves alone."""
    ns = cluster.namespace("e2e-abort")
    steps = [{"setWeight": 20}, {"pause": {}}, {"setWeight": 60}]
    start_stable(cluster, ns, "churn", steps)
    cluster.kubectl(
        "patch", "mro", "churn", "-n", ns, "--type", "merge",
        "-p", '{"spec": {"model": {"uri": "models:/churn/2"}}}',
    )  # fmt: skip
    waiting = cluster.wait_phase(ns, "churn", "Paused")
    assert waiting["canaryWeight"] == 20

    cluster.kubectl("annotate", "mro", "churn", "-n", ns, f"{api.ACTION_ANNOTATION}=abort:1")
    status = cluster.wait_phase(ns, "churn", "Failed")

    assert status["failedVersions"] == ["churn/2"]
    assert status["history"][-1]["outcome"] == "Aborted"
    assert status["lastAction"] == "abort:1"
    conditions = {c["type"]: (c["status"], c["reason"]) for c in status["conditions"]}
    assert conditions["Progressing"] == ("False", "RolloutAborted")
    assert conditions["Ready"] == ("True", "Serving")
    wait_for("v1 alone", lambda: serves_alone(cluster, ns, "churn", storage("churn", 1)))
    reasons = cluster.events(ns, "churn")
    assert "RolloutAborted" in reasons
    assert "RolledBack" in reasons
    # The failed version stays refused: the next passes start nothing.
    again = cluster.wait_phase(ns, "churn", "Failed")
    assert again["failedVersions"] == ["churn/2"]


def test_a_killed_operator_resumes_without_skipping_or_repeating_a_step(cluster: Cluster) -> None:
    """Given a canary in a pause, when the operator is SIGKILLed and restarted, then the
    rollout ends the same way and the InferenceService takes each weight once, in order."""
    ns = cluster.namespace("e2e-restart")
    steps = [
        {"setWeight": 10},
        {"pause": {"duration": "3s"}},
        {"setWeight": 30},
        {"pause": {"duration": "2s"}},
        {"setWeight": 60},
        {"pause": {"duration": "1s"}},
    ]
    start_stable(cluster, ns, "ranker", steps)
    recorder = SpecRecorder(cluster.api.kubeconfig, ns, "ranker")
    cluster.kubectl(
        "patch", "mro", "ranker", "-n", ns, "--type", "merge",
        "-p", '{"spec": {"model": {"uri": "models:/ranker/2"}}}',
    )  # fmt: skip
    cluster.wait_phase(ns, "ranker", "Paused")

    cluster.operator.kill()
    cluster.operator.start()
    status = cluster.wait_phase(ns, "ranker", "Succeeded", timeout=90)

    assert status["stable"]["storageUri"] == storage("ranker", 2)
    assert [h["outcome"] for h in status["history"]] == ["Initialized", "Promoted"]
    wait_for("v2 alone", lambda: serves_alone(cluster, ns, "ranker", storage("ranker", 2)))
    assert recorder.close() == [
        (storage("ranker", 1), None),
        (storage("ranker", 2), 10),
        (storage("ranker", 2), 30),
        (storage("ranker", 2), 60),
        (storage("ranker", 2), None),
    ]


def test_api_errors_on_inferenceservice_patches_are_retried_without_duplicates(
    cluster: Cluster,
) -> None:
    """Given 409, 429 and 500 answers to the next InferenceService patches, when a new model
    arrives, then the rollout still completes, each step once, each event once."""
    ns = cluster.namespace("e2e-faults")
    steps = [{"setWeight": 25}, {"setWeight": 75}]
    start_stable(cluster, ns, "scorer", steps)
    recorder = SpecRecorder(cluster.api.kubeconfig, ns, "scorer")
    for code in (409, 429, 500):
        cluster.api.inject_fault(
            verb="patch",
            group="serving.kserve.io",
            resource="inferenceservices",
            namespace=ns,
            code=code,
        )

    cluster.kubectl(
        "patch", "mro", "scorer", "-n", ns, "--type", "merge",
        "-p", '{"spec": {"model": {"uri": "models:/scorer/2"}}}',
    )  # fmt: skip
    status = wait_for(
        "v2 promoted",
        lambda: (
            (found := cluster.status(ns, "scorer"))
            and found.get("phase") == "Succeeded"
            and found["stable"]["storageUri"] == storage("scorer", 2)
            and found
        ),
        timeout=90,
    )
    assert [h["outcome"] for h in status["history"]] == ["Initialized", "Promoted"]

    refused = [
        a["code"]
        for a in cluster.api.audit()
        if a["verb"] == "patch" and a["resource"] == "inferenceservices" and a["namespace"] == ns
    ]
    assert [c for c in refused if c >= 400] == [409, 429, 500]
    assert recorder.close() == [
        (storage("scorer", 1), None),
        (storage("scorer", 2), 25),
        (storage("scorer", 2), 75),
        (storage("scorer", 2), None),
    ]
    reasons = cluster.events(ns, "scorer")
    assert reasons.count("RolloutStarted") == 1
    assert reasons.count("TrafficWeightUpdated") == 2
    assert reasons.count("StepAdvanced") == 2
    assert reasons.count("RolloutPromoted") == 1


def test_deleting_a_rollout_restores_stable_and_releases_the_finalizer(cluster: Cluster) -> None:
    """Given a canary at 40%, when the ModelRollout is deleted, then traffic goes back to the
    stable model and only then does the object go away."""
    ns = cluster.namespace("e2e-delete")
    steps = [{"setWeight": 40}, {"pause": {}}]
    start_stable(cluster, ns, "eta", steps)
    cluster.kubectl(
        "patch", "mro", "eta", "-n", ns, "--type", "merge",
        "-p", '{"spec": {"model": {"uri": "models:/eta/2"}}}',
    )  # fmt: skip
    cluster.wait_phase(ns, "eta", "Paused")
    assert cluster.rollout(ns, "eta")["metadata"]["finalizers"] == [f"{api.GROUP}/finalizer"]

    cluster.kubectl("delete", "mro", "eta", "-n", ns, "--wait=false")
    wait_for(
        "the rollout to be gone",
        lambda: (
            "NotFound" in cluster.kubectl("get", "mro", "eta", "-n", ns, check=False)
            or cluster.kubectl("get", "mro", "-n", ns, "-o", "name") == ""
        ),
    )

    assert serves_alone(cluster, ns, "eta", storage("eta", 1))


def test_a_metric_template_judges_the_canary(cluster: Cluster) -> None:
    """Given a MetricTemplate and a threshold, when the canary measures well it is promoted;
    when the next one measures badly it is rolled back on its own (AnalysisFailed)."""
    ns = cluster.namespace("e2e-analysis")
    template = {
        "apiVersion": api.API_VERSION,
        "kind": api.TEMPLATE_KIND,
        "metadata": {"name": "success-rate", "namespace": ns},
        "spec": {
            "provider": {"prometheus": {"address": "http://127.0.0.1:9"}},
            "query": SUCCESS_RATE_QUERY,
        },
    }
    cluster.kubectl("apply", "-f", "-", stdin=yaml.safe_dump(template))
    body = rollout_body("pricing", 1, [{"setWeight": 50}, {"pause": {"duration": "1s"}}])
    body["spec"]["strategy"]["analysis"] = {
        "interval": "1s",
        "metrics": [
            {
                "name": "success-rate",
                "templateRef": {"name": "success-rate"},
                "thresholdRange": {"min": 0.99},
            }
        ],
    }
    cluster.apply(ns, body)
    cluster.wait_phase(ns, "pricing", "Succeeded")
    body["spec"]["model"]["uri"] = "models:/pricing/2"
    cluster.apply(ns, body)
    promoted = wait_for(
        "v2 promoted",
        lambda: (
            (found := cluster.status(ns, "pricing")).get("stable", {}).get("version") == "2"
            and found
        ),
    )
    metric = promoted["analysis"]["metrics"][0]
    assert metric["verdict"] == "PASS"
    assert metric["successful"] >= 1

    cluster.metrics.write_text(json.dumps({SUCCESS_RATE_QUERY: 0.5}))
    body["spec"]["model"]["uri"] = "models:/pricing/3"
    cluster.apply(ns, body)
    status = cluster.wait_phase(ns, "pricing", "Failed")
    assert status["failedVersions"] == ["pricing/3"]
    assert status["history"][-1]["reason"] == "AnalysisFailed"
    assert status["analysis"]["metrics"][0]["verdict"] == "FAIL"
    wait_for("v2 alone", lambda: serves_alone(cluster, ns, "pricing", storage("pricing", 2)))
    assert "AnalysisFailed" in cluster.events(ns, "pricing")
