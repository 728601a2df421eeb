"""The sandbox's :class:`RevisionRuntime`: one real model-server process per revision.

:meth:`ProcessRuntime.ensure` starts ``python -m modelrollout.sandbox.modelserver`` for a
(namespace, InferenceService, revision) on a free 127.0.0.1 port, with the model directory
(and the faults to inject) that the ``resolver`` given to the constructor finds for the
predictor's ``model.storageUri``; it answers True once the server's
``GET /v1/models/<isvc>`` says ready. It never waits for the start: the controller asks again.
A server not ready within ``start_timeout`` seconds, or one that exited, is stopped and
started again on the next call. The timeout is generous (loading mlflow and kserve takes a few
CPU seconds a server, and a busy two-core machine starting several at once stretches that to a
minute or more): a slow start restarted is a start lost. :meth:`retire` stops one (SIGTERM,
SIGKILL after ``stop_timeout``). Each revision logs to ``<run_dir>/<namespace>.<revision>.log``.

Nothing is persisted: a new runtime (after the controller restarted) finds no process and
starts the ones the controller ensures again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import aiohttp

from modelrollout.sandbox.kserve.runtime import RevisionKey
from modelrollout.sandbox.modelserver import LOOPBACK, Faults

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelSource:
    """Where a revision's model is on this machine, and what is wrong with it on purpose."""

    model_dir: Path
    faults: Faults = field(default_factory=Faults)


Resolver = Callable[[str], ModelSource]
Clock = Callable[[], float]


@dataclass
class _Server:
    process: subprocess.Popen[bytes]
    port: int
    started: float
    log_file: IO[bytes]
    ready: bool = False

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"


def free_port() -> int:
    """A TCP port on 127.0.0.1 nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((LOOPBACK, 0))
        port: int = probe.getsockname()[1]
        return port


class ProcessRuntime:
    """Model servers as child processes (see the module docstring)."""

    def __init__(
        self,
        resolver: Resolver,
        run_dir: Path,
        *,
        start_timeout: float = 300.0,
        stop_timeout: float = 5.0,
        probe_timeout: float = 1.0,
        python: str = sys.executable,
        clock: Clock = time.monotonic,
    ) -> None:
        self.resolver = resolver
        self.run_dir = run_dir
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self.probe_timeout = probe_timeout
        self.python = python
        self.clock = clock
        self._servers: dict[RevisionKey, _Server] = {}

    def endpoints(self) -> dict[RevisionKey, str]:
        """The base URL of every revision whose server answered ready."""
        return {key: s.url for key, s in self._servers.items() if s.ready}

    @property
    def running(self) -> set[RevisionKey]:
        return set(self._servers)

    async def ensure(
        self, namespace: str, isvc: str, revision: str, predictor_spec: Mapping[str, Any]
    ) -> bool:
        key = (namespace, isvc, revision)
        server = self._servers.get(key)
        if server is not None and server.process.poll() is not None:
            log.warning(
                "model server of %s/%s exited (%s)", namespace, revision, server.process.returncode
            )
            await self._stop(key)
            server = None
        elif (
            server is not None
            and not server.ready
            and self.clock() - server.started > self.start_timeout
        ):
            log.warning("model server of %s/%s not ready in time: restarting", namespace, revision)
            await self._stop(key)
            server = None
        if server is None:
            try:
                server = self._start(key, predictor_spec)
            except (ValueError, LookupError, OSError) as error:
                # no model to serve (yet): not ready, asked again on the next reconcile
                log.warning("cannot start %s/%s: %s", namespace, revision, error)
                return False
            self._servers[key] = server
        if not server.ready:
            server.ready = await self._answers_ready(server, isvc)
        return server.ready

    async def retire(self, namespace: str, isvc: str, revision: str) -> None:
        await self._stop((namespace, isvc, revision))

    async def close(self) -> None:
        """Stop every model server."""
        await asyncio.gather(*(self._stop(key) for key in list(self._servers)))

    def _start(self, key: RevisionKey, predictor_spec: Mapping[str, Any]) -> _Server:
        namespace, isvc, revision = key
        uri = ((predictor_spec.get("model") or {}).get("storageUri")) or ""
        if not isinstance(uri, str) or not uri:
            raise ValueError(f"revision {namespace}/{revision} has no model.storageUri")
        source = self.resolver(uri)
        port = free_port()
        command = [
            self.python,
            "-m",
            "modelrollout.sandbox.modelserver",
            "--model-dir",
            str(source.model_dir),
            "--name",
            isvc,
            "--port",
            str(port),
            *source.faults.flags(),
        ]
        self.run_dir.mkdir(parents=True, exist_ok=True)
        log_file = (self.run_dir / f"{namespace}.{revision}.log").open("ab")
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        log.info(
            "started model server of %s/%s on port %d (pid %d)",
            namespace,
            revision,
            port,
            process.pid,
        )
        return _Server(process, port, self.clock(), log_file)

    async def _answers_ready(self, server: _Server, isvc: str) -> bool:
        timeout = aiohttp.ClientTimeout(total=self.probe_timeout)
        try:
            async with (
                aiohttp.ClientSession(timeout=timeout) as session,
                session.get(f"{server.url}/v1/models/{isvc}") as response,
            ):
                if response.status != 200:
                    return False
                body = await response.json()
        except (aiohttp.ClientError, TimeoutError, ValueError):
            return False
        return isinstance(body, dict) and body.get("ready") is True

    async def _stop(self, key: RevisionKey) -> None:
        server = self._servers.pop(key, None)
        if server is None:
            return
        process = server.process
        if process.poll() is None:
            process.terminate()
            if not await self._exited(process, self.stop_timeout):
                process.kill()
                await self._exited(process, self.stop_timeout)
        server.log_file.close()
        log.info("stopped model server of %s/%s", key[0], key[2])

    @staticmethod
    async def _exited(process: subprocess.Popen[bytes], timeout: float) -> bool:
        with contextlib.suppress(subprocess.TimeoutExpired):
            await asyncio.to_thread(process.wait, timeout)
            return True
        return False
