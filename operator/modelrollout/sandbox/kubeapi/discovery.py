"""API discovery: the legacy documents (/api, /apis, group and group-version lists) and the
aggregated ``apidiscovery.k8s.io`` v2 form that kubectl asks for first.
"""

from __future__ import annotations

from typing import Any

from modelrollout.sandbox.kubeapi.resources import Registry, Resource

JSON = dict[str, Any]

STATUS_VERBS = ("get", "patch", "update")
SERVER_VERSION = {
    "major": "1",
    "minor": "32",
    "gitVersion": "v1.32.0-modelrollout-sandbox",
    "gitCommit": "0000000000000000000000000000000000000000",
    "gitTreeState": "clean",
    "buildDate": "2025-01-01T00:00:00Z",
    "goVersion": "go1.23.4",
    "compiler": "gc",
    "platform": "linux/amd64",
}


def _group_version(group: str, version: str) -> str:
    return f"{group}/{version}" if group else version


def api_versions(address: str) -> JSON:
    return {
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": address}],
    }


def _api_group(group: str, versions: list[str]) -> JSON:
    listed = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions]
    return {"name": group, "versions": listed, "preferredVersion": listed[0]}


def api_group_list(registry: Registry) -> JSON:
    groups = [_api_group(g, vs) for g, vs in registry.groups() if g]
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}


def api_group(registry: Registry, group: str) -> JSON | None:
    for name, versions in registry.groups():
        if name == group and group:
            return {"kind": "APIGroup", "apiVersion": "v1", **_api_group(group, versions)}
    return None


def _legacy_entries(resource: Resource) -> list[JSON]:
    entry: JSON = {
        "name": resource.plural,
        "singularName": resource.singular,
        "namespaced": resource.namespaced,
        "kind": resource.kind,
        "verbs": list(resource.verbs),
    }
    if resource.short_names:
        entry["shortNames"] = list(resource.short_names)
    if resource.categories:
        entry["categories"] = list(resource.categories)
    entries = [entry]
    if resource.status:
        entries.append(
            {
                "name": f"{resource.plural}/status",
                "singularName": "",
                "namespaced": resource.namespaced,
                "kind": resource.kind,
                "verbs": list(STATUS_VERBS),
            }
        )
    return entries


def resource_list(registry: Registry, group: str, version: str) -> JSON | None:
    found = registry.in_group_version(group, version)
    if not found:
        return None
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": _group_version(group, version),
        "resources": [e for r in found for e in _legacy_entries(r)],
    }


def _aggregated_resource(resource: Resource) -> JSON:
    kind = {"group": resource.group, "version": resource.version, "kind": resource.kind}
    entry: JSON = {
        "resource": resource.plural,
        "responseKind": kind,
        "scope": "Namespaced" if resource.namespaced else "Cluster",
        "singularResource": resource.singular,
        "verbs": list(resource.verbs),
    }
    if resource.short_names:
        entry["shortNames"] = list(resource.short_names)
    if resource.categories:
        entry["categories"] = list(resource.categories)
    if resource.status:
        entry["subresources"] = [
            {"subresource": "status", "responseKind": kind, "verbs": list(STATUS_VERBS)}
        ]
    return entry


def aggregated(registry: Registry, *, core: bool, api_version: str) -> JSON:
    """``APIGroupDiscoveryList`` for /api (``core``) or /apis."""
    items = []
    for group, versions in registry.groups():
        if bool(group) == core:
            continue
        item: JSON = {
            "metadata": {"name": group, "creationTimestamp": None}
            if group
            else {"creationTimestamp": None},
            "versions": [
                {
                    "version": version,
                    "resources": [
                        _aggregated_resource(r) for r in registry.in_group_version(group, version)
                    ],
                    "freshness": "Current",
                }
                for version in versions
            ],
        }
        items.append(item)
    return {
        "kind": "APIGroupDiscoveryList",
        "apiVersion": api_version,
        "metadata": {},
        "items": items,
    }
