"""The local KServe controller against the Kubernetes API emulator, driven by the routers.

Covers:
- Given the emulator with our InferenceService CRD and the controller running (in-process,
  ``run()``), when the serverless router deploys a model, starts a canary, moves its weight,
  sends it back to 0 and restores the stable model, and then promotes a second canary, then
  after each call ``observe()`` converges to exactly the split asked for; revisions out of
  traffic are retired; a restarted controller carries on from ``status.annotations``; a
  deleted InferenceService's revisions are all retired;
- the same story for the raw router, with the controller run as
  ``python -m modelrollout.sandbox.kserve --kubeconfig FILE`` (it stops cleanly on SIGTERM);
- the watch loop alone (scripted): list, watch from the list's resourceVersion, resume from
  the last event's, list again after 410 Gone, report deletions.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

import modelrollout
from kserve_crds import OUR_CRD, load_crd
from modelrollout import __version__
from modelrollout.api import ModelVersionRef
from modelrollout.decision import RouteObservation
from modelrollout.routing.base import RouteTarget
from modelrollout.routing.kserve import GROUP, PLURAL, VERSION, KServeRouter
from modelrollout.routing.kserve_raw import RawRouter
from modelrollout.routing.kserve_serverless import ServerlessRouter
from modelrollout.sandbox.kserve import controller
from modelrollout.sandbox.kserve.runtime import InstantRuntime

S = ModelVersionRef("models:/fraud/1", "s3://models/fraud/1", "fraud", "1")
C = ModelVersionRef("models:/fraud/2", "s3://models/fraud/2", "fraud", "2")
D = ModelVersionRef("models:/fraud/3", "s3://models/fraud/3", "fraud", "3")
TEMPLATE = {"model": {"modelFormat": {"name": "sklearn"}, "protocolVersion": "v2"}}
CONVERGE_SECONDS = 15.0
SERVERLESS_NS, RAW_NS = "kserve-serverless", "kserve-raw"
PYTHONPATH = os.pathsep.join(  # the package as pytest imports it, installed or not
    p
    for p in (str(Path(modelrollout.__file__).resolve().parents[1]), os.environ.get("PYTHONPATH"))
    if p
)


# ---------------------------------------------------------------- set-up


def _api_client(kubeconfig: Path) -> client.ApiClient:
    api_client = config.new_client_from_config(config_file=str(kubeconfig))
    api_client.user_agent = f"modelrollout/{__version__}"
    return api_client


def _prepare(api_client: client.ApiClient, namespace: str) -> None:
    """Our CRD registered and the namespace there (either may exist already)."""
    for create in (
        lambda: client.ApiextensionsV1Api(api_client).create_custom_resource_definition(
            load_crd(OUR_CRD)
        ),
        lambda: client.CoreV1Api(api_client).create_namespace(
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}
        ),
    ):
        try:
            create()
        except ApiException as error:
            if error.status != 409:
                raise
    deadline = time.monotonic() + CONVERGE_SECONDS
    objects = client.CustomObjectsApi(api_client)
    while True:  # a CRD is served once it is Established
        try:
            objects.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)
            return
        except ApiException as error:
            if error.status != 404 or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


@pytest_asyncio.fixture
async def api_client(kube_api: Any) -> AsyncIterator[client.ApiClient]:
    api_client = _api_client(Path(kube_api.kubeconfig))
    for namespace in (SERVERLESS_NS, RAW_NS):
        await asyncio.to_thread(_prepare, api_client, namespace)
    yield api_client
    api_client.close()


@contextlib.asynccontextmanager
async def running_controller(
    kubeconfig: Path, runtime: InstantRuntime
) -> AsyncIterator[asyncio.Task[None]]:
    stop = asyncio.Event()
    task = asyncio.create_task(
        controller.run(kubeconfig, runtime, stop, requeue_seconds=0.05, watch_timeout_seconds=1)
    )
    try:
        yield task
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=10)


async def drive(
    router: KServeRouter,
    target: RouteTarget,
    call: Callable[[], Awaitable[None]],
    expected: RouteObservation,
) -> None:
    """Repeat ``call`` and observe, as the engine does each pass, until the split is there."""
    deadline = time.monotonic() + CONVERGE_SECONDS
    observed = None
    while time.monotonic() < deadline:
        await call()
        observed = await router.observe(target)
        if observed == expected:
            return
        await asyncio.sleep(0.05)
    pytest.fail(f"observed {observed}, expected {expected}")


def _revisions(runtime: InstantRuntime, namespace: str) -> set[str]:
    """What runs for ``namespace`` (the emulator is shared: other tests leave objects)."""
    return {revision for where, _, revision in runtime.running if where == namespace}


# ---------------------------------------------------------------- serverless, in-process


@pytest.mark.asyncio
async def test_serverless_router_and_controller_converge_after_each_call(
    kube_api: Any, api_client: client.ApiClient
) -> None:
    kubeconfig = Path(kube_api.kubeconfig)
    target = RouteTarget(SERVERLESS_NS, "fraud", TEMPLATE)
    router = ServerlessRouter(api_client)
    runtime = InstantRuntime(ready_after=2)
    async with running_controller(kubeconfig, runtime):
        # Given the stable model deployed
        assert await router.observe(target) is None
        await drive(
            router, target, lambda: router.promote(target, S), RouteObservation(S.storage_uri)
        )
        assert _revisions(runtime, SERVERLESS_NS) == {"fraud-predictor-00001"}
        # When a canary starts and its weight moves, Then each split is observed
        for weight in (10, 50, 0):
            await drive(
                router,
                target,
                lambda w=weight: router.set_weight(target, S, C, w),  # type: ignore[misc]
                RouteObservation(S.storage_uri, C.storage_uri, weight, True),
            )
        # When the stable model is restored, Then it serves alone from a new revision
        await drive(
            router, target, lambda: router.restore(target, S), RouteObservation(S.storage_uri)
        )
        assert _revisions(runtime, SERVERLESS_NS) == {"fraud-predictor-00003"}
        assert (SERVERLESS_NS, "fraud", "fraud-predictor-00002") in runtime.retired
    # Given a restarted controller with a new runtime
    runtime = InstantRuntime()
    async with running_controller(kubeconfig, runtime):
        await drive(
            router,
            target,
            lambda: router.set_weight(target, S, D, 20),
            RouteObservation(S.storage_uri, D.storage_uri, 20, True),
        )
        await drive(
            router, target, lambda: router.promote(target, D), RouteObservation(D.storage_uri)
        )
        # Then the revision counter carried on and only the promoted revision runs
        assert _revisions(runtime, SERVERLESS_NS) == {"fraud-predictor-00004"}
        objects = client.CustomObjectsApi(api_client)
        obj = await asyncio.to_thread(
            objects.get_namespaced_custom_object, GROUP, VERSION, SERVERLESS_NS, PLURAL, "fraud"
        )
        predictor = obj["status"]["components"]["predictor"]
        assert predictor["latestRolledoutRevision"] == "fraud-predictor-00004"
        assert predictor["previousRolledoutRevision"] == "fraud-predictor-00003"
        assert "ownerReferences" not in obj["metadata"]
        # When the InferenceService is deleted, Then its model servers are retired
        await asyncio.to_thread(
            objects.delete_namespaced_custom_object, GROUP, VERSION, SERVERLESS_NS, PLURAL, "fraud"
        )
        deadline = time.monotonic() + CONVERGE_SECONDS
        while _revisions(runtime, SERVERLESS_NS) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert _revisions(runtime, SERVERLESS_NS) == set()


# ---------------------------------------------------------------- raw, as a process


@pytest.mark.asyncio
async def test_raw_router_and_the_controller_process_converge_after_each_call(
    kube_api: Any, api_client: client.ApiClient
) -> None:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "modelrollout.sandbox.kserve",
            "--kubeconfig",
            str(kube_api.kubeconfig),
            "--watch-timeout-seconds",
            "1",
        ],
        env={**os.environ, "PYTHONWARNINGS": "error", "PYTHONPATH": PYTHONPATH},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        target = RouteTarget(RAW_NS, "fraud", TEMPLATE)
        router = RawRouter(api_client)
        await drive(
            router, target, lambda: router.promote(target, S), RouteObservation(S.storage_uri)
        )
        for weight in (10, 60):
            await drive(
                router,
                target,
                lambda w=weight: router.set_weight(target, S, C, w),  # type: ignore[misc]
                RouteObservation(S.storage_uri, C.storage_uri, weight, True),
            )
        await drive(
            router, target, lambda: router.promote(target, C), RouteObservation(C.storage_uri)
        )
        obj = await asyncio.to_thread(
            client.CustomObjectsApi(api_client).get_namespaced_custom_object,
            GROUP,
            VERSION,
            RAW_NS,
            PLURAL,
            "fraud",
        )
        # Then the canary's Deployment became the predictor's: promoted without a restart
        assert obj["spec"]["predictor"]["name"] == "v2"
        assert obj["status"]["components"]["predictor"]["latestCreatedRevision"] == (
            "fraud-v2-predictor-00002"
        )
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = await asyncio.to_thread(process.communicate, timeout=20)
        print(output)  # shown when the test fails
    assert process.returncode == 0, output


# ---------------------------------------------------------------- the watch loop, scripted


def _isvc(name: str, resource_version: str) -> dict[str, Any]:
    return {"metadata": {"namespace": "shop", "name": name, "resourceVersion": resource_version}}


def _event(kind: str, name: str, resource_version: str) -> dict[str, Any]:
    obj = _isvc(name, resource_version)
    return {"type": kind, "object": obj, "raw_object": obj}


class _ScriptedApi:
    def __init__(self) -> None:
        self.lists = 0

    def list_cluster_custom_object(self, group: str, version: str, plural: str) -> Any:
        self.lists += 1
        resource_version = str(10 * self.lists)
        return {"metadata": {"resourceVersion": resource_version}, "items": [_isvc("a", "1")]}


def test_the_watch_resumes_and_lists_again_after_410(monkeypatch: pytest.MonkeyPatch) -> None:
    watched_from: list[str] = []
    messages: list[Any] = []
    stopping = threading.Event()
    script: list[Any] = [
        [_event("MODIFIED", "a", "11")],  # the watch times out: resume from "11"
        ApiException(status=410, reason="Expired"),  # too old: list again
        [_event("ADDED", "b", "21"), _event("DELETED", "a", "22")],
        [],
    ]

    class ScriptedWatch:
        def __init__(self) -> None:
            self.resource_version: str | None = None

        def stream(self, func: Any, *args: Any, **kwargs: Any) -> Iterator[dict[str, Any]]:
            watched_from.append(kwargs["resource_version"])
            assert kwargs["allow_watch_bookmarks"] is True
            step = script.pop(0) if script else []
            if not script:
                stopping.set()
            if isinstance(step, Exception):
                raise step
            for event in step:
                self.resource_version = event["raw_object"]["metadata"]["resourceVersion"]
                yield event

        def stop(self) -> None:
            pass

    monkeypatch.setattr(controller.watch, "Watch", ScriptedWatch)
    api = _ScriptedApi()
    watcher = controller._Watcher(api, messages.append, timeout_seconds=1)  # type: ignore[arg-type]
    watcher.stopping = stopping
    watcher.run()
    assert watched_from == ["10", "11", "20", "22"]
    assert api.lists == 2
    kinds = [(type(m).__name__, getattr(m, "key", None)) for m in messages]
    assert kinds == [
        ("_Listed", None),
        ("_Changed", ("shop", "a")),
        ("_Changed", ("shop", "a")),
        ("_Listed", None),
        ("_Changed", ("shop", "a")),
        ("_Changed", ("shop", "b")),
        ("_Deleted", ("shop", "a")),
    ]
