"""The built-in kinds the emulator keeps, and what the server does for each beyond storing it.

Core and ``events.k8s.io/v1`` Events share one storage, as in kube-apiserver: the core form is
stored and ``events.k8s.io/v1`` reads and writes are converted field by field.
"""

from __future__ import annotations

import base64
from typing import Any

from modelrollout.sandbox.kubeapi.resources import VERBS, Column, Registry, Resource
from modelrollout.sandbox.kubeapi.table import AGE

JSON = dict[str, Any]

EVENTS_STORAGE = "/events"
_EVENT_FIELDS = (
    "involvedObject.kind",
    "involvedObject.namespace",
    "involvedObject.name",
    "involvedObject.uid",
    "involvedObject.apiVersion",
    "involvedObject.resourceVersion",
    "involvedObject.fieldPath",
    "reason",
    "reportingComponent",
    "source",
    "type",
)
_EVENT_V1_FIELDS = (
    *_EVENT_FIELDS,
    *(f.replace("involvedObject", "regarding") for f in _EVENT_FIELDS if "." in f),
    "reportingController",
)
# core v1 Event field -> events.k8s.io/v1 Event field
_EVENT_RENAMES = {
    "involvedObject": "regarding",
    "message": "note",
    "source": "deprecatedSource",
    "firstTimestamp": "deprecatedFirstTimestamp",
    "lastTimestamp": "deprecatedLastTimestamp",
    "count": "deprecatedCount",
    "reportingComponent": "reportingController",
}
_EVENT_SAME = ("eventTime", "series", "action", "reason", "related", "type", "reportingInstance")


def _data_count(obj: JSON) -> int:
    return len(obj.get("data") or {}) + len(obj.get("binaryData") or {})


def _event_object(obj: JSON) -> str:
    involved = obj.get("involvedObject") or {}
    return f"{str(involved.get('kind', '')).lower()}/{involved.get('name', '')}"


def _event_last_seen(obj: JSON) -> Any:
    return (
        obj.get("lastTimestamp") or obj.get("eventTime") or obj["metadata"].get("creationTimestamp")
    )


BUILTINS = (
    Resource(
        "",
        "v1",
        "namespaces",
        "namespace",
        "Namespace",
        namespaced=False,
        short_names=("ns",),
        verbs=tuple(v for v in VERBS if v != "deletecollection"),
        status=True,
        name_rule="label",
        selectable=("status.phase",),
        columns=(Column("Status", "string", ".status.phase"), AGE),
    ),
    Resource(
        "",
        "v1",
        "events",
        "event",
        "Event",
        namespaced=True,
        short_names=("ev",),
        selectable=_EVENT_FIELDS,
        returns_deleted=False,
        storage_key=EVENTS_STORAGE,
        columns=(
            Column("Last Seen", "date", value=_event_last_seen),
            Column("Type", "string", ".type"),
            Column("Reason", "string", ".reason"),
            Column("Object", "string", value=_event_object),
            Column("Message", "string", ".message"),
        ),
    ),
    Resource(
        "",
        "v1",
        "secrets",
        "secret",
        "Secret",
        namespaced=True,
        selectable=("type",),
        returns_deleted=False,
        columns=(
            Column("Type", "string", ".type"),
            Column("Data", "integer", value=_data_count),
            AGE,
        ),
    ),
    Resource(
        "",
        "v1",
        "configmaps",
        "configmap",
        "ConfigMap",
        namespaced=True,
        short_names=("cm",),
        returns_deleted=False,
        columns=(Column("Data", "integer", value=_data_count), AGE),
    ),
    Resource(
        "",
        "v1",
        "serviceaccounts",
        "serviceaccount",
        "ServiceAccount",
        namespaced=True,
        short_names=("sa",),
        returns_deleted=False,
        columns=(Column("Secrets", "integer", value=lambda o: len(o.get("secrets") or [])), AGE),
    ),
    Resource(
        "events.k8s.io",
        "v1",
        "events",
        "event",
        "Event",
        namespaced=True,
        short_names=("ev",),
        selectable=_EVENT_V1_FIELDS,
        returns_deleted=False,
        storage_key=EVENTS_STORAGE,
        columns=(
            Column("Type", "string", ".type"),
            Column("Reason", "string", ".reason"),
            Column("Note", "string", ".note"),
            AGE,
        ),
    ),
    Resource(
        "apiextensions.k8s.io",
        "v1",
        "customresourcedefinitions",
        "customresourcedefinition",
        "CustomResourceDefinition",
        namespaced=False,
        short_names=("crd", "crds"),
        categories=("api-extensions",),
        status=True,
        generation=True,
        columns=(Column("Created At", "string", ".metadata.creationTimestamp", format="date"),),
    ),
    Resource(
        "coordination.k8s.io",
        "v1",
        "leases",
        "lease",
        "Lease",
        namespaced=True,
        returns_deleted=False,
        columns=(Column("Holder", "string", ".spec.holderIdentity"), AGE),
    ),
)


def registry() -> Registry:
    found = Registry()
    for resource in BUILTINS:
        found.add(resource)
    return found


def is_events_v1(resource: Resource) -> bool:
    return resource.group == "events.k8s.io"


def to_storage(resource: Resource, obj: JSON) -> JSON:
    """The stored form of an object written through ``resource``."""
    if not is_events_v1(resource):
        return obj
    stored: JSON = {"apiVersion": "v1", "kind": "Event", "metadata": obj.get("metadata", {})}
    for core, new in _EVENT_RENAMES.items():
        if new in obj:
            stored[core] = obj[new]
    stored.update({k: obj[k] for k in _EVENT_SAME if k in obj})
    return stored


def from_storage(resource: Resource, obj: JSON) -> JSON:
    """``obj`` as ``resource`` shows it: its apiVersion, or the events.k8s.io/v1 fields."""
    if not is_events_v1(resource):
        head = {"apiVersion": resource.api_version, "kind": obj.get("kind", resource.kind)}
        return {**head, "metadata": obj.get("metadata", {}), **obj, **head}
    shown: JSON = {"apiVersion": resource.api_version, "kind": "Event", "metadata": obj["metadata"]}
    for core, new in _EVENT_RENAMES.items():
        if core in obj:
            shown[new] = obj[core]
    shown.update({k: obj[k] for k in _EVENT_SAME if k in obj})
    return shown


def prepare_create(resource: Resource, obj: JSON) -> None:
    """Fields kube-apiserver fills in when a built-in object is created."""
    if (resource.group, resource.plural) == ("", "namespaces"):
        spec = obj.setdefault("spec", {})
        spec.setdefault("finalizers", ["kubernetes"])
        obj["status"] = {"phase": "Active"}
        labels = obj["metadata"].setdefault("labels", {})
        labels["kubernetes.io/metadata.name"] = obj["metadata"]["name"]
    elif (resource.group, resource.plural) == ("", "secrets"):
        obj.setdefault("type", "Opaque")
        _fold_string_data(obj)


def prepare_update(resource: Resource, obj: JSON, old: JSON) -> None:
    """Fields kube-apiserver keeps or fills in when a built-in object is updated."""
    if (resource.group, resource.plural) == ("", "namespaces"):
        obj.setdefault("spec", old.get("spec", {}))
        obj["status"] = old.get("status", {"phase": "Active"})
    elif (resource.group, resource.plural) == ("", "secrets"):
        obj.setdefault("type", old.get("type", "Opaque"))
        _fold_string_data(obj)


def _fold_string_data(secret: JSON) -> None:
    """``stringData`` is write-only: it is merged into ``data``, base64-encoded."""
    strings = secret.pop("stringData", None) or {}
    if strings:
        data = secret.setdefault("data", {})
        for key, value in strings.items():
            data[key] = base64.b64encode(str(value).encode()).decode()
