"""What a request does to objects: create, update, patch and delete as kube-apiserver does them.

The order follows kube-apiserver: decode (prune unknown fields, apply schema defaults), admit
(the namespace exists and is not terminating), the strategy (server-owned metadata, status
subresource, generation), validation, then the write (skipped for dry runs and no-op updates).
"""

from __future__ import annotations

import copy
import datetime
import json
from dataclasses import dataclass, replace
from typing import Any

import yaml

from modelrollout import schema
from modelrollout.sandbox.kubeapi import builtins, crds, errors, meta
from modelrollout.sandbox.kubeapi.gc import CRDS, NAMESPACES, Collector
from modelrollout.sandbox.kubeapi.patch import PatchError, json_patch, strategic_merge_patch
from modelrollout.sandbox.kubeapi.resources import Registry, Resource
from modelrollout.sandbox.kubeapi.selectors import Selector
from modelrollout.sandbox.kubeapi.store import Store
from modelrollout.serde import apply_merge_patch

JSON = dict[str, Any]

MERGE = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
STRATEGIC = "application/strategic-merge-patch+json"
APPLY = "application/apply-patch+yaml"
PATCH_TYPES = (MERGE, JSON_PATCH, STRATEGIC, APPLY)
INITIAL_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")


@dataclass(frozen=True)
class WriteOptions:
    dry_run: bool = False
    field_validation: str = "Warn"  # Strict, Warn or Ignore
    field_manager: str = ""


@dataclass(frozen=True)
class DeleteOptions:
    dry_run: bool = False
    propagation: str = "Background"
    uid: str | None = None
    resource_version: str | None = None


@dataclass
class Outcome:
    obj: JSON
    warnings: list[str]


def utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _without(obj: JSON, *keys: str) -> JSON:
    return {k: v for k, v in obj.items() if k not in keys}


class Cluster:
    """The objects and the rules: everything but HTTP."""

    def __init__(self, *, history_limit: int = 2000, clock: meta.Clock = utc_now) -> None:
        self.registry: Registry = builtins.registry()
        self.store = Store(history_limit)
        self.clock = clock
        self.collector = Collector(self.store, clock, self._crd_gone)
        namespaces = self.resource("", "v1", "namespaces")
        for name in INITIAL_NAMESPACES:
            self.create(namespaces, None, {"metadata": {"name": name}}, WriteOptions())

    def resource(self, group: str, version: str, plural: str) -> Resource:
        found = self.registry.get(group, version, plural)
        if found is None:
            raise errors.no_such_resource()
        return found

    def served(self, api_version: str, kind: str) -> bool:
        return self.registry.by_kind(api_version, kind) is not None

    def show(self, resource: Resource, stored: JSON) -> JSON:
        return builtins.from_storage(resource, copy.deepcopy(stored))

    # Reads

    def get(self, resource: Resource, namespace: str | None, name: str) -> JSON:
        return self.show(resource, self._stored(resource, namespace, name))

    def select(self, resource: Resource, namespace: str | None, selector: Selector) -> list[JSON]:
        scope = namespace if resource.namespaced else None
        items = self.store.items(resource.storage, scope)
        return [self.show(resource, o) for o in items if selector.matches(o)]

    def _stored(self, resource: Resource, namespace: str | None, name: str) -> JSON:
        scope = (namespace or "") if resource.namespaced else ""
        found = self.store.get(resource.storage, scope, name)
        if found is None:
            raise errors.not_found(resource.group, resource.plural, name)
        return found

    # Writes

    def create(
        self, resource: Resource, namespace: str | None, body: Any, options: WriteOptions
    ) -> Outcome:
        obj = self._decode(resource, namespace, body)
        if obj["metadata"].get("resourceVersion"):
            raise errors.bad_request("resourceVersion should not be set on objects to be created")
        warnings = self._prune(resource, obj, options)
        metadata = obj["metadata"]
        self._admit(resource, obj)
        for key in (*meta.SERVER_OWNED, "managedFields"):
            metadata.pop(key, None)
        if not metadata.get("name") and metadata.get("generateName"):
            metadata["name"] = self._fresh_name(resource, obj)
        if resource.custom and resource.status:
            obj.pop("status", None)
        builtins.prepare_create(resource, obj)
        if resource.storage == CRDS:
            crds.apply_defaults(obj)
        metadata["uid"] = meta.new_uid()
        metadata["creationTimestamp"] = meta.timestamp(self.clock)
        if resource.generation:
            metadata["generation"] = 1
        self._validate(resource, obj, None)
        if resource.storage == CRDS:
            crds.set_status(obj, None, meta.timestamp(self.clock))
        if self.store.peek(resource.storage, _scope(obj), metadata["name"]) is not None:
            raise errors.already_exists(resource.group, resource.plural, metadata["name"])
        if options.dry_run:
            return Outcome(self.show(resource, obj), warnings)
        stored = self.store.write(resource.storage, obj)
        if resource.storage == CRDS:
            self._register(stored)
        self.collector.collect_dangling(resource.storage, stored, self.served)
        return Outcome(self.show(resource, stored), warnings)

    def update(
        self,
        resource: Resource,
        namespace: str | None,
        name: str,
        body: Any,
        options: WriteOptions,
        subresource: str = "",
    ) -> Outcome:
        current = self._stored(resource, namespace, name)
        obj = self._decode(resource, namespace, body, name=name)
        warnings = self._prune(resource, obj, options)
        version = obj["metadata"].get("resourceVersion")
        if version and version != current["metadata"]["resourceVersion"]:
            raise errors.conflict(resource.group, resource.plural, name)
        if subresource == "status":
            obj = _status_only(obj, current)
        else:
            obj = self._main_update(resource, obj, current)
        self._validate(resource, obj, current)
        if resource.storage == CRDS:
            crds.set_status(obj, current, meta.timestamp(self.clock))
        if _without(obj, "metadata") == _without(current, "metadata") and _without(
            obj["metadata"], "resourceVersion"
        ) == _without(current["metadata"], "resourceVersion"):
            return Outcome(self.show(resource, current), warnings)  # a no-op: nothing written
        if options.dry_run:
            return Outcome(self.show(resource, obj), warnings)
        stored = self.store.write(resource.storage, obj)
        if resource.storage == CRDS:
            self._register(stored)
        final = self.collector.released(resource.storage, stored)
        return Outcome(self.show(resource, final or stored), warnings)

    def _main_update(self, resource: Resource, obj: JSON, current: JSON) -> JSON:
        metadata, old = obj["metadata"], current["metadata"]
        for key in (*meta.SERVER_OWNED, "managedFields"):
            metadata.pop(key, None)
            if key in old:
                metadata[key] = old[key]
        metadata["resourceVersion"] = old["resourceVersion"]
        if resource.status:
            obj.pop("status", None)
            if "status" in current:
                obj["status"] = current["status"]
        builtins.prepare_update(resource, obj, current)
        if resource.storage == CRDS:
            crds.apply_defaults(obj)
        ignored = ("metadata", "status") if resource.status else ("metadata",)
        if resource.generation and _without(obj, *ignored) != _without(current, *ignored):
            metadata["generation"] = old.get("generation", 1) + 1
        return obj

    def patch(
        self,
        resource: Resource,
        namespace: str | None,
        name: str,
        patch_type: str,
        raw: bytes,
        options: WriteOptions,
        subresource: str = "",
    ) -> tuple[Outcome, bool]:
        """Apply a patch; also say whether it created the object (server-side apply only)."""
        if patch_type == STRATEGIC and resource.custom:
            raise errors.unsupported_media_type(patch_type)
        if patch_type == APPLY:
            return self._apply(resource, namespace, name, raw, options, subresource)
        try:
            document = json.loads(raw)
        except ValueError as exc:
            raise errors.bad_request(f"error decoding patch: {exc}") from exc
        shown = self.get(resource, namespace, name)
        try:
            if patch_type == MERGE:
                patched = apply_merge_patch(shown, document)
            elif patch_type == JSON_PATCH:
                patched = json_patch(shown, document)
            else:
                patched = strategic_merge_patch(shown, document)
        except PatchError as exc:
            failure = errors.bad_request if exc.malformed else errors.unprocessable
            raise failure(str(exc)) from exc
        return self.update(resource, namespace, name, patched, options, subresource), False

    def _apply(
        self,
        resource: Resource,
        namespace: str | None,
        name: str,
        raw: bytes,
        options: WriteOptions,
        subresource: str,
    ) -> tuple[Outcome, bool]:
        """Server-side apply, simplified: create, or merge the applied configuration in."""
        if not options.field_manager:
            error = schema.FieldError(
                "fieldManager", schema.REQUIRED, "Required value: is required for apply patch"
            )
            raise errors.invalid("meta.k8s.io", "PatchOptions", "", [error])
        try:
            document = yaml.safe_load(raw)
        except yaml.YAMLError as exc:
            raise errors.bad_request(f"error decoding YAML: {exc}") from exc
        if not isinstance(document, dict):
            raise errors.bad_request(
                "error decoding YAML: the applied configuration is not an object"
            )
        strict = replace(options, field_validation="Strict")
        scope = (namespace or "") if resource.namespaced else ""
        if self.store.peek(resource.storage, scope, name) is None and not subresource:
            document.setdefault("metadata", {}).setdefault("name", name)
            return self.create(resource, namespace, document, strict), True
        patched = apply_merge_patch(self.get(resource, namespace, name), document)
        return self.update(resource, namespace, name, patched, strict, subresource), False

    def delete(
        self, resource: Resource, namespace: str | None, name: str, options: DeleteOptions
    ) -> JSON:
        current = self._stored(resource, namespace, name)
        metadata = current["metadata"]
        for field, wanted in (("UID", options.uid), ("ResourceVersion", options.resource_version)):
            actual = metadata.get("uid" if field == "UID" else "resourceVersion")
            if wanted and wanted != actual:
                detail = (
                    f"Precondition failed: {field} in precondition: {wanted}, "
                    f"{field} in object meta: {actual}"
                )
                raise errors.conflict(resource.group, resource.plural, name, detail)
        if resource.storage == NAMESPACES and name in INITIAL_NAMESPACES[:3]:
            raise errors.forbidden("", "namespaces", name, "this namespace may not be deleted")
        result = self.collector.delete(
            resource.storage, current, options.propagation, dry_run=options.dry_run
        )
        if resource.returns_deleted or result["metadata"].get("deletionTimestamp"):
            return self.show(resource, result)
        details: JSON = {"name": name, "kind": resource.plural, "uid": metadata["uid"]}
        if resource.group:
            details["group"] = resource.group
        return {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Success",
            "details": details,
        }

    def delete_collection(
        self,
        resource: Resource,
        namespace: str | None,
        selector: Selector,
        options: DeleteOptions,
    ) -> list[JSON]:
        deleted = []
        for obj in self.select(resource, namespace, selector):
            plain = DeleteOptions(dry_run=options.dry_run, propagation=options.propagation)
            name = obj["metadata"]["name"]
            deleted.append(self.delete(resource, obj["metadata"].get("namespace"), name, plain))
        return deleted

    # The steps

    def _decode(
        self, resource: Resource, namespace: str | None, body: Any, *, name: str | None = None
    ) -> JSON:
        if not isinstance(body, dict):
            raise errors.bad_request(
                f"Object 'Kind' is missing in '{json.dumps(body)[:200]}'"
                if body is not None
                else "the body of the request is not an object"
            )
        obj = copy.deepcopy(body)
        api_version = obj.setdefault("apiVersion", resource.api_version)
        kind = obj.setdefault("kind", resource.kind)
        if api_version != resource.api_version or kind != resource.kind:
            raise errors.bad_request(
                f"the API version in the data ({api_version}) does not match the expected API "
                f"version ({resource.api_version})"
                if api_version != resource.api_version
                else f"the kind in the data ({kind}) does not match the expected kind "
                f"({resource.kind})"
            )
        if not isinstance(obj.get("metadata") or {}, dict):
            raise errors.bad_request("metadata must be an object")
        metadata = obj["metadata"] = obj.get("metadata") or {}
        if resource.namespaced:
            given = metadata.get("namespace")
            if given and namespace and given != namespace:
                raise errors.bad_request(
                    "the namespace of the provided object does not match the namespace sent on "
                    "the request"
                )
            metadata["namespace"] = namespace or given or ""
        else:
            metadata.pop("namespace", None)
        if name is not None:
            if metadata.get("name") and metadata["name"] != name:
                raise errors.bad_request(
                    f"the name of the object ({metadata['name']}) does not match the name on "
                    f"the URL ({name})"
                )
            metadata["name"] = name
        return builtins.to_storage(resource, obj)

    def _prune(self, resource: Resource, obj: JSON, options: WriteOptions) -> list[str]:
        """Drop unknown fields (and apply schema defaults); Strict makes them an error."""
        unknown = meta.unknown_fields(obj["metadata"])
        for path in unknown:
            del obj["metadata"][path.split(".", 1)[1]]
        if resource.schema is not None:
            pruned, dropped = schema.prune(resource.schema, obj)
            defaulted = schema.apply_defaults(resource.schema, pruned)
            obj.clear()
            obj.update(defaulted)
            unknown += dropped
        if not unknown or options.field_validation == "Ignore":
            return []
        texts = [f'unknown field "{path}"' for path in unknown]
        if options.field_validation == "Strict":
            raise errors.bad_request(
                f'{resource.kind} in version "{resource.version}" cannot be handled as a '
                f"{resource.kind}: strict decoding error: " + ", ".join(texts)
            )
        return texts

    def _admit(self, resource: Resource, obj: JSON) -> None:
        """The namespace exists and is not terminating; a CRD being deleted takes no new objects."""
        if resource.namespaced:
            namespace = obj["metadata"]["namespace"]
            found = self.store.peek(NAMESPACES, "", namespace) if namespace else None
            if found is None:
                raise errors.not_found("", "namespaces", namespace)
            if found["metadata"].get("deletionTimestamp"):
                detail = (
                    f"unable to create new content in namespace {namespace} because it is being "
                    "terminated"
                )
                cause = {
                    "reason": "NamespaceTerminating",
                    "message": detail,
                    "field": "metadata.namespace",
                }
                name = obj["metadata"].get("name", "")
                raise errors.forbidden(resource.group, resource.plural, name, detail, cause)
        if resource.custom:
            crd = self.store.peek(CRDS, "", resource.crd)
            if crd is None or crd["metadata"].get("deletionTimestamp"):
                raise errors.method_not_allowed(
                    "create not allowed while custom resource definition is terminating"
                )

    def _fresh_name(self, resource: Resource, obj: JSON) -> str:
        prefix = obj["metadata"]["generateName"]
        for _ in range(8):
            name = meta.generated_name(prefix)
            if self.store.peek(resource.storage, _scope(obj), name) is None:
                return name
        raise errors.already_exists(resource.group, resource.plural, prefix)

    def _validate(self, resource: Resource, obj: JSON, old: JSON | None) -> None:
        metadata = obj["metadata"]
        problems: list[schema.FieldError] = []
        if not metadata.get("name"):
            detail = "Required value: name or generateName is required"
            problems.append(schema.FieldError("metadata.name", schema.REQUIRED, detail))
        else:
            problems += meta.name_errors(metadata["name"], resource.name_rule)
        problems += meta.metadata_errors(metadata, old["metadata"] if old else None)
        if resource.schema is not None:
            problems += schema.validate(resource.schema, obj, old=old)
        if resource.storage == CRDS:
            problems += crds.validate(obj, old)
        if problems:
            raise errors.invalid(resource.group, resource.kind, metadata.get("name", ""), problems)

    def _register(self, crd: JSON) -> None:
        self.registry.remove_crd(crd["metadata"]["name"])
        for resource in crds.resources(crd):
            self.registry.add(resource)

    def _crd_gone(self, crd: JSON) -> None:
        self.registry.remove_crd(crd["metadata"]["name"])

    def apply_crd(self, crd: JSON) -> None:
        """Create or replace a CRD, as ``--crd`` files are at start-up."""
        resource = self.resource("apiextensions.k8s.io", "v1", "customresourcedefinitions")
        name = (crd.get("metadata") or {}).get("name", "")
        if self.store.peek(resource.storage, "", name) is None:
            self.create(resource, None, crd, WriteOptions(field_validation="Strict"))
        else:
            self.update(resource, None, name, crd, WriteOptions(field_validation="Strict"))


def _scope(obj: JSON) -> str:
    return str(obj["metadata"].get("namespace") or "")


def _status_only(obj: JSON, current: JSON) -> JSON:
    """A write to /status changes the status and nothing else, metadata included."""
    updated = copy.deepcopy(current)
    updated.pop("status", None)
    if "status" in obj:
        updated["status"] = obj["status"]
    return updated
