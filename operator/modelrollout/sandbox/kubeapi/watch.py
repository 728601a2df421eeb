"""Watch streams: chunked JSON lines ``{"type", "object"}`` as kube-apiserver sends them.

From resourceVersion "0" or none: ADDED for every object first. From a resourceVersion: the
changes after it from the history, or a single ERROR 410 Expired when it is older than the
history. Selectors apply to the object before and after each change, so an object that stops
matching is DELETED for this watch and one that starts matching is ADDED, as in kube.
A stream can be cut (its connection aborted mid-stream, no end-of-stream chunk), the way a
load balancer or a restarting API server drops watches.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from modelrollout.sandbox.kubeapi import errors
from modelrollout.sandbox.kubeapi.resources import Resource
from modelrollout.sandbox.kubeapi.selectors import Selector
from modelrollout.sandbox.kubeapi.store import ADDED, DELETED, MODIFIED, Change, Store, Watcher

JSON = dict[str, Any]


@dataclass(frozen=True)
class WatchRequest:
    resource: Resource
    namespace: str | None
    selector: Selector
    since: int | None
    timeout: float | None
    bookmarks: bool
    render: Callable[[JSON, bool], JSON]  # an object as the client asked for it (table...)


def event_for(change: Change, selector: Selector) -> tuple[str, JSON] | None:
    """What a change means to a watch with ``selector``, if anything."""
    now = change.type != DELETED and selector.matches(change.obj)
    before = change.prev is not None and selector.matches(change.prev)
    if change.type == DELETED:
        return (DELETED, change.obj) if before else None
    if now:
        return (MODIFIED if before else ADDED, change.obj)
    return (DELETED, change.obj) if before else None


def parse_since(value: str | None) -> int | None:
    if value in (None, "", "0"):
        return None
    try:
        return int(value)
    except ValueError as exc:
        raise errors.bad_request(f"invalid resource version: {value!r}") from exc


class Stream:
    """One watch: subscribe, replay, then follow live changes until timeout or close."""

    def __init__(
        self,
        store: Store,
        request: WatchRequest,
        show: Callable[[JSON], JSON],
        bookmark_interval: float,
        transport: asyncio.Transport | None = None,
    ) -> None:
        self.store = store
        self.request = request
        self.show = show
        self.bookmark_interval = bookmark_interval
        self.transport = transport
        self._headers = True
        scope = request.namespace if request.resource.namespaced else None
        self._watcher = Watcher(request.resource.storage, scope)

    def cut(self) -> None:
        """Drop the connection now, mid-stream, and stop following changes."""
        if self.transport is not None:
            self.transport.abort()
        self._watcher.close()

    async def run(self, write: Callable[[bytes], Awaitable[None]]) -> None:
        request = self.request
        scope = self._watcher.namespace
        watcher = self._watcher
        try:
            replay = self.store.subscribe(watcher, request.since)
        except errors.ApiError as exc:
            await write(expired_line(exc.status()))
            return
        try:
            if request.since is None:
                for obj in self.store.items(request.resource.storage, scope):
                    if request.selector.matches(obj):
                        await self._send(write, ADDED, obj)
            for change in replay:
                await self._deliver(write, watcher, change)
            await self._follow(write, watcher)
        finally:
            self.store.unsubscribe(watcher)

    async def _follow(self, write: Callable[[bytes], Awaitable[None]], watcher: Watcher) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.request.timeout if self.request.timeout else None
        while True:
            wait = self.bookmark_interval if self.request.bookmarks else None
            if deadline is not None:
                left = deadline - loop.time()
                if left <= 0:
                    return
                wait = min(wait, left) if wait is not None else left
            try:
                change = await asyncio.wait_for(watcher.queue.get(), wait)
            except TimeoutError:
                if self.request.bookmarks and watcher.queue.empty():
                    await write(_line({"type": "BOOKMARK", "object": self._bookmark()}))
                continue
            if change is None:
                return
            await self._deliver(write, watcher, change)

    async def _deliver(
        self, write: Callable[[bytes], Awaitable[None]], watcher: Watcher, change: Change
    ) -> None:
        if change.storage != watcher.storage:
            return
        if watcher.namespace is not None and change.namespace != watcher.namespace:
            return
        found = event_for(change, self.request.selector)
        if found is not None:
            await self._send(write, *found)

    async def _send(self, write: Callable[[bytes], Awaitable[None]], kind: str, obj: JSON) -> None:
        shown = self.request.render(self.show(obj), self._headers)
        self._headers = False
        await write(_line({"type": kind, "object": shown}))

    def _bookmark(self) -> JSON:
        resource = self.request.resource
        return {
            "kind": resource.kind,
            "apiVersion": resource.api_version,
            "metadata": {"resourceVersion": str(self.store.revision), "creationTimestamp": None},
        }


def expired_line(status: JSON) -> bytes:
    """The one event of a watch that cannot resume: ``ERROR`` with a Status (410 Expired)."""
    return _line({"type": "ERROR", "object": status})


def _line(event: JSON) -> bytes:
    return json.dumps(event, separators=(",", ":")).encode() + b"\n"
