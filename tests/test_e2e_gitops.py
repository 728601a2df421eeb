"""GitOps end to end: committing a manifest promotes a model, with a real MLflow and real git.

Processes: the API server emulator, the local KServe controller, ``mlflow server`` (SQLite,
local artifacts) holding real scikit-learn models, a bare git repository, and the operator
(``modelrollout run``) reading both. Given / When / Then:
- a first commit deploys v1, with its provenance (manifest commit, training commit, datasets);
- a commit naming v2 rolls it out and promotes it, and MLflow's ``champion`` alias and the
  rollout tags follow;
- a commit naming a version that fails a registry gate moves no traffic (``GateFailed``);
- under ``verify``, an unsigned commit moves no traffic (``SourceUntrusted``), a signed one does;
- a push webhook (HMAC-signed as GitHub signs it) makes the operator fetch at once;
- a repository behind HTTPS-style token auth (``git http-backend``) and an MLflow token, both
  from Secrets the spec names, deploy and promote; the operator read both Secrets.

The operator logs at DEBUG here (where secrets leak first) and its credentials are the planted
values of tests/planted.py, which the session's scan then looks for in every output.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import subprocess
import time
import urllib.request
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

import planted
from gitrepos import GitHttpServer, Origin
from mlflow_server import MlflowServer, free_port, tracking
from modelrollout import api
from modelrollout.sandbox.kubeapi.testing import KubeApiProcess
from processes import Kubectl, Process, kserve_controller, operator, running, wait_for

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[1]
MODEL = "gitops-diabetes"
BUCKET = "s3://mlflow-bucket/"
TRAINING_COMMITS = {1: "a" * 40, 2: "b" * 40, 3: "c" * 40}
WEBHOOK_SECRET = planted.WEBHOOK_SECRET
GIT_USER = "release-bot"


def register_models(url: str) -> None:
    """v1 and v2 approved, v3 pending approval; each from its own training run."""
    import mlflow
    import mlflow.sklearn
    from mlflow import MlflowClient
    from mlflow.models import infer_signature
    from sklearn.datasets import load_diabetes
    from sklearn.linear_model import Ridge

    data = load_diabetes(as_frame=True)
    features, target = data.data, data.target
    client = MlflowClient(url)
    with tracking(url), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        experiment = client.create_experiment("gitops")
        dataset = mlflow.data.from_pandas(data.frame, name="diabetes", targets="target")
        for version, alpha in ((1, 1.0), (2, 0.5), (3, 0.1)):
            commit = TRAINING_COMMITS[version]
            with mlflow.start_run(
                experiment_id=experiment, tags={"mlflow.source.git.commit": commit}
            ):
                mlflow.log_input(dataset, context="training")
                model = Ridge(alpha=alpha).fit(features, target)
                mlflow.sklearn.log_model(
                    model,
                    name="model",
                    signature=infer_signature(features, model.predict(features)),
                    pip_requirements=["scikit-learn"],
                    registered_model_name=MODEL,
                )
            state = "approved" if version < 3 else "pending"
            client.set_model_version_tag(MODEL, str(version), "validation_status", state)


class GitOps:
    def __init__(self, kube_api: KubeApiProcess, mlflow: MlflowServer, workdir: Path) -> None:
        self.api = kube_api
        self.kubectl = Kubectl(kube_api.kubeconfig)
        self.mlflow_url = mlflow.url
        self.origin = Origin(workdir / "git")
        self.http = GitHttpServer(workdir / "git", GIT_USER, planted.GIT_TOKEN)
        self.webhook_port = free_port()
        self.kserve: Process = kserve_controller(workdir, kube_api.kubeconfig)
        self.operator: Process = operator(
            workdir,
            kube_api.kubeconfig,
            MODELROLLOUT_REGISTRY="mlflow",
            MODELROLLOUT_MLFLOW_TRACKING_URI=mlflow.url,
            MODELROLLOUT_STORAGE_MAP=f"mlflow-artifacts:/={BUCKET}",
            MODELROLLOUT_GIT_CACHE=str(workdir / "git-cache"),
            MODELROLLOUT_GIT_ALLOW_FILE="1",
            MODELROLLOUT_WEBHOOK_ADDRESS=f"127.0.0.1:{self.webhook_port}",
            MODELROLLOUT_WEBHOOK_SECRET=WEBHOOK_SECRET,
            MODELROLLOUT_LOG_LEVEL="DEBUG",
        )

    def manifest(self, version: int, path: str = "models/diabetes.yaml", **options: Any) -> str:
        body = yaml.safe_dump({"modelUri": f"models:/{MODEL}/{version}", "notes": f"v{version}"})
        return self.origin.commit({path: body}, f"promote v{version}", **options)

    def push_hook(self) -> int:
        """What a git host sends on a push, signed as GitHub signs it."""
        body = json.dumps(
            {"ref": "refs/heads/main", "repository": {"clone_url": self.origin.url}}
        ).encode()
        signature = hmac.new(WEBHOOK_SECRET.encode(), body, hashlib.sha256).hexdigest()
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.webhook_port}/hooks/git",
            data=body,
            method="POST",
            headers={
                "Content-Type": "application/json",
                "X-GitHub-Event": "push",
                "X-Hub-Signature-256": f"sha256={signature}",
            },
        )
        with urllib.request.urlopen(request, timeout=10) as answer:
            status: int = answer.status
            return status

    def apply(
        self,
        namespace: str,
        name: str,
        git: dict[str, Any],
        registry: dict[str, Any] | None = None,
    ) -> None:
        body = {
            "apiVersion": api.API_VERSION,
            "kind": api.ROLLOUT_KIND,
            "metadata": {"name": name, "namespace": namespace},
            "spec": {
                "model": {"git": {"repository": self.origin.url, "interval": "1s"} | git},
                "target": {
                    "inferenceService": name,
                    "predictor": {"model": {"modelFormat": {"name": "sklearn"}}},
                },
                "registry": {
                    "gates": {"requiredTags": {"validation_status": "approved"}},
                    "writeBack": {"alias": "champion"},
                }
                | (registry or {}),
                "strategy": {"steps": [{"setWeight": 50}, {"pause": {"duration": "1s"}}]},
            },
        }
        self.kubectl("apply", "-f", "-", stdin=yaml.safe_dump(body))

    def status(self, namespace: str, name: str) -> dict[str, Any]:
        found: dict[str, Any] = self.kubectl.json("get", "mro", name, "-n", namespace)
        return found.get("status", {})

    def wait_stable(self, namespace: str, name: str, version: int) -> dict[str, Any]:
        def probe() -> dict[str, Any] | None:
            status = self.status(namespace, name)
            stable = status.get("stable", {})
            done = status.get("phase") == "Succeeded" and stable.get("version") == str(version)
            return status if done else None

        return wait_for(f"{name} stable at v{version}", probe, timeout=90)

    def condition(self, status: dict[str, Any], kind: str) -> tuple[str, str]:
        found = next(c for c in status.get("conditions", []) if c["type"] == kind)
        return found["status"], found["reason"]

    def isvc_storage(self, namespace: str, name: str) -> str:
        isvc = self.kubectl.json("get", "isvc", name, "-n", namespace)
        storage: str = isvc["spec"]["predictor"]["model"]["storageUri"]
        return storage


@pytest.fixture(scope="module")
def gitops(
    kube_api: KubeApiProcess,
    mlflow_server: MlflowServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[GitOps]:
    workdir = tmp_path_factory.mktemp("gitops")
    mlflow_server.wait_ready()
    register_models(mlflow_server.url)
    found = GitOps(kube_api, mlflow_server, workdir)
    found.http.start()
    try:
        with running(found.kubectl, found.kserve, found.operator):
            yield found
    finally:
        found.http.stop()


def test_committing_a_manifest_deploys_promotes_and_gates_models(gitops: GitOps) -> None:
    from mlflow import MlflowClient

    ns = "gitops"
    gitops.kubectl("create", "namespace", ns)

    # Given v1 committed, when the rollout is applied, then v1 serves with its provenance.
    first = gitops.manifest(1)
    gitops.apply(ns, "diabetes", {"path": "models/diabetes.yaml"})
    status = gitops.wait_stable(ns, "diabetes", 1)
    stable = status["stable"]
    assert stable["gitCommit"] == first
    assert stable["gitAuthor"] == "Alice Example <alice@example.com>"
    assert stable["sourceCommit"] == TRAINING_COMMITS[1]
    assert [d["name"] for d in stable["datasets"]] == ["diabetes"]
    assert stable["storageUri"].startswith(BUCKET)
    assert gitops.isvc_storage(ns, "diabetes") == stable["storageUri"]

    # When v2 is committed, then it is rolled out, promoted, and MLflow follows.
    second = gitops.manifest(2)
    status = gitops.wait_stable(ns, "diabetes", 2)
    assert status["stable"]["gitCommit"] == second
    assert [h["outcome"] for h in status["history"]] == ["Initialized", "Promoted"]
    client = MlflowClient(gitops.mlflow_url)
    assert client.get_model_version_by_alias(MODEL, "champion").version == "2"
    tags = client.get_model_version(MODEL, "2").tags
    assert tags["modelrollout.verdict"] == "Promoted"
    assert tags["modelrollout.commit"] == second
    assert tags["modelrollout.rollout"] == f"{ns}/diabetes"

    # When v3, which is not approved, is committed, then no traffic moves.
    gitops.manifest(3)

    def gated() -> dict[str, Any] | None:
        found = gitops.status(ns, "diabetes")
        return found if found.get("phase") == "Failed" else None

    status = wait_for("v3 refused by its gate", gated, timeout=60)
    assert gitops.condition(status, "Gated") == ("False", "GateFailed")
    assert "validation_status" in status["message"]
    assert status["stable"]["version"] == "2"
    assert "canary" not in status
    assert gitops.isvc_storage(ns, "diabetes") == status["stable"]["storageUri"]
    assert client.get_model_version_by_alias(MODEL, "champion").version == "2"


def test_with_verify_only_signed_commits_move_traffic(gitops: GitOps, tmp_path: Path) -> None:
    ns = "gitops-signed"
    gitops.kubectl("create", "namespace", ns)
    key = tmp_path / "signer"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "release", "-f", str(key)],
        check=True,
        timeout=30,
    )
    allowed = f"release@example.com {key.with_suffix('.pub').read_text().strip()}\n"
    gitops.kubectl(
        "create", "secret", "generic", "signers", "-n", ns,
        f"--from-literal=allowed_signers={allowed}",
    )  # fmt: skip
    path = "signed/diabetes.yaml"
    verify = {"path": path, "verify": {"allowedSignersSecretRef": {"name": "signers"}}}

    # Given a signed commit of v1, then v1 serves.
    gitops.manifest(1, path=path, sign_with=key)
    gitops.apply(ns, "signed", verify)
    gitops.wait_stable(ns, "signed", 1)

    # When an unsigned commit names v2, then nothing moves and the source is untrusted.
    gitops.manifest(2, path=path)

    def untrusted() -> dict[str, Any] | None:
        found = gitops.status(ns, "signed")
        source = next((c for c in found.get("conditions", []) if c["type"] == "SourceReady"), {})
        return found if source.get("reason") == "SourceUntrusted" else None

    status = wait_for("the unsigned commit refused", untrusted, timeout=60)
    assert gitops.condition(status, "SourceReady") == ("False", "SourceUntrusted")
    assert status["stable"]["version"] == "1"
    assert "canary" not in status

    # When the same change is signed, then v2 rolls out.
    gitops.manifest(2, path=path, sign_with=key)
    status = gitops.wait_stable(ns, "signed", 2)
    assert status["stable"]["version"] == "2"


def test_a_push_webhook_fetches_at_once(gitops: GitOps) -> None:
    """Given a rollout that polls only hourly, when a commit is pushed and the git host calls
    the webhook, then the new model rolls out without waiting for the poll."""
    ns = "gitops-webhook"
    gitops.kubectl("create", "namespace", ns)
    path = "hooked/diabetes.yaml"
    gitops.manifest(1, path=path)
    gitops.apply(ns, "hooked", {"path": path, "interval": "1h"})
    gitops.wait_stable(ns, "hooked", 1)

    gitops.manifest(2, path=path)
    time.sleep(3)  # real processes: long enough for several passes, none of which may fetch
    assert gitops.status(ns, "hooked")["stable"]["version"] == "1"
    assert "canary" not in gitops.status(ns, "hooked")

    assert gitops.push_hook() == 202
    status = gitops.wait_stable(ns, "hooked", 2)
    assert status["stable"]["version"] == "2"


def test_credentials_from_secrets_reach_git_and_mlflow_and_nothing_else(gitops: GitOps) -> None:
    """Given a repository served over HTTP with token auth (``git http-backend`` on loopback)
    and a Secret with its token (and an SSH key, which an HTTP fetch never uses), and a
    Secret with an MLflow token, when v1 and then v2 are committed, then both roll out;
    git got the token from the Secret, and the operator read both Secrets (the emulator's
    audit). The session's scan then finds neither value in any log, status or event."""
    ns = "gitops-secrets"
    gitops.kubectl("create", "namespace", ns)
    secrets = {
        "git-credentials": {
            "username": GIT_USER,
            "password": planted.GIT_TOKEN,
            "identity": planted.SSH_PRIVATE_KEY,
        },
        "mlflow-credentials": {"token": planted.MLFLOW_TOKEN},
    }
    for name, data in secrets.items():
        secret = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": name, "namespace": ns},
            "stringData": data,
        }
        gitops.kubectl("apply", "-f", "-", stdin=yaml.safe_dump(secret))
    path = "secret/diabetes.yaml"
    gitops.manifest(1, path=path)
    git = {
        "repository": gitops.http.url("models.git"),
        "path": path,
        "secretRef": {"name": "git-credentials"},
    }
    gitops.apply(ns, "private", git, {"secretRef": {"name": "mlflow-credentials"}})
    gitops.wait_stable(ns, "private", 1)
    gitops.manifest(2, path=path)
    status = gitops.wait_stable(ns, "private", 2)
    assert status["history"][-1]["outcome"] == "Promoted"

    basic = base64.b64encode(f"{GIT_USER}:{planted.GIT_TOKEN}".encode()).decode()
    assert any(seen.authorization == f"Basic {basic}" for seen in gitops.http.seen)
    audit = gitops.api.audit()
    assert planted.secret_reads(audit, ns, "git-credentials") > 0
    assert planted.secret_reads(audit, ns, "mlflow-credentials") > 0
