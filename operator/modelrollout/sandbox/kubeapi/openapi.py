"""OpenAPI v3: the paths index and one document per group-version.

Custom resources publish their CRD schema (so ``kubectl explain`` shows its descriptions);
every PATCH operation names the ``fieldValidation`` parameter, which is how kubectl learns that
the server validates fields itself (so ``kubectl apply`` needs no ``--validate=false``).
Built-in kinds publish a schema that accepts anything.
"""

from __future__ import annotations

import copy
import hashlib
import json
from typing import Any

from modelrollout.sandbox.kubeapi.resources import Registry, Resource

JSON = dict[str, Any]

_PATCH_TYPES = (
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/apply-patch+yaml",
)
_QUERY = {
    "get": (),
    "list": (
        "labelSelector",
        "fieldSelector",
        "watch",
        "resourceVersion",
        "timeoutSeconds",
        "allowWatchBookmarks",
        "limit",
        "continue",
    ),
    "post": ("dryRun", "fieldManager", "fieldValidation"),
    "put": ("dryRun", "fieldManager", "fieldValidation"),
    "patch": ("dryRun", "fieldManager", "fieldValidation", "force"),
    "delete": ("dryRun", "gracePeriodSeconds", "propagationPolicy"),
    "deletecollection": ("dryRun", "labelSelector", "fieldSelector", "propagationPolicy"),
}


def schema_name(resource: Resource, kind: str | None = None) -> str:
    reversed_group = (
        ".".join(reversed(resource.group.split("."))) if resource.group else "io.k8s.api.core"
    )
    return f"{reversed_group}.{resource.version}.{kind or resource.kind}"


def _gv_path(group: str, version: str) -> str:
    return f"apis/{group}/{version}" if group else f"api/{version}"


def index(registry: Registry) -> JSON:
    paths = {}
    for group, versions in registry.groups():
        for version in versions:
            digest = (
                hashlib.sha512(
                    json.dumps(document(registry, group, version), sort_keys=True).encode()
                )
                .hexdigest()[:32]
                .upper()
            )
            path = _gv_path(group, version)
            paths[path] = {"serverRelativeURL": f"/openapi/v3/{path}?hash={digest}"}
    return {"paths": paths}


def _gvk(resource: Resource, kind: str | None = None) -> JSON:
    return {"group": resource.group, "version": resource.version, "kind": kind or resource.kind}


def _operation(resource: Resource, action: str, ref: str) -> JSON:
    verb = "list" if action == "watch" else action
    parameters = [
        {"name": name, "in": "query", "schema": {"type": "string", "uniqueItems": True}}
        for name in _QUERY["list" if action in ("list", "watch") else verb]
    ]
    operation: JSON = {
        "operationId": f"{action}{resource.kind}",
        "parameters": parameters,
        "responses": {
            "200": {
                "description": "OK",
                "content": {"application/json": {"schema": {"$ref": ref}}},
            }
        },
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": _gvk(resource),
    }
    if action in ("post", "put", "patch"):
        types = _PATCH_TYPES if action == "patch" else ("application/json",)
        operation["requestBody"] = {
            "content": {t: {"schema": {"type": "object"}} for t in types},
            "required": True,
        }
    return operation


def _paths(resource: Resource) -> JSON:
    base = f"/{_gv_path(resource.group, resource.version)}"
    scoped = (
        f"{base}/namespaces/{{namespace}}/{resource.plural}"
        if resource.namespaced
        else (f"{base}/{resource.plural}")
    )
    ref = f"#/components/schemas/{schema_name(resource)}"
    list_ref = f"#/components/schemas/{schema_name(resource, resource.list_kind)}"
    paths: JSON = {
        scoped: {
            "get": _operation(resource, "list", list_ref),
            "post": _operation(resource, "post", ref),
            "delete": _operation(resource, "deletecollection", list_ref),
        },
        f"{scoped}/{{name}}": {
            action: _operation(resource, action, ref)
            for action in ("get", "put", "patch", "delete")
        },
    }
    if resource.namespaced:
        paths[f"{base}/{resource.plural}"] = {"get": _operation(resource, "list", list_ref)}
    if resource.status:
        paths[f"{scoped}/{{name}}/status"] = {
            action: _operation(resource, action, ref) for action in ("get", "put", "patch")
        }
    return paths


def _schema(resource: Resource) -> JSON:
    if resource.schema is None:
        found: JSON = {
            "type": "object",
            "description": f"{resource.kind}: a built-in kind; this server keeps it as given.",
            "x-kubernetes-preserve-unknown-fields": True,
        }
    else:
        found = copy.deepcopy(dict(resource.schema))
    found["x-kubernetes-group-version-kind"] = [_gvk(resource)]
    return found


def document(registry: Registry, group: str, version: str) -> JSON:
    paths: JSON = {}
    schemas: JSON = {}
    for resource in registry.in_group_version(group, version):
        paths.update(_paths(resource))
        schemas[schema_name(resource)] = _schema(resource)
        schemas[schema_name(resource, resource.list_kind)] = {
            "type": "object",
            "description": f"{resource.list_kind} is a list of {resource.kind}",
            "required": ["items"],
            "properties": {
                "apiVersion": {"type": "string"},
                "kind": {"type": "string"},
                "metadata": {"type": "object"},
                "items": {
                    "type": "array",
                    "items": {"$ref": f"#/components/schemas/{schema_name(resource)}"},
                },
            },
            "x-kubernetes-group-version-kind": [_gvk(resource, resource.list_kind)],
        }
    return {
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "v1.32.0"},
        "paths": paths,
        "components": {"schemas": schemas},
    }
