"""Frozen dataclasses to and from the JSON that Kubernetes stores.

Field names map to camelCase unless a field sets ``metadata={"json": ...}``.
Reading is strict: an unknown key or a wrong type raises :class:`SpecError`
with the path of the offending field, so bad input is named, never dropped.
"""

from __future__ import annotations

import copy
import dataclasses
import enum
import types
import typing
from collections.abc import Mapping, Sequence
from functools import cache
from typing import Any, TypeVar, cast

T = TypeVar("T")


class SpecError(ValueError):
    """A value that does not fit the typed API, with the field path."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path or '<root>'}: {message}")
        self.path = path
        self.detail = message


def camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def json_name(field: dataclasses.Field[Any]) -> str:
    return str(field.metadata.get("json", camel(field.name)))


@cache
def type_hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def fields_of(cls: type) -> list[tuple[dataclasses.Field[Any], Any]]:
    """(field, resolved type) for each field of a dataclass."""
    hints = type_hints(cls)
    return [(f, hints[f.name]) for f in dataclasses.fields(cls)]


def unwrap_optional(tp: Any) -> tuple[Any, bool]:
    """``X | None`` -> (X, True); anything else -> (tp, False)."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(tp)) == 2:
            return args[0], True
    return tp, False


@cache
def _json_names(cls: type) -> tuple[tuple[str, str], ...]:
    """(attribute, JSON key) for each field of a dataclass."""
    return tuple((f.name, json_name(f)) for f in dataclasses.fields(cls))


@cache
def _known(cls: type) -> dict[str, tuple[dataclasses.Field[Any], Any]]:
    """JSON key -> (field, resolved type) for each field of a dataclass."""
    return {json_name(f): (f, tp) for f, tp in fields_of(cls)}


@cache
def _shape(tp: Any) -> tuple[Any, bool, Any, bool]:
    """What ``_read`` needs to know of a type: (inner type, optional, origin, dataclass).

    Reading the status runs once a pass for every rollout: the typing introspection is done
    once per type instead.
    """
    inner, optional = unwrap_optional(tp)
    return inner, optional, typing.get_origin(inner), dataclasses.is_dataclass(inner)


def to_json(value: Any) -> Any:
    """Dataclass tree -> plain JSON; ``None`` fields are left out."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        out: dict[str, Any] = {}
        for name, key in _json_names(type(value)):
            item = getattr(value, name)
            if item is not None:
                out[key] = to_json(item)
        return out
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, list | tuple):
        return [to_json(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): to_json(v) for k, v in value.items()}
    return value


def from_json(cls: type[T], data: Any, path: str = "") -> T:
    """Plain JSON -> dataclass ``cls``, strictly."""
    return cast(T, _read(cls, data, path))


def _read(tp: Any, data: Any, path: str) -> Any:
    tp, optional, origin, is_dataclass = _shape(tp)
    if data is None:
        if optional or tp is Any:
            return None
        raise SpecError(path, "a value is required")
    if tp is Any:
        return data
    if is_dataclass:
        return _read_dataclass(cast(type, tp), data, path)
    if origin is tuple:
        item_type = typing.get_args(tp)[0]
        if not isinstance(data, list | tuple):
            raise SpecError(path, f"must be a list, not {type(data).__name__}")
        return tuple(_read(item_type, v, f"{path}[{i}]") for i, v in enumerate(data))
    if origin in (dict, Mapping):
        value_type = typing.get_args(tp)[1]
        if not isinstance(data, Mapping):
            raise SpecError(path, f"must be an object, not {type(data).__name__}")
        return {str(k): _read(value_type, v, f"{path}.{k}") for k, v in data.items()}
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        try:
            return tp(data)
        except ValueError:
            allowed = ", ".join(repr(m.value) for m in tp)
            raise SpecError(path, f"unsupported value {data!r}; one of {allowed}") from None
    return _read_scalar(tp, data, path)


def _read_scalar(tp: Any, data: Any, path: str) -> Any:
    if tp is bool:
        if isinstance(data, bool):
            return data
    elif tp is int:
        if isinstance(data, int) and not isinstance(data, bool):
            return data
        if isinstance(data, float) and data.is_integer():
            return int(data)
    elif tp is float:
        if isinstance(data, int | float) and not isinstance(data, bool):
            return float(data)
    elif tp is str:
        if isinstance(data, str):
            return data
    else:
        raise TypeError(f"serde cannot read type {tp!r}")
    raise SpecError(path, f"must be of type {tp.__name__}, not {type(data).__name__}")


def _read_dataclass(cls: type, data: Any, path: str) -> Any:
    if not isinstance(data, Mapping):
        raise SpecError(path, f"must be an object, not {type(data).__name__}")
    known = _known(cls)
    unknown = sorted(set(data) - set(known))
    if unknown:
        where = f"{path}." if path else ""
        raise SpecError(f"{where}{unknown[0]}", "unknown field")
    kwargs: dict[str, Any] = {}
    for key, (field, tp) in known.items():
        sub = f"{path}.{key}" if path else key
        if key in data:
            kwargs[field.name] = _read(tp, data[key], sub)
        elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            raise SpecError(sub, "a value is required")
    return cls(**kwargs)


def merge_patch(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON merge patch (RFC 7386) that turns ``old`` into ``new``.

    Keys gone from ``new`` become ``None`` (delete); objects recurse; anything
    else, lists included, is replaced whole when it differs.
    """
    patch: dict[str, Any] = {key: None for key in old if key not in new}
    for key, value in new.items():
        before = old.get(key)
        if isinstance(value, Mapping) and isinstance(before, Mapping):
            nested = merge_patch(before, value)
            if nested:
                patch[key] = nested
        elif key not in old or before != value:
            patch[key] = copy.deepcopy(value)
    return patch


def merge_patch_from(bases: Sequence[Mapping[str, Any]], new: Mapping[str, Any]) -> dict[str, Any]:
    """One merge patch that turns every one of ``bases`` into ``new``.

    For a write whose base is one of a few known states (what a handler was
    given, or what the previous pass wrote): the union of the patches is right
    for each base, since whatever one patch leaves out already equals ``new``.
    """
    out: dict[str, Any] = {}
    for base in bases:
        _lay_over(out, merge_patch(base, new))
    return out


def _lay_over(into: dict[str, Any], patch: Mapping[str, Any]) -> None:
    """``patch`` laid over ``into`` in place, maps merged: both are fresh from
    :func:`merge_patch`, so nothing is copied (the deep copies cost a fifth of a pass)."""
    for key, value in patch.items():
        below = into.get(key)
        if isinstance(value, Mapping) and isinstance(below, dict):
            _lay_over(below, value)
        else:
            into[key] = value


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``base`` with ``override`` laid over it; maps merge, anything else replaces."""
    merged = copy.deepcopy(dict(base))
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def apply_merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch, as the API server applies ``application/merge-patch+json``."""
    if not isinstance(patch, Mapping):
        return copy.deepcopy(patch)
    result = copy.deepcopy(dict(target)) if isinstance(target, Mapping) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = apply_merge_patch(result.get(key), value)
    return result
