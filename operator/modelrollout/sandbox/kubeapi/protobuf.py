"""Request bodies in Kubernetes' protobuf encoding, for the built-in kinds kubectl creates.

kubectl's typed clients (``kubectl create namespace``, ``create configmap``, ``create secret``,
``create serviceaccount``) send ``application/vnd.kubernetes.protobuf`` and accept JSON back;
this decodes those kinds into the JSON the rest of the server uses. Answers are always JSON.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

from modelrollout.sandbox.kubeapi import errors

JSON = dict[str, Any]
Fields = Mapping[int, tuple[str, Any]]

CONTENT_TYPE = "application/vnd.kubernetes.protobuf"
_MAGIC = b"k8s\x00"

_TIME: Fields = {1: ("seconds", "int"), 2: ("nanos", "int")}
_OWNER: Fields = {
    1: ("kind", "string"),
    3: ("name", "string"),
    4: ("uid", "string"),
    5: ("apiVersion", "string"),
    6: ("controller", "bool"),
    7: ("blockOwnerDeletion", "bool"),
}
_OBJECT_META: Fields = {
    1: ("name", "string"),
    2: ("generateName", "string"),
    3: ("namespace", "string"),
    5: ("uid", "string"),
    6: ("resourceVersion", "string"),
    7: ("generation", "int"),
    8: ("creationTimestamp", ("message", _TIME)),
    11: ("labels", ("map", "string")),
    12: ("annotations", ("map", "string")),
    13: ("ownerReferences", ("repeated", ("message", _OWNER))),
    14: ("finalizers", ("repeated", "string")),
}
_REFERENCE: Fields = {1: ("name", "string")}
KINDS: Mapping[str, Fields] = {
    "Namespace": {
        1: ("metadata", ("message", _OBJECT_META)),
        2: ("spec", ("message", {1: ("finalizers", ("repeated", "string"))})),
    },
    "ConfigMap": {
        1: ("metadata", ("message", _OBJECT_META)),
        2: ("data", ("map", "string")),
        3: ("binaryData", ("map", "bytes")),
        4: ("immutable", "bool"),
    },
    "Secret": {
        1: ("metadata", ("message", _OBJECT_META)),
        2: ("data", ("map", "bytes")),
        3: ("type", "string"),
        4: ("stringData", ("map", "string")),
        5: ("immutable", "bool"),
    },
    "ServiceAccount": {
        1: ("metadata", ("message", _OBJECT_META)),
        2: (
            "secrets",
            (
                "repeated",
                (
                    "message",
                    {1: ("kind", "string"), 2: ("namespace", "string"), 3: ("name", "string")},
                ),
            ),
        ),
        3: ("imagePullSecrets", ("repeated", ("message", _REFERENCE))),
        4: ("automountServiceAccountToken", "bool"),
    },
}
_UNKNOWN: Fields = {
    1: ("typeMeta", ("message", {1: ("apiVersion", "string"), 2: ("kind", "string")})),
    2: ("raw", "raw"),
}


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.position = 0

    def varint(self) -> int:
        result, shift = 0, 0
        while True:
            if self.position >= len(self.data):
                raise ValueError("truncated varint")
            byte = self.data[self.position]
            self.position += 1
            result |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return result
            shift += 7

    def fields(self) -> list[tuple[int, int, Any]]:
        found = []
        while self.position < len(self.data):
            key = self.varint()
            number, wire = key >> 3, key & 7
            if wire == 0:
                value: Any = self.varint()
            elif wire == 2:
                size = self.varint()
                value = self.data[self.position : self.position + size]
                self.position += size
            elif wire in (1, 5):
                size = 8 if wire == 1 else 4
                value = self.data[self.position : self.position + size]
                self.position += size
            else:
                raise ValueError(f"unsupported wire type {wire}")
            found.append((number, wire, value))
        return found


def _value(kind: Any, raw: Any) -> Any:
    if kind == "string":
        return bytes(raw).decode()
    if kind == "bytes":
        return base64.b64encode(bytes(raw)).decode()
    if kind == "raw":
        return bytes(raw)
    if kind == "int":
        return raw - (1 << 64) if raw >= 1 << 63 else raw
    if kind == "bool":
        return bool(raw)
    if kind[0] == "message":
        return _message(kind[1], bytes(raw))
    raise ValueError(f"unsupported field kind {kind!r}")


def _message(fields: Fields, data: bytes) -> JSON:
    result: JSON = {}
    for number, _, raw in _Reader(data).fields():
        if number not in fields:
            continue
        name, kind = fields[number]
        if isinstance(kind, tuple) and kind[0] == "repeated":
            result.setdefault(name, []).append(_value(kind[1], raw))
        elif isinstance(kind, tuple) and kind[0] == "map":
            entry = {n: v for n, _, v in _Reader(bytes(raw)).fields()}
            key = bytes(entry.get(1, b"")).decode()
            result.setdefault(name, {})[key] = _value(kind[1], entry.get(2, b""))
        else:
            result[name] = _value(kind, raw)
    return result


def decode(body: bytes) -> JSON:
    """The JSON form of a protobuf-encoded object of a kind in :data:`KINDS`."""
    if not body.startswith(_MAGIC):
        raise errors.bad_request("the protobuf body does not start with the Kubernetes magic")
    try:
        envelope = _message(_UNKNOWN, body[len(_MAGIC) :])
        type_meta = envelope.get("typeMeta", {})
        kind = type_meta.get("kind", "")
        if kind not in KINDS:
            raise errors.unsupported_media_type(CONTENT_TYPE)
        obj = _message(KINDS[kind], envelope.get("raw", b""))
    except (ValueError, UnicodeDecodeError) as exc:
        raise errors.bad_request(f"error decoding the protobuf body: {exc}") from exc
    obj.get("metadata", {}).pop("creationTimestamp", None)  # the server sets it
    return {"apiVersion": type_meta.get("apiVersion", "v1"), "kind": kind, **obj}
