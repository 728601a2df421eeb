"""Objects, the one global resourceVersion counter, and a bounded history of changes for watches.

Everything here is synchronous: the server runs on one event loop and never awaits in the
middle of a write, so each write and the notification of every watcher is atomic.
"""

from __future__ import annotations

import asyncio
import copy
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from modelrollout.sandbox.kubeapi import errors

JSON = dict[str, Any]

ADDED, MODIFIED, DELETED = "ADDED", "MODIFIED", "DELETED"


@dataclass(frozen=True)
class Change:
    """One committed write: its resourceVersion, type and the object before and after."""

    revision: int
    type: str
    storage: str
    namespace: str
    obj: JSON
    prev: JSON | None


@dataclass(eq=False)
class Watcher:
    """A live watch: changes of one storage (and namespace) queue here until streamed.

    A watcher that falls ``limit`` changes behind is closed, as kube-apiserver closes a watch
    whose client cannot keep up; the client lists and watches again.
    """

    storage: str
    namespace: str | None
    limit: int = 10_000
    queue: asyncio.Queue[Change | None] = field(default_factory=asyncio.Queue)
    overflowed: bool = False

    def offer(self, change: Change) -> None:
        if change.storage != self.storage or self.overflowed:
            return
        if self.namespace is not None and change.namespace != self.namespace:
            return
        if self.queue.qsize() >= self.limit:
            self.overflowed = True
            self.queue.put_nowait(None)
            return
        self.queue.put_nowait(change)

    def close(self) -> None:
        self.queue.put_nowait(None)


def namespace_of(obj: JSON) -> str:
    return str(obj.get("metadata", {}).get("namespace") or "")


def name_of(obj: JSON) -> str:
    return str(obj.get("metadata", {}).get("name") or "")


class Store:
    """All objects by storage key, namespace and name."""

    def __init__(self, history_limit: int = 2000) -> None:
        self.revision = 0
        self.history: deque[Change] = deque(maxlen=history_limit)
        self._dropped_up_to = 0  # the newest revision no longer in the history
        self._objects: dict[str, dict[tuple[str, str], JSON]] = {}
        self._uids: dict[str, tuple[str, str, str]] = {}
        self._watchers: set[Watcher] = set()

    @property
    def watchers(self) -> int:
        return len(self._watchers)

    def get(self, storage: str, namespace: str, name: str) -> JSON | None:
        """The stored object (a private copy: callers may change it)."""
        found = self._objects.get(storage, {}).get((namespace, name))
        return copy.deepcopy(found) if found is not None else None

    def peek(self, storage: str, namespace: str, name: str) -> JSON | None:
        """The stored object itself, to read only (no copy: cheap for checks)."""
        return self._objects.get(storage, {}).get((namespace, name))

    def exists_uid(self, uid: str) -> bool:
        where = self._uids.get(uid)
        return where is not None and self.peek(*where) is not None

    def items(self, storage: str, namespace: str | None = None) -> list[JSON]:
        objects = self._objects.get(storage, {})
        keys = sorted(k for k in objects if namespace is None or k[0] == namespace)
        return [copy.deepcopy(objects[k]) for k in keys]

    def storages(self) -> list[str]:
        return [s for s, objects in self._objects.items() if objects]

    def everything(self) -> Iterator[tuple[str, JSON]]:
        """Every object with its storage key (copies)."""
        for storage, objects in list(self._objects.items()):
            for obj in list(objects.values()):
                yield storage, copy.deepcopy(obj)

    def select(self, predicate: Callable[[JSON], bool]) -> list[tuple[str, JSON]]:
        """Copies of the objects ``predicate`` accepts (it sees the stored objects: read only)."""
        return [
            (storage, copy.deepcopy(obj))
            for storage, objects in self._objects.items()
            for obj in objects.values()
            if predicate(obj)
        ]

    def by_uid(self, uid: str) -> tuple[str, JSON] | None:
        where = self._uids.get(uid)
        if where is None:
            return None
        found = self.get(*where)
        return (where[0], found) if found is not None else None

    def count(self) -> int:
        return sum(len(objects) for objects in self._objects.values())

    def write(self, storage: str, obj: JSON) -> JSON:
        """Store ``obj`` (new or updated) under a new resourceVersion; return the stored copy."""
        key = (namespace_of(obj), name_of(obj))
        objects = self._objects.setdefault(storage, {})
        prev = objects.get(key)
        self.revision += 1
        stored = copy.deepcopy(obj)
        stored["metadata"]["resourceVersion"] = str(self.revision)
        objects[key] = stored
        uid = stored["metadata"].get("uid")
        if uid:
            self._uids[uid] = (storage, *key)
        self._record(
            Change(self.revision, MODIFIED if prev else ADDED, storage, key[0], stored, prev)
        )
        return copy.deepcopy(stored)

    def remove(self, storage: str, obj: JSON) -> JSON:
        """Remove the object; its final state carries the deletion's resourceVersion."""
        key = (namespace_of(obj), name_of(obj))
        prev = self._objects.get(storage, {}).pop(key)
        self.revision += 1
        final = copy.deepcopy(prev)
        final["metadata"]["resourceVersion"] = str(self.revision)
        self._uids.pop(final["metadata"].get("uid", ""), None)
        self._record(Change(self.revision, DELETED, storage, key[0], final, prev))
        return copy.deepcopy(final)

    def _record(self, change: Change) -> None:
        if self.history.maxlen is not None and len(self.history) == self.history.maxlen:
            self._dropped_up_to = self.history[0].revision
        self.history.append(change)
        for watcher in list(self._watchers):
            watcher.offer(change)

    def subscribe(self, watcher: Watcher, since: int | None) -> list[Change]:
        """Start ``watcher``; with ``since``, also return the changes after it (410 if gone)."""
        replay: list[Change] = []
        if since is not None:
            if since < self._dropped_up_to:
                raise errors.expired(f"too old resource version: {since} ({self._dropped_up_to})")
            replay = [c for c in self.history if c.revision > since]
        self._watchers.add(watcher)
        return replay

    def unsubscribe(self, watcher: Watcher) -> None:
        self._watchers.discard(watcher)

    def close_watchers(self) -> None:
        for watcher in list(self._watchers):
            watcher.close()
