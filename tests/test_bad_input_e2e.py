"""The bad-input corpus end to end: a sample of each kind, applied with kubectl to the real
processes (the API server emulator with the CRDs, the local KServe controller, and the operator
``modelrollout run`` with the static registry and a real git source).

Given fraud v1 stable and serving alone, each bad input is applied in turn to the same
ModelRollout (and one MetricTemplate), then:
- either the API server refuses it and kubectl says which field (weights outside 0..100 or not
  whole, durations it cannot read, URIs that are no registry URIs, paths out of the repository,
  a MetricTemplate address that is no http(s) URL);
- or the operator gives it a condition with a reason (InvalidSpec, SourceError,
  SourceUntrusted) and posts a warning event with that reason (durations too long, an
  InferenceService name made for PromQL injection, an alias the registry does not know, an
  alias bomb and a manifest above 64 KiB in git, ``.git/config`` and a symbolic link out of
  the repository as the manifest path, an unsigned commit under ``verify``).
And in every case the operator never writes to the InferenceService (the emulator's audit),
its spec generation never moves, and it still serves v1 alone.

PromQL injection through metric args is checked in-process against the real Prometheus
(tests/test_bad_input_templates.py): a query is only sent once a canary serves traffic.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

import ledger
from gitrepos import Origin
from modelrollout import api
from modelrollout.gitsource import manifest
from modelrollout.sandbox.kubeapi.testing import KubeApiProcess
from processes import Kubectl, kserve_controller, operator, running, wait_for

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(shutil.which("ssh-keygen") is None, reason="ssh-keygen is not installed"),
]

NS = "bad-input-e2e"
NAME = "fraud"
STABLE = "s3://models/fraud/1"
V2 = "modelUri: models:/fraud/2\n"
WRITES = ("create", "update", "patch", "delete")


class Stage:
    def __init__(self, kube_api: KubeApiProcess, workdir: Path) -> None:
        self.api = kube_api
        self.kubectl = Kubectl(kube_api.kubeconfig)
        metrics = workdir / "metrics.json"
        metrics.write_text(json.dumps({}))
        self.operator = operator(
            workdir,
            kube_api.kubeconfig,
            MODELROLLOUT_METRICS=f"static:{metrics}",
            MODELROLLOUT_GIT_CACHE=str(workdir / "git-cache"),
            MODELROLLOUT_GIT_ALLOW_FILE="1",
        )
        self.kserve = kserve_controller(workdir, kube_api.kubeconfig)
        self.origin = Origin(workdir / "git")
        self.outside = workdir / "outside.yaml"
        self.outside.write_text(V2)

    def body(self, spec: dict[str, Any]) -> dict[str, Any]:
        return {
            "apiVersion": api.API_VERSION,
            "kind": api.ROLLOUT_KIND,
            "metadata": {"name": NAME, "namespace": NS},
            "spec": spec,
        }

    def apply(self, obj: dict[str, Any]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["kubectl", "apply", "-f", "-"],
            input=yaml.safe_dump(obj),
            capture_output=True,
            text=True,
            env=self.kubectl.env,
            timeout=60,
            check=False,
        )

    def rollout(self) -> dict[str, Any]:
        found: dict[str, Any] = self.kubectl.json("get", "mro", NAME, "-n", NS)
        return found

    def isvc(self) -> dict[str, Any]:
        found: dict[str, Any] = self.kubectl.json("get", "isvc", NAME, "-n", NS)
        return found

    def serves_stable_alone(self) -> bool:
        isvc = self.isvc()
        predictor = isvc["spec"]["predictor"]
        traffic = isvc.get("status", {}).get("components", {}).get("predictor", {})
        return (
            predictor["model"]["storageUri"] == STABLE
            and "canaryTrafficPercent" not in predictor
            and [t["percent"] for t in traffic.get("traffic", [])] == [100]
        )

    def warnings(self) -> list[tuple[str, str]]:
        items = self.kubectl.json(
            "get", "events", "-n", NS, "--field-selector", f"involvedObject.name={NAME}"
        )["items"]
        return [(e["reason"], e["message"]) for e in items if e["type"] == "Warning"]

    def operator_writes(self) -> list[dict[str, Any]]:
        return [
            call
            for call in self.api.audit()
            if call.get("namespace") == NS
            and call.get("resource") == "inferenceservices"
            and call.get("verb") in WRITES
            and str(call.get("userAgent", "")).startswith(("modelrollout/", "kopf/"))
        ]


def spec(**changes: Any) -> dict[str, Any]:
    return {
        "model": {"uri": "models:/fraud/1"},
        "target": {
            "inferenceService": NAME,
            "predictor": {"model": {"modelFormat": {"name": "sklearn"}}},
        },
        "strategy": {"steps": [{"setWeight": 20}, {"pause": {"duration": "1s"}}]},
    } | changes


def steps(*items: dict[str, Any]) -> dict[str, Any]:
    return {"steps": list(items)}


@pytest.fixture(scope="module")
def stage(kube_api: KubeApiProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stage]:
    """Given the processes, a git repository with spoiled manifests, and fraud v1 stable."""
    workdir = tmp_path_factory.mktemp("bad-input-e2e")
    found = Stage(kube_api, workdir)
    keys = workdir / "keys"
    keys.mkdir()
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "alice", "-f", str(keys / "alice")],
        check=True,
        timeout=30,
    )
    bomb = ['a0: &a0 ["lol"]'] + [
        f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 10)
    ]
    found.origin.commit(
        {
            "models/bomb.yaml": "\n".join(bomb) + f"\n{V2}",
            "models/huge.yaml": V2 + "notes: " + "a" * manifest.MAX_MANIFEST_BYTES + "\n",
            "models/fraud.yaml": V2,
        },
        "unsigned: names v2",
    )
    found.origin.symlink("models/link.yaml", str(found.outside))
    with running(found.kubectl, found.kserve, found.operator):
        found.kubectl("create", "namespace", NS)
        public = (keys / "alice.pub").read_text().strip()
        found.kubectl(
            "create", "secret", "generic", "signers", "-n", NS,
            f"--from-literal=allowed_signers=alice@example.com {public}",
        )  # fmt: skip
        assert found.apply(found.body(spec())).returncode == 0
        wait_for(
            "v1 stable",
            lambda: (
                found.rollout().get("status", {}).get("phase") == "Succeeded"
                and found.serves_stable_alone()
            ),
            timeout=90,
        )
        yield found


def git(stage: Stage, **source: Any) -> dict[str, Any]:
    return {"git": {"repository": stage.origin.url, "interval": "1s"} | source}


#: (kind, what to apply, the field kubectl's refusal names)
REFUSED = [
    ("weight outside 0..100 or not an integer", spec(strategy=steps({"setWeight": 150})),
     "spec.strategy.steps[0].setWeight"),
    ("weight outside 0..100 or not an integer", spec(strategy=steps({"setWeight": -5})),
     "spec.strategy.steps[0].setWeight"),
    ("weight outside 0..100 or not an integer", spec(strategy=steps({"setWeight": 12.5})),
     "spec.strategy.steps[0].setWeight"),
    ("bad duration", spec(strategy=steps({"pause": {"duration": "1y"}})),
     "spec.strategy.steps[0].pause.duration"),
    ("bad duration", spec(strategy=steps({"pause": {"duration": "-1s"}})),
     "spec.strategy.steps[0].pause.duration"),
    ("bad duration", spec(strategy={"analysis": {"interval": "5m\n"}}),
     "spec.strategy.analysis.interval"),
    ("malformed model URI", spec(model={"uri": "s3://models/fraud/2"}), "spec.model.uri"),
    ("malformed model URI", spec(model={"uri": "models:/fraud@challenger\n"}), "spec.model.uri"),
    ("malformed model URI", spec(model={"uri": "models:/fraud/" + "2" * 600}), "spec.model.uri"),
]  # fmt: skip


def test_the_api_server_refuses_bad_input_naming_the_field(stage: Stage) -> None:
    """When each is applied, kubectl fails and names the field; nothing reaches the operator."""
    refused = list(REFUSED)
    refused.append(
        ("path traversal through spec.model.git.path",
         spec(model=git(stage, path="../outside.yaml")), "spec.model.git.path")
    )  # fmt: skip
    refused.append(
        ("path traversal through spec.model.git.path",
         spec(model=git(stage, path="/etc/passwd")), "spec.model.git.path")
    )  # fmt: skip
    template = {
        "apiVersion": api.API_VERSION,
        "kind": api.TEMPLATE_KIND,
        "metadata": {"name": "success-rate", "namespace": NS},
        "spec": {"provider": {"prometheus": {"address": "file:///etc/passwd"}}, "query": "up"},
    }
    generation = stage.isvc()["metadata"]["generation"]
    writes = len(stage.operator_writes())

    for kind, body, field in refused:
        ledger.bad_input(f"{kind} (end to end)")
        done = stage.apply(stage.body(body))
        assert done.returncode != 0, f"{kind}: applied {body}"
        assert field in done.stderr, done.stderr
    ledger.bad_input("bad MetricTemplate (end to end)")
    done = stage.apply(template)
    assert done.returncode != 0
    assert "spec.provider.prometheus.address" in done.stderr, done.stderr

    assert stage.rollout()["spec"]["model"] == {"uri": "models:/fraud/1"}
    assert stage.isvc()["metadata"]["generation"] == generation
    assert len(stage.operator_writes()) == writes
    assert stage.serves_stable_alone()


def admitted(stage: Stage) -> list[tuple[str, dict[str, Any], str, str]]:
    """(kind, spec, the condition's reason, a part of its message) for what the API server
    admits and the operator must refuse."""
    verify = {"allowedSignersSecretRef": {"name": "signers"}}
    return [
        ("bad duration", spec(strategy=steps({"pause": {"duration": "99999999999999h"}})),
         "InvalidSpec", "is longer than"),
        ("InferenceService name", spec(target={"inferenceService": 'fraud"} or vector(1) #'}),
         "InvalidSpec", "is not a Kubernetes name"),
        ("unknown model, version or alias", spec(model={"uri": "models:/fraud@nope"}),
         "SourceError", "'nope'"),
        ("huge or malicious YAML manifest", spec(model=git(stage, path="models/bomb.yaml")),
         "SourceError", "YAML anchors are not allowed"),
        ("huge or malicious YAML manifest", spec(model=git(stage, path="models/huge.yaml")),
         "SourceError", "above the limit"),
        ("path traversal through spec.model.git.path",
         spec(model=git(stage, path=".git/config")), "SourceError", "not found"),
        ("path traversal through spec.model.git.path",
         spec(model=git(stage, path="models/link.yaml")), "SourceError", "symbolic link"),
        ("unsigned or wrongly signed commit",
         spec(model=git(stage, path="models/fraud.yaml", verify=verify)),
         "SourceUntrusted", "has no signature"),
    ]  # fmt: skip


def _refusal(status: dict[str, Any], reason: str, says: str) -> bool:
    return any(
        c["status"] == "False" and c["reason"] == reason and says in c.get("message", "")
        for c in status.get("conditions", [])
    )


def test_the_operator_refuses_what_the_api_server_admits(stage: Stage) -> None:
    """When each is applied, the operator sets a condition with its reason and posts a
    warning event, and never touches the InferenceService, which still serves v1 alone."""
    generation = stage.isvc()["metadata"]["generation"]
    writes = len(stage.operator_writes())

    for kind, body, reason, says in admitted(stage):
        ledger.bad_input(f"{kind} (end to end)")
        done = stage.apply(stage.body(body))
        assert done.returncode == 0, done.stderr
        wait_for(
            f"{kind}: a {reason} condition saying {says!r}",
            lambda: _refusal(stage.rollout().get("status", {}), reason, says),  # noqa: B023
            timeout=60,
        )
        wait_for(
            f"{kind}: a {reason} warning event",
            lambda: any(r == reason and says in m for r, m in stage.warnings()),  # noqa: B023
            timeout=30,
        )
        status = stage.rollout()["status"]
        assert status["stable"]["storageUri"] == STABLE
        assert "canary" not in status

    assert stage.isvc()["metadata"]["generation"] == generation
    assert stage.operator_writes()[writes:] == []
    assert stage.serves_stable_alone()
