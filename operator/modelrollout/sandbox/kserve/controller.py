"""The local KServe controller: watch InferenceServices, keep their revisions, write status.

One thread lists and watches InferenceServices in all namespaces with the sync ``kubernetes``
client, resuming from the last resourceVersion and listing again when the API server answers
410 Gone. The asyncio side reconciles one InferenceService at a time: :func:`revisions.plan`,
the runtime for readiness, :func:`revisions.next_status`, then a merge patch of ``/status``
with only what changed (so its own writes settle). Revisions that are not ready yet are
reconciled again after ``requeue_seconds``.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import urllib3
from kubernetes import client, config, watch
from kubernetes.client.exceptions import ApiException

from modelrollout import __version__
from modelrollout.routing.kserve import GROUP, MERGE_PATCH, PLURAL, VERSION
from modelrollout.sandbox.kserve import revisions
from modelrollout.sandbox.kserve.runtime import RevisionRuntime
from modelrollout.serde import merge_patch

log = logging.getLogger(__name__)

Key = tuple[str, str]
Clock = Callable[[], datetime.datetime]


@dataclass(frozen=True)
class _Changed:
    key: Key


@dataclass(frozen=True)
class _Deleted:
    key: Key
    obj: Mapping[str, Any]


@dataclass(frozen=True)
class _Listed:
    keys: frozenset[Key]


_Message = _Changed | _Deleted | _Listed


def _utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _stamp(moment: datetime.datetime) -> str:
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _key(obj: Mapping[str, Any]) -> Key:
    metadata = obj.get("metadata") or {}
    return metadata.get("namespace", ""), metadata.get("name", "")


class Controller:
    """Reconciles InferenceServices through the API server and a :class:`RevisionRuntime`."""

    def __init__(
        self,
        api_client: client.ApiClient,
        runtime: RevisionRuntime,
        *,
        clock: Clock = _utc_now,
        requeue_seconds: float = 0.5,
    ) -> None:
        self._api = client.CustomObjectsApi(api_client)
        self._runtime = runtime
        self._clock = clock
        self.requeue_seconds = requeue_seconds
        self._seen: dict[Key, Mapping[str, Any]] = {}

    async def reconcile(self, namespace: str, name: str) -> bool:
        """One pass over one InferenceService; True when every revision it needs is ready."""
        try:
            obj = await asyncio.to_thread(
                self._api.get_namespaced_custom_object, GROUP, VERSION, namespace, PLURAL, name
            )
        except ApiException as error:
            if error.status != 404:
                raise
            await self.forget((namespace, name))
            return True
        book = revisions.plan(obj)
        ready: dict[str, bool] = {}
        await self._ensure(obj, revisions.to_check(obj, book), ready)
        now = _stamp(self._clock())
        result = revisions.next_status(obj, book, ready, now)
        missing = [book.revisions[n] for n in sorted(result.live) if n not in ready]
        if missing:
            await self._ensure(obj, missing, ready)
            result = revisions.next_status(obj, book, ready, now)
        for revision in result.retire:
            await self._runtime.retire(namespace, name, revision)
        patch = merge_patch(obj.get("status") or {}, result.status)
        if patch:
            await self._patch_status(namespace, name, patch)
            log.info("%s/%s: %s", namespace, name, _summary(result.status))
        self._seen[(namespace, name)] = {**obj, "status": result.status}
        return all(ready.get(n, False) for n in result.live)

    async def forget(self, key: Key, obj: Mapping[str, Any] | None = None) -> None:
        """The InferenceService is gone: retire every revision it still ran."""
        last = obj if obj is not None else self._seen.get(key)
        self._seen.pop(key, None)
        if last is None:
            return
        for revision in revisions.read_book(last).revisions.values():
            if not revision.retired:
                await self._runtime.retire(key[0], key[1], revision.name)

    async def forget_all_but(self, keys: frozenset[Key]) -> None:
        for key in [k for k in self._seen if k not in keys]:
            await self.forget(key)

    async def _ensure(
        self, obj: Mapping[str, Any], needed: list[revisions.Revision], ready: dict[str, bool]
    ) -> None:
        namespace, name = _key(obj)
        for revision in needed:
            ready[revision.name] = await self._runtime.ensure(
                namespace, name, revision.name, revision.predictor
            )

    async def _patch_status(self, namespace: str, name: str, patch: dict[str, Any]) -> None:
        try:
            await asyncio.to_thread(
                self._api.patch_namespaced_custom_object_status,
                GROUP,
                VERSION,
                namespace,
                PLURAL,
                name,
                {"status": patch},
                _content_type=MERGE_PATCH,
            )
        except ApiException as error:
            if error.status != 404:
                raise


def _summary(status: Mapping[str, Any]) -> str:
    """One line for the log: generation, readiness and where the traffic goes."""
    ready = next((c["status"] for c in status["conditions"] if c["type"] == "Ready"), "?")
    component = status["components"]["predictor"]
    split = [f"{t['revisionName']} {t['percent']}%" for t in component.get("traffic", ())]
    split += [f"{c['name']} {c['trafficPercent']}%" for c in status.get("canaryStatuses", ())]
    where = ", ".join(split) or component.get("latestReadyRevision") or "no revision ready"
    return f"generation {status['observedGeneration']}, Ready {ready}, {where}"


class _Watcher(threading.Thread):
    """Lists, then watches from the list's resourceVersion; lists again after 410 Gone."""

    def __init__(
        self,
        api: client.CustomObjectsApi,
        deliver: Callable[[_Message], None],
        timeout_seconds: int,
    ) -> None:
        super().__init__(name="kserve-watch", daemon=True)
        self._api = api
        self._deliver = deliver
        self._timeout = timeout_seconds
        self.stopping = threading.Event()

    def run(self) -> None:
        resource_version: str | None = None
        while not self.stopping.is_set():
            try:
                if resource_version is None:
                    resource_version = self._list()
                resource_version = self._watch(resource_version)
            except ApiException as error:
                if error.status == 410:
                    log.info("watch expired (410 Gone): listing InferenceServices again")
                    resource_version = None
                    continue
                log.warning("watching InferenceServices failed: %s %s", error.status, error.reason)
                self.stopping.wait(1.0)
            except (urllib3.exceptions.HTTPError, OSError) as error:
                log.warning("the Kubernetes API cannot be reached: %s", error)
                self.stopping.wait(1.0)

    def _list(self) -> str:
        listed = self._api.list_cluster_custom_object(GROUP, VERSION, PLURAL)
        items = listed.get("items") or []
        keys = frozenset(_key(item) for item in items)
        self._deliver(_Listed(keys))
        for key in sorted(keys):
            self._deliver(_Changed(key))
        return str(listed["metadata"]["resourceVersion"])

    def _watch(self, resource_version: str) -> str:
        stream = watch.Watch()
        for event in stream.stream(
            self._api.list_cluster_custom_object,
            GROUP,
            VERSION,
            PLURAL,
            resource_version=resource_version,
            timeout_seconds=self._timeout,
            allow_watch_bookmarks=True,
        ):
            obj = event["raw_object"]
            if event["type"] == "DELETED":
                self._deliver(_Deleted(_key(obj), obj))
            elif event["type"] in ("ADDED", "MODIFIED"):
                self._deliver(_Changed(_key(obj)))
            if self.stopping.is_set():
                stream.stop()
        return str(stream.resource_version or resource_version)


async def run(
    kubeconfig: str | Path,
    runtime: RevisionRuntime,
    stop_event: asyncio.Event,
    *,
    requeue_seconds: float = 0.5,
    watch_timeout_seconds: int = 5,
) -> None:
    """Run the controller against the cluster in ``kubeconfig`` until ``stop_event`` is set."""
    api_client = config.new_client_from_config(config_file=str(kubeconfig))
    api_client.user_agent = f"modelrollout-sandbox-kserve/{__version__}"
    controller = Controller(api_client, runtime, requeue_seconds=requeue_seconds)
    loop = asyncio.get_running_loop()
    inbox: asyncio.Queue[_Message] = asyncio.Queue()

    def deliver(message: _Message) -> None:
        with contextlib.suppress(RuntimeError):  # the loop has closed: nobody is listening
            loop.call_soon_threadsafe(inbox.put_nowait, message)

    watcher = _Watcher(client.CustomObjectsApi(api_client), deliver, watch_timeout_seconds)
    watcher.start()
    try:
        await _serve(controller, inbox, stop_event)
    finally:
        watcher.stopping.set()
        await asyncio.to_thread(watcher.join, watch_timeout_seconds + 5)
        api_client.close()


async def _serve(
    controller: Controller, inbox: asyncio.Queue[_Message], stop_event: asyncio.Event
) -> None:
    """Handle messages one at a time; a key asked for again while queued is reconciled once."""
    due: dict[Key, float] = {}
    stopping = asyncio.create_task(stop_event.wait())
    try:
        while not stop_event.is_set():
            wait = max(0.0, min(due.values()) - time.monotonic()) if due else None
            getting = asyncio.create_task(inbox.get())
            done, _ = await asyncio.wait(
                {getting, stopping}, timeout=wait, return_when=asyncio.FIRST_COMPLETED
            )
            if getting not in done:
                getting.cancel()
            try:
                message = await getting
            except asyncio.CancelledError:
                message = None
            if message is not None:
                await _take(controller, message, due)
            while not inbox.empty():
                await _take(controller, inbox.get_nowait(), due)
            now = time.monotonic()
            for key in [k for k, at in due.items() if at <= now]:
                del due[key]
                try:
                    settled = await controller.reconcile(*key)
                except (ApiException, urllib3.exceptions.HTTPError, OSError) as error:
                    log.warning("reconciling %s/%s failed: %s", *key, error)
                    settled = False
                if not settled:
                    due.setdefault(key, now + controller.requeue_seconds)
    finally:
        stopping.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await stopping


async def _take(controller: Controller, message: _Message, due: dict[Key, float]) -> None:
    if isinstance(message, _Changed):
        due[message.key] = time.monotonic()
    elif isinstance(message, _Deleted):
        due.pop(message.key, None)
        await controller.forget(message.key, message.obj)
    else:
        await controller.forget_all_but(message.keys)
