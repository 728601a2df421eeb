"""What the emulator serves: one :class:`Resource` per group, version and plural, in a registry.

Versions of one resource share a storage key, so an object written through one version is read
through the others (with no conversion: the CRD ``None`` strategy, which rewrites apiVersion).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

JSON = dict[str, Any]

VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")
_VERSION = re.compile(r"v(\d+)(?:(alpha|beta)(\d+))?")


@dataclass(frozen=True)
class Column:
    """A server-side table column: a JSONPath (printer columns) or a function of the object."""

    name: str
    type: str
    json_path: str = ""
    description: str = ""
    priority: int = 0
    format: str = ""
    value: Callable[[JSON], Any] | None = None


@dataclass(frozen=True)
class Resource:
    """One served group/version/plural and how the server treats its objects."""

    group: str
    version: str
    plural: str
    singular: str
    kind: str
    namespaced: bool
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    status: bool = False  # the status subresource is on
    schema: Mapping[str, Any] | None = None  # a custom resource's openAPIV3Schema
    columns: tuple[Column, ...] = ()  # after Name; Name is always first
    selectable: tuple[str, ...] = ()  # field selectors beyond metadata.name/namespace
    generation: bool = False  # metadata.generation is maintained
    crd: str = ""  # the CustomResourceDefinition that defines it, if any
    name_rule: str = "subdomain"  # or "label" (namespaces)
    returns_deleted: bool = True  # DELETE answers the object, not a Success Status
    storage_key: str = ""
    description: str = ""
    verbs: tuple[str, ...] = VERBS

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def list_kind(self) -> str:
        return f"{self.kind}List"

    @property
    def storage(self) -> str:
        return self.storage_key or f"{self.group}/{self.plural}"

    @property
    def custom(self) -> bool:
        return bool(self.crd)


def version_priority(version: str) -> tuple[int, int, int, str]:
    """Sort key in kube's order: GA before beta before alpha, higher numbers first."""
    match = _VERSION.fullmatch(version)
    if not match:
        return (3, 0, 0, version)
    major, stage, minor = int(match[1]), match[2], int(match[3] or 0)
    rank = {None: 0, "beta": 1, "alpha": 2}[stage]
    return (rank, -major, -minor, version)


class Registry:
    """The served resources, keyed by (group, version, plural)."""

    def __init__(self) -> None:
        self._resources: dict[tuple[str, str, str], Resource] = {}
        self._group_order: list[str] = []

    def add(self, resource: Resource) -> None:
        self._resources[(resource.group, resource.version, resource.plural)] = resource
        if resource.group not in self._group_order:
            self._group_order.append(resource.group)

    def remove_crd(self, crd_name: str) -> None:
        for key, resource in list(self._resources.items()):
            if resource.crd == crd_name:
                del self._resources[key]

    def get(self, group: str, version: str, plural: str) -> Resource | None:
        return self._resources.get((group, version, plural))

    def __iter__(self) -> Iterator[Resource]:
        return iter(list(self._resources.values()))

    def by_kind(self, api_version: str, kind: str) -> Resource | None:
        group, _, version = api_version.rpartition("/")
        for resource in self:
            if (resource.group, resource.version, resource.kind) == (group, version, kind):
                return resource
        return None

    def storage_versions(self, storage: str) -> list[Resource]:
        found = [r for r in self if r.storage == storage]
        return sorted(found, key=lambda r: version_priority(r.version))

    def groups(self) -> list[tuple[str, list[str]]]:
        """(group, versions by preference) in discovery order: the core, built-ins, then CRDs."""
        versions: dict[str, set[str]] = {}
        for resource in self:
            versions.setdefault(resource.group, set()).add(resource.version)
        builtin = [g for g in self._group_order if g in versions and not self._custom(g)]
        custom = sorted(g for g in versions if g not in builtin)
        return [(g, sorted(versions[g], key=version_priority)) for g in builtin + custom]

    def in_group_version(self, group: str, version: str) -> list[Resource]:
        found = [r for r in self if (r.group, r.version) == (group, version)]
        return sorted(found, key=lambda r: r.plural)

    def _custom(self, group: str) -> bool:
        return all(r.custom for r in self if r.group == group)
