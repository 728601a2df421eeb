"""Label and field selectors as kube-apiserver parses and matches them."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from modelrollout.sandbox.kubeapi import errors
from modelrollout.sandbox.kubeapi.resources import Resource

JSON = dict[str, Any]

_KEY = r"[A-Za-z0-9][-A-Za-z0-9_./]*"
_VALUE = r"[-A-Za-z0-9_.]*"
_REQUIREMENT = re.compile(
    rf"""\s*(?:
        (?P<absent>!)\s*(?P<absent_key>{_KEY})
      | (?P<set_key>{_KEY})\s+(?P<set_op>in|notin)\s*\((?P<values>[^)]*)\)
      | (?P<cmp_key>{_KEY})\s*(?P<cmp_op>==|=|!=|>|<)\s*(?P<value>{_VALUE})
      | (?P<key>{_KEY})
    )\s*(?:,|$)""",
    re.VERBOSE,
)
_ALIASES = {
    "source": "source.component",
    "regarding": "involvedObject",
    "reportingController": "reportingComponent",
}


@dataclass(frozen=True)
class Requirement:
    key: str
    operator: str
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        present = self.key in labels
        value = labels.get(self.key)
        if self.operator == "exists":
            return present
        if self.operator == "!exists":
            return not present
        if self.operator in ("=", "=="):
            return value == self.values[0]
        if self.operator == "!=":
            return value != self.values[0]
        if self.operator == "in":
            return value in self.values
        if self.operator == "notin":
            return value not in self.values
        try:
            number, limit = int(value or ""), int(self.values[0])
        except ValueError:
            return False
        return number > limit if self.operator == ">" else number < limit


def parse_labels(text: str) -> list[Requirement]:
    """Requirements of a label selector; 400 BadRequest for what kube would not parse."""
    requirements: list[Requirement] = []
    position = 0
    text = text.strip()
    while position < len(text):
        match = _REQUIREMENT.match(text, position)
        if not match or match.end() == position:
            raise errors.bad_request(f"unable to parse requirement: found '{text[position:]}'")
        position = match.end()
        if match["absent"]:
            requirements.append(Requirement(match["absent_key"], "!exists"))
        elif match["set_key"]:
            values = tuple(v.strip() for v in match["values"].split(",") if v.strip())
            requirements.append(Requirement(match["set_key"], match["set_op"], values))
        elif match["cmp_key"]:
            operator, value = match["cmp_op"], match["value"]
            if operator in "<>" and not value.lstrip("-").isdigit():
                detail = f"for 'Gt', 'Lt' operators, the value must be an integer: {value!r}"
                raise errors.bad_request(f"unable to parse requirement: {detail}")
            requirements.append(Requirement(match["cmp_key"], operator, (value,)))
        else:
            requirements.append(Requirement(match["key"], "exists"))
    return requirements


def _split_fields(text: str) -> list[str]:
    parts, current, escaped = [], "", False
    for char in text:
        if escaped:
            current, escaped = current + char, False
        elif char == "\\":
            escaped = True
        elif char == ",":
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    return [p.strip() for p in parts if p.strip()]


def parse_fields(text: str, resource: Resource) -> list[tuple[str, str, str]]:
    """(field, operator, value) terms of a field selector the resource supports."""
    allowed = ("metadata.name", "metadata.namespace", *resource.selectable)
    terms = []
    for part in _split_fields(text):
        match = re.fullmatch(r"([^=!]+?)\s*(==|=|!=)\s*(.*)", part)
        if not match:
            raise errors.bad_request(f"invalid selector: '{text}'; can't understand '{part}'")
        name, operator, value = match[1].strip(), match[2], match[3].strip()
        if name not in allowed:
            raise errors.bad_request(f"field label not supported: {name}")
        terms.append((name, "!=" if operator == "!=" else "=", value))
    return terms


def field_value(obj: JSON, name: str) -> str:
    head, _, rest = name.partition(".")
    path = _ALIASES.get(name) or (f"{_ALIASES[head]}.{rest}" if head in _ALIASES else name)
    value: Any = obj
    for step in path.split("."):
        value = value.get(step) if isinstance(value, dict) else None
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


@dataclass(frozen=True)
class Selector:
    """A list or watch filter: labels, fields, and (for a named watch) one name."""

    labels: tuple[Requirement, ...] = ()
    fields: tuple[tuple[str, str, str], ...] = ()

    def matches(self, obj: JSON) -> bool:
        labels = obj.get("metadata", {}).get("labels") or {}
        if not all(r.matches(labels) for r in self.labels):
            return False
        for name, operator, value in self.fields:
            if (field_value(obj, name) == value) != (operator == "="):
                return False
        return True


def from_query(query: Mapping[str, str], resource: Resource, name: str | None = None) -> Selector:
    labels = parse_labels(query.get("labelSelector", ""))
    fields = parse_fields(query.get("fieldSelector", ""), resource)
    if name is not None:
        fields.append(("metadata.name", "=", name))
    return Selector(tuple(labels), tuple(fields))
