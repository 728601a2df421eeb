"""What kube-apiserver does with a CRD's structural ``openAPIV3Schema``, as pure functions.

The apiserver, and so the callers, run :func:`prune` (unknown fields), :func:`apply_defaults`
and :func:`validate` (OpenAPI values, embedded resources, list types, then CEL rules), in that
order. Paths, cause types and messages are kube-apiserver's ``status.details.causes``.
"""

from __future__ import annotations

import copy
import datetime
import functools
import json
import math
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from celpy import Environment, Runner, celtypes
from celpy.adapter import json_to_cel
from celpy.celparser import CELParseError

Schema = Mapping[str, Any]

# Cause types (status.details.causes[].reason) and how kube's messages begin for each.
_TITLES = {
    "FieldValueRequired": "Required value",
    "FieldValueInvalid": "Invalid value",
    "FieldValueTypeInvalid": "Invalid value",
    "FieldValueNotSupported": "Unsupported value",
    "FieldValueForbidden": "Forbidden",
    "FieldValueTooLong": "Too long",
    "FieldValueTooMany": "Too many",
    "FieldValueDuplicate": "Duplicate value",
}
REQUIRED, INVALID, TYPE_INVALID, NOT_SUPPORTED, FORBIDDEN, TOO_LONG, TOO_MANY, DUPLICATE = _TITLES
# Errors after which kube-apiserver does not run the CEL rules.
_BLOCKING = frozenset({NOT_SUPPORTED, REQUIRED, TOO_LONG, TOO_MANY, TYPE_INVALID})
_NOT_CHECKED = (
    "some validation rules were not checked because the object was invalid; "
    "correct the existing errors to complete validation"
)
_META = frozenset({"apiVersion", "kind", "metadata"})
_OMIT = object()  # kube's "omitValue": the error message shows no value
_OLD_SELF = re.compile(r"\boldSelf\b")
_DATE_TIME = re.compile(
    r"(\d{4}-\d\d-\d\d)t(\d\d):(\d\d):(\d\d)(\.\d+)?(z|[+-]\d\d:\d\d)", re.ASCII
)
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_KINDS = {bool: "boolean", int: "integer", float: "number", str: "string", list: "array"}
_FIELD_PATH_STEP = re.compile(r"\.([^.\[\]]+)|\['((?:[^'\\]|\\.)*)'\]")


@dataclass(frozen=True)
class FieldError:
    """One ``status.details.causes[]`` entry: field path, reason and message."""

    path: str
    type: str
    message: str


def validate(schema: Schema, obj: Any, path: str = "", *, old: Any = None) -> list[FieldError]:
    """Validate ``obj`` (pruned, defaulted) as on create; with ``old``, the stored object, as on
    update: transition rules run where an old value exists, list-type errors only count if new.
    """
    errors = _check(schema, obj, path, path)
    errors += _embedded_errors(schema, obj, path)
    if old is None or not _list_errors(schema, old, path):
        errors += _list_errors(schema, obj, path)
    if not any("x-kubernetes-validations" in s for s, _ in _schemas(schema, "")):
        return errors
    if any(e.type in _BLOCKING for e in errors):
        return [*errors, _error(INVALID, path, None, _NOT_CHECKED)]
    unchanged: str | None = None  # an unchanged subtree being walked (see _rule_errors)
    for node, value, old_value, at in _nodes(schema, obj, old, path):
        if unchanged is not None and _within(at, unchanged):
            if old_value is None:
                continue  # unchanged with its ancestor, though not correlated to an old item
        else:
            unchanged = at if old_value is not None and value == old_value else None
        for s in (node, *node.get("allOf", ())):
            errors += _rule_errors(s, value, old_value, at)
    return errors


def _within(path: str, ancestor: str) -> bool:
    return not ancestor or path == ancestor or path.startswith((f"{ancestor}.", f"{ancestor}["))


def apply_defaults(schema: Schema, obj: Any) -> Any:
    """Return a copy of ``obj`` with ``null`` dropped from non-nullable fields and defaults set."""
    result = copy.deepcopy(obj)
    _default(schema, result)
    return result


def prune(schema: Schema, obj: Any, path: str = "") -> tuple[Any, list[str]]:
    """Copy ``obj`` without unknown fields; also return their sorted paths. An empty ``path``
    means a whole resource, whose apiVersion, kind and metadata stay."""
    dropped: list[str] = []
    result = copy.deepcopy(obj)
    _prune(schema, result, path, dropped, False, not path)
    return result, sorted(dropped)


def compile_rules(schema: Schema, path: str = "") -> list[FieldError]:
    """Compile (and cache) every rule and messageExpression; report those kube would reject."""
    errors = []
    for s, at in _schemas(schema, path):
        for i, rule in enumerate(s.get("x-kubernetes-validations", ())):
            for key in [k for k in ("rule", "messageExpression") if k in rule]:
                try:
                    _program(rule[key])
                except CELParseError as exc:
                    field = _join(at, f"x-kubernetes-validations[{i}].{key}")
                    detail = f"compilation failed: {_syntax_error(exc)}"
                    errors.append(_error(INVALID, field, rule[key], detail))
    return errors


def _error(kind: str, path: str, value: Any = _OMIT, detail: str = "") -> FieldError:
    message = _TITLES[kind]
    if value is not _OMIT:
        message += ": " + _json(value)
    if detail:
        message += ": " + detail
    return FieldError(path, kind, message)


def _normal(value: Any) -> Any:
    """JSON value with whole floats as ints: how Go prints and compares decoded JSON numbers."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e21:
        return int(value)
    if isinstance(value, dict):
        return {k: _normal(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_normal(v) for v in value]
    return value


def _json(value: Any) -> str:
    return json.dumps(_normal(value), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _check(s: Schema, value: Any, path: str, root: str) -> list[FieldError]:
    at = f"{path} in body"
    int_or_string = s.get("x-kubernetes-int-or-string")
    types = ["integer", "string"] if int_or_string else [s["type"]] if "type" in s else []
    errors: list[FieldError] = []
    if value is None:
        if types and not s.get("nullable"):
            must = f'{at} must be of type {",".join(types)}: "null"'
            errors.append(_error(TYPE_INVALID, path, "null", must))
        return errors + _enum_errors(s, value, path)
    kind = _KINDS.get(type(value), "object")
    if types and not (
        kind in types
        or (kind == "number" and "integer" in types and value.is_integer())
        or (kind == "integer" and "number" in types)
    ):
        must = f"{at} must be of type {','.join(types)}: {_json(kind)}"
        errors.append(_error(TYPE_INVALID, path, kind, must))
    errors += _junction_errors(s, value, path, root)
    if kind == "string":
        errors += _string_errors(s, value, path)
    elif kind in ("integer", "number"):
        errors += _number_errors(s, value, path)
    elif kind == "array":
        if isinstance(s.get("items"), Mapping):
            for i, item in enumerate(value):
                errors += _check(s["items"], item, f"{path}[{i}]", root)
        errors += _size_errors(s, len(value), path, "items")
        if s.get("uniqueItems") and len({_json(v) for v in value}) < len(value):
            errors.append(_error(INVALID, path, "", f"{at} shouldn't contain duplicates"))
    errors += _enum_errors(s, value, path)
    if kind == "object":
        errors += _size_errors(s, len(value), path, "properties")
        for key, item in value.items():
            sub = _field_schema(s, key)
            if sub is not None:
                errors += _check(sub, item, _join(path, key), root)
        missing = [k for k in s.get("required", ()) if k not in value]
        errors += [_error(REQUIRED, _join(path, k)) for k in missing]
    return errors


def _size_errors(s: Schema, size: int, path: str, noun: str) -> list[FieldError]:
    """minItems/maxItems or minProperties/maxProperties."""
    low, high = s.get(f"min{noun.title()}"), s.get(f"max{noun.title()}")
    errors = []
    if low is not None and size < low:
        detail = f"{path} in body should have at least {low} {noun}"
        errors.append(_error(INVALID, path, size, detail))
    if high is not None and size > high:
        detail = f"must have at most {high} item{'s' * (high != 1)}"
        errors.append(_error(TOO_MANY, path, size, detail))
    return errors


def _enum_errors(s: Schema, value: Any, path: str) -> list[FieldError]:
    if "enum" not in s or (value is not None and _json(value) in {_json(e) for e in s["enum"]}):
        return []
    allowed = ", ".join(_json(e if isinstance(e, str) else _json(e)) for e in s["enum"])
    return [_error(NOT_SUPPORTED, path, value, f"supported values: {allowed}")]


def _string_errors(s: Schema, value: str, path: str) -> list[FieldError]:
    at = f"{path} in body"
    if "maxLength" in s and len(value) > s["maxLength"]:
        limit = s["maxLength"]
        detail = f"may not be more than {limit} byte{'s' * (limit != 1)}"
        return [_error(TOO_LONG, path, detail=detail)]
    if "minLength" in s and len(value) < s["minLength"]:
        detail = f"{at} should be at least {s['minLength']} chars long"
        return [_error(INVALID, path, value, detail)]
    if "pattern" in s:
        pattern = s["pattern"]
        try:
            matched = re.search(_go_anchors(pattern), value) is not None
        except re.error as exc:
            matched, pattern = False, f"{pattern}, but pattern is invalid: {exc}"
        if not matched:
            return [_error(INVALID, path, value, f"{at} should match '{pattern}'")]
    if s.get("format") == "date-time" and _parse_date_time(value) is None:
        must = f"{at} must be of type date-time: {_json(value)}"
        return [_error(TYPE_INVALID, path, value, must)]
    return []


@functools.lru_cache(maxsize=256)
def _go_anchors(pattern: str) -> str:
    """``pattern`` with RE2's ``$`` (kube-apiserver's regexp): the end of the text only,
    where Python's ``$`` also matches before a final newline ("5m\\n" would pass)."""
    out: list[str] = []
    i, in_class = 0, False
    while i < len(pattern):
        char = pattern[i]
        if char == "\\":
            out.append(pattern[i : i + 2])
            i += 2
            continue
        if char == "[" and not in_class:
            in_class = True
        elif char == "]" and in_class:
            in_class = False
        elif char == "$" and not in_class:
            char = r"\Z"
        out.append(char)
        i += 1
    return "".join(out)


def _number_errors(s: Schema, value: float, path: str) -> list[FieldError]:
    errors = []
    for bound, relation in (("minimum", "greater than"), ("maximum", "less than")):
        limit, exclusive = s.get(bound), s.get(f"exclusive{bound.title()}") is True
        if limit is None:
            continue
        beyond = value < limit if bound == "minimum" else value > limit
        if beyond or (exclusive and value == limit):
            relation += "" if exclusive else " or equal to"
            detail = f"{path} in body should be {relation} {_json(limit)}"
            errors.append(_error(INVALID, path, value, detail))
    return errors


def _junction_errors(s: Schema, value: Any, path: str, root: str) -> list[FieldError]:
    """allOf/anyOf/oneOf/not; kube reports the summary at the validation root, as "" value."""
    name = _json(path)
    errors = []
    if "anyOf" in s:
        results = [_check(sub, value, path, root) for sub in s["anyOf"]]
        if all(results):
            summary = f"{name} must validate at least one schema (anyOf)"
            errors += [_error(INVALID, root, "", summary), *min(results, key=len)]
    if "oneOf" in s:
        results = [_check(sub, value, path, root) for sub in s["oneOf"]]
        valid = sum(not r for r in results)
        if valid != 1:
            found = f"Found {valid} valid alternatives" if valid else "Found none valid"
            summary = f"{name} must validate one and only one schema (oneOf). {found}"
            best = [] if valid else min(results, key=len)
            errors += [_error(INVALID, root, "", summary), *best]
    if "allOf" in s:
        results = [_check(sub, value, path, root) for sub in s["allOf"]]
        errors += [e for r in results for e in r]
        if failed := sum(bool(r) for r in results):
            none = ". None validated" if failed == len(results) else ""
            summary = f"{name} must validate all the schemas (allOf){none}"
            errors.append(_error(INVALID, root, "", summary))
    if "not" in s and not _check(s["not"], value, path, root):
        errors.append(_error(INVALID, root, "", f"{name} must not validate the schema (not)"))
    return errors


def _parse_date_time(value: str) -> datetime.datetime | None:
    """RFC 3339 date-time as kube-openapi's strfmt accepts it (a time zone is required)."""
    match = _DATE_TIME.fullmatch(value.lower())
    if not match or match[2] > "23" or match[3] > "59" or match[4] > "59":
        return None
    try:
        return datetime.datetime.fromisoformat(value.upper())
    except ValueError:
        return None


def _field_schema(s: Schema, key: str) -> Schema | None:
    if key in s.get("properties", {}):
        return s["properties"][key]  # type: ignore[no-any-return]
    extra = s.get("additionalProperties")
    return extra if isinstance(extra, Mapping) else None


def _nodes(s: Schema, value: Any, old: Any, path: str) -> Iterator[tuple[Schema, Any, Any, str]]:
    """Every (schema, value, old value, path) from ``value`` down, map keys as ``path[key]``;
    old list items correlate (by key) only in list-type maps."""
    yield s, value, old, path
    if isinstance(value, dict):
        old_map = old if isinstance(old, dict) else {}
        for key, item in value.items():
            sub = _field_schema(s, key)
            if sub is not None:
                at = _join(path, key) if key in s.get("properties", {}) else f"{path}[{key}]"
                yield from _nodes(sub, item, old_map.get(key), at)
    elif isinstance(value, list) and isinstance(s.get("items"), Mapping):
        keys = s.get("x-kubernetes-list-map-keys", ())
        by_key: dict[str, Any] = {}
        if s.get("x-kubernetes-list-type") == "map" and isinstance(old, list):
            by_key = {_map_key(o, keys): o for o in old if isinstance(o, dict)}
        for i, item in enumerate(value):
            old_item = by_key.get(_map_key(item, keys)) if isinstance(item, dict) else None
            yield from _nodes(s["items"], item, old_item, f"{path}[{i}]")


def _schemas(s: Schema, path: str) -> Iterator[tuple[Schema, str]]:
    """Every schema node, with its location in the schema."""
    yield s, path
    for name, sub in s.get("properties", {}).items():
        yield from _schemas(sub, _join(path, f"properties[{name}]"))
    for key in ("items", "additionalProperties", "not"):
        if isinstance(s.get(key), Mapping):
            yield from _schemas(s[key], _join(path, key))
    for key in ("allOf", "anyOf", "oneOf"):
        for i, sub in enumerate(s.get(key, ())):
            yield from _schemas(sub, _join(path, f"{key}[{i}]"))


def _map_key(item: Mapping[str, Any], keys: Any) -> str:
    return _json({k: item[k] for k in keys if k in item})


def _default(s: Schema, value: Any) -> None:
    if isinstance(value, dict):
        for key, sub in s.get("properties", {}).items():
            absent = key not in value or (value[key] is None and not sub.get("nullable"))
            if absent and sub.get("default") is not None:
                value[key] = copy.deepcopy(sub["default"])
        for key in list(value):
            sub = _field_schema(s, key)
            if sub is None:
                continue
            if value[key] is None and not sub.get("nullable"):
                if sub.get("default") is None:
                    del value[key]
                    continue
                value[key] = copy.deepcopy(sub["default"])
            _default(sub, value[key])
    elif isinstance(value, list) and isinstance(s.get("items"), Mapping):
        items = s["items"]
        for i, item in enumerate(value):
            if item is None and not items.get("nullable") and items.get("default") is not None:
                value[i] = copy.deepcopy(items["default"])
            _default(items, value[i])


def _prune(s: Schema, value: Any, path: str, dropped: list[str], keep: bool, root: bool) -> None:
    """Prune in place. ``keep``: unknown fields stay (x-kubernetes-preserve-unknown-fields)."""
    keep = keep or s.get("x-kubernetes-preserve-unknown-fields") is True
    if isinstance(value, dict):
        embedded = root or s.get("x-kubernetes-embedded-resource") is True
        for key in list(value):
            if embedded and key in _META:
                continue
            sub = _field_schema(s, key)
            if sub is not None:
                _prune(sub, value[key], _join(path, key), dropped, False, False)
            elif not keep and s.get("additionalProperties") is not True:
                del value[key]
                dropped.append(_join(path, key))
    elif isinstance(value, list) and not (keep and "items" not in s):
        for i, item in enumerate(value):
            _prune(s.get("items", {}), item, f"{path}[{i}]", dropped, keep, False)


def _embedded_errors(schema: Schema, obj: Any, path: str) -> list[FieldError]:
    errors = []
    for s, value, _, at in _nodes(schema, obj, None, path):
        if not (s.get("x-kubernetes-embedded-resource") and isinstance(value, dict)):
            continue
        for key in ("apiVersion", "kind"):
            if key not in value:
                errors.append(_error(REQUIRED, _join(at, key)))
            elif not isinstance(value[key], str):
                errors.append(_error(INVALID, _join(at, key), value[key], "must be a string"))
            elif not value[key]:
                errors.append(_error(INVALID, _join(at, key), "", "must not be empty"))
    return errors


def _list_errors(schema: Schema, obj: Any, path: str) -> list[FieldError]:
    errors = []
    for s, value, _, at in _nodes(schema, obj, None, path):
        list_type = s.get("x-kubernetes-list-type")
        if not isinstance(value, list) or list_type not in ("set", "map"):
            continue
        keys: list[Any] = value
        if list_type == "map":
            bad = [i for i, x in enumerate(value) if x is not None and not isinstance(x, dict)]
            if bad:
                detail = "must be an object for an array of list-type map"
                errors.append(_error(INVALID, f"{at}[{bad[0]}]", value[bad[0]], detail))
                continue
            names = s.get("x-kubernetes-list-map-keys", ())
            keys = [{k: x[k] for k in names if k in x} for x in (x or {} for x in value)]
        texts = [_json(key) for key in keys]  # kube reports the second occurrence of a value
        duplicates = [i for i, text in enumerate(texts) if texts[:i].count(text) == 1]
        errors += [_error(DUPLICATE, f"{at}[{i}]", keys[i]) for i in duplicates]
    return errors


@functools.lru_cache(maxsize=1024)
def _program(expression: str) -> Runner:
    env = Environment()
    return env.program(env.compile(expression))


def _syntax_error(exc: CELParseError) -> str:
    return f"ERROR: <input>:{exc.line or '?'}:{exc.column or '?'}: Syntax error"


def _cel_value(s: Schema, value: Any) -> Any:
    """``value`` as kube types it for CEL: numbers per schema type, date-time as timestamp."""
    if isinstance(value, dict):
        return {k: _cel_value(_field_schema(s, k) or {}, v) for k, v in value.items()}
    if isinstance(value, list):
        items = s.get("items")
        return [_cel_value(items if isinstance(items, Mapping) else {}, v) for v in value]
    kind, wanted = _KINDS.get(type(value), "object"), s.get("type")
    if kind == "integer" and not _INT64_MIN <= value <= _INT64_MAX:
        return _float(value)  # Go's JSON decoder makes a float64 of what int64 cannot hold
    if wanted == "number" and kind in ("integer", "number"):
        return float(value)
    if wanted == "integer" and kind == "number" and value.is_integer():
        return int(value) if _INT64_MIN <= value <= _INT64_MAX else value
    if wanted == "string" and s.get("format") == "date-time" and kind == "string":
        return _parse_date_time(value) or value
    return value


def _float(value: int) -> float:
    try:
        return float(value)
    except OverflowError:
        return math.inf if value > 0 else -math.inf


def _rule_errors(s: Schema, value: Any, old: Any, path: str) -> list[FieldError]:
    if value is None:  # kube evaluates rules on non-null values only
        return []
    errors = []
    kind = s.get("type", "")
    shown = _OMIT if kind in ("object", "array") else value
    rules = s.get("x-kubernetes-validations", ())
    if old is not None and value == old:
        # Ratcheting (kube-apiserver's CRDValidationRatcheting, on since 1.30): an update
        # keeps no error of a rule without oldSelf on a value it left unchanged, so only
        # transition rules need to run there.
        rules = [rule for rule in rules if _OLD_SELF.search(rule["rule"])]
    if not rules:
        return []
    activation: dict[str, Any] = {"self": json_to_cel(_cel_value(s, value))}
    if old is not None:
        activation["oldSelf"] = json_to_cel(_cel_value(s, old))
    for rule in rules:
        if old is None and _OLD_SELF.search(rule["rule"]):
            continue  # a transition rule needs an old value at the same place
        label = (rule.get("message") or rule["rule"]).strip()
        try:
            result = _program(rule["rule"]).evaluate(activation)
        except CELParseError as exc:
            errors.append(_error(INVALID, path, kind, f"rule compile error: {_syntax_error(exc)}"))
            continue
        except Exception as exc:  # celpy raises CELEvalError and, at times, plain Python errors
            message = str(exc.args[0] if exc.args else exc).split(" (in activation", 1)[0]
            errors.append(_error(INVALID, path, kind, f"{message} evaluating rule: {label}"))
            continue
        if isinstance(result, celtypes.BoolType) and result:
            continue
        detail = _message(rule.get("messageExpression"), activation)
        detail = detail or (label if rule.get("message") else f"failed rule: {label}")
        steps = _FIELD_PATH_STEP.findall(rule.get("fieldPath", ""))  # .a.b or ['a.b']
        at = _join(path, ".".join(a or b.replace("\\'", "'") for a, b in steps)) if steps else path
        reason = rule.get("reason")
        if reason in (FORBIDDEN, REQUIRED):
            errors.append(_error(reason, at, detail=detail))
        elif reason == DUPLICATE:
            errors.append(_error(DUPLICATE, at, shown))
        else:
            errors.append(_error(INVALID, at, shown, detail))
    return errors


def _message(expression: str | None, activation: dict[str, Any]) -> str:
    """The rule's messageExpression result, or "" if absent or unusable (kube falls back)."""
    if not expression:
        return ""
    try:
        result = _program(expression).evaluate(activation)
    except Exception:  # a failed messageExpression falls back to the message, as in kube
        return ""
    text = result.strip() if isinstance(result, str) else ""
    return "" if "\n" in text else text
