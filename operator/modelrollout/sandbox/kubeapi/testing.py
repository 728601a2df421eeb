"""The emulator as a process for tests: start it, reach its admin endpoints, stop it.

``KubeApiProcess.start(workdir, crds=[...])`` runs ``modelrollout sandbox kube-api`` on an
ephemeral port with a kubeconfig in ``workdir`` and waits for its "listening" line. The
``kube_api`` pytest fixture (tests/conftest.py) is one of these for the whole session.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import urllib.request
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import modelrollout

_READY = "kube-api listening on "
_OPERATOR_DIR = Path(modelrollout.__file__).resolve().parents[1]


class KubeApiProcess:
    """A running ``modelrollout sandbox kube-api``: ``url``, ``kubeconfig`` and admin calls."""

    def __init__(self, process: subprocess.Popen[str], url: str, kubeconfig: Path) -> None:
        self.process = process
        self.url = url
        self.kubeconfig = kubeconfig

    @classmethod
    def start(
        cls,
        workdir: Path,
        *,
        crds: Iterable[Path] = (),
        bookmark_interval: float = 60.0,
        history_limit: int = 2000,
        timeout: float = 30.0,
    ) -> Self:
        kubeconfig = workdir / "kubeconfig"
        command = [
            sys.executable,
            "-m",
            "modelrollout.cli",
            "sandbox",
            "kube-api",
            "--port",
            "0",
            "--kubeconfig",
            str(kubeconfig),
            "--bookmark-interval",
            str(bookmark_interval),
            "--history-limit",
            str(history_limit),
        ]
        for crd in crds:
            command += ["--crd", str(crd)]
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            filter(None, [str(_OPERATOR_DIR), env.get("PYTHONPATH")])
        )
        log = (workdir / "kube-api.log").open("w", encoding="utf-8")
        process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=log, text=True, env=env, cwd=workdir
        )
        log.close()
        assert process.stdout is not None
        ready, _, _ = select.select([process.stdout], [], [], timeout)
        line = process.stdout.readline() if ready else ""
        if not line.startswith(_READY):
            process.kill()
            process.wait()
            detail = (workdir / "kube-api.log").read_text(encoding="utf-8")[-2000:]
            raise RuntimeError(f"kube-api did not start: {line!r}\n{detail}")
        return cls(process, line.removeprefix(_READY).strip(), kubeconfig)

    def stop(self, timeout: float = 10.0) -> int:
        """SIGTERM, then wait; the exit code (0 when it stopped cleanly)."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()
        return self.process.returncode

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(
            self.url + path,
            data=data,
            method=method,
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())

    def audit(self) -> list[dict[str, Any]]:
        """The API calls served so far (oldest first), as {userAgent, verb, ..., code}."""
        items: list[dict[str, Any]] = self._call("GET", "/_emulator/audit")["items"]
        return items

    def clear_audit(self) -> None:
        self._call("DELETE", "/_emulator/audit")

    def inject_fault(
        self,
        *,
        verb: str,
        resource: str,
        code: int,
        group: str = "",
        count: int = 1,
        subresource: str | None = None,
        namespace: str | None = None,
        name: str | None = None,
        delay_seconds: float = 0.0,
        retry_after_seconds: int = 1,
        user_agent: str | None = None,
    ) -> None:
        """Answer the next ``count`` matching calls with ``code`` (409, 410, 429, 500 or 504)
        after ``delay_seconds``; with code 0 (no answer), hold each for
        ``delay_seconds`` and drop its connection unanswered, so the client times out."""
        spec: dict[str, Any] = {
            "verb": verb,
            "group": group,
            "resource": resource,
            "code": code,
            "count": count,
            "delaySeconds": delay_seconds,
            "retryAfterSeconds": retry_after_seconds,
        }
        for key, value in (
            ("subresource", subresource),
            ("namespace", namespace),
            ("name", name),
            ("userAgent", user_agent),
        ):
            if value is not None:
                spec[key] = value
        self._call("POST", "/_emulator/faults", spec)

    def clear_faults(self) -> None:
        self._call("DELETE", "/_emulator/faults")

    def pending_faults(self) -> list[dict[str, Any]]:
        """Injected faults not used up yet, with the count each has left."""
        items: list[dict[str, Any]] = self._call("GET", "/_emulator/faults")["items"]
        return items

    def cut_watches(self, *, group: str | None = None, resource: str | None = None) -> int:
        """Abort every open watch stream (of one resource, if named); how many were cut."""
        which = {k: v for k, v in (("group", group), ("resource", resource)) if v is not None}
        cut: int = self._call("POST", "/_emulator/watches/cut", which)["cut"]
        return cut

    def stats(self) -> dict[str, Any]:
        found: dict[str, Any] = self._call("GET", "/_emulator/stats")
        return found
