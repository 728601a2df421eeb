"""ObjectMeta: the fields the server owns, the ones it keeps, and the checks it makes on them."""

from __future__ import annotations

import datetime
import random
import re
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from modelrollout.schema import FORBIDDEN, INVALID, REQUIRED, TOO_LONG, FieldError

JSON = dict[str, Any]
Clock = Callable[[], datetime.datetime]

KNOWN = frozenset(
    {
        "name",
        "generateName",
        "namespace",
        "selfLink",
        "uid",
        "resourceVersion",
        "generation",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "labels",
        "annotations",
        "ownerReferences",
        "finalizers",
        "managedFields",
    }
)
# Fields a client cannot change with an update: the server copies them from the stored object.
SERVER_OWNED = (
    "uid",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "generation",
    "selfLink",
)
_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_LABEL_VALUE = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?")
_NAME_PART = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")
_SUBDOMAIN_RULE = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or "
    "'.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used "
    r"for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
)
_LABEL_RULE = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and "
    "must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex "
    "used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
)
_LABEL_VALUE_RULE = (
    "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or "
    "'.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or "
    "'my_value',  or '12345', regex used for validation is "
    "'(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"
)
_SUFFIX_CHARS = "bcdfghjklmnpqrstvwxz2456789"  # kube's: no vowels, no look-alikes


def timestamp(clock: Clock) -> str:
    """RFC 3339 in whole seconds, UTC, as kube writes creationTimestamp."""
    return clock().astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def new_uid() -> str:
    return str(uuid.uuid4())


def generated_name(prefix: str) -> str:
    return prefix + "".join(random.choices(_SUFFIX_CHARS, k=5))


def _quoted(value: Any) -> str:
    return '"' + str(value).replace('"', '\\"') + '"'


def name_errors(name: str, rule: str, path: str = "metadata.name") -> list[FieldError]:
    pattern, text, limit = (
        (_LABEL, _LABEL_RULE, 63) if rule == "label" else (_SUBDOMAIN, _SUBDOMAIN_RULE, 253)
    )
    errors = []
    if len(name) > limit:
        errors.append(
            FieldError(
                path,
                INVALID,
                f"Invalid value: {_quoted(name)}: must be no more than {limit} characters",
            )
        )
    if not pattern.fullmatch(name):
        errors.append(FieldError(path, INVALID, f"Invalid value: {_quoted(name)}: {text}"))
    return errors


def _qualified_name_errors(key: str, path: str) -> list[FieldError]:
    prefix, _, name = key.rpartition("/")
    if (
        (prefix and not _SUBDOMAIN.fullmatch(prefix))
        or len(name) > 63
        or not _NAME_PART.fullmatch(name)
    ):
        detail = (
            "name part must consist of alphanumeric characters, '-', '_' or '.', and must start "
            "and end with an alphanumeric character"
        )
        return [FieldError(path, INVALID, f"Invalid value: {_quoted(key)}: {detail}")]
    return []


def metadata_errors(meta: Mapping[str, Any], old: Mapping[str, Any] | None) -> list[FieldError]:
    """Labels, annotations, owner references and finalizers as ObjectMeta validation has them."""
    errors: list[FieldError] = []
    for field in ("labels", "annotations"):
        value = meta.get(field)
        if value is None:
            continue
        if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
            errors.append(
                FieldError(f"metadata.{field}", INVALID, "Invalid value: must be a map of strings")
            )
            continue
        for key, item in value.items():
            errors += _qualified_name_errors(key, f"metadata.{field}")
            if field == "labels" and (len(item) > 63 or not _LABEL_VALUE.fullmatch(item)):
                errors.append(
                    FieldError(
                        f"metadata.{field}",
                        INVALID,
                        f"Invalid value: {_quoted(item)}: {_LABEL_VALUE_RULE}",
                    )
                )
    if sum(len(k) + len(v) for k, v in (meta.get("annotations") or {}).items()) > 262144:
        errors.append(
            FieldError("metadata.annotations", TOO_LONG, "Too long: must have at most 262144 bytes")
        )
    for i, ref in enumerate(meta.get("ownerReferences") or []):
        at = f"metadata.ownerReferences[{i}]"
        for key in ("apiVersion", "kind", "name", "uid"):
            if not isinstance(ref, dict) or not ref.get(key):
                errors.append(
                    FieldError(
                        f"{at}.{key}",
                        REQUIRED if key != "uid" else INVALID,
                        "Required value"
                        if key != "uid"
                        else 'Invalid value: "": uid must not be empty',
                    )
                )
    finalizers = meta.get("finalizers") or []
    if not isinstance(finalizers, list) or not all(isinstance(f, str) for f in finalizers):
        errors.append(
            FieldError("metadata.finalizers", INVALID, "Invalid value: must be a list of strings")
        )
    elif old is not None and old.get("deletionTimestamp"):
        added = [f for f in finalizers if f not in (old.get("finalizers") or [])]
        if added:
            listed = ", ".join(_quoted(f) for f in added)
            detail = (
                "Forbidden: no new finalizers can be added if the object is being deleted, "
                f"found new finalizers []string{{{listed}}}"
            )
            errors.append(FieldError("metadata.finalizers", FORBIDDEN, detail))
    return errors


def unknown_fields(meta: Mapping[str, Any]) -> list[str]:
    return sorted(f"metadata.{k}" for k in meta if k not in KNOWN)
