"""Deletion: finalizers and deletionTimestamp, owner-reference garbage collection, and the
cleanup of terminating namespaces and CRDs.

kube-apiserver leaves the collection to controllers that run moments later; here it happens in
the same request, right after the write that allows it, so tests need not wait for it.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from modelrollout.sandbox.kubeapi import meta
from modelrollout.sandbox.kubeapi.store import Store, namespace_of

JSON = dict[str, Any]

NAMESPACES = "/namespaces"
CRDS = "apiextensions.k8s.io/customresourcedefinitions"
FOREGROUND = "foregroundDeletion"
CRD_CLEANUP = "customresourcecleanup.apiextensions.k8s.io"
BACKGROUND, ORPHAN = "Background", "Orphan"


def crd_storage(crd: JSON) -> str:
    spec = crd["spec"]
    return f"{spec['group']}/{spec['names']['plural']}"


class Collector:
    """Carries deletions through; ``on_crd_gone`` unregisters a CRD's resources."""

    def __init__(self, store: Store, clock: meta.Clock, on_crd_gone: Callable[[JSON], None]):
        self.store = store
        self.clock = clock
        self.on_crd_gone = on_crd_gone

    def delete(self, storage: str, obj: JSON, propagation: str, *, dry_run: bool) -> JSON:
        """Begin deleting a stored object; return its state afterwards (stored form)."""
        metadata = obj["metadata"]
        finalizers = list(metadata.get("finalizers") or [])
        if propagation == "Foreground" and FOREGROUND not in finalizers:
            finalizers.append(FOREGROUND)
        if storage == CRDS and self.store.items(crd_storage(obj)) and CRD_CLEANUP not in finalizers:
            finalizers.append(CRD_CLEANUP)
        if dry_run:
            return (
                self._marked(storage, obj, finalizers)
                if self._blocked(storage, obj, finalizers)
                else obj
            )
        if propagation == ORPHAN:
            self._orphan(metadata["uid"])
        if metadata.get("deletionTimestamp"):
            if finalizers == list(metadata.get("finalizers") or []):
                return obj
            obj = self.store.write(
                storage, {**obj, "metadata": {**metadata, "finalizers": finalizers}}
            )
        elif self._blocked(storage, obj, finalizers):
            obj = self.store.write(storage, self._marked(storage, obj, finalizers))
        else:
            final = self.store.remove(storage, obj)
            self._gone(storage, final)
            return final
        self._cleanup(storage, obj)
        return obj

    def _blocked(self, storage: str, obj: JSON, finalizers: list[str]) -> bool:
        return bool(finalizers) or storage == NAMESPACES

    def _marked(self, storage: str, obj: JSON, finalizers: list[str]) -> JSON:
        marked = {**obj, "metadata": dict(obj["metadata"])}
        metadata = marked["metadata"]
        metadata["deletionTimestamp"] = meta.timestamp(self.clock)
        metadata["deletionGracePeriodSeconds"] = 0
        if finalizers:
            metadata["finalizers"] = finalizers
        if metadata.get("generation"):
            metadata["generation"] += 1
        if storage == NAMESPACES:
            marked["status"] = {**(obj.get("status") or {}), "phase": "Terminating"}
        if storage == CRDS:
            conditions = [
                c
                for c in (obj.get("status") or {}).get("conditions", [])
                if c.get("type") != "Terminating"
            ]
            conditions.append(
                {
                    "type": "Terminating",
                    "status": "True",
                    "lastTransitionTime": metadata["deletionTimestamp"],
                    "reason": "InstanceDeletionInProgress",
                    "message": "CustomResource deletion is in progress",
                }
            )
            marked["status"] = {**(obj.get("status") or {}), "conditions": conditions}
        return marked

    def _cleanup(self, storage: str, obj: JSON) -> None:
        """Start what a deletion in progress waits for: contents, instances, dependents."""
        uid = obj["metadata"]["uid"]
        if storage == NAMESPACES:
            name = obj["metadata"]["name"]
            for item_storage, item in self.store.select(lambda o: namespace_of(o) == name):
                self._collect(item_storage, item)
            self._check_namespace(name)
        elif storage == CRDS:
            for item in self.store.items(crd_storage(obj)):
                self._collect(crd_storage(obj), item)
            self._check_crd(obj["metadata"]["name"])
        if FOREGROUND in (obj["metadata"].get("finalizers") or []):
            for dep_storage, dependent in self._dependents(uid):
                self._collect(dep_storage, dependent)
            self._check_foreground(storage, uid)

    def _collect(self, storage: str, obj: JSON) -> None:
        """Delete (in the background) an object found earlier, if it is still there as it was."""
        current = self.store.get(storage, namespace_of(obj), obj["metadata"]["name"])
        if current is None or current["metadata"].get("uid") != obj["metadata"].get("uid"):
            return
        if not current["metadata"].get("deletionTimestamp"):
            self.delete(storage, current, BACKGROUND, dry_run=False)

    def released(self, storage: str, obj: JSON) -> JSON | None:
        """After an update: remove an object being deleted once nothing holds it any more."""
        if not obj["metadata"].get("deletionTimestamp"):
            return None
        if obj["metadata"].get("finalizers") or (
            storage == NAMESPACES and (obj.get("spec") or {}).get("finalizers")
        ):
            return None
        final = self.store.remove(storage, obj)
        self._gone(storage, final)
        return final

    def _gone(self, storage: str, final: JSON) -> None:
        """After a removal: collect dependents, and let waiting owners and containers finish."""
        uid = final["metadata"].get("uid", "")
        for dep_storage, dependent in self._dependents(uid):
            refs = dependent["metadata"].get("ownerReferences") or []
            others = [r for r in refs if r.get("uid") != uid]
            if any(self.store.exists_uid(r.get("uid", "")) for r in others):
                self._drop_refs(dep_storage, dependent, {uid})
            else:
                self._collect(dep_storage, dependent)
        for ref in final["metadata"].get("ownerReferences") or []:
            owner = self.store.by_uid(ref.get("uid", ""))
            if owner is not None:
                self._check_foreground(owner[0], ref["uid"])
        namespace = namespace_of(final)
        if namespace:
            self._check_namespace(namespace)
        group, _, plural = storage.partition("/")
        if "." in group:  # a custom resource: its CRD may be waiting for the last one to go
            self._check_crd(f"{plural}.{group}")
        if storage == CRDS:
            self.on_crd_gone(final)

    def collect_dangling(self, storage: str, obj: JSON, served: Callable[[str, str], bool]) -> None:
        """After a create: owners that do not exist (of a kind served here) are dropped, and
        an object left with no owner at all is deleted, as kube's garbage collector does."""
        refs = obj["metadata"].get("ownerReferences") or []
        dangling = {
            r["uid"]
            for r in refs
            if served(r.get("apiVersion", ""), r.get("kind", ""))
            and not self.store.exists_uid(r["uid"])
        }
        if not dangling:
            return
        if len(dangling) == len({r.get("uid") for r in refs}):
            self.delete(storage, obj, BACKGROUND, dry_run=False)
        else:
            self._drop_refs(storage, obj, dangling)

    def _dependents(self, uid: str) -> list[tuple[str, JSON]]:
        return self.store.select(
            lambda o: any(r.get("uid") == uid for r in o["metadata"].get("ownerReferences") or [])
        )

    def _drop_refs(self, storage: str, found: JSON, uids: set[str]) -> None:
        obj = self.store.get(storage, namespace_of(found), found["metadata"]["name"])
        if obj is None or obj["metadata"].get("uid") != found["metadata"].get("uid"):
            return
        refs = [r for r in obj["metadata"].get("ownerReferences") or [] if r.get("uid") not in uids]
        metadata = {**obj["metadata"], "ownerReferences": refs}
        if not refs:
            del metadata["ownerReferences"]
        self.store.write(storage, {**obj, "metadata": metadata})

    def _orphan(self, uid: str) -> None:
        for storage, dependent in self._dependents(uid):
            self._drop_refs(storage, dependent, {uid})

    def _remove_finalizer(self, storage: str, obj: JSON, finalizer: str) -> None:
        finalizers = [f for f in obj["metadata"].get("finalizers") or [] if f != finalizer]
        metadata = {**obj["metadata"], "finalizers": finalizers}
        if not finalizers:
            del metadata["finalizers"]
        written = self.store.write(storage, {**obj, "metadata": metadata})
        self.released(storage, written)

    def _check_foreground(self, storage: str, uid: str) -> None:
        owner = self.store.by_uid(uid)
        if owner is None or FOREGROUND not in (owner[1]["metadata"].get("finalizers") or []):
            return
        blocking = [
            d
            for _, d in self._dependents(uid)
            if any(
                r.get("uid") == uid and r.get("blockOwnerDeletion")
                for r in d["metadata"].get("ownerReferences") or []
            )
        ]
        if not blocking:
            self._remove_finalizer(owner[0], owner[1], FOREGROUND)

    def _check_namespace(self, name: str) -> None:
        found = self.store.peek(NAMESPACES, "", name)
        if found is None or not found["metadata"].get("deletionTimestamp"):
            return
        namespace = copy.deepcopy(found)
        if self.store.select(lambda o: namespace_of(o) == name):
            return
        spec = {**(namespace.get("spec") or {}), "finalizers": []}
        written = self.store.write(NAMESPACES, {**namespace, "spec": spec})
        self.released(NAMESPACES, written)

    def _check_crd(self, name: str) -> None:
        found = self.store.peek(CRDS, "", name)
        if found is None or not found["metadata"].get("deletionTimestamp"):
            return
        crd = copy.deepcopy(found)
        if CRD_CLEANUP in (crd["metadata"].get("finalizers") or []) and not self.store.items(
            crd_storage(crd)
        ):
            self._remove_finalizer(CRDS, crd, CRD_CLEANUP)
