"""The local KServe data plane in one process: the controller, real model servers, the router.

The controller keeps KServe's revisions and status (:mod:`.controller`); with
:class:`~.processes.ProcessRuntime` each revision it needs is a real KServe model server on
127.0.0.1; the router (:mod:`modelrollout.sandbox.router`) splits prediction requests by the
traffic the InferenceService's status shows and exports Knative's queue-proxy metrics. The
router reads InferenceServices from a cache refreshed in the background, never per request.

Storage URIs become local model folders through ``storage_roots``: ``(prefix, folder)`` pairs,
first match wins (the sandbox maps its artifact bucket back to MLflow's artifact root). A model
that is bad on purpose says so in its ``MLmodel`` file's ``metadata`` (keys ``fault.error-rate``,
``fault.extra-latency-ms``, ``fault.shift``, as logged with ``log_model(metadata=...)``): the
fault travels with the artifacts, as a real serving defect would.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client, config

from modelrollout import __version__
from modelrollout.sandbox.kserve import controller
from modelrollout.sandbox.kserve.processes import ModelSource, ProcessRuntime, Resolver
from modelrollout.sandbox.modelserver import Faults
from modelrollout.sandbox.router import Router, serve

log = logging.getLogger(__name__)

GROUP, VERSION, PLURAL = "serving.kserve.io", "v1beta1", "inferenceservices"


class IsvcCache:
    """Every InferenceService, listed again every ``interval`` seconds."""

    def __init__(self, api_client: client.ApiClient, interval: float = 0.5) -> None:
        self._objects = client.CustomObjectsApi(api_client)
        self.interval = interval
        self.items: dict[tuple[str, str], Mapping[str, Any]] = {}

    def get(self, namespace: str, name: str) -> Mapping[str, Any] | None:
        return self.items.get((namespace, name))

    async def refresh(self) -> None:
        listed = await asyncio.to_thread(
            self._objects.list_cluster_custom_object, GROUP, VERSION, PLURAL
        )
        self.items = {
            (o["metadata"]["namespace"], o["metadata"]["name"]): o for o in listed["items"]
        }

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.refresh()
            except Exception as error:  # the API server may be restarting: keep the last view
                log.warning("listing InferenceServices failed: %s", error)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.interval)


def resolver(storage_roots: Sequence[tuple[str, Path]]) -> Resolver:
    def resolve(storage_uri: str) -> ModelSource:
        for prefix, folder in storage_roots:
            if storage_uri.startswith(prefix):
                model_dir = folder / storage_uri.removeprefix(prefix)
                return ModelSource(model_dir, Faults.from_tags(model_metadata(model_dir)))
        raise ValueError(f"no local folder for {storage_uri!r}: add a --storage-root for it")

    return resolve


def model_metadata(model_dir: Path) -> dict[str, str]:
    """The ``metadata`` mapping of ``model_dir/MLmodel`` (empty when there is none)."""
    try:
        text = (model_dir / "MLmodel").read_text(encoding="utf-8")
    except OSError:
        return {}
    found = yaml.safe_load(text)
    metadata = found.get("metadata") if isinstance(found, dict) else None
    if not isinstance(metadata, dict):
        return {}
    return {str(key): str(value) for key, value in metadata.items()}


async def run(
    kubeconfig: str | Path,
    run_dir: Path,
    storage_roots: Sequence[tuple[str, Path]],
    router_port: int,
    stop: asyncio.Event,
    *,
    seed: int | None = None,
) -> None:
    runtime = ProcessRuntime(resolver(storage_roots), run_dir)
    api_client = config.new_client_from_config(config_file=str(kubeconfig))
    api_client.user_agent = f"modelrollout-sandbox-router/{__version__}"
    cache = IsvcCache(api_client)
    router = Router(cache.get, runtime.endpoints, seed=seed)
    runner = await serve(router, router_port)
    log.info("router listening on 127.0.0.1:%s", router_port)
    refreshing = asyncio.create_task(cache.run(stop))
    try:
        await controller.run(kubeconfig, runtime, stop)
    finally:
        stop.set()
        await refreshing
        await runner.cleanup()
        await runtime.close()
        api_client.close()
