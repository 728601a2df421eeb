"""Reading a request: which resource a path names, the RBAC verb, and the options in the query."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from modelrollout.sandbox.kubeapi import errors
from modelrollout.sandbox.kubeapi.objects import DeleteOptions, WriteOptions

JSON = dict[str, Any]

_NAMESPACE_SUBRESOURCES = ("status", "finalize")
_TRUE = ("1", "t", "T", "true", "TRUE", "True")


@dataclass(frozen=True)
class Route:
    """A resource path: /api/v1/... or /apis/<group>/<version>/..."""

    group: str
    version: str
    plural: str
    namespace: str | None = None
    name: str | None = None
    subresource: str = ""
    watch_path: bool = False  # the legacy /watch/ prefix


def parse_path(path: str) -> Route | None:
    """The resource a path names, kube's RequestInfo rules included (namespaces/x/status)."""
    parts = [p for p in path.split("/") if p]
    if len(parts) >= 3 and parts[0] == "api":
        group, version, rest = "", parts[1], parts[2:]
    elif len(parts) >= 4 and parts[0] == "apis":
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        return None
    watch_path = rest[0] == "watch"
    if watch_path:
        rest = rest[1:]
    namespace = None
    if len(rest) >= 3 and rest[0] == "namespaces" and rest[2] not in _NAMESPACE_SUBRESOURCES:
        namespace, rest = rest[1], rest[2:]
    if not rest or len(rest) > 3:
        return None
    name = rest[1] if len(rest) > 1 else None
    subresource = rest[2] if len(rest) > 2 else ""
    return Route(group, version, rest[0], namespace, name, subresource, watch_path)


def is_true(value: str | None) -> bool:
    return value in _TRUE


def verb(method: str, route: Route, query: Mapping[str, str]) -> str:
    """The RBAC verb: get, list, watch, create, update, patch, delete or deletecollection."""
    if method == "GET":
        if route.watch_path or is_true(query.get("watch")):
            return "watch"
        return "get" if route.name else "list"
    if method == "POST":
        return "create"
    if method == "PUT":
        return "update"
    if method == "PATCH":
        return "patch"
    if method == "DELETE":
        return "delete" if route.name else "deletecollection"
    return method.lower()


def _dry_run(values: list[str]) -> bool:
    for value in values:
        if value != "All":
            raise errors.bad_request(
                f'dryRun: Unsupported value: "{value}": supported values: "All"'
            )
    return bool(values)


def write_options(query: Mapping[str, str], dry_run: list[str]) -> WriteOptions:
    validation = query.get("fieldValidation") or "Warn"
    if validation not in ("Strict", "Warn", "Ignore"):
        raise errors.bad_request(
            f'fieldValidation: Unsupported value: "{validation}": supported values: '
            '"Ignore", "Strict", "Warn"'
        )
    return WriteOptions(_dry_run(dry_run), validation, query.get("fieldManager", ""))


def delete_options(query: Mapping[str, str], dry_run: list[str], body: Any) -> DeleteOptions:
    """Options from the query and a DeleteOptions body (the body wins, as in kube)."""
    options = body if isinstance(body, dict) else {}
    propagation = options.get("propagationPolicy") or query.get("propagationPolicy")
    orphan = options.get("orphanDependents")
    if orphan is None and "orphanDependents" in query:
        orphan = is_true(query["orphanDependents"])
    if propagation is None:
        propagation = "Orphan" if orphan else "Background"
    if propagation not in ("Background", "Foreground", "Orphan"):
        raise errors.bad_request(
            f'propagationPolicy: Unsupported value: "{propagation}": supported values: '
            '"Background", "Foreground", "Orphan"'
        )
    preconditions = options.get("preconditions") or {}
    body_dry_run = options.get("dryRun") or []
    return DeleteOptions(
        dry_run=_dry_run([*dry_run, *body_dry_run]),
        propagation=propagation,
        uid=preconditions.get("uid"),
        resource_version=preconditions.get("resourceVersion"),
    )


@dataclass(frozen=True)
class MediaType:
    type: str
    params: Mapping[str, str]


def accepted(header: str) -> list[MediaType]:
    """The media types of an Accept header, in order."""
    found = []
    for item in header.split(","):
        kind, *params = [p.strip() for p in item.split(";")]
        pairs = dict(p.split("=", 1) for p in params if "=" in p)
        found.append(MediaType(kind, {k.strip(): v.strip() for k, v in pairs.items()}))
    return found


def wanted_form(header: str) -> tuple[str, str]:
    """("Table" | "PartialObjectMetadata" | "", meta.k8s.io version) from an Accept header."""
    for media in accepted(header):
        form = media.params.get("as", "")
        if media.params.get("g") == "meta.k8s.io" and form.startswith(
            ("Table", "PartialObjectMetadata")
        ):
            return (
                "Table" if form == "Table" else "PartialObjectMetadata",
                media.params.get("v", "v1"),
            )
        if media.type in ("application/json", "*/*", "application/*") and not media.params.get(
            "as"
        ):
            return "", ""
    return "", ""


def discovery_version(header: str) -> str:
    """``v2`` or ``v2beta1`` when the client takes aggregated discovery before plain JSON."""
    for media in accepted(header):
        if (
            media.params.get("g") == "apidiscovery.k8s.io"
            and media.params.get("as") == "APIGroupDiscoveryList"
            and media.params.get("v") in ("v2", "v2beta1")
        ):
            return media.params["v"]
        if media.type in ("application/json", "*/*") and not media.params:
            return ""
    return ""
