"""``modelrollout sandbox up|down|status``: the whole sandbox as background processes.

``up`` starts, on 127.0.0.1 only and in this order, each in a process group of its own with
its log in the run directory: the Kubernetes API emulator, MLflow, the KServe data plane,
Prometheus, the operator and Locust (load, idle until ``load.json`` names targets); it creates
a bare git repository whose ``post-receive`` hook notifies the operator's webhook, waits
(bounded) for each to answer its health URL and writes ``<run-dir>/sandbox.json``. Service
``k`` listens on ``base-port + k``. ``status`` reads that file; ``down`` stops every process
group it names; ``stop_service``/``start_service`` stop and start one (the tests' faults).

Only the standard library is imported here: the CLI stays light.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

STATE_FILE = "sandbox.json"
DEFAULT_RUN_DIR = Path(".modelrollout-sandbox")
DEFAULT_BASE_PORT = 18400
READY_SECONDS = 120.0
LOAD_USERS = 8
STOP_SECONDS = 10.0
HOST = "127.0.0.1"
_PACKAGE = Path(__file__).resolve().parents[1]
_OPERATOR_DIR = _PACKAGE.parent
_REPO_CRDS = _OPERATOR_DIR.parent / "crds"
_ISVC_CRD = _PACKAGE / "sandbox" / "crds" / "inferenceservices.serving.kserve.io.yaml"
ARTIFACT_BUCKET = "s3://sandbox-models/"


class SandboxError(Exception):
    """Something the user can act on; the message says what."""


@dataclass(frozen=True)
class Ports:
    base: int

    @property
    def kube_api(self) -> int:
        return self.base

    @property
    def mlflow(self) -> int:
        return self.base + 1

    @property
    def router(self) -> int:
        return self.base + 2

    @property
    def prometheus(self) -> int:
        return self.base + 3

    @property
    def webhook(self) -> int:
        return self.base + 4

    @property
    def liveness(self) -> int:
        return self.base + 5

    @property
    def load(self) -> int:
        return self.base + 6

    def named(self) -> dict[str, int]:
        return {
            "kube-api": self.kube_api,
            "mlflow": self.mlflow,
            "router": self.router,
            "prometheus": self.prometheus,
            "operator webhook": self.webhook,
            "operator liveness": self.liveness,
            "load (Locust UI)": self.load,
        }


@dataclass(frozen=True)
class Service:
    name: str
    command: list[str]
    env: dict[str, str]
    health: str


# ------------------------------------------------------------------ the command line


def add_parsers(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    up = commands.add_parser(
        "up",
        help="start the whole sandbox in the background",
        description="Start kube-api, MLflow, the KServe data plane, Prometheus, the operator "
        "and Locust on 127.0.0.1, each listening on BASE_PORT+k; write RUN_DIR/sandbox.json.",
    )
    up.add_argument("--base-port", type=int, default=DEFAULT_BASE_PORT, help="first port")
    for name, text in (
        ("up", None),
        ("down", "stop every process the sandbox started"),
        ("status", "whether each sandbox service is up (exit 0 only if all are)"),
    ):
        parser = up if text is None else commands.add_parser(name, help=text, description=text)
        parser.add_argument(
            "--run-dir", type=Path, default=DEFAULT_RUN_DIR, help="state, logs and data"
        )


def run(args: argparse.Namespace) -> int:
    run_dir: Path = args.run_dir.resolve()
    try:
        if args.sandbox_command == "up":
            return up(run_dir, args.base_port)
        if args.sandbox_command == "down":
            return down(run_dir)
        return status(run_dir)
    except SandboxError as error:
        print(f"modelrollout sandbox {args.sandbox_command}: {error}", file=sys.stderr)
        return 1


# ------------------------------------------------------------------ up, down, status


def up(run_dir: Path, base_port: int, *, out: Callable[[str], None] = print) -> int:
    run_dir.mkdir(parents=True, exist_ok=True)
    state = read_state(run_dir)
    if state is not None:
        health = service_health(state)
        if health and all(health.values()):
            out(f"the sandbox in {run_dir} is already up")
            out(table(state))
            return 0
        stop_all(state)  # a previous run crashed: stop what is left, then start fresh
        forget_pids(run_dir, state)
    if shutil.which("prometheus") is None:
        raise SandboxError(
            "the prometheus binary is not on PATH; install it with: apt-get install prometheus"
        )
    ports = Ports(base_port)
    check_ports_free(ports)
    started = time.monotonic()
    state = initial_state(run_dir, ports)
    try:
        for service in services(run_dir, ports, state):
            pid = start(service, run_dir)
            state["services"][service.name] = {"pid": pid, "health": service.health}
            write_state(run_dir, state)
            began = time.monotonic()
            wait_ready(service, pid, run_dir)
            out(f"{service.name} ready in {time.monotonic() - began:.1f} s")
    except BaseException:
        stop_all(state)
        forget_pids(run_dir, state)
        raise
    out(f"sandbox up in {time.monotonic() - started:.1f} s (state: {run_dir / STATE_FILE})")
    out(table(state))
    return 0


def down(run_dir: Path, *, out: Callable[[str], None] = print) -> int:
    state = read_state(run_dir)
    if state is None:
        out(f"no sandbox state in {run_dir}: nothing to stop")
        return 0
    stop_all(state)
    forget_pids(run_dir, state)
    out(f"sandbox in {run_dir} stopped")
    return 0


def stop_service(run_dir: Path, name: str, signum: signal.Signals = signal.SIGTERM) -> None:
    """Stop one service's process group (SIGKILL: as if it crashed); the others keep running."""
    state = _state_with(run_dir, name)
    pgid = state["services"][name].get("pid")
    if isinstance(pgid, int):
        _signal_group(pgid, signum)
        deadline = time.monotonic() + STOP_SECONDS
        while group_members(pgid) and time.monotonic() < deadline:
            time.sleep(0.05)
        stop_all({"services": {name: {"pid": pgid}}})
    state["services"][name].pop("pid", None)
    write_state(run_dir, state)


def start_service(run_dir: Path, name: str) -> None:
    """Start one stopped service again, as ``up`` started it, and wait until it is ready."""
    state = _state_with(run_dir, name)
    entry = state["services"][name]
    if isinstance(entry.get("pid"), int) and alive(entry["pid"]):
        raise SandboxError(f"{name} is running (pid {entry['pid']}); stop it first")
    ports = Ports(state["basePort"])
    service = next(s for s in services(run_dir, ports, state) if s.name == name)
    entry["pid"] = start(service, run_dir)
    write_state(run_dir, state)
    wait_ready(service, entry["pid"], run_dir)


def _state_with(run_dir: Path, name: str) -> dict[str, Any]:
    state = read_state(run_dir)
    if state is None:
        raise SandboxError(f"no sandbox in {run_dir}")
    if name not in state.get("services", {}):
        known = ", ".join(state.get("services", {}))
        raise SandboxError(f"no service {name!r} in the sandbox (it has: {known})")
    return state


def status(run_dir: Path, *, out: Callable[[str], None] = print) -> int:
    state = read_state(run_dir)
    if state is None:
        out(f"no sandbox state in {run_dir}: down")
        return 1
    health = service_health(state)
    out(table(state, health))
    return 0 if health and all(health.values()) else 1


# ------------------------------------------------------------------ state


def read_state(run_dir: Path) -> dict[str, Any] | None:
    path = run_dir / STATE_FILE
    if not path.exists():
        return None
    try:
        state: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as error:
        raise SandboxError(f"{path} is not valid JSON ({error}); remove it and retry") from None
    return state


def write_state(run_dir: Path, state: dict[str, Any]) -> None:
    path = run_dir / STATE_FILE
    partial = path.with_suffix(".json.tmp")
    partial.write_text(json.dumps(state, indent=2) + "\n", encoding="utf-8")
    partial.replace(path)


def forget_pids(run_dir: Path, state: dict[str, Any]) -> None:
    for entry in state.get("services", {}).values():
        entry.pop("pid", None)
    write_state(run_dir, state)


def initial_state(run_dir: Path, ports: Ports) -> dict[str, Any]:
    secret = run_dir / "webhook-secret"
    if not secret.exists():
        secret.touch(mode=0o600)
        secret.write_text(secrets.token_hex(32), encoding="utf-8")
    return {
        "runDir": str(run_dir),
        "basePort": ports.base,
        "ports": ports.named(),
        "kubeconfig": str(run_dir / "kubeconfig"),
        "gitRepository": str(run_dir / "git" / "models.git"),
        "gitUrl": f"file://{run_dir / 'git' / 'models.git'}",
        "webhookSecretFile": str(secret),
        "loadFile": str(run_dir / "load.json"),
        "urls": {
            "kube-api": f"http://{HOST}:{ports.kube_api}",
            "mlflow": f"http://{HOST}:{ports.mlflow}",
            "router": f"http://{HOST}:{ports.router}",
            "prometheus": f"http://{HOST}:{ports.prometheus}",
            "webhook": f"http://{HOST}:{ports.webhook}",
            "load": f"http://{HOST}:{ports.load}",
        },
        "services": {},
    }


def table(state: dict[str, Any], health: dict[str, bool] | None = None) -> str:
    rows = [["SERVICE", "PID", *(["STATE"] if health is not None else []), "HEALTH URL"]]
    for name, entry in state.get("services", {}).items():
        row = [name, str(entry.get("pid", "-"))]
        if health is not None:
            row.append("up" if health.get(name) else "down")
        rows.append([*row, entry.get("health", "")])
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]
    lines += [
        f"kubeconfig: {state.get('kubeconfig')}",
        f"git repository: {state.get('gitUrl')}",
        f"webhook secret in: {state.get('webhookSecretFile')}",
        f"load (Locust) reads: {state.get('loadFile')}",
    ]
    return "\n".join(lines)


# ------------------------------------------------------------------ the services


def services(run_dir: Path, ports: Ports, state: dict[str, Any]) -> Iterable[Service]:
    """Each service, in start order; a generator so that side steps (the git repository,
    Prometheus' files) happen just before the service that needs them."""
    python = sys.executable
    kubeconfig = run_dir / "kubeconfig"
    crds = [*sorted(_REPO_CRDS.glob("*.modelrollout.io.yaml")), _ISVC_CRD]
    kube_api = [python, "-m", "modelrollout.cli", "sandbox", "kube-api"]
    kube_api += ["--port", str(ports.kube_api), "--kubeconfig", str(kubeconfig)]
    for crd in crds:
        kube_api += ["--crd", str(crd)]
    yield Service("kube-api", kube_api, {}, f"http://{HOST}:{ports.kube_api}/readyz")

    artifacts = run_dir / "mlflow" / "artifacts"
    artifacts.mkdir(parents=True, exist_ok=True)
    mlflow = [python, "-m", "mlflow", "server", "--host", HOST, "--port", str(ports.mlflow)]
    mlflow += ["--workers", "1", "--backend-store-uri", f"sqlite:///{run_dir / 'mlflow' / 'db'}"]
    mlflow += ["--artifacts-destination", str(artifacts)]
    mlflow_env = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    yield Service("mlflow", mlflow, mlflow_env, f"http://{HOST}:{ports.mlflow}/health")

    dataplane = [python, "-m", "modelrollout.sandbox.kserve", "--kubeconfig", str(kubeconfig)]
    dataplane += ["--runtime", "process", "--router-port", str(ports.router)]
    dataplane += ["--run-dir", str(run_dir / "models")]
    dataplane += ["--storage-root", f"{ARTIFACT_BUCKET}={artifacts}"]
    dataplane_env = {"KUBECONFIG": str(kubeconfig)}
    yield Service("dataplane", dataplane, dataplane_env, f"http://{HOST}:{ports.router}/metrics")

    config = write_prometheus_config(run_dir, ports)
    prometheus = ["prometheus", f"--config.file={config}"]
    prometheus += [f"--storage.tsdb.path={run_dir / 'prometheus' / 'tsdb'}"]
    prometheus += [f"--web.listen-address={HOST}:{ports.prometheus}", "--log.level=warn"]
    yield Service("prometheus", prometheus, {}, f"http://{HOST}:{ports.prometheus}/-/ready")

    make_git_repository(
        Path(state["gitRepository"]),
        f"http://{HOST}:{ports.webhook}/hooks/git",
        Path(state["webhookSecretFile"]),
        state["gitUrl"],
    )
    secret = Path(state["webhookSecretFile"]).read_text(encoding="utf-8").strip()
    operator_env = {
        "KUBECONFIG": str(kubeconfig),
        "MODELROLLOUT_REGISTRY": "mlflow",
        "MODELROLLOUT_MLFLOW_TRACKING_URI": f"http://{HOST}:{ports.mlflow}",
        "MODELROLLOUT_STORAGE_MAP": f"mlflow-artifacts:/={ARTIFACT_BUCKET}",
        "MODELROLLOUT_PROMETHEUS_URL": f"http://{HOST}:{ports.prometheus}",
        "MODELROLLOUT_GIT_CACHE": str(run_dir / "git-cache"),
        "MODELROLLOUT_GIT_ALLOW_FILE": "1",
        "MODELROLLOUT_WEBHOOK_ADDRESS": f"{HOST}:{ports.webhook}",
        "MODELROLLOUT_WEBHOOK_SECRET": secret,
        "MODELROLLOUT_TIMER_SECONDS": "1",
        "MODELROLLOUT_RESYNC_SECONDS": "1",
        "MODELROLLOUT_LIVENESS_ENDPOINT": f"http://{HOST}:{ports.liveness}/healthz",
    }
    operator = [python, "-m", "modelrollout.cli", "run"]
    yield Service("operator", operator, operator_env, f"http://{HOST}:{ports.liveness}/healthz")

    load_file = Path(state["loadFile"])
    if not load_file.exists():
        write_load(load_file, [])
    load = [python, "-m", "locust", "-f", str(_PACKAGE / "sandbox" / "locustfile.py")]
    load += ["--host", f"http://{HOST}:{ports.router}", "--web-host", HOST]
    load += ["--web-port", str(ports.load), "--autostart", "--users", str(LOAD_USERS)]
    load += ["--spawn-rate", str(LOAD_USERS), "--only-summary", "--loglevel", "WARNING"]
    load_env = {
        "MODELROLLOUT_LOAD_FILE": str(load_file),
        "MODELROLLOUT_LOAD_USERS": str(LOAD_USERS),
    }
    yield Service("load", load, load_env, f"http://{HOST}:{ports.load}/")


def write_load(load_file: Path, targets: list[dict[str, Any]]) -> None:
    """What Locust sends where (see :mod:`modelrollout.sandbox.locustfile`), replaced at once."""
    partial = load_file.with_suffix(".tmp")
    partial.write_text(json.dumps({"targets": targets}, indent=2) + "\n", encoding="utf-8")
    partial.replace(load_file)


def write_prometheus_config(run_dir: Path, ports: Ports) -> Path:
    folder = run_dir / "prometheus"
    folder.mkdir(parents=True, exist_ok=True)
    targets = folder / "targets.json"
    listed = [{"targets": [f"{HOST}:{ports.router}"], "labels": {"service": "sandbox-router"}}]
    targets.write_text(json.dumps(listed, indent=2) + "\n", encoding="utf-8")
    config = folder / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n"
        "scrape_configs:\n  - job_name: knative\n    file_sd_configs:\n"
        f"      - files: [{json.dumps(str(targets))}]\n        refresh_interval: 5s\n",
        encoding="utf-8",
    )
    return config


def make_git_repository(path: Path, webhook: str, secret_file: Path, clone_url: str) -> None:
    """A bare repository whose ``post-receive`` hook posts each push to the operator's
    webhook, signed as GitHub signs it (a push succeeds even when the operator is down)."""
    if not (path / "HEAD").exists():
        path.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["git", "init", "--quiet", "--bare", "--initial-branch=main", str(path)],
            check=True,
            capture_output=True,
            timeout=30,
        )
    hook = path / "hooks" / "post-receive"
    hook.parent.mkdir(exist_ok=True)
    hook.write_text(
        f"#!{sys.executable}\n"
        + POST_RECEIVE.format(
            webhook=json.dumps(webhook),
            secret=json.dumps(str(secret_file)),
            url=json.dumps(clone_url),
        ),
        encoding="utf-8",
    )
    hook.chmod(0o755)


POST_RECEIVE = """\
# Written by modelrollout sandbox up: tell the operator about each pushed ref.
import hashlib, hmac, json, pathlib, sys, urllib.request

secret = pathlib.Path({secret}).read_text(encoding="utf-8").strip().encode()
for line in sys.stdin:
    old, new, ref = line.split()
    body = json.dumps({{"ref": ref, "before": old, "after": new,
                       "repository": {{"clone_url": {url}}}}}).encode()
    signature = hmac.new(secret, body, hashlib.sha256).hexdigest()
    request = urllib.request.Request({webhook}, data=body, method="POST", headers={{
        "Content-Type": "application/json", "X-GitHub-Event": "push",
        "X-Hub-Signature-256": "sha256=" + signature}})
    try:
        with urllib.request.urlopen(request, timeout=5) as answer:
            print("modelrollout webhook:", answer.status)
    except OSError as error:
        print("modelrollout webhook not delivered (the operator polls anyway):", error)
"""


def check_ports_free(ports: Ports) -> None:
    for name, port in ports.named().items():
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((HOST, port))
            except OSError:
                raise SandboxError(
                    f"port {port} on {HOST} (for {name}) is taken; stop what uses it or "
                    f"choose another --base-port (the sandbox uses {ports.base}.."
                    f"{ports.load})"
                ) from None


def start(service: Service, run_dir: Path) -> int:
    env = {**os.environ, **service.env, "PYTHONUNBUFFERED": "1"}
    env.pop("MLFLOW_TRACKING_URI", None)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(_OPERATOR_DIR), env.get("PYTHONPATH")]))
    with (run_dir / f"{service.name}.log").open("ab") as log:
        log.write(f"---- modelrollout sandbox up, {time.ctime()}\n".encode())
        log.flush()
        process = subprocess.Popen(
            service.command,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=run_dir,
            start_new_session=True,  # its own process group: down stops its children too
        )
    process.returncode = 0  # it outlives this command on purpose: no "still running" warning
    return process.pid


def wait_ready(service: Service, pid: int, run_dir: Path, timeout: float = READY_SECONDS) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive(pid):
            raise SandboxError(
                f"{service.name} exited while starting; see {run_dir / service.name}.log:\n"
                + tail(run_dir / f"{service.name}.log")
            )
        if answers(service.health):
            return
        time.sleep(0.2)
    raise SandboxError(
        f"{service.name} not ready after {timeout:.0f} s; see {run_dir / service.name}.log"
    )


def tail(path: Path, chars: int = 2000) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")[-chars:]
    except OSError:
        return ""


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as answer:
            code: int = answer.status
            return 200 <= code < 300
    except OSError:  # URLError, connection refused or reset, timeouts
        return False


def service_health(state: dict[str, Any]) -> dict[str, bool]:
    health = {}
    for name, entry in state.get("services", {}).items():
        pid = entry.get("pid")
        health[name] = isinstance(pid, int) and alive(pid) and answers(entry["health"])
    return health


# ------------------------------------------------------------------ processes


def _stat(pid: int) -> tuple[str, int, int] | None:
    """(state, process group, session) of a live process from /proc, or None."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    fields = text.rsplit(")", 1)[1].split()
    return fields[0], int(fields[2]), int(fields[3])


def alive(pid: int) -> bool:
    """Running (a zombie nobody reaped yet counts as gone)."""
    found = _stat(pid)
    return found is not None and found[0] not in ("Z", "X")


def group_members(pgid: int) -> list[int]:
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            found = _stat(int(entry.name))
            if found is not None and found[1] == pgid and found[0] not in ("Z", "X"):
                members.append(int(entry.name))
    return members


def stop_all(state: dict[str, Any], timeout: float = STOP_SECONDS) -> None:
    """SIGTERM each started process group (last started first), then SIGKILL what is left."""
    groups = [
        entry["pid"]
        for entry in reversed(list(state.get("services", {}).values()))
        if isinstance(entry.get("pid"), int)
    ]
    groups = [pgid for pgid in groups if group_members(pgid)]
    for pgid in groups:
        _signal_group(pgid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(group_members(pgid) for pgid in groups):
        time.sleep(0.1)
    for pgid in groups:
        if group_members(pgid):
            _signal_group(pgid, signal.SIGKILL)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(group_members(pgid) for pgid in groups):
        time.sleep(0.1)


def _signal_group(pgid: int, signum: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)
