"""Running the emulator: :class:`KubeApi` in-process, :func:`serve` as its own process."""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import kmock
import yaml

from modelrollout.sandbox.kubeapi.objects import Cluster
from modelrollout.sandbox.kubeapi.server import ApiHandler

HOST = "127.0.0.1"
CONTEXT = "modelrollout-sandbox"


def load_documents(paths: Iterable[Path]) -> list[dict[str, Any]]:
    """The YAML documents of ``paths`` (files with several documents included)."""
    found = []
    for path in paths:
        with path.open(encoding="utf-8") as stream:
            found += [d for d in yaml.safe_load_all(stream) if isinstance(d, dict)]
    return found


def kubeconfig(url: str) -> dict[str, Any]:
    """A kubeconfig that kubectl and both Python clients accept: plain HTTP, a dummy token."""
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": CONTEXT, "cluster": {"server": url}}],
        "users": [{"name": CONTEXT, "user": {"token": "sandbox-token"}}],
        "contexts": [
            {
                "name": CONTEXT,
                "context": {"cluster": CONTEXT, "user": CONTEXT, "namespace": "default"},
            }
        ],
        "current-context": CONTEXT,
        "preferences": {},
    }


def write_kubeconfig(path: Path, url: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(kubeconfig(url), sort_keys=False), encoding="utf-8")


class KubeApi:
    """The emulator on 127.0.0.1 for the life of an ``async with`` block::

    async with KubeApi(port=0, crds=[Path("crds/x.yaml")]) as api:
        ...  # api.url, api.cluster, api.handler
    """

    def __init__(
        self,
        *,
        port: int = 0,
        crds: Iterable[Path] = (),
        history_limit: int = 2000,
        audit_limit: int = 50_000,
        bookmark_interval: float = 60.0,
    ) -> None:
        self.cluster = Cluster(history_limit=history_limit)
        for crd in load_documents(crds):
            self.cluster.apply_crd(crd)
        self.handler = ApiHandler(
            self.cluster, audit_limit=audit_limit, bookmark_interval=bookmark_interval
        )
        self._server = kmock.Server(self.handler, host=HOST, port=port or None, user_agent="")

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self._server.port}"

    @property
    def port(self) -> int:
        return int(self._server.port)

    async def __aenter__(self) -> Self:
        await self.handler.__aenter__()
        await self._server.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.cluster.store.close_watchers()  # open watch streams end before the server stops
        await asyncio.sleep(0)
        await self._server.__aexit__(exc_type, exc_value, traceback)
        await self.handler.__aexit__(exc_type, exc_value, traceback)


async def serve(
    port: int,
    kubeconfig_path: Path,
    crds: Iterable[Path],
    bookmark_interval: float = 60.0,
    history_limit: int = 2000,
) -> int:
    """The ``sandbox kube-api`` command: serve in the foreground until SIGTERM or SIGINT."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    api = KubeApi(
        port=port, crds=crds, bookmark_interval=bookmark_interval, history_limit=history_limit
    )
    async with api:
        write_kubeconfig(kubeconfig_path, api.url)
        print(f"kube-api listening on {api.url}", flush=True)
        await stop.wait()
    print("kube-api stopped", file=sys.stderr, flush=True)
    return 0
