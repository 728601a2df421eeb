"""The PATCH flavours: JSON merge patch (RFC 7386), JSON patch (RFC 6902) and a strategic-ish merge.

kube-apiserver answers an unusable patch document with 400 and a patch that does not apply
(a failed ``test``, a missing path) with 422; :class:`PatchError` carries which.
"""

from __future__ import annotations

import copy
from typing import Any

JSON = dict[str, Any]
_DIRECTIVE_PREFIXES = ("$setElementOrder/", "$deleteFromPrimitiveList/", "$retainKeys")


class PatchError(ValueError):
    """``malformed``: the document itself is wrong (400); otherwise it does not apply (422)."""

    def __init__(self, message: str, *, malformed: bool = False) -> None:
        super().__init__(message)
        self.malformed = malformed


def strategic_merge_patch(target: Any, patch: Any) -> Any:
    """A merge patch that understands the ``$patch`` and bookkeeping directives kubectl sends.

    Lists are replaced whole (no merge keys): what a strategic merge does for lists without a
    patch strategy, and close enough for the built-in kinds this server keeps.
    """
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    directive = patch.get("$patch")
    if directive == "replace":
        return {k: copy.deepcopy(v) for k, v in patch.items() if k != "$patch"}
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if key == "$patch" or key.startswith(_DIRECTIVE_PREFIXES):
            continue
        if value is None or (isinstance(value, dict) and value.get("$patch") == "delete"):
            result.pop(key, None)
        else:
            result[key] = strategic_merge_patch(result.get(key), value)
    return result


def _pointer(path: Any) -> list[str]:
    if not isinstance(path, str) or (path and not path.startswith("/")):
        raise PatchError(f"invalid JSON pointer {path!r}", malformed=True)
    return [p.replace("~1", "/").replace("~0", "~") for p in path.split("/")[1:]]


def _parent(doc: Any, tokens: list[str], path: str, operation: str) -> tuple[Any, str]:
    node = doc
    for token in tokens[:-1]:
        if isinstance(node, dict) and token in node:
            node = node[token]
        elif isinstance(node, list) and token.isdigit() and int(token) < len(node):
            node = node[int(token)]
        else:
            raise PatchError(f"{operation} operation does not apply: doc is missing path: {path}")
    return node, tokens[-1]


def _get(doc: Any, path: str, operation: str) -> Any:
    tokens = _pointer(path)
    if not tokens:
        return doc
    parent, last = _parent(doc, tokens, path, operation)
    if isinstance(parent, dict) and last in parent:
        return parent[last]
    if isinstance(parent, list) and last.isdigit() and int(last) < len(parent):
        return parent[int(last)]
    raise PatchError(f"{operation} operation does not apply: doc is missing path: {path}")


def _remove(doc: Any, path: str, operation: str) -> Any:
    tokens = _pointer(path)
    if not tokens:
        raise PatchError(f"{operation} operation does not apply: cannot remove the root")
    parent, last = _parent(doc, tokens, path, operation)
    if isinstance(parent, dict) and last in parent:
        return parent.pop(last)
    if isinstance(parent, list) and last.isdigit() and int(last) < len(parent):
        return parent.pop(int(last))
    raise PatchError(f"{operation} operation does not apply: doc is missing path: {path}")


def _add(doc: Any, path: str, value: Any, operation: str, *, replace: bool = False) -> Any:
    tokens = _pointer(path)
    if not tokens:
        return copy.deepcopy(value)
    parent, last = _parent(doc, tokens, path, operation)
    if isinstance(parent, dict):
        if replace and last not in parent:
            raise PatchError(f"{operation} operation does not apply: doc is missing key: {path}")
        parent[last] = copy.deepcopy(value)
    elif isinstance(parent, list):
        if last == "-" and not replace:
            parent.append(copy.deepcopy(value))
            return doc
        if not last.isdigit() or int(last) > len(parent) - (1 if replace else 0):
            raise PatchError(f"{operation} operation does not apply: index out of range: {path}")
        if replace:
            parent[int(last)] = copy.deepcopy(value)
        else:
            parent.insert(int(last), copy.deepcopy(value))
    else:
        raise PatchError(f"{operation} operation does not apply: doc is missing path: {path}")
    return doc


def json_patch(target: Any, operations: Any) -> Any:
    """RFC 6902 on a copy of ``target``: add, remove, replace, move, copy and test."""
    if not isinstance(operations, list):
        raise PatchError(
            "json: cannot unmarshal object into Go value of type jsonpatch.Patch", malformed=True
        )
    doc = copy.deepcopy(target)
    for operation in operations:
        if not isinstance(operation, dict) or "op" not in operation:
            raise PatchError("unexpected kind of operation: missing op", malformed=True)
        op, path = operation["op"], operation.get("path")
        if path is None:
            raise PatchError(f"{op} operation: missing path", malformed=True)
        if op in ("add", "replace", "test") and "value" not in operation:
            raise PatchError(f"{op} operation: missing value", malformed=True)
        if op == "add":
            doc = _add(doc, path, operation["value"], op)
        elif op == "remove":
            _remove(doc, path, op)
        elif op == "replace":
            doc = _add(doc, path, operation["value"], op, replace=True)
        elif op in ("move", "copy"):
            source = operation.get("from")
            if source is None:
                raise PatchError(f"{op} operation: missing from", malformed=True)
            value = (
                _remove(doc, source, op) if op == "move" else copy.deepcopy(_get(doc, source, op))
            )
            doc = _add(doc, path, value, op)
        elif op == "test":
            if _get(doc, path, op) != operation["value"]:
                raise PatchError(f"testing value {path} failed: test failed")
        else:
            raise PatchError(f"Unexpected kind: {op}", malformed=True)
    return doc
