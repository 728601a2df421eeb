"""The people's commands (``modelrollout status|history|promote|abort|retry|pause|resume|lint``
and the kubectl plugin ``kubectl modelrollout``) against the API server emulator.

Covers: pause/resume land as ``spec.paused``; promote/abort/retry land as the action annotation
with a fresh nonce; status and history show what status holds (read through the status
subresource) and the rollout's events, in rich and plain form; ``--watch`` redraws on change
and stops at ``--timeout`` (clock and sleep injected, no real waiting); kubeconfig resolution
(KUBECONFIG, --kubeconfig, --context, the context's namespace); kubectl running the plugin;
``lint`` agreeing with the emulator on what it refuses, adding the operator's own spec checks,
and checking git manifests; every error exits non-zero with exactly one line on stderr.
"""

from __future__ import annotations

import argparse
import io
import os
import re
import shutil
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from modelrollout import api, cli, ctl
from modelrollout.sandbox.kubeapi.testing import KubeApiProcess

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "deploy" / "examples"
KUBECTL = shutil.which("kubectl") or "/usr/bin/kubectl"
VENV_BIN = Path(sys.executable).parent
NOW = datetime(2026, 11, 27, 12, 0, 0, tzinfo=UTC)


# ---------------------------------------------------------------- set-up


@dataclass
class Setup:
    kube_api: KubeApiProcess
    objects: Any  # client.CustomObjectsApi
    core: Any  # client.CoreV1Api
    namespace: str
    kubeconfig: Path  # the emulator's, with the context's namespace set to ``namespace``


@pytest.fixture(scope="module")
def setup(kube_api: KubeApiProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    """Given the emulator, a namespace of this module's own and a kubeconfig defaulting to it."""
    api_client = config.new_client_from_config(config_file=str(kube_api.kubeconfig))
    core = client.CoreV1Api(api_client)
    namespace = f"ctl-{uuid.uuid4().hex[:8]}"
    core.create_namespace({"metadata": {"name": namespace}})
    document = yaml.safe_load(kube_api.kubeconfig.read_text(encoding="utf-8"))
    for context in document["contexts"]:
        context["context"]["namespace"] = namespace
    kubeconfig = tmp_path_factory.mktemp("ctl") / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump(document), encoding="utf-8")
    yield Setup(kube_api, client.CustomObjectsApi(api_client), core, namespace, kubeconfig)
    api_client.close()


@pytest.fixture
def kubeconfig_env(setup: Setup, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("KUBECONFIG", str(setup.kubeconfig))
    return setup.kubeconfig


def _rollout(name: str) -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(
        (EXAMPLES / "rollout-inline.yaml").read_text(encoding="utf-8")
    )
    document["metadata"] = {"name": name}
    return document


def _create(setup: Setup, name: str | None = None) -> str:
    name = name or f"r-{uuid.uuid4().hex[:8]}"
    setup.objects.create_namespaced_custom_object(
        api.GROUP, api.VERSION, setup.namespace, api.ROLLOUT_PLURAL, _rollout(name)
    )
    return name


def _read(setup: Setup, name: str) -> dict[str, Any]:
    found: dict[str, Any] = setup.objects.get_namespaced_custom_object(
        api.GROUP, api.VERSION, setup.namespace, api.ROLLOUT_PLURAL, name
    )
    return found


def _set_status(setup: Setup, name: str, status: dict[str, Any]) -> None:
    setup.objects.patch_namespaced_custom_object_status(
        api.GROUP, api.VERSION, setup.namespace, api.ROLLOUT_PLURAL, name, {"status": status}
    )


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _one_error_line(err: str) -> str:
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ")
    return lines[0]


STABLE = {
    "uri": "models:/fraud/6",
    "storageUri": "s3://models/fraud/6",
    "name": "fraud",
    "version": "6",
    "gitCommit": "0123456789abcdef",
}
CANARY = {
    "uri": "models:/fraud/7",
    "storageUri": "s3://models/fraud/7",
    "name": "fraud",
    "version": "7",
    "gitCommit": "fedcba9876543210",
}
PROGRESSING = {
    "phase": "Progressing",
    "message": "step 2: analysis 1 of 3",
    "stable": STABLE,
    "canary": CANARY,
    "currentStepIndex": 1,
    "canaryWeight": 20,
    "analysis": {
        "phase": "Running",
        "metrics": [
            {
                "name": "mean-fraud-score",
                "verdict": "FAIL",
                "value": 0.0712345,
                "message": "0.07123 is above 0.05",
                "count": 3,
                "successful": 2,
                "failed": 1,
                "evidence": {"eValue": "3.2"},
            }
        ],
    },
    "conditions": [
        {
            "type": "Healthy",
            "status": "False",
            "reason": "AnalysisFailed",
            "message": "mean-fraud-score failed",
            "lastTransitionTime": "2026-11-27T11:58:30Z",
        }
    ],
}


# ---------------------------------------------------------------- pause, resume, actions


def test_pause_and_resume_set_spec_paused(
    setup: Setup, kubeconfig_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Given a rollout, when paused then resumed, then spec.paused is true then false."""
    name = _create(setup)
    code, out, err = _run(capsys, "pause", name)
    assert (code, err) == (0, "")
    assert out == f"modelrollout {setup.namespace}/{name}: paused\n"
    assert _read(setup, name)["spec"]["paused"] is True
    code, out, _ = _run(capsys, "resume", name)
    assert code == 0
    assert out.endswith(": resumed\n")
    assert _read(setup, name)["spec"]["paused"] is False


@pytest.mark.parametrize(
    ("argv", "action"),
    [
        (["promote"], "promote"),
        (["promote", "--full"], "promote-full"),
        (["abort"], "abort"),
        (["retry"], "retry"),
    ],
)
def test_an_action_lands_as_the_annotation_with_a_fresh_nonce(
    setup: Setup,
    kubeconfig_env: Path,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    action: str,
) -> None:
    """Given a rollout, when an action is given twice, then the annotation holds the action with
    a new nonce each time, so the operator (which remembers the last value) acts on both."""
    name = _create(setup)
    values = []
    for _ in range(2):
        code, out, err = _run(capsys, *argv, name)
        assert (code, err) == (0, "")
        values.append(_read(setup, name)["metadata"]["annotations"][api.ACTION_ANNOTATION])
        assert f"{action} requested ({api.ACTION_ANNOTATION}={values[-1]}, phase Pending)" in out
    for value in values:
        assert re.fullmatch(rf"{action}:[0-9a-f]{{8}}", value), value
    assert values[0] != values[1]
    assert _read(setup, name)["spec"].get("paused") is not True


# ---------------------------------------------------------------- status and history


def _with_event(setup: Setup, name: str, reason: str, message: str, count: int = 1) -> None:
    uid = _read(setup, name)["metadata"]["uid"]
    setup.core.create_namespaced_event(
        setup.namespace,
        {
            "metadata": {"name": f"{name}.{uuid.uuid4().hex[:8]}"},
            "involvedObject": {
                "apiVersion": api.API_VERSION,
                "kind": api.ROLLOUT_KIND,
                "name": name,
                "namespace": setup.namespace,
                "uid": uid,
            },
            "reason": reason,
            "message": message,
            "type": "Warning",
            "count": count,
            "lastTimestamp": "2026-11-27T11:59:00Z",
            "firstTimestamp": "2026-11-27T11:59:00Z",
            "source": {"component": "modelrollout"},
        },
    )


@pytest.mark.parametrize("plain", [True, False], ids=["plain", "rich"])
def test_status_shows_phase_models_weight_step_metrics_conditions_and_events(
    setup: Setup, kubeconfig_env: Path, capsys: pytest.CaptureFixture[str], plain: bool
) -> None:
    """Given a progressing rollout with a failing metric and an event, when status is asked
    (namespace from the context), then each of them is on the screen."""
    name = _create(setup)
    _set_status(setup, name, PROGRESSING)
    _with_event(setup, name, "AnalysisFailed", "mean-fraud-score: 0.07123 is above 0.05", 2)
    other = _create(setup)
    _with_event(setup, other, "RolloutPromoted", "someone else's event")
    code, out, err = _run(capsys, "status", name, *(["--plain"] if plain else []))
    assert (code, err) == (0, "")
    for text in (
        f"ModelRollout {setup.namespace}/{name}",
        "Progressing",
        "step 2: analysis 1 of 3",
        "fraud v6 (models:/fraud/6) commit 0123456",
        "fraud v7 (models:/fraud/7) commit fedcba9",
        "20% canary",
        "2 of 4: analysis",
        "mean-fraud-score",
        "FAIL",
        "0.07123",
        "2 pass, 1 fail",
        "eValue=3.2",
        "AnalysisFailed",
        "mean-fraud-score failed",
        "(x2)",
    ):
        assert text in out, (text, out)
    assert "someone else's event" not in out
    if plain:
        assert re.search(r"Healthy\s+False\s+AnalysisFailed\s+\S+\s+mean-fraud-score failed", out)
    else:
        assert "┃" in out or "│" in out  # a rich table


def test_status_says_when_an_action_is_not_acted_on_yet(
    setup: Setup, kubeconfig_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    name = _create(setup)
    _run(capsys, "promote", name)
    value = _read(setup, name)["metadata"]["annotations"][api.ACTION_ANNOTATION]
    assert f"{value} (not acted on yet)" in _run(capsys, "status", name, "--plain")[1]
    _set_status(setup, name, {"phase": "Paused", "lastAction": value})
    out = _run(capsys, "status", name, "--plain")[1]
    assert re.search(rf"Last action:\s+{value}", out)
    assert "not acted on yet" not in out


def test_history_lists_each_past_model_with_its_outcome(
    setup: Setup, kubeconfig_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    name = _create(setup)
    assert "no rollout has finished yet" in _run(capsys, "history", name, "--plain")[1]
    history = [
        {
            "model": STABLE,
            "outcome": "Promoted",
            "reason": "RolloutCompleted",
            "message": "all steps passed",
            "startedAt": "2026-11-27T10:00:00Z",
            "finishedAt": "2026-11-27T10:12:30Z",
        },
        {
            "model": CANARY,
            "outcome": "RolledBack",
            "reason": "AnalysisFailed",
            "message": "mean-fraud-score failed twice",
            "startedAt": "2026-11-27T11:00:00Z",
            "finishedAt": "2026-11-27T11:03:00Z",
        },
    ]
    _set_status(setup, name, {"phase": "Failed", "history": history})
    code, out, err = _run(capsys, "history", name, "--plain")
    assert (code, err) == (0, "")
    rows = [line for line in out.splitlines() if re.match(r"\s+[12]\s", line)]
    assert len(rows) == 2, out
    assert re.search(
        r"fraud v6 .*Promoted\s+RolloutCompleted\s+2026-11-27T10:00:00Z\s+12m", rows[0]
    )
    assert re.search(r"fraud v7 .*RolledBack\s+AnalysisFailed\s+.*3m\s+mean-fraud", rows[1])
    rich_out = _run(capsys, "history", name)[1]
    assert "RolledBack" in rich_out
    assert "RolloutCompleted" in rich_out


# ---------------------------------------------------------------- watch


class FakeClock:
    def __init__(self) -> None:
        self.moment = NOW

    def now(self) -> datetime:
        return self.moment


def _parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    ctl.add_parsers(parser.add_subparsers(dest="command"))
    return parser.parse_args(list(argv))


def test_watch_redraws_when_the_rollout_changes_and_stops_at_the_timeout(
    setup: Setup, kubeconfig_env: Path
) -> None:
    """Given a rollout that moves from 20% to 50% while watched, then both views are drawn,
    an unchanged poll draws nothing, and the watch ends by itself at --timeout."""
    name = _create(setup)
    _set_status(setup, name, PROGRESSING)
    clock = FakeClock()
    naps: list[float] = []

    def sleep(seconds: float) -> None:
        naps.append(seconds)
        clock.moment += timedelta(seconds=seconds)
        if len(naps) == 2:
            _set_status(setup, name, {**PROGRESSING, "canaryWeight": 50, "currentStepIndex": 2})

    out = io.StringIO()
    args = _parse("status", name, "--watch", "--timeout", "10s", "--interval", "3s", "--plain")
    assert ctl.run(args, out=out, err=io.StringIO(), clock=clock, sleep=sleep) == 0
    frames = out.getvalue().split("---")[1:]
    assert len(frames) == 2, out.getvalue()
    assert "20% canary" in frames[0]
    assert "50% canary" in frames[1]
    assert "3 of 4: setWeight 50" in frames[1]
    assert naps == [3.0, 3.0, 3.0, 1.0]


def test_watch_ends_quietly_on_ctrl_c_and_can_show_every_poll() -> None:
    """Unchanged polls show nothing unless every_poll (a terminal, where ages tick)."""
    for every_poll, expected in ((False, ["a", "b"]), (True, ["a", "a", "b"])):
        snapshots = iter([{"a": 1}, {"a": 1}, {"b": 2}])
        shown: list[str] = []

        def fetch(snapshots: Any = snapshots) -> ctl.Snapshot:
            try:
                return ctl.Snapshot(next(snapshots), [])
            except StopIteration:
                raise KeyboardInterrupt from None

        def show(snapshot: ctl.Snapshot, shown: list[str] = shown) -> None:
            shown.append(next(iter(snapshot.rollout)))

        count = ctl.watch(
            fetch, show, FakeClock(), lambda _: None, 1.0, None, every_poll=every_poll
        )
        assert shown == expected
        assert count == len(expected)


# ---------------------------------------------------------------- kube access and errors


def test_the_kubeconfig_flag_context_and_namespace_flags_win(
    setup: Setup,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """KUBECONFIG names a missing file, but --kubeconfig is used; the emulator's own kubeconfig
    says namespace default, so without -n the rollout is not found, with -n it is."""
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "absent"))
    name = _create(setup)
    own = str(setup.kube_api.kubeconfig)
    code, _, err = _run(capsys, "status", name, "--kubeconfig", own)
    assert code == 1
    assert _one_error_line(err) == f"error: modelrollout '{name}' not found in namespace 'default'"
    argv = ["status", name, "--kubeconfig", own, "--context", "modelrollout-sandbox"]
    code, out, err = _run(capsys, *argv, "-n", setup.namespace, "--plain")
    assert (code, err) == (0, "")
    assert "Pending" in out


def test_kubeconfig_files_merge_as_kubectl_merges_them(
    setup: Setup,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """KUBECONFIG lists a missing file, a file that only picks the context, and the real one;
    a kubeconfig with no current-context needs --context."""
    name = _create(setup)
    document = yaml.safe_load(setup.kubeconfig.read_text(encoding="utf-8"))
    current = document.pop("current-context")
    bare = tmp_path / "bare"
    bare.write_text(yaml.safe_dump(document), encoding="utf-8")
    picker = tmp_path / "picker"
    picker.write_text(yaml.safe_dump({"current-context": current}), encoding="utf-8")
    listed = os.pathsep.join([str(tmp_path / "absent"), str(picker), str(bare)])
    monkeypatch.setenv("KUBECONFIG", listed)
    code, out, err = _run(capsys, "status", name, "--plain")
    assert (code, err) == (0, "")
    assert f"ModelRollout {setup.namespace}/{name}" in out
    monkeypatch.setenv("KUBECONFIG", str(bare))
    code, _, err = _run(capsys, "status", name)
    assert code == 1
    assert _one_error_line(err) == "error: the kubeconfig sets no current-context: pass --context"
    code, out, err = _run(capsys, "status", name, "--context", current, "--plain")
    assert (code, err) == (0, "")


@pytest.mark.parametrize(
    "argv",
    [
        ["status", "missing"],
        ["status", "missing", "--watch", "--timeout", "1s"],
        ["history", "missing"],
        ["promote", "missing"],
        ["promote", "--full", "missing"],
        ["abort", "missing"],
        ["retry", "missing"],
        ["pause", "missing"],
        ["resume", "missing"],
    ],
)
def test_a_missing_rollout_is_one_line_and_exit_1(
    setup: Setup, kubeconfig_env: Path, capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    code, out, err = _run(capsys, *argv)
    assert (code, out) == (1, "")
    assert _one_error_line(err) == (
        f"error: modelrollout 'missing' not found in namespace '{setup.namespace}'"
    )


def test_no_kubeconfig_at_all(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    code, _, err = _run(capsys, "status", "fraud")
    assert code == 1
    assert _one_error_line(err) == (
        "error: no kubeconfig: KUBECONFIG is unset and ~/.kube/config does not exist; "
        "set KUBECONFIG or pass --kubeconfig"
    )
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "nope.yaml"))
    code, _, err = _run(capsys, "pause", "fraud")
    assert code == 1
    assert f"KUBECONFIG names {tmp_path / 'nope.yaml'}" in _one_error_line(err)


def test_a_broken_kubeconfig_or_unknown_context(
    kubeconfig_env: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = _run(capsys, "status", "fraud", "--context", "prod")
    assert code == 1
    assert _one_error_line(err) == (
        "error: context 'prod' is not in the kubeconfig (contexts: modelrollout-sandbox)"
    )
    broken = tmp_path / "broken"
    broken.write_text("contexts: [\n", encoding="utf-8")
    code, _, err = _run(capsys, "status", "fraud", "--kubeconfig", str(broken))
    assert code == 1
    assert _one_error_line(err).startswith(f"error: cannot use the kubeconfig {broken}: ")


def test_an_unreachable_api_server(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": f"http://127.0.0.1:{port}"}}],
                "users": [{"name": "u", "user": {"token": "not-a-secret-but-never-shown"}}],
                "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "x",
            }
        ),
        encoding="utf-8",
    )
    code, _, err = _run(capsys, "abort", "fraud", "--kubeconfig", str(kubeconfig))
    assert code == 1
    line = _one_error_line(err)
    assert line.startswith(f"error: cannot reach the API server at http://127.0.0.1:{port}: ")
    assert "refused" in line.lower()
    assert "never-shown" not in line


def test_a_server_error_is_reported_with_its_message(
    setup: Setup, kubeconfig_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    name = _create(setup)
    setup.kube_api.inject_fault(
        verb="patch",
        group=api.GROUP,
        resource=api.ROLLOUT_PLURAL,
        namespace=setup.namespace,
        name=name,
        code=500,
    )
    try:
        code, _, err = _run(capsys, "pause", name)
    finally:
        setup.kube_api.clear_faults()
    assert code == 1
    assert _one_error_line(err).startswith("error: the API server said 500 ")
    assert _read(setup, name)["spec"].get("paused") is not True


def test_an_unexpected_failure_is_still_one_line(
    kubeconfig_env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def unreadable(self: ctl.Cluster, name: str) -> dict[str, Any]:
        raise ValueError("Expecting value:\nline 1 column 1 (char 0)")

    monkeypatch.setattr(ctl.Cluster, "get", unreadable)
    code, out, err = _run(capsys, "history", "fraud")
    assert (code, out) == (1, "")
    assert _one_error_line(err) == (
        "error: unexpected ValueError: Expecting value: line 1 column 1 (char 0)"
    )


def test_bad_option_values_are_one_line(
    kubeconfig_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = _run(capsys, "status", "fraud", "--timeout", "5s")
    assert code == 1
    assert _one_error_line(err) == "error: --timeout needs --watch"
    code, _, err = _run(capsys, "status", "fraud", "--request-timeout", "soon")
    assert code == 1
    assert _one_error_line(err).startswith("error: --request-timeout: invalid duration 'soon'")


# ---------------------------------------------------------------- the kubectl plugin


def _kubectl(setup: Setup, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "PATH": os.pathsep.join([str(VENV_BIN), os.environ.get("PATH", "")]),
        "KUBECONFIG": str(setup.kubeconfig),
    }
    return subprocess.run(
        [KUBECTL, *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )


@pytest.mark.skipif(not Path(KUBECTL).exists(), reason="kubectl is not installed")
def test_kubectl_runs_the_plugin(setup: Setup) -> None:
    """Given kubectl-modelrollout on PATH, `kubectl modelrollout …` reaches the emulator."""
    assert (VENV_BIN / "kubectl-modelrollout").exists()
    listed = _kubectl(setup, "plugin", "list")
    assert str(VENV_BIN / "kubectl-modelrollout") in listed.stdout
    name = _create(setup)
    _set_status(setup, name, PROGRESSING)
    done = _kubectl(setup, "modelrollout", "status", name)
    assert (done.returncode, done.stderr) == (0, ""), done.stderr
    assert "mean-fraud-score" in done.stdout
    assert "20% canary" in done.stdout
    done = _kubectl(setup, "modelrollout", "promote", "--full", name)
    assert done.returncode == 0, done.stderr
    assert _read(setup, name)["metadata"]["annotations"][api.ACTION_ANNOTATION].startswith(
        "promote-full:"
    )
    missing = _kubectl(setup, "modelrollout", "history", "missing")
    assert missing.returncode == 1
    assert missing.stdout == ""
    assert _one_error_line(missing.stderr).endswith(
        "not found in namespace " + repr(setup.namespace)
    )
    usage = _kubectl(setup, "modelrollout", "--help")
    assert usage.stdout.startswith("usage: kubectl modelrollout")


# ---------------------------------------------------------------- lint


def _lint(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, text: str, name: str = "x.yaml"
) -> tuple[int, str, str]:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return _run(capsys, "lint", str(path))


def _variant(change: dict[str, Any]) -> dict[str, Any]:
    """The inline example with ``change`` merged into its spec (None deletes a key)."""
    document = _rollout("fraud")
    spec = document["spec"]
    for dotted, value in change.items():
        *parents, last = dotted.split(".")
        node = spec
        for key in parents:
            node = node[int(key)] if isinstance(node, list) else node[key]
        if value is None:
            del node[last]
        elif isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value
    return document


def test_the_examples_and_a_manifest_are_ok(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    files = sorted(str(p) for p in EXAMPLES.glob("*.yaml"))
    code, out, err = _run(capsys, "lint", *files)
    assert (code, err) == (0, "")
    assert out.count(": ok (") == len(files) >= 5
    assert "ok (MetricTemplate success-rate)" in out
    code, out, _ = _lint(capsys, tmp_path, "modelUri: models:/fraud/7\napprovedBy: [alice]\n")
    assert code == 0
    assert out.endswith("ok (git manifest (models:/fraud/7))\n")


# Each case: a change to the inline example, the field path the server names, and words of
# the explanation lint adds (the CRD's description, or lint's own).
REFUSED_BY_THE_SERVER = [
    ({"strategy.steps.0.setWeight": 120}, "spec.strategy.steps[0].setWeight", "less than or"),
    ({"target": None}, "spec.target", "Required value"),
    ({"model.uri": "s3://bucket/model"}, "spec.model.uri", "MLflow registry URI"),
    ({"strategy.steps.1": {"pause": {}, "setWeight": 5}}, "spec.strategy.steps[1]", ""),
    ({"target.router": "istio"}, "spec.target.router", "Unsupported value"),
    ({"model.color": "red"}, "spec.model.color", 'unknown field "spec.model.color"'),
    (
        {"strategy.analysis.metrics.0.thresholdRange": {"min": 0.5, "max": 0.1}},
        "spec.strategy.analysis.metrics[0].thresholdRange",
        "min must not be greater than max",
    ),
    (
        {"strategy.analysis.metrics.0.judge": "sequential"},
        "spec.strategy.analysis.metrics[0]",
        "need a templateRef",
    ),
]


@pytest.mark.parametrize(("change", "path", "words"), REFUSED_BY_THE_SERVER)
def test_lint_refuses_what_the_api_server_refuses(
    setup: Setup,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    change: dict[str, Any],
    path: str,
    words: str,
) -> None:
    """The same object is refused by the emulator (dry run, strict field validation) and by
    lint, which names the same field path and explains it."""
    document = _variant(change)
    with pytest.raises(ApiException) as refused:
        setup.objects.create_namespaced_custom_object(
            api.GROUP,
            api.VERSION,
            setup.namespace,
            api.ROLLOUT_PLURAL,
            document,
            dry_run="All",
            field_validation="Strict",
        )
    assert refused.value.status in (400, 422)
    assert path in str(refused.value.body)
    code, out, err = _lint(capsys, tmp_path, yaml.safe_dump(document))
    assert code == 1
    assert _one_error_line(err) == "error: lint found problems in 1 of 1 file"
    assert "ModelRollout fraud:" in out
    assert f"  {path}" in out, out
    assert words in out


OPERATOR_ONLY = [
    (
        {"strategy.analysis.metrics.0.query": "rate(x{pod={{ pod }}}[{{ interval }}])"},
        "spec.strategy.analysis.metrics[0].query: unknown template variable pod",
    ),
    (
        {"strategy.analysis.metrics.0.query": "rate(x[{{interval}]) {{ interval }}"},
        "spec.strategy.analysis.metrics[0].query: malformed placeholder",
    ),
]


@pytest.mark.parametrize(("change", "said"), OPERATOR_ONLY)
def test_lint_adds_the_operators_own_checks(
    setup: Setup,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    change: dict[str, Any],
    said: str,
) -> None:
    """What the API server lets through but the operator would freeze as InvalidSpec."""
    document = _variant(change)
    setup.objects.create_namespaced_custom_object(
        api.GROUP,
        api.VERSION,
        setup.namespace,
        api.ROLLOUT_PLURAL,
        document,
        dry_run="All",
        field_validation="Strict",
    )
    code, out, _ = _lint(capsys, tmp_path, yaml.safe_dump(document))
    assert code == 1
    assert f"  {said}" in out, out


def test_with_a_lax_crd_the_operators_spec_checks_still_catch_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An old or hand-made CRD that checks nothing: lint still runs the operator's own checks,
    the ones that would end the rollout in InvalidSpec."""
    lax = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "modelrollouts.modelrollout.io"},
        "spec": {
            "group": api.GROUP,
            "names": {"kind": api.ROLLOUT_KIND, "plural": api.ROLLOUT_PLURAL},
            "scope": "Namespaced",
            "versions": [
                {
                    "name": api.VERSION,
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "x-kubernetes-preserve-unknown-fields": True,
                        }
                    },
                }
            ],
        },
    }
    crd = tmp_path / "lax.yaml"
    crd.write_text(yaml.safe_dump(lax), encoding="utf-8")
    document = _variant({"strategy.analysis.metrics.0.thresholdRange": {"min": 0.5, "max": 0.1}})
    rollout = tmp_path / "rollout.yaml"
    rollout.write_text(yaml.safe_dump(document), encoding="utf-8")
    code, out, _ = _run(capsys, "lint", "--crd", str(crd), str(rollout))
    assert code == 1
    assert "  spec.strategy.analysis.metrics[0].thresholdRange: min is greater than max" in out
    document["spec"]["target"]["router"] = "istio"
    rollout.write_text(yaml.safe_dump(document), encoding="utf-8")
    code, out, _ = _run(capsys, "lint", "--crd", str(crd), str(rollout))
    assert code == 1
    assert "  spec.target.router: unsupported value 'istio'" in out


def test_lint_checks_metric_templates(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    template = yaml.safe_load((EXAMPLES / "metrictemplate-success-rate.yaml").read_text("utf-8"))
    template["spec"]["provider"]["prometheus"]["address"] = "prometheus:9090"
    code, out, _ = _lint(capsys, tmp_path, yaml.safe_dump(template))
    assert code == 1
    assert "spec.provider.prometheus.address: Invalid value" in out
    assert "must be an http:// or https:// URL" in out
    template = yaml.safe_load((EXAMPLES / "metrictemplate-success-rate.yaml").read_text("utf-8"))
    template["spec"]["counts"]["bad"] = 'sum(x{le="\\{{ revision }}"})'
    code, out, _ = _lint(capsys, tmp_path, yaml.safe_dump(template))
    assert code == 1
    assert "spec.counts.bad: a placeholder may not follow a backslash" in out
    template["spec"]["counts"]["bad"] = 'sum(x{code="{{ code }}", rev="{{ revision }}"})'
    assert _lint(capsys, tmp_path, yaml.safe_dump(template))[0] == 0  # args come from rollouts


def test_lint_reads_several_documents_and_stdin(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    good = yaml.safe_dump(_rollout("good"))
    bad = yaml.safe_dump(_variant({"strategy.steps.0.setWeight": -1}))
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(f"{good}---\n{bad}".encode())))
    code, out, err = _run(capsys, "lint", "-")
    assert code == 1
    assert "-: ModelRollout good, ModelRollout fraud: 1 problem" in out
    assert "document 2: Invalid value: -1" in out
    _one_error_line(err)


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("modelURI: models:/fraud/7\n", "unknown key 'modelURI'"),
        ("modelUri: s3://x\n", "is not an MLflow registry URI"),
        ("modelUri: &a models:/fraud/7\nnotes: *a\n", "YAML anchors are not allowed"),
        ("modelUri: [unclosed\n", "not valid YAML"),
        ("", "empty: no YAML document"),
        ("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n", "'ConfigMap' is not"),
        (
            "apiVersion: modelrollout.io/v1\nkind: ModelRollout\nmetadata: {name: x}\n",
            "apiVersion: must be modelrollout.io/v1alpha1, not 'modelrollout.io/v1'",
        ),
        (
            yaml.safe_dump({**_rollout("x"), "metadata": {"name": "Fraud_Model"}}),
            "metadata.name: Invalid value: 'Fraud_Model'",
        ),
    ],
)
def test_lint_explains_bad_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, said: str
) -> None:
    code, out, err = _lint(capsys, tmp_path, text)
    assert code == 1
    assert said in out, out
    _one_error_line(err)


def test_lint_of_a_missing_file_or_without_crds(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = _run(capsys, "lint", str(tmp_path / "absent.yaml"))
    assert (code, out) == (1, "")
    assert _one_error_line(err) == f"error: {tmp_path / 'absent.yaml'}: No such file or directory"
    not_a_crd = tmp_path / "crd.yaml"
    not_a_crd.write_text("kind: ConfigMap\n", encoding="utf-8")
    code, _, err = _run(capsys, "lint", "--crd", str(not_a_crd), str(not_a_crd))
    assert code == 1
    assert _one_error_line(err) == f"error: no CRD found in {not_a_crd}; pass --crd FILE"


def test_lint_without_cel_python_says_what_to_install(tmp_path: Path) -> None:
    program = (
        "import sys; sys.modules['celpy'] = None\n"
        "from modelrollout import cli\n"
        f"sys.exit(cli.main(['lint', {str(EXAMPLES / 'rollout-inline.yaml')!r}]))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 1
    assert done.stderr == "error: lint needs cel-python: pip install 'modelrollout[cli]'\n"


def test_without_rich_the_tables_are_plain(
    setup: Setup, kubeconfig_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "rich", None)
    name = _create(setup)
    _set_status(setup, name, PROGRESSING)
    out = io.StringIO()
    assert ctl.run(_parse("status", name), out=out, err=io.StringIO(), clock=FakeClock()) == 0
    assert out.getvalue().startswith(f"ModelRollout {setup.namespace}/{name}\n  Phase:")
    assert re.search(r"mean-fraud-score\s+FAIL\s+0\.07123", out.getvalue())


def test_plain_rendering_aligns_columns_and_ages_from_the_clock() -> None:
    rollout = {
        "metadata": {"name": "fraud", "namespace": "models"},
        "spec": _rollout("fraud")["spec"],
        "status": PROGRESSING,
    }
    view = ctl.status_view(rollout, [], NOW)
    text = ctl.render_plain(view)
    assert "  Healthy  False   AnalysisFailed  1m30s  mean-fraud-score failed" in text
    assert "Events\n  none\n" in text
