"""CustomResourceDefinitions: the checks kube-apiserver makes, the status it sets, what they serve.

The checks are the ones a hand-written CRD most often fails: names, group, one storage version,
a structural schema for every version, and CEL rules that compile.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from typing import Any

from modelrollout.sandbox.kubeapi.resources import Column, Resource
from modelrollout.schema import INVALID, NOT_SUPPORTED, REQUIRED, FieldError, compile_rules

JSON = dict[str, Any]

_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_KIND = re.compile(r"[A-Za-z][A-Za-z0-9]*")
_CONDITIONS = (
    ("NamesAccepted", "NoConflicts", "no conflicts found"),
    ("Established", "InitialNamesAccepted", "the initial names have been accepted"),
)


def _error(kind: str, path: str, message: str) -> FieldError:
    return FieldError(path, kind, message)


def _json(value: Any) -> str:
    return f'"{value}"' if isinstance(value, str) else str(value).lower()


def validate(crd: JSON, old: JSON | None = None) -> list[FieldError]:
    """What kube-apiserver says about a CRD it will not store."""
    spec = crd.get("spec") or {}
    names = spec.get("names") or {}
    group, plural, kind = spec.get("group", ""), names.get("plural", ""), names.get("kind", "")
    errors: list[FieldError] = []
    if not group:
        errors.append(_error(REQUIRED, "spec.group", "Required value"))
    elif "." not in group:
        detail = f"Invalid value: {_json(group)}: should be a domain with at least one dot"
        errors.append(_error(INVALID, "spec.group", detail))
    if not plural:
        errors.append(_error(REQUIRED, "spec.names.plural", "Required value"))
    elif not _LABEL.fullmatch(plural):
        detail = f"Invalid value: {_json(plural)}: a lowercase RFC 1123 label is required"
        errors.append(_error(INVALID, "spec.names.plural", detail))
    if not kind:
        errors.append(_error(REQUIRED, "spec.names.kind", "Required value"))
    elif not _KIND.fullmatch(kind):
        detail = f"Invalid value: {_json(kind)}: must be a valid Kind (letters and digits)"
        errors.append(_error(INVALID, "spec.names.kind", detail))
    name = crd.get("metadata", {}).get("name", "")
    if group and plural and name != f"{plural}.{group}":
        detail = f'Invalid value: {_json(name)}: must be spec.names.plural+"."+spec.group'
        errors.append(_error(INVALID, "metadata.name", detail))
    scope = spec.get("scope")
    if scope not in ("Namespaced", "Cluster"):
        supported = 'supported values: "Cluster", "Namespaced"'
        shown = _json(scope) if scope else '""'
        errors.append(
            _error(NOT_SUPPORTED, "spec.scope", f"Unsupported value: {shown}: {supported}")
        )
    if old is not None and old.get("spec", {}).get("group") != group:
        detail = f"Invalid value: {_json(group)}: field is immutable"
        errors.append(_error(INVALID, "spec.group", detail))
    return errors + _version_errors(spec.get("versions"))


def _version_errors(versions: Any) -> list[FieldError]:
    if not isinstance(versions, list) or not versions:
        return [_error(REQUIRED, "spec.versions", "Required value: must have at least one version")]
    errors: list[FieldError] = []
    if sum(1 for v in versions if isinstance(v, dict) and v.get("storage")) != 1:
        detail = 'Invalid value: "": must have exactly one version marked as storage version'
        errors.append(_error(INVALID, "spec.versions", detail))
    seen: set[str] = set()
    for i, version in enumerate(versions):
        at = f"spec.versions[{i}]"
        if not isinstance(version, dict) or not version.get("name"):
            errors.append(_error(REQUIRED, f"{at}.name", "Required value"))
            continue
        if version["name"] in seen:
            errors.append(
                _error(
                    "FieldValueDuplicate",
                    f"{at}.name",
                    f"Duplicate value: {_json(version['name'])}",
                )
            )
        seen.add(version["name"])
        schema = (version.get("schema") or {}).get("openAPIV3Schema")
        where = f"{at}.schema.openAPIV3Schema"
        if not isinstance(schema, dict):
            errors.append(_error(REQUIRED, where, "Required value: schemas are required"))
            continue
        errors += _structural_errors(schema, where, root=True)
        errors += [
            FieldError(f"{where}.{e.path}", e.type, e.message) for e in compile_rules(schema)
        ]
    return errors


def _structural_errors(
    schema: Mapping[str, Any], path: str, *, root: bool = False
) -> list[FieldError]:
    """A structural schema has a type on every node, unless unknown fields or int-or-string."""
    if root and schema.get("type") != "object":
        return [_error(REQUIRED, f"{path}.type", "Required value: must be object at the root")]
    errors: list[FieldError] = []
    for name, sub in (schema.get("properties") or {}).items():
        at = f"{path}.properties[{name}]"
        free = sub.get("x-kubernetes-int-or-string") or sub.get(
            "x-kubernetes-preserve-unknown-fields"
        )
        if not sub.get("type") and not free:
            detail = "Required value: must not be empty for specified object fields"
            errors.append(_error(REQUIRED, f"{at}.type", detail))
        errors += _structural_errors(sub, at)
    items = schema.get("items")
    if isinstance(items, Mapping):
        if (
            not items.get("type")
            and not items.get("x-kubernetes-int-or-string")
            and not items.get("x-kubernetes-preserve-unknown-fields")
        ):
            detail = "Required value: must not be empty for specified array items"
            errors.append(_error(REQUIRED, f"{path}.items.type", detail))
        errors += _structural_errors(items, f"{path}.items")
    extra = schema.get("additionalProperties")
    if isinstance(extra, Mapping):
        errors += _structural_errors(extra, f"{path}.additionalProperties")
    return errors


def apply_defaults(crd: JSON) -> None:
    spec = crd.setdefault("spec", {})
    names = spec.setdefault("names", {})
    if names.get("kind"):
        names.setdefault("singular", names["kind"].lower())
        names.setdefault("listKind", f"{names['kind']}List")
    spec.setdefault("conversion", {"strategy": "None"})
    for version in spec.get("versions") or []:
        if isinstance(version, dict):
            version.setdefault("served", True)
            version.setdefault("storage", False)


def set_status(crd: JSON, old: JSON | None, now: str) -> None:
    """Accepted names, NamesAccepted and Established (true at once), and the stored versions."""
    spec = crd["spec"]
    names = spec["names"]
    accepted = {k: copy.deepcopy(v) for k, v in names.items()}
    previous = {c.get("type"): c for c in ((old or {}).get("status") or {}).get("conditions", [])}
    conditions = []
    for kind, reason, message in _CONDITIONS:
        was = previous.get(kind, {})
        since = was.get("lastTransitionTime") if was.get("status") == "True" else now
        conditions.append(
            {
                "type": kind,
                "status": "True",
                "lastTransitionTime": since,
                "reason": reason,
                "message": message,
            }
        )
    stored = list(((old or {}).get("status") or {}).get("storedVersions", []))
    for version in spec["versions"]:
        if version.get("storage") and version["name"] not in stored:
            stored.append(version["name"])
    crd["status"] = {"conditions": conditions, "acceptedNames": accepted, "storedVersions": stored}


def resources(crd: JSON) -> list[Resource]:
    """One :class:`Resource` per served version."""
    spec, name = crd["spec"], crd["metadata"]["name"]
    names = spec["names"]
    found = []
    for version in spec["versions"]:
        if not version.get("served", True):
            continue
        schema = version["schema"]["openAPIV3Schema"]
        columns = tuple(
            Column(
                c["name"],
                c.get("type", "string"),
                c.get("jsonPath", ""),
                c.get("description", ""),
                int(c.get("priority", 0)),
                c.get("format", ""),
            )
            for c in version.get("additionalPrinterColumns") or ()
        )
        selectable = tuple(
            f["jsonPath"].lstrip(".")
            for f in version.get("selectableFields") or ()
            if "jsonPath" in f
        )
        found.append(
            Resource(
                group=spec["group"],
                version=version["name"],
                plural=names["plural"],
                singular=names.get("singular") or names["kind"].lower(),
                kind=names["kind"],
                namespaced=spec["scope"] == "Namespaced",
                short_names=tuple(names.get("shortNames") or ()),
                categories=tuple(names.get("categories") or ()),
                status="status" in (version.get("subresources") or {}),
                schema=schema,
                columns=columns,
                selectable=selectable,
                generation=True,
                crd=name,
                description=str(schema.get("description", "")),
            )
        )
    return found
