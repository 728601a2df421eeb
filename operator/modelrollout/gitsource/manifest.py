"""The model manifest: the small YAML file in git that approves a model version.

Format (also in ``docs/manifest.md``)::

    # models/fraud.yaml
    modelUri: models:/fraud/7        # required: models:/<name>/<version> or models:/<name>@<alias>
    notes: better recall on Q3 data   # optional: free text, at most 2000 characters
    approvedBy: [alice, bob]          # optional: one name or a list of at most 32 names

Rules, each with a message that names the offending key:

- the file is UTF-8, at most :data:`MAX_MANIFEST_BYTES` (64 KiB), one YAML document;
- the document is a mapping with string keys, no key twice, and only the keys above;
- anchors (``&a``), aliases (``*a``) and explicit tags (``!!python/object``, ``!!binary``…)
  are refused before anything is built, so an alias bomb ("billion laughs") costs nothing;
- nesting is at most two collections deep (the mapping and the ``approvedBy`` list).

Pure: no I/O. :func:`parse` returns a :class:`Manifest` or raises
:class:`~modelrollout.gitsource.base.ManifestError`.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from typing import Any

import yaml

from modelrollout.gitsource.base import ManifestError

MAX_MANIFEST_BYTES = 64 * 1024
MAX_URI_CHARS = 512
MAX_NOTES_CHARS = 2000
MAX_APPROVERS = 32
MAX_APPROVER_CHARS = 256
#: The same rule as ``spec.model.uri`` in the CRD.
MODEL_URI = re.compile(r"^models:/[^/@]+(/[0-9]+|@[A-Za-z0-9_-]+)$")

MODEL_URI_KEY = "modelUri"
NOTES_KEY = "notes"
APPROVED_BY_KEY = "approvedBy"
KEYS = (MODEL_URI_KEY, NOTES_KEY, APPROVED_BY_KEY)

_MAX_DEPTH = 2
#: A 64 KiB mapping of short keys has a few thousand events; far more means a hostile file.
_MAX_EVENTS = 20_000

_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when PyYAML has it


@dataclass(frozen=True)
class Manifest:
    model_uri: str
    notes: str | None = None
    approved_by: tuple[str, ...] = ()


def parse(data: bytes | str, max_bytes: int = MAX_MANIFEST_BYTES) -> Manifest:
    """The manifest in ``data``; :class:`ManifestError` says what is wrong and where."""
    raw = data.encode("utf-8") if isinstance(data, str) else data
    if len(raw) > max_bytes:
        raise ManifestError(f"manifest is {len(raw)} bytes, above the limit of {max_bytes}")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ManifestError(f"manifest is not UTF-8 (byte {error.start})") from None
    _check_events(text)
    document = _load(text)
    return _validate(document)


def _check_events(text: str) -> None:
    """Refuse anchors, aliases, tags, deep nesting and extra documents from the event stream.

    This runs before any node is composed, so an alias bomb is refused at its first anchor.
    """
    depth = 0
    documents = 0
    try:
        for count, event in enumerate(yaml.parse(text, Loader=_Loader)):
            if count > _MAX_EVENTS:
                raise ManifestError("manifest has too many YAML elements")
            where = _line(event)
            if isinstance(event, yaml.AliasEvent):
                raise ManifestError(f"YAML aliases are not allowed (alias *{event.anchor}{where})")
            if isinstance(event, yaml.NodeEvent) and event.anchor is not None:
                raise ManifestError(f"YAML anchors are not allowed (&{event.anchor}{where})")
            tag = getattr(event, "tag", None)
            if tag is not None:
                raise ManifestError(f"YAML tags are not allowed ({tag}{where})")
            if isinstance(event, yaml.CollectionStartEvent):
                depth += 1
                if depth > _MAX_DEPTH:
                    raise ManifestError(f"manifest is nested too deeply{where}")
            elif isinstance(event, yaml.CollectionEndEvent):
                depth -= 1
            elif isinstance(event, yaml.DocumentStartEvent):
                documents += 1
                if documents > 1:
                    raise ManifestError(f"manifest must be one YAML document{where}")
    except yaml.YAMLError as error:
        raise ManifestError(f"manifest is not valid YAML: {_yaml_problem(error)}") from None


def _load(text: str) -> Any:
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            raise ManifestError("manifest is empty: it needs at least modelUri")
        if isinstance(node, yaml.MappingNode):
            _refuse_duplicate_keys(node)
        return loader.construct_document(node)
    except yaml.YAMLError as error:
        raise ManifestError(f"manifest is not valid YAML: {_yaml_problem(error)}") from None
    finally:
        loader.dispose()


def _refuse_duplicate_keys(node: yaml.MappingNode) -> None:
    seen: set[str] = set()
    for key, _ in node.value:
        if isinstance(key, yaml.ScalarNode):
            if key.value in seen:
                raise ManifestError(f"key {_show(key.value)} appears twice{_line(key)}")
            seen.add(key.value)


def _validate(document: Any) -> Manifest:
    if not isinstance(document, dict):
        raise ManifestError(
            f"manifest must be a mapping with {MODEL_URI_KEY}, not {_kind(document)}"
        )
    for key in document:
        if not isinstance(key, str):
            raise ManifestError(f"keys must be strings, not {_kind(key)} ({_show(key)})")
        if key not in KEYS:
            hint = difflib.get_close_matches(key, KEYS, n=1)
            suggestion = f"; did you mean {hint[0]}?" if hint else ""
            raise ManifestError(
                f"unknown key {_show(key)} (allowed: {', '.join(KEYS)}){suggestion}"
            )
    if MODEL_URI_KEY not in document:
        raise ManifestError(f"{MODEL_URI_KEY} is required")
    return Manifest(
        model_uri=_model_uri(document[MODEL_URI_KEY]),
        notes=_notes(document.get(NOTES_KEY)),
        approved_by=_approved_by(document.get(APPROVED_BY_KEY)),
    )


def _model_uri(value: Any) -> str:
    if not isinstance(value, str):
        raise ManifestError(f"{MODEL_URI_KEY} must be a string, not {_kind(value)}")
    if len(value) > MAX_URI_CHARS:
        raise ManifestError(f"{MODEL_URI_KEY} is longer than {MAX_URI_CHARS} characters")
    if not MODEL_URI.fullmatch(value):
        raise ManifestError(
            f"{MODEL_URI_KEY} {_show(value)} is not an MLflow registry URI: "
            "use models:/<name>/<version> or models:/<name>@<alias>"
        )
    return value


def _notes(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ManifestError(f"{NOTES_KEY} must be a string, not {_kind(value)}")
    if len(value) > MAX_NOTES_CHARS:
        raise ManifestError(f"{NOTES_KEY} is longer than {MAX_NOTES_CHARS} characters")
    return value


def _approved_by(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    names = [value] if isinstance(value, str) else value
    if not isinstance(names, list):
        raise ManifestError(
            f"{APPROVED_BY_KEY} must be a string or a list of strings, not {_kind(value)}"
        )
    if len(names) > MAX_APPROVERS:
        raise ManifestError(f"{APPROVED_BY_KEY} lists more than {MAX_APPROVERS} names")
    for index, name in enumerate(names):
        where = f"{APPROVED_BY_KEY}[{index}]" if names is value else APPROVED_BY_KEY
        if not isinstance(name, str):
            raise ManifestError(f"{where} must be a string, not {_kind(name)}")
        if not name.strip():
            raise ManifestError(f"{where} is empty")
        if len(name) > MAX_APPROVER_CHARS:
            raise ManifestError(f"{where} is longer than {MAX_APPROVER_CHARS} characters")
    return tuple(names)


def _kind(value: Any) -> str:
    if value is None:
        return "null (empty)"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return f"a {type(value).__name__}"


def _show(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _line(item: Any) -> str:
    mark = getattr(item, "start_mark", None)
    return f" at line {mark.line + 1}" if mark is not None else ""


def _yaml_problem(error: yaml.YAMLError) -> str:
    problem = getattr(error, "problem", None) or "unreadable"
    mark = getattr(error, "problem_mark", None)
    return f"{problem} at line {mark.line + 1}" if mark is not None else str(problem)
