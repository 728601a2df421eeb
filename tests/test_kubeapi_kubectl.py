"""kubectl, unmodified, against the emulator process: CRDs, printer columns, patches, watch,
dry runs, explain and finalizers, the way a platform engineer would type them.

The emulator here starts empty (no CRDs): applying them is part of what is tested. Every
command must succeed with nothing on stderr, so a warning about a broken server fails too.
"""

from __future__ import annotations

import os
import queue
import shutil
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from modelrollout.sandbox.kubeapi.testing import KubeApiProcess

REPO = Path(__file__).resolve().parents[1]
CRDS = sorted(str(p) for p in (REPO / "crds").glob("*.modelrollout.io.yaml"))
EXAMPLE = REPO / "deploy/examples/rollout-inline.yaml"
KUBECTL = shutil.which("kubectl") or "/usr/bin/kubectl"
COLUMNS = ["NAME", "PHASE", "WEIGHT", "STABLE", "CANARY", "READY", "AGE"]

pytestmark = pytest.mark.skipif(not Path(KUBECTL).exists(), reason="kubectl is not installed")


class Kubectl:
    """Runs kubectl with the emulator's kubeconfig and a cache of its own."""

    def __init__(self, api: KubeApiProcess, cache: Path) -> None:
        self.api = api
        self.env = {**os.environ, "KUBECONFIG": str(api.kubeconfig), "KUBECACHEDIR": str(cache)}

    def __call__(self, *args: str, stdin: str | None = None, fails: bool = False) -> str:
        done = subprocess.run(
            [KUBECTL, *args],
            input=stdin,
            capture_output=True,
            text=True,
            env=self.env,
            timeout=30,
            check=False,
        )
        if fails:
            assert done.returncode != 0, done.stdout
            return done.stderr
        assert (done.returncode, done.stderr) == (0, ""), (args, done.stderr)
        return done.stdout

    def popen(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [KUBECTL, *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=self.env,
        )


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Kubectl, dict[str, str]]]:
    """Given an empty emulator, the CRDs applied and the ``models`` namespace created."""
    workdir = tmp_path_factory.mktemp("kube-api-kubectl")
    with KubeApiProcess.start(workdir) as api:
        kubectl = Kubectl(api, workdir / "cache")
        said = {
            "apply": kubectl("apply", *(f"--filename={crd}" for crd in CRDS)),
            "wait": kubectl(
                "wait",
                "--for",
                "condition=established",
                "--timeout=20s",
                "crd/modelrollouts.modelrollout.io",
                "crd/metrictemplates.modelrollout.io",
            ),
            "again": kubectl("apply", *(f"--filename={crd}" for crd in CRDS)),
            "namespace": kubectl("create", "namespace", "models"),
        }
        yield kubectl, said


@pytest.fixture
def kubectl(setup: tuple[Kubectl, dict[str, str]]) -> Kubectl:
    return setup[0]


def a_rollout(kubectl: Kubectl, **metadata: Any) -> str:
    """Given a rollout of our own in ``models``, made from the example; its name."""
    body = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    name = f"r-{uuid.uuid4().hex[:8]}"
    body["metadata"] = {"name": name, "namespace": "models", **metadata}
    assert kubectl("apply", "-f", "-", stdin=yaml.safe_dump(body)) == (
        f"modelrollout.modelrollout.io/{name} created\n"
    )
    return name


def test_the_crds_apply_become_established_and_apply_again_unchanged(
    setup: tuple[Kubectl, dict[str, str]],
) -> None:
    said = setup[1]
    assert said["apply"].splitlines() == [
        "customresourcedefinition.apiextensions.k8s.io/metrictemplates.modelrollout.io created",
        "customresourcedefinition.apiextensions.k8s.io/modelrollouts.modelrollout.io created",
    ]
    assert said["wait"].splitlines() == [
        "customresourcedefinition.apiextensions.k8s.io/modelrollouts.modelrollout.io condition met",
        "customresourcedefinition.apiextensions.k8s.io/metrictemplates.modelrollout.io "
        "condition met",
    ]
    assert all(line.endswith(" unchanged") for line in said["again"].splitlines())
    assert said["namespace"] == "namespace/models created\n"


def test_the_example_applies_and_get_prints_its_columns(kubectl: Kubectl) -> None:
    assert (
        kubectl("apply", "-f", str(EXAMPLE)) == "modelrollout.modelrollout.io/fraud-raw created\n"
    )
    header, row = kubectl("get", "mro", "-n", "models", "fraud-raw").splitlines()
    assert header.split() == COLUMNS
    assert row.split()[0] == "fraud-raw"
    shown = yaml.safe_load(kubectl("get", "mro", "fraud-raw", "-n", "models", "-o", "yaml"))
    assert shown["spec"]["model"]["uri"] == "models:/fraud@champion"
    assert shown["spec"]["target"]["router"] == "kserve-raw"
    assert shown["metadata"]["generation"] == 1
    assert shown["metadata"]["uid"]
    wide = kubectl("get", "mro", "-n", "models", "fraud-raw", "-o", "wide").splitlines()[0]
    assert wide.split() == [*COLUMNS, "STEP", "ROUTER", "SERVICE", "MESSAGE"]


def test_merge_json_and_status_patches_show_in_the_columns(kubectl: Kubectl) -> None:
    name = a_rollout(kubectl)
    patched = f"modelrollout.modelrollout.io/{name} patched\n"
    assert (
        kubectl(
            "patch",
            "mro",
            name,
            "-n",
            "models",
            "--type",
            "merge",
            "-p",
            '{"spec":{"paused":true}}',
        )
        == patched
    )
    assert (
        kubectl(
            "patch",
            "mro",
            name,
            "-n",
            "models",
            "--type",
            "json",
            "-p",
            '[{"op":"replace","path":"/spec/progressDeadlineSeconds","value":60}]',
        )
        == patched
    )
    status = {
        "status": {
            "phase": "Progressing",
            "canaryWeight": 20,
            "stable": {"uri": "models:/fraud/6", "storageUri": "s3://m/6", "version": "6"},
            "canary": {"uri": "models:/fraud/7", "storageUri": "s3://m/7", "version": "7"},
            "conditions": [
                {"type": "Healthy", "status": "False", "reason": "Measuring"},
                {"type": "Ready", "status": "True", "reason": "SplitObserved"},
            ],
        }
    }
    assert (
        kubectl(
            "patch",
            "mro",
            name,
            "-n",
            "models",
            "--subresource",
            "status",
            "--type",
            "merge",
            "-p",
            yaml.safe_dump(status),
        )
        == patched
    )
    _, row = kubectl("get", "mro", name, "-n", "models").splitlines()
    assert row.split()[:6] == [name, "Progressing", "20", "6", "7", "True"]
    generation = kubectl(
        "get",
        "mro",
        name,
        "-n",
        "models",
        "-o",
        "jsonpath={.spec.paused} {.spec.progressDeadlineSeconds} {.metadata.generation}",
    )
    assert generation == "true 60 3"


def test_label_annotate_and_select_by_label(kubectl: Kubectl) -> None:
    labelled, other = a_rollout(kubectl), a_rollout(kubectl)
    assert kubectl("label", "mro", labelled, "-n", "models", "team=ml") == (
        f"modelrollout.modelrollout.io/{labelled} labeled\n"
    )
    assert kubectl("annotate", "mro", labelled, "-n", "models", "owner=fraud-team") == (
        f"modelrollout.modelrollout.io/{labelled} annotated\n"
    )
    selected = kubectl("get", "mro", "-n", "models", "-l", "team=ml", "-o", "name")
    assert selected == f"modelrollout.modelrollout.io/{labelled}\n"
    assert other not in kubectl("get", "mro", "-n", "models", "-l", "team=ml")
    shown = kubectl("get", "mro", labelled, "-n", "models", "--show-labels").splitlines()
    assert shown[0].split()[-1] == "LABELS"
    assert shown[1].split()[-1] == "team=ml"
    assert (
        kubectl(
            "get", "mro", labelled, "-n", "models", "-o", "jsonpath={.metadata.annotations.owner}"
        )
        == "fraud-team"
    )


class Lines:
    """The lines a process prints, read by a thread so that waiting for one can time out."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.queue: queue.Queue[str] = queue.Queue()
        self.reader = threading.Thread(target=self._read, args=(process,), daemon=True)
        self.reader.start()

    def _read(self, process: subprocess.Popen[str]) -> None:
        assert process.stdout is not None
        for line in process.stdout:
            self.queue.put(line)

    def next(self, count: int, within: float) -> list[str]:
        deadline = time.monotonic() + within
        return [self.queue.get(timeout=max(0.0, deadline - time.monotonic())) for _ in range(count)]


def test_get_watch_streams_a_change(kubectl: Kubectl) -> None:
    name = a_rollout(kubectl)
    with kubectl.popen("get", "mro", name, "-n", "models", "-w") as watching:
        lines = Lines(watching)
        try:
            header, row = lines.next(2, within=10)
            assert header.split() == COLUMNS
            assert row.split()[0] == name
            kubectl(
                "patch",
                "mro",
                name,
                "-n",
                "models",
                "--subresource",
                "status",
                "--type",
                "merge",
                "-p",
                '{"status":{"phase":"Paused","canaryWeight":50}}',
            )
            (change,) = lines.next(1, within=10)
            assert change.split()[:3] == [name, "Paused", "50"]
        finally:
            watching.kill()
            lines.reader.join(10)
        assert watching.stderr is not None
        errors = watching.stderr.read()
    assert errors == ""


def test_replace_puts_the_whole_object(kubectl: Kubectl) -> None:
    name = a_rollout(kubectl)
    body = yaml.safe_load(kubectl("get", "mro", name, "-n", "models", "-o", "yaml"))
    body["spec"]["target"]["inferenceService"] = "fraud-v2"
    assert kubectl("replace", "-f", "-", stdin=yaml.safe_dump(body)) == (
        f"modelrollout.modelrollout.io/{name} replaced\n"
    )
    found = kubectl(
        "get",
        "mro",
        name,
        "-n",
        "models",
        "-o",
        "jsonpath={.spec.target.inferenceService} {.metadata.generation}",
    )
    assert found == "fraud-v2 2"


def test_apply_dry_run_server_validates_and_stores_nothing(kubectl: Kubectl) -> None:
    body = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    body["metadata"]["name"] = "only-a-dry-run"
    said = kubectl("apply", "--dry-run=server", "-f", "-", stdin=yaml.safe_dump(body))
    assert said == "modelrollout.modelrollout.io/only-a-dry-run created (server dry run)\n"
    missing = kubectl("get", "mro", "only-a-dry-run", "-n", "models", fails=True)
    assert 'modelrollouts.modelrollout.io "only-a-dry-run" not found' in missing
    body["spec"]["strategy"]["steps"] = [{"setWeight": 120}]
    refused = kubectl(
        "apply", "--dry-run=server", "-f", "-", stdin=yaml.safe_dump(body), fails=True
    )
    assert "spec.strategy.steps[0].setWeight: Invalid value: 120" in refused
    body["spec"]["colour"] = "red"
    strict = kubectl("apply", "-f", "-", stdin=yaml.safe_dump(body), fails=True)
    assert 'unknown field "spec.colour"' in strict


def test_explain_prints_our_descriptions(kubectl: Kubectl) -> None:
    explained = kubectl("explain", "modelrollout.spec.strategy")
    assert "KIND:       ModelRollout" in explained
    assert "How the canary advances: an ordered list of steps" in explained
    assert "steps\t<[]Object>" in explained


def test_delete_waits_for_finalizers(kubectl: Kubectl) -> None:
    name = a_rollout(kubectl, finalizers=["modelrollout.io/cleanup"])
    assert kubectl("delete", "mro", name, "-n", "models", "--wait=false") == (
        f'modelrollout.modelrollout.io "{name}" deleted\n'
    )
    assert kubectl(
        "get", "mro", name, "-n", "models", "-o", "jsonpath={.metadata.deletionTimestamp}"
    )
    kubectl(
        "patch",
        "mro",
        name,
        "-n",
        "models",
        "--type",
        "merge",
        "-p",
        '{"metadata":{"finalizers":null}}',
    )
    assert "not found" in kubectl("get", "mro", name, "-n", "models", fails=True)
    plain = a_rollout(kubectl)
    assert kubectl("delete", "mro", plain, "-n", "models") == (
        f'modelrollout.modelrollout.io "{plain}" deleted\n'
    )


def test_built_in_kinds_through_kubectl(kubectl: Kubectl) -> None:
    assert (
        kubectl("create", "configmap", "settings", "-n", "models", "--from-literal=mode=canary")
        == "configmap/settings created\n"
    )
    assert (
        kubectl("create", "secret", "generic", "token", "-n", "models", "--from-literal=token=abc")
        == "secret/token created\n"
    )
    header, row = kubectl("get", "configmap", "settings", "-n", "models").splitlines()
    assert header.split() == ["NAME", "DATA", "AGE"]
    assert row.split()[:2] == ["settings", "1"]
    namespaces = kubectl("get", "namespaces", "-o", "name").split()
    assert {"namespace/default", "namespace/kube-system", "namespace/models"} <= set(namespaces)


def test_the_process_writes_a_kubeconfig_and_stops_cleanly(tmp_path: Path) -> None:
    for signum in (signal.SIGTERM, signal.SIGINT):
        api = KubeApiProcess.start(tmp_path)
        config = yaml.safe_load(api.kubeconfig.read_text(encoding="utf-8"))
        (cluster,) = config["clusters"]
        assert cluster["cluster"]["server"] == api.url
        assert api.url.startswith("http://127.0.0.1:")
        api.process.send_signal(signum)
        assert api.process.wait(10) == 0
        api.stop()
