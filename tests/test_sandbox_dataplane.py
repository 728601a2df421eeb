"""The local KServe data plane as one process: real model servers behind an InferenceService.

Given the API server emulator and ``python -m modelrollout.sandbox.kserve --runtime process``,
when the serverless router deploys a model and then a canary at 50%, then each revision is a
real KServe model server, predictions through the sandbox router reach both, and the router's
``/metrics`` counts requests per revision under Knative's queue-proxy names.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import sys
import urllib.error
import urllib.request
from pathlib import Path

from kubernetes import config

from mlflow_server import free_port
from modelrollout.api import ModelVersionRef
from modelrollout.routing.base import RouteTarget
from modelrollout.routing.kserve_serverless import ServerlessRouter
from modelrollout.sandbox.kubeapi.testing import KubeApiProcess
from modelrollout.sandbox.scenario import served_by_router
from processes import Kubectl, Process, running, wait_for

BUCKET = "s3://sandbox-bucket/"
ROW = [0.03, 0.05, 0.06, 0.02, -0.04, -0.03, -0.04, 0.0, 0.02, -0.02]


def predict(port: int, namespace: str, isvc: str) -> list[float]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/{namespace}/{isvc}/v1/models/{isvc}:predict",
        data=json.dumps({"instances": [ROW]}).encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as answer:
        predictions: list[float] = json.loads(answer.read())["predictions"]
        return predictions


def first_prediction(port: int, namespace: str, isvc: str) -> list[float] | None:
    """None while the router has no ready revision for it yet (503)."""
    try:
        return predict(port, namespace, isvc)
    except urllib.error.HTTPError as error:
        if error.code == 503:
            return None
        raise


def request_counts(port: int, namespace: str) -> dict[str, float]:
    return served_by_router(f"http://127.0.0.1:{port}", namespace)


def test_revisions_are_real_model_servers_behind_the_router(
    kube_api: KubeApiProcess, diabetes_model_dir: Path, tmp_path: Path
) -> None:
    models = tmp_path / "bucket"
    for version in ("1", "2"):
        shutil.copytree(diabetes_model_dir, models / "diabetes" / version)
    port = free_port()
    kubectl = Kubectl(kube_api.kubeconfig)
    dataplane = Process(
        "dataplane",
        [
            sys.executable, "-m", "modelrollout.sandbox.kserve",
            "--kubeconfig", str(kube_api.kubeconfig), "--runtime", "process",
            "--router-port", str(port), "--run-dir", str(tmp_path),
            "--storage-root", f"{BUCKET}={models}",
        ],
        tmp_path,
        {},
    )  # fmt: skip
    idle = Process("idle-operator", [sys.executable, "-c", "pass"], tmp_path, {})
    namespace = "dataplane"
    kubectl("create", "namespace", namespace)
    router = ServerlessRouter(config.new_client_from_config(str(kube_api.kubeconfig)))
    target = RouteTarget(namespace, "diabetes", {"model": {"modelFormat": {"name": "sklearn"}}})
    stable = ModelVersionRef("models:/diabetes/1", f"{BUCKET}diabetes/1", "diabetes", "1")
    canary = ModelVersionRef("models:/diabetes/2", f"{BUCKET}diabetes/2", "diabetes", "2")

    def observed() -> object:
        return asyncio.run(router.observe(target))

    with running(kubectl, dataplane, idle):
        asyncio.run(router.promote(target, stable))
        first = wait_for("v1 ready", lambda: (o := observed()) and o.ready and o, timeout=90)
        assert first.stable_storage_uri == stable.storage_uri  # type: ignore[attr-defined]
        (value,) = wait_for("a prediction", lambda: first_prediction(port, namespace, "diabetes"))
        assert 25 < value < 350

        asyncio.run(router.set_weight(target, stable, canary, 50))
        split = wait_for(
            "the 50% split",
            lambda: (o := observed()) and o.ready and o.canary_weight == 50 and o,
            timeout=90,
        )
        revisions = {split.stable_revision, split.canary_revision}  # type: ignore[attr-defined]

        def both_serving() -> bool:
            for _ in range(5):
                predict(port, namespace, "diabetes")
            return set(request_counts(port, namespace)) == revisions

        wait_for("the router to send traffic to both revisions", both_serving, timeout=30)
        before = request_counts(port, namespace)
        for _ in range(60):
            predict(port, namespace, "diabetes")
        after = request_counts(port, namespace)
        served = {revision: after[revision] - before[revision] for revision in revisions}
        assert sum(served.values()) == 60
        assert min(served.values()) >= 10  # 60 draws at 50%: both arms take their share
