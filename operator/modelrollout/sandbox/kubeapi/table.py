"""Server-side tables (``Accept: application/json;as=Table;v=v1;g=meta.k8s.io``).

Cells follow kube-apiserver's CRD table convertor: the first JSONPath result only, ``date``
columns as an age ("5m"), ``integer``/``number``/``boolean`` typed, anything else as text.
"""

from __future__ import annotations

import datetime
import json
import re
from collections.abc import Iterable, Sequence
from typing import Any

from modelrollout.sandbox.kubeapi.resources import Column, Resource

JSON = dict[str, Any]

_NAME_DESCRIPTION = (
    "Name must be unique within a namespace. Is required when creating resources, although "
    "some resources may allow a client to request the generation of an appropriate name "
    "automatically. Cannot be updated."
)
NAME = Column("Name", "string", ".metadata.name", _NAME_DESCRIPTION, format="name")
AGE = Column(
    "Age",
    "date",
    ".metadata.creationTimestamp",
    "CreationTimestamp is a timestamp representing the server time when this object was created.",
)
_STEP = re.compile(
    r"""\.\.|\.((?:\\.|[^.\[\\])+)|\[\s*(?:'([^']*)'|"([^"]*)"|(-?\d+)|(\*)|\?\((.*?)\))\s*\]"""
)
_FILTER = re.compile(r"""@((?:\.(?:\\.|[^.\s=!<>\\])+)*)\s*(?:(==|!=|<=|>=|<|>)\s*(.+))?""")


class JsonPathError(ValueError):
    """A JSONPath outside the subset printer columns use."""


def evaluate(path: str, obj: Any) -> list[Any]:
    """Results of a kubectl-style JSONPath (``{}`` optional) on ``obj``."""
    text = path.strip()
    if text.startswith("{") and text.endswith("}"):
        text = text[1:-1].strip()
    results = [obj]
    position = 0
    while position < len(text):
        match = _STEP.match(text, position)
        if not match or match[0] == "..":
            raise JsonPathError(f"unsupported JSONPath {path!r} at {position}")
        position = match.end()
        results = [item for value in results for item in _step(match, value)]
    return results


def _step(match: re.Match[str], value: Any) -> Iterable[Any]:
    key = match[1] if match[1] is not None else match[2] if match[2] is not None else match[3]
    if key is not None:
        key = key.replace("\\", "") if match[1] is not None else key
        if isinstance(value, dict) and key in value:
            yield value[key]
    elif match[4] is not None:
        index = int(match[4])
        if isinstance(value, list) and -len(value) <= index < len(value):
            yield value[index]
    elif match[5] is not None:
        if isinstance(value, list):
            yield from value
        elif isinstance(value, dict):
            yield from value.values()
    elif match[6] is not None and isinstance(value, list):
        yield from (item for item in value if _passes(match[6], item))


def _passes(expression: str, item: Any) -> bool:
    match = _FILTER.fullmatch(expression.strip())
    if not match:
        raise JsonPathError(f"unsupported filter {expression!r}")
    found = evaluate(match[1] or "", item) if match[1] else [item]
    if match[2] is None:
        return bool(found)
    if not found:
        return False
    literal = match[3].strip()
    expected: Any = literal[1:-1] if literal[:1] in "'\"" else json.loads(literal)
    actual = found[0]
    try:
        return bool(
            {
                "==": actual == expected,
                "!=": actual != expected,
                "<": actual < expected,
                ">": actual > expected,
                "<=": actual <= expected,
                ">=": actual >= expected,
            }[match[2]]
        )
    except TypeError:
        return False


def human_duration(seconds: float) -> str:
    """An age as kubectl prints it: 45s, 3m20s, 2h5m, 3d4h, 2y10d."""
    whole = int(seconds)
    if whole < -1:
        return "<invalid>"
    if whole < 0:
        return "0s"
    if whole < 120:
        return f"{whole}s"
    minutes, hours, days = whole // 60, whole // 3600, whole // 86400
    if minutes < 10:
        return f"{minutes}m{whole % 60}s" if whole % 60 else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    if hours < 8:
        return f"{hours}h{minutes % 60}m" if minutes % 60 else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    if hours < 192:
        return f"{days}d{hours % 24}h" if hours % 24 else f"{days}d"
    if days < 730:
        return f"{days}d"
    years = days // 365
    if days < 2920:
        return f"{years}y{days % 365}d" if days % 365 else f"{years}y"
    return f"{years}y"


def age(timestamp: Any, now: datetime.datetime) -> str:
    if not isinstance(timestamp, str):
        return "<unknown>"
    try:
        then = datetime.datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    except ValueError:
        return "<invalid>"
    return human_duration((now - then).total_seconds())


def cell(column: Column, obj: JSON, now: datetime.datetime) -> Any:
    if column.value is not None:
        value = column.value(obj)
    else:
        try:
            results = evaluate(column.json_path, obj)
        except JsonPathError:
            return None
        value = results[0] if results else None
    if value is None:
        return None
    if column.type == "date":
        return age(value, now)
    if column.type == "integer":
        return (
            int(value) if isinstance(value, int | float) and not isinstance(value, bool) else None
        )
    if column.type == "number":
        return value if isinstance(value, int | float) and not isinstance(value, bool) else None
    if column.type == "boolean":
        return value if isinstance(value, bool) else None
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"), sort_keys=True)
    return str(value)


def columns(resource: Resource) -> tuple[Column, ...]:
    return (NAME, *(resource.columns or (AGE,)))


def definitions(resource: Resource) -> list[JSON]:
    return [
        {
            "name": c.name,
            "type": c.type,
            "format": c.format,
            "description": c.description,
            "priority": c.priority,
        }
        for c in columns(resource)
    ]


def row(resource: Resource, obj: JSON, include: str, now: datetime.datetime) -> JSON:
    result: JSON = {"cells": [cell(c, obj, now) for c in columns(resource)]}
    if include == "Object":
        result["object"] = obj
    elif include != "None":
        result["object"] = partial_metadata(obj)
    return result


def partial_metadata(obj: JSON) -> JSON:
    return {
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": obj.get("metadata", {}),
    }


def table(
    resource: Resource,
    objects: Sequence[JSON],
    resource_version: str,
    *,
    include: str = "Metadata",
    headers: bool = True,
    now: datetime.datetime | None = None,
) -> JSON:
    moment = now or datetime.datetime.now(datetime.UTC)
    result: JSON = {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": resource_version},
        "columnDefinitions": definitions(resource) if headers else [],
        "rows": [row(resource, obj, include, moment) for obj in objects],
    }
    return result
