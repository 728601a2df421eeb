"""Real processes for end-to-end tests: the operator, the local KServe controller, kubectl.

Each process logs to a file in the test's work folder; ``kill()`` is SIGKILL
(what a crash looks like), ``stop()`` is SIGTERM and a wait.
"""

from __future__ import annotations

import json
import os
import random
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import modelrollout

T = TypeVar("T")
OPERATOR_DIR = Path(modelrollout.__file__).resolve().parents[1]


class Process:
    def __init__(self, name: str, command: list[str], workdir: Path, env: Mapping[str, str]):
        self.name = name
        self.command = command
        self.workdir = workdir
        self.env = {**os.environ, **env}
        self.env["PYTHONPATH"] = os.pathsep.join(
            filter(None, [str(OPERATOR_DIR), os.environ.get("PYTHONPATH")])
        )
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def log(self) -> Path:
        return self.workdir / f"{self.name}.log"

    def start(self) -> None:
        self.starts += 1
        with self.log.open("a") as log:
            log.write(f"---- start {self.starts}\n")
            log.flush()
            self.process = subprocess.Popen(
                self.command, stdout=log, stderr=subprocess.STDOUT, env=self.env, cwd=self.workdir
            )

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def stop(self, timeout: float = 15.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None


def operator(workdir: Path, kubeconfig: Path, **env: str) -> Process:
    settings = {
        "KUBECONFIG": str(kubeconfig),
        "MODELROLLOUT_TIMER_SECONDS": "0.5",
        "MODELROLLOUT_RESYNC_SECONDS": "0.5",
        "MODELROLLOUT_REGISTRY": "static:s3://models",
        **env,
    }
    return Process("operator", [sys.executable, "-m", "modelrollout.cli", "run"], workdir, settings)


def kserve_controller(workdir: Path, kubeconfig: Path) -> Process:
    command = [sys.executable, "-m", "modelrollout.sandbox.kserve", "--kubeconfig", str(kubeconfig)]
    return Process("kserve", command, workdir, {"KUBECONFIG": str(kubeconfig)})


class Kubectl:
    def __init__(self, kubeconfig: Path) -> None:
        self.env = {**os.environ, "KUBECONFIG": str(kubeconfig)}

    def __call__(self, *args: str, stdin: str | None = None, check: bool = True) -> str:
        done = subprocess.run(
            ["kubectl", *args],
            input=stdin,
            capture_output=True,
            text=True,
            env=self.env,
            timeout=60,
            check=False,
        )
        if check and done.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed: {done.stderr}")
        return done.stdout

    def json(self, *args: str) -> Any:
        return json.loads(self(*args, "-o", "json"))


def wait_for(what: str, probe: Callable[[], T | None], timeout: float = 60.0) -> T:
    """Poll ``probe`` until it returns something truthy; fail naming ``what``."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


ISVC_CRD = OPERATOR_DIR / "modelrollout" / "sandbox" / "crds"


@contextmanager
def running(kubectl: Kubectl, kserve: Process, operator: Process) -> Iterator[None]:
    """Our InferenceService CRD established, then the KServe controller and the operator
    running until the block ends."""
    kubectl("apply", "-f", str(ISVC_CRD))
    kubectl("wait", "--for", "condition=established", "crd/inferenceservices.serving.kserve.io")
    kserve.start()
    operator.start()
    try:
        yield
    finally:
        operator.stop()
        kserve.stop()


def free_base_port(count: int = 7) -> int:
    """A base port whose ``count`` ports are all free on 127.0.0.1 (below the ephemeral range):
    one sandbox's range (``modelrollout sandbox up`` uses base+0 .. base+6)."""
    for _ in range(50):
        base = random.randrange(20000, 30000)
        if all(_free(base + k) for k in range(count)):
            return base
    raise AssertionError("no free port range found")


def _free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True
