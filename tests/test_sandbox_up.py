"""``modelrollout sandbox up|down|status``: the whole sandbox as background processes.

End to end (real kube-api, MLflow, data plane, Prometheus, operator and Locust on 127.0.0.1):
``up`` brings every service up and ``status`` says so; a push to the bare repository reaches
the operator's webhook signed; Locust sends predictions once ``load.json`` names a target; one
service stopped as if crashed starts again alone; after one child is killed ``status`` says
down, ``up`` stops what is left and starts afresh keeping the run directory's data; ``down``
leaves no process of the sandbox alive. Also: a taken port and a missing ``prometheus`` are
refused with a message saying what to do, and ``status`` without a sandbox is "down".
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from modelrollout.cli import main
from modelrollout.sandbox import up as sandbox
from processes import Kubectl, free_base_port, wait_for


def cli(*args: str, timeout: float = 180.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "modelrollout.cli", "sandbox", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def get_json(url: str, body: dict[str, Any] | None = None) -> Any:
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        return json.loads(answer.read())


def status_of(url: str) -> int:
    with urllib.request.urlopen(url, timeout=10) as answer:
        status: int = answer.status
        return status


def pids(run_dir: Path) -> dict[str, int]:
    state = json.loads((run_dir / "sandbox.json").read_text())
    return {name: e["pid"] for name, e in state["services"].items() if "pid" in e}


def router_target_up(prometheus: str, router_port: int) -> bool:
    targets = get_json(f"{prometheus}/api/v1/targets")["data"]["activeTargets"]
    return any(
        t["labels"]["instance"] == f"127.0.0.1:{router_port}" and t["health"] == "up"
        for t in targets
    )


def push_a_commit(bare: Path, clone: Path) -> str:
    """git push's output (a hook's output comes back on stderr, prefixed "remote:")."""

    def git(*args: str) -> str:
        done = subprocess.run(["git", "-C", str(clone), *args], capture_output=True, text=True,
                              timeout=60, check=True)  # fmt: skip
        return done.stdout + done.stderr

    subprocess.run(["git", "clone", "--quiet", str(bare), str(clone)], check=True, timeout=60)
    (clone / "models.yaml").write_text("modelUri: models:/m/1\n")
    git("add", "models.yaml")
    git("-c", "user.name=t", "-c", "user.email=t@t.invalid", "commit", "-qm", "m v1")
    return git("push", "origin", "HEAD:main")


def locust_requests(url: str, name: str) -> int:
    stats = get_json(f"{url}/stats/requests")["stats"]
    return sum(int(row["num_requests"]) for row in stats if row["name"] == name)


@pytest.fixture
def run_dir(tmp_path: Path) -> Iterator[Path]:
    folder = tmp_path / "sandbox"
    try:
        yield folder
    finally:
        if (folder / "sandbox.json").exists():
            cli("down", "--run-dir", str(folder))


@pytest.mark.e2e
def test_up_status_crash_recovery_and_down(run_dir: Path) -> None:
    # Given a free port range, when the sandbox comes up
    base = free_base_port()
    started = cli("up", "--run-dir", str(run_dir), "--base-port", str(base))
    assert started.returncode == 0, started.stderr + started.stdout
    state = json.loads((run_dir / "sandbox.json").read_text())
    first = pids(run_dir)
    assert list(first) == ["kube-api", "mlflow", "dataplane", "prometheus", "operator", "load"]

    # then status says all is up and every service answers
    assert cli("status", "--run-dir", str(run_dir)).returncode == 0
    crds = Kubectl(Path(state["kubeconfig"]))("get", "crd", "-o", "name")
    for crd in ("modelrollouts.modelrollout.io", "metrictemplates.modelrollout.io"):
        assert f"customresourcedefinition.apiextensions.k8s.io/{crd}" in crds
    urls = state["urls"]
    assert status_of(f"{urls['mlflow']}/health") == 200
    assert status_of(f"{urls['prometheus']}/-/ready") == 200
    assert status_of(f"{urls['router']}/metrics") == 200
    wait_for(
        "Prometheus to scrape the router",
        lambda: router_target_up(urls["prometheus"], base + 2),
        timeout=30,
    )
    assert (run_dir / "git" / "models.git" / "HEAD").exists()
    assert oct((run_dir / "webhook-secret").stat().st_mode & 0o777) == "0o600"
    assert (run_dir / "webhook-secret").read_text() not in (run_dir / "sandbox.json").read_text()
    created = get_json(
        f"{urls['mlflow']}/api/2.0/mlflow/experiments/create", {"name": "kept-across-restarts"}
    )

    # A push to the bare repository reaches the operator's webhook, signed (202, not 401).
    pushed = push_a_commit(Path(state["gitRepository"]), run_dir / "clone")
    assert "modelrollout webhook: 202" in pushed, pushed

    # Locust idles until load.json names a target, then sends it predictions.
    (run_dir / "load.json").write_text(json.dumps(
        {"targets": [{"namespace": "nowhere", "inferenceService": "nothing", "rps": 20}]}
    ))  # fmt: skip
    wait_for("Locust to send load", lambda: locust_requests(urls["load"], "nowhere/nothing") >= 20)

    # One service stopped as if it crashed, then started again alone.
    sandbox.stop_service(run_dir, "operator", signal.SIGKILL)
    assert not sandbox.group_members(first["operator"])
    assert cli("status", "--run-dir", str(run_dir)).returncode == 1
    sandbox.start_service(run_dir, "operator")
    assert cli("status", "--run-dir", str(run_dir)).returncode == 0
    first = pids(run_dir)

    # When one child dies (SIGKILL of MLflow's CLI; its uvicorn worker lives on)
    os.kill(first["mlflow"], signal.SIGKILL)
    # then status says the sandbox is not all up
    wait_for("status to notice", lambda: cli("status", "--run-dir", str(run_dir)).returncode == 1)

    # When up runs again, then it stops what was left and starts afresh, keeping the data
    again = cli("up", "--run-dir", str(run_dir), "--base-port", str(base))
    assert again.returncode == 0, again.stderr + again.stdout
    second = pids(run_dir)
    assert not set(first.values()) & set(second.values())
    assert not [pid for pid in first.values() if sandbox.group_members(pid)]
    assert cli("status", "--run-dir", str(run_dir)).returncode == 0
    found = get_json(
        f"{urls['mlflow']}/api/2.0/mlflow/experiments/get?experiment_id={created['experiment_id']}"
    )
    assert found["experiment"]["name"] == "kept-across-restarts"

    # When down runs, then no process of the sandbox is left and status says down
    stopped = cli("down", "--run-dir", str(run_dir))
    assert stopped.returncode == 0, stopped.stderr
    assert not [pid for pid in second.values() if sandbox.group_members(pid)]
    assert pids(run_dir) == {}
    assert cli("status", "--run-dir", str(run_dir)).returncode == 1


def test_a_taken_port_is_refused_with_a_clear_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = free_base_port()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", base + 3))
        taken.listen(1)
        code = main(["sandbox", "up", "--run-dir", str(tmp_path), "--base-port", str(base)])
    assert code == 1
    error = capsys.readouterr().err
    assert f"port {base + 3} on 127.0.0.1 (for prometheus) is taken" in error
    assert "--base-port" in error
    assert not (tmp_path / "sandbox.json").exists()


def test_a_missing_prometheus_says_how_to_install_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    code = main(["sandbox", "up", "--run-dir", str(tmp_path), "--base-port", "20000"])
    assert code == 1
    assert "apt-get install prometheus" in capsys.readouterr().err


def test_status_without_a_sandbox_is_down_and_down_is_a_no_op(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["sandbox", "status", "--run-dir", str(tmp_path)]) == 1
    assert main(["sandbox", "down", "--run-dir", str(tmp_path)]) == 0
    assert "nothing to stop" in capsys.readouterr().out
