"""The CRDs in ``crds/`` and the typed API in ``modelrollout.api`` agree, and the examples fit both.

Covers:
- field by field (each test id is the field's path, e.g. ``spec.strategy.steps[].setWeight``),
  for ModelRollout spec and status and MetricTemplate spec: every schema property has a
  dataclass field and every field a property; the types agree (enums with the same values);
  ``required`` lists the fields without defaults; spec defaults equal the dataclass defaults
  through ``serde.to_json``, and status carries none;
- the CRDs' structure: names from ``api``, the status subresource, short names, printer
  columns that point at real fields, a description on every property, unknown fields kept
  only under ``spec.target.predictor``, durations checked with ``durations.PATTERN``, bounds
  from the ``api`` constants, and CEL rules that compile;
- every example in ``deploy/examples`` loses nothing to pruning, validates (CEL rules
  included), passes the core's own spec checks and round-trips through serde unchanged once
  schema defaults are applied; its metric templates use only the documented variables;
- specs the API server must refuse, each with the exact field path the error names.
"""

from __future__ import annotations

import copy
import dataclasses
import enum
import json
import re
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from modelrollout import api, durations, schema, serde, steps

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((REPO / "deploy" / "examples").glob("*.yaml"))

#: The dataclass at the root of each CRD subtree, by (CRD, top-level property).
ROOTS: dict[tuple[str, str], type] = {
    ("rollout", "spec"): api.ModelRolloutSpec,
    ("rollout", "status"): api.ModelRolloutStatus,
    ("template", "spec"): api.MetricTemplateSpec,
}

#: Plain ``str`` fields whose values the CRD still restricts, with the values allowed.
STRING_ENUMS: dict[tuple[str, str], set[str]] = {}

#: The only place a user may write fields the schema does not know.
PRESERVE_UNKNOWN = {("rollout", "spec.target.predictor")}

DURATIONS = {
    ("rollout", "spec.model.git.interval"),
    ("rollout", "spec.strategy.analysis.interval"),
    ("rollout", "spec.strategy.analysis.metrics[].interval"),
    ("rollout", "spec.strategy.steps[].pause.duration"),
    ("template", "spec.provider.prometheus.timeout"),
}

BOUNDS = [
    ("spec.strategy.steps[].setWeight", "minimum", 0),
    ("spec.strategy.steps[].setWeight", "maximum", api.MAX_WEIGHT),
    ("status.canaryWeight", "minimum", 0),
    ("status.canaryWeight", "maximum", api.MAX_WEIGHT),
    ("spec.historyLimit", "minimum", 1),
    ("spec.historyLimit", "maximum", api.MAX_HISTORY),
    ("status.history", "maxItems", api.MAX_HISTORY),
    ("status.failedVersions", "maxItems", api.MAX_FAILED_VERSIONS),
    ("spec.progressDeadlineSeconds", "minimum", 1),
    ("spec.strategy.steps[].analysis.count", "minimum", 1),
    ("spec.strategy.analysis.metrics[].failureLimit", "minimum", 0),
    ("spec.strategy.analysis.metrics[].inconclusiveLimit", "minimum", 0),
    ("spec.strategy.analysis.metrics[].consecutiveErrorLimit", "minimum", 0),
    ("status.currentStepIndex", "minimum", 0),
    *(
        (f"status.analysis.metrics[].{name}", "minimum", 0)
        for name in (
            "count",
            "successful",
            "failed",
            "inconclusive",
            "error",
            "consecutiveErrors",
            "stepPasses",
        )
    ),
]

TEMPLATE_VARIABLES = {
    "namespace",
    "inferenceService",
    "canaryRevision",
    "stableRevision",
    "interval",
    "sinceCanaryStart",
}
COUNT_VARIABLE = "revision"
VARIABLE = re.compile(r"\{\{\s*(\w+)\s*\}\}")


# ---------------------------------------------------------------- walking both sides


@dataclasses.dataclass(frozen=True)
class FieldCase:
    crd: str
    path: str
    field: dataclasses.Field[Any]
    type: Any  # with ``| None`` unwrapped


def _nested(tp: Any, path: str) -> Iterator[tuple[Any, str]]:
    """The element types inside ``tp`` and their paths: ``[]`` for items, ``.*`` for map values."""
    origin = typing.get_origin(tp)
    if origin is tuple:
        yield typing.get_args(tp)[0], f"{path}[]"
    elif origin is dict:
        yield typing.get_args(tp)[1], f"{path}.*"
    else:
        yield tp, path


def _collect() -> tuple[list[tuple[str, str, type]], list[FieldCase]]:
    objects: list[tuple[str, str, type]] = []
    fields: list[FieldCase] = []

    def visit(crd: str, cls: type, path: str) -> None:
        objects.append((crd, path, cls))
        for field, hint in serde.fields_of(cls):
            tp, _ = serde.unwrap_optional(hint)
            sub = f"{path}.{serde.json_name(field)}"
            fields.append(FieldCase(crd, sub, field, tp))
            for inner, inner_path in _nested(tp, sub):
                if dataclasses.is_dataclass(inner):
                    visit(crd, typing.cast(type, inner), inner_path)

    for (crd, top), cls in ROOTS.items():
        visit(crd, cls, top)
    return objects, fields


OBJECTS, FIELDS = _collect()


def _node(root: dict[str, Any], path: str) -> dict[str, Any]:
    """The schema at ``path``: ``a.b`` for properties, ``a[]`` for items, ``a.*`` for map values."""
    node = root
    for token in path.split("."):
        if token == "*":
            node = node["additionalProperties"]
            continue
        name, brackets = token.rstrip("[]"), (len(token) - len(token.rstrip("[]"))) // 2
        assert name in node.get("properties", {}), f"the CRD has no {path} (missing {name!r})"
        node = node["properties"][name]
        for _ in range(brackets):
            node = node["items"]
    return node


def _schema_nodes(
    node: dict[str, Any], path: str = ""
) -> Iterator[tuple[str, dict[str, Any], bool]]:
    """Every schema node below ``node``: (path, node, whether it is a named property)."""
    for name, sub in node.get("properties", {}).items():
        at = f"{path}.{name}" if path else name
        yield at, sub, True
        yield from _schema_nodes(sub, at)
    if isinstance(node.get("items"), dict):
        yield f"{path}[]", node["items"], False
        yield from _schema_nodes(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        yield f"{path}.*", node["additionalProperties"], False
        yield from _schema_nodes(node["additionalProperties"], f"{path}.*")


def _canonical(value: Any) -> str:
    """JSON as the API server compares it: 0 and 0.0 alike, True and 1 not."""

    def normal(v: Any) -> Any:
        if isinstance(v, float) and v.is_integer():
            return int(v)
        if isinstance(v, dict):
            return {k: normal(x) for k, x in v.items()}
        if isinstance(v, list):
            return [normal(x) for x in v]
        return v

    return json.dumps(normal(value), sort_keys=True)


def _default_of(field: dataclasses.Field[Any]) -> Any:
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return dataclasses.MISSING


def _has_default(field: dataclasses.Field[Any]) -> bool:
    return _default_of(field) is not dataclasses.MISSING


def _wants_schema_default(case: FieldCase) -> bool:
    """Spec fields whose dataclass default is a value (not ``None``) carry it in the schema."""
    default = _default_of(case.field)
    return not case.path.startswith("status.") and default not in (None, dataclasses.MISSING)


@pytest.fixture(scope="module")
def schemas(rollout_schema: dict[str, Any], template_schema: dict[str, Any]) -> dict[str, Any]:
    return {"rollout": rollout_schema, "template": template_schema}


# ---------------------------------------------------------------- field by field


@pytest.mark.parametrize(
    ("crd", "path", "cls"), OBJECTS, ids=[f"{crd}:{path}" for crd, path, _ in OBJECTS]
)
def test_properties_are_the_dataclass_fields(
    schemas: dict[str, Any], crd: str, path: str, cls: type
) -> None:
    node = _node(schemas[crd], path)
    fields = [f for f, _ in serde.fields_of(cls)]
    assert node.get("type") == "object"
    assert sorted(node.get("properties", {})) == sorted(serde.json_name(f) for f in fields)
    assert "additionalProperties" not in node
    assert not node.get("x-kubernetes-preserve-unknown-fields")


@pytest.mark.parametrize(
    ("crd", "path", "cls"), OBJECTS, ids=[f"{crd}:{path}" for crd, path, _ in OBJECTS]
)
def test_required_are_the_fields_without_defaults(
    schemas: dict[str, Any], crd: str, path: str, cls: type
) -> None:
    node = _node(schemas[crd], path)
    expected = sorted(serde.json_name(f) for f, _ in serde.fields_of(cls) if not _has_default(f))
    assert sorted(node.get("required", [])) == expected


def _check_type(crd: str, node: dict[str, Any], tp: Any, path: str) -> None:
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        assert node.get("type") == "object", path
        assert "properties" in node, path
    elif origin is tuple:
        item, ellipsis = typing.get_args(tp)
        assert ellipsis is Ellipsis, f"{path}: only tuple[X, ...] maps to an array"
        assert node.get("type") == "array", path
        _check_type(crd, node["items"], item, f"{path}[]")
    elif origin is dict:
        key, value = typing.get_args(tp)
        assert key is str, path
        assert node.get("type") == "object", path
        assert "properties" not in node, path
        if value is Any:
            assert node.get("x-kubernetes-preserve-unknown-fields") is True, path
            assert "additionalProperties" not in node, path
        else:
            assert isinstance(node.get("additionalProperties"), dict), path
            assert not node.get("x-kubernetes-preserve-unknown-fields"), path
            _check_type(crd, node["additionalProperties"], value, f"{path}.*")
    elif tp is api.Reason:
        # Reasons are a pattern, not an enum: see api.REASON_PATTERN.
        assert node.get("type") == "string", path
        assert "enum" not in node, path
        assert node.get("pattern") == api.REASON_PATTERN, path
        assert all(re.fullmatch(api.REASON_PATTERN, r.value) for r in api.Reason)
    elif isinstance(tp, type) and issubclass(tp, enum.Enum):
        assert node.get("type") == "string", path
        assert "enum" in node, f"{path}: {tp.__name__} needs an enum in the CRD"
        assert sorted(node["enum"]) == sorted(member.value for member in tp)
        assert len(node["enum"]) == len(set(node["enum"])), f"{path}: duplicate enum values"
    elif tp is str:
        assert node.get("type") == "string", path
        assert set(node.get("enum", [])) == STRING_ENUMS.get((crd, path), set()), path
    elif tp is bool:
        assert node.get("type") == "boolean", path
    elif tp is int:
        assert node.get("type") == "integer", path
    elif tp is float:
        assert node.get("type") == "number", path
    else:
        pytest.fail(f"{path}: no schema type for {tp!r}")


@pytest.mark.parametrize("case", FIELDS, ids=[f"{c.crd}:{c.path}" for c in FIELDS])
def test_field_type_matches(schemas: dict[str, Any], case: FieldCase) -> None:
    _check_type(case.crd, _node(schemas[case.crd], case.path), case.type, case.path)


@pytest.mark.parametrize("case", FIELDS, ids=[f"{c.crd}:{c.path}" for c in FIELDS])
def test_default_matches(schemas: dict[str, Any], case: FieldCase) -> None:
    node = _node(schemas[case.crd], case.path)
    default = _default_of(case.field)
    if not _wants_schema_default(case):
        assert "default" not in node, f"{case.path} must have no schema default"
        return
    assert "default" in node, f"{case.path} needs the default {serde.to_json(default)!r}"
    assert _canonical(node["default"]) == _canonical(serde.to_json(default))


def test_every_string_enum_exception_is_a_plain_string_field() -> None:
    plain = {(c.crd, c.path) for c in FIELDS if c.type is str}
    assert set(STRING_ENUMS) <= plain


@pytest.mark.parametrize("crd", ["rollout", "template"])
def test_defaults_appear_only_on_dataclass_fields(schemas: dict[str, Any], crd: str) -> None:
    with_default = {path for path, node, _ in _schema_nodes(schemas[crd]) if "default" in node}
    expected = {c.path for c in FIELDS if c.crd == crd and _wants_schema_default(c)}
    assert with_default == expected


# ---------------------------------------------------------------- CRD structure


@pytest.mark.parametrize(
    ("crd", "kind", "plural", "short_names", "categories"),
    [
        ("rollout", api.ROLLOUT_KIND, api.ROLLOUT_PLURAL, ["mro"], {"modelrollout", "all"}),
        ("template", api.TEMPLATE_KIND, api.TEMPLATE_PLURAL, ["mrt"], {"modelrollout"}),
    ],
)
def test_names_and_version(
    rollout_crd: dict[str, Any],
    template_crd: dict[str, Any],
    crd: str,
    kind: str,
    plural: str,
    short_names: list[str],
    categories: set[str],
) -> None:
    definition = {"rollout": rollout_crd, "template": template_crd}[crd]
    spec = definition["spec"]
    assert definition["apiVersion"] == "apiextensions.k8s.io/v1"
    assert definition["metadata"]["name"] == f"{plural}.{api.GROUP}"
    assert (REPO / "crds" / f"{plural}.{api.GROUP}.yaml").is_file()
    assert spec["group"] == api.GROUP
    assert spec["scope"] == "Namespaced"
    assert spec["names"] == {
        "kind": kind,
        "listKind": f"{kind}List",
        "plural": plural,
        "singular": kind.lower(),
        "shortNames": short_names,
        "categories": spec["names"]["categories"],
    }
    assert set(spec["names"]["categories"]) == categories
    assert [(v["name"], v["served"], v["storage"]) for v in spec["versions"]] == [
        (api.VERSION, True, True)
    ]


def test_rollout_has_the_status_subresource(
    rollout_crd: dict[str, Any], rollout_schema: dict[str, Any]
) -> None:
    (version,) = rollout_crd["spec"]["versions"]
    assert version["subresources"] == {"status": {}}
    assert "status" in rollout_schema["properties"]
    assert rollout_schema["required"] == ["spec"]


def test_template_has_no_status(
    template_crd: dict[str, Any], template_schema: dict[str, Any]
) -> None:
    (version,) = template_crd["spec"]["versions"]
    assert "subresources" not in version
    assert "status" not in template_schema["properties"]
    assert template_schema["required"] == ["spec"]


def _column_field(json_path: str) -> str:
    """``.status.conditions[?(@.type=="Ready")].status`` -> ``status.conditions[].status``."""
    return re.sub(r"\[\?\(.*?\)\]", "[]", json_path).lstrip(".")


@pytest.mark.parametrize(
    ("crd", "columns"),
    [
        ("rollout", ["Phase", "Weight", "Stable", "Canary", "Ready", "Age"]),
        ("template", ["Address", "Age"]),
    ],
)
def test_printer_columns(
    rollout_crd: dict[str, Any],
    template_crd: dict[str, Any],
    schemas: dict[str, Any],
    crd: str,
    columns: list[str],
) -> None:
    definition = {"rollout": rollout_crd, "template": template_crd}[crd]
    (version,) = definition["spec"]["versions"]
    printed = version["additionalPrinterColumns"]
    assert [c["name"] for c in printed if c.get("priority", 0) == 0] == columns
    for column in printed:
        if column["type"] == "date":
            assert column["jsonPath"] == ".metadata.creationTimestamp"
            continue
        node = _node(schemas[crd], _column_field(column["jsonPath"]))
        assert node["type"] == column["type"], column["name"]


def test_ready_column_reads_the_ready_condition(rollout_crd: dict[str, Any]) -> None:
    (version,) = rollout_crd["spec"]["versions"]
    (ready,) = [c for c in version["additionalPrinterColumns"] if c["name"] == "Ready"]
    assert ready["jsonPath"] == (
        f'.status.conditions[?(@.type=="{api.ConditionType.READY}")].status'
    )


@pytest.mark.parametrize("crd", ["rollout", "template"])
def test_every_property_has_a_description(schemas: dict[str, Any], crd: str) -> None:
    root = schemas[crd]
    missing = [
        path
        for path, node, named in _schema_nodes(root)
        if named and path != "metadata" and not str(node.get("description", "")).strip()
    ]
    assert missing == []
    assert root["description"].strip()


@pytest.mark.parametrize("crd", ["rollout", "template"])
def test_structural_every_node_typed_unknown_fields_only_in_the_predictor(
    schemas: dict[str, Any], crd: str
) -> None:
    nodes = list(_schema_nodes(schemas[crd]))
    assert [path for path, node, _ in nodes if "type" not in node] == []
    preserved = {
        (crd, path) for path, node, _ in nodes if node.get("x-kubernetes-preserve-unknown-fields")
    }
    assert preserved == {p for p in PRESERVE_UNKNOWN if p[0] == crd}


@pytest.mark.parametrize(("crd", "path"), sorted(DURATIONS), ids=[p for _, p in sorted(DURATIONS)])
def test_durations_use_the_pattern_the_operator_parses(
    schemas: dict[str, Any], crd: str, path: str
) -> None:
    node = _node(schemas[crd], path)
    assert node["type"] == "string"
    assert node["pattern"] == durations.PATTERN
    if "default" in node:
        assert durations.parse(node["default"]) > 0


@pytest.mark.parametrize("crd", ["rollout", "template"])
def test_no_other_field_has_a_pattern(schemas: dict[str, Any], crd: str) -> None:
    patterned = {(crd, path) for path, node, _ in _schema_nodes(schemas[crd]) if "pattern" in node}
    reasons = {(c.crd, c.path) for c in FIELDS if c.type is api.Reason}
    assert patterned == {d for d in DURATIONS if d[0] == crd} | {r for r in reasons if r[0] == crd}


@pytest.mark.parametrize(
    ("path", "keyword", "value"), BOUNDS, ids=[f"{p} {k}" for p, k, _ in BOUNDS]
)
def test_bounds(rollout_schema: dict[str, Any], path: str, keyword: str, value: int) -> None:
    assert _node(rollout_schema, path)[keyword] == value


def test_conditions_are_a_map_keyed_by_type(rollout_schema: dict[str, Any]) -> None:
    node = _node(rollout_schema, "status.conditions")
    assert node["x-kubernetes-list-type"] == "map"
    assert node["x-kubernetes-list-map-keys"] == ["type"]
    assert "type" in node["items"]["required"]


@pytest.mark.parametrize("crd", ["rollout", "template"])
def test_cel_rules_compile(schemas: dict[str, Any], crd: str) -> None:
    assert schema.compile_rules(schemas[crd], "openAPIV3Schema") == []


# ---------------------------------------------------------------- examples


def _documents(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as stream:
        return [doc for doc in yaml.safe_load_all(stream) if doc is not None]


def _admit(root: dict[str, Any], obj: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """What the API server stores for ``obj`` (pruned, defaulted), and what it pruned."""
    pruned, dropped = schema.prune(root, obj)
    return schema.apply_defaults(root, pruned), dropped


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_fits_the_crd_and_round_trips(schemas: dict[str, Any], path: Path) -> None:
    kinds = {api.ROLLOUT_KIND: ("rollout", api.ModelRolloutSpec)}
    kinds[api.TEMPLATE_KIND] = ("template", api.MetricTemplateSpec)
    documents = _documents(path)
    assert documents
    for obj in documents:
        assert obj["apiVersion"] == api.API_VERSION
        assert obj["metadata"]["namespace"] == "models"
        crd, cls = kinds[obj["kind"]]
        stored, dropped = _admit(schemas[crd], obj)
        assert dropped == []
        assert schema.validate(schemas[crd], stored) == []
        typed = serde.from_json(cls, stored["spec"], "spec")
        assert serde.to_json(typed) == stored["spec"]
        if isinstance(typed, api.ModelRolloutSpec):
            assert steps.problems(typed) == []


def _examples_of(kind: str) -> list[dict[str, Any]]:
    return [doc for path in EXAMPLES for doc in _documents(path) if doc["kind"] == kind]


def test_example_rollouts_refer_to_example_templates() -> None:
    templates = {doc["metadata"]["name"] for doc in _examples_of(api.TEMPLATE_KIND)}
    referred = {
        metric["templateRef"]["name"]
        for doc in _examples_of(api.ROLLOUT_KIND)
        for metric in doc["spec"].get("strategy", {}).get("analysis", {}).get("metrics", [])
        if "templateRef" in metric
    }
    assert referred
    assert referred <= templates


def test_examples_cover_both_sources_and_both_routers() -> None:
    rollouts = _examples_of(api.ROLLOUT_KIND)
    assert {next(iter(r["spec"]["model"])) for r in rollouts} == {"uri", "git"}
    assert {r["spec"]["target"].get("router", api.Router.KSERVE_SERVERLESS) for r in rollouts} == {
        router.value for router in api.Router
    }


@pytest.mark.parametrize(
    "path",
    [p for p in EXAMPLES if p.name.startswith("metrictemplate-")],
    ids=lambda p: p.name,
)
def test_example_template_variables_are_documented(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    header = text.split("\napiVersion:", 1)[0]
    for name in (*TEMPLATE_VARIABLES, COUNT_VARIABLE):
        assert f"{{{{ {name} }}}}" in header, f"{path.name} does not document {{{{ {name} }}}}"
    (doc,) = _documents(path)
    spec = doc["spec"]
    if "query" in spec:
        assert set(VARIABLE.findall(spec["query"])) <= TEMPLATE_VARIABLES
    for query in spec.get("counts", {}).values():
        used = set(VARIABLE.findall(query))
        assert COUNT_VARIABLE in used
        assert used <= TEMPLATE_VARIABLES - {"canaryRevision", "stableRevision"} | {COUNT_VARIABLE}


# ---------------------------------------------------------------- what the API server refuses

DELETE = object()
NOT_CHECKED = "were not checked"


def _valid_rollout() -> dict[str, Any]:
    return {
        "apiVersion": api.API_VERSION,
        "kind": api.ROLLOUT_KIND,
        "metadata": {"name": "fraud", "namespace": "models"},
        "spec": {
            "model": {"uri": "models:/fraud/7"},
            "target": {"inferenceService": "fraud"},
            "strategy": {
                "steps": [
                    {"setWeight": 10},
                    {"pause": {"duration": "1m"}},
                    {"analysis": {"metrics": ["success-rate"]}},
                ],
                "analysis": {
                    "metrics": [
                        {
                            "name": "success-rate",
                            "templateRef": {"name": "success-rate"},
                            "thresholdRange": {"min": 0.99},
                        }
                    ]
                },
            },
        },
    }


def _valid_template() -> dict[str, Any]:
    return {
        "apiVersion": api.API_VERSION,
        "kind": api.TEMPLATE_KIND,
        "metadata": {"name": "success-rate", "namespace": "models"},
        "spec": {
            "provider": {"prometheus": {"address": "http://prometheus:9090"}},
            "query": "vector(1)",
        },
    }


def _changed(obj: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """``obj`` with ``changes`` (dotted paths below ``spec``); an index past the end appends."""
    result = copy.deepcopy(obj)
    for dotted, value in changes.items():
        *parents, last = dotted.split(".")
        target: Any = result["spec"]
        for key in parents:
            target = target[int(key)] if isinstance(target, list) else target.setdefault(key, {})
        if isinstance(target, list):
            if int(last) == len(target):
                target.append(value)
            else:
                target[int(last)] = value
        elif value is DELETE:
            del target[last]
        else:
            target[last] = value
    return result


def _error_paths(root: dict[str, Any], obj: dict[str, Any]) -> list[tuple[str, str]]:
    stored, dropped = _admit(root, obj)
    assert dropped == []
    errors = schema.validate(root, stored)
    return [(e.path, e.message) for e in errors if NOT_CHECKED not in e.message]


def test_the_valid_bases_are_accepted(schemas: dict[str, Any]) -> None:
    assert _error_paths(schemas["rollout"], _valid_rollout()) == []
    assert _error_paths(schemas["template"], _valid_template()) == []


GIT = {"repository": "https://git.example.com/ml/releases.git", "path": "models/fraud.yaml"}
METRIC = {"name": "success-rate", "templateRef": {"name": "t"}, "thresholdRange": {"min": 0.9}}

REFUSED_ROLLOUTS = [
    pytest.param(
        {"strategy.steps.0.setWeight": 150},
        "spec.strategy.steps[0].setWeight",
        "less than or equal to 100",
        id="setWeight 150",
    ),
    pytest.param(
        {"strategy.steps.0.setWeight": -1},
        "spec.strategy.steps[0].setWeight",
        "greater than or equal to 0",
        id="setWeight -1",
    ),
    pytest.param(
        {"model.git": GIT},
        "spec.model",
        "set exactly one of uri and git",
        id="both uri and git",
    ),
    pytest.param(
        {"model.uri": DELETE},
        "spec.model",
        "set exactly one of uri and git",
        id="neither uri nor git",
    ),
    pytest.param(
        {"model.uri": "s3://models/fraud/7"},
        "spec.model.uri",
        "must be an MLflow registry URI",
        id="uri not models:/",
    ),
    pytest.param(
        {"model.uri": DELETE, "model.git": {**GIT, "path": "models/../secrets.yaml"}},
        "spec.model.git.path",
        "must not contain .. segments",
        id="git path with ..",
    ),
    pytest.param(
        {"model.uri": DELETE, "model.git": {**GIT, "path": "/etc/fraud.yaml"}},
        "spec.model.git.path",
        "must be relative",
        id="git path absolute",
    ),
    pytest.param(
        {"model.uri": DELETE, "model.git": {**GIT, "interval": "0s"}},
        "spec.model.git.interval",
        "must be longer than zero",
        id="git interval zero",
    ),
    pytest.param(
        {"strategy.steps.0.pause": {}},
        "spec.strategy.steps[0]",
        "set exactly one of setWeight, pause and analysis",
        id="step with setWeight and pause",
    ),
    pytest.param(
        {"strategy.steps.0": {}},
        "spec.strategy.steps[0]",
        "set exactly one of setWeight, pause and analysis",
        id="empty step",
    ),
    pytest.param(
        {"strategy.steps.1.pause.duration": "5 minutes"},
        "spec.strategy.steps[1].pause.duration",
        "should match",
        id="duration 5 minutes",
    ),
    pytest.param(
        {"strategy.steps.2.analysis.count": 0},
        "spec.strategy.steps[2].analysis.count",
        "greater than or equal to 1",
        id="analysis count 0",
    ),
    pytest.param(
        {"strategy.steps.2.analysis.metrics": ["no-such-metric"]},
        "spec.strategy.steps",
        "names a metric that is not in spec.strategy.analysis.metrics",
        id="analysis step names an unknown metric",
    ),
    pytest.param(
        {"strategy.analysis": DELETE, "strategy.steps.2.analysis.metrics": []},
        "spec.strategy.steps",
        "an analysis step needs metrics",
        id="analysis step without metrics",
    ),
    pytest.param(
        {"strategy.analysis.metrics.0.thresholdRange": {"min": 2, "max": 1}},
        "spec.strategy.analysis.metrics[0].thresholdRange",
        "min must not be greater than max",
        id="thresholdRange min above max",
    ),
    pytest.param(
        {"strategy.analysis.metrics.0.thresholdRange": {}},
        "spec.strategy.analysis.metrics[0].thresholdRange",
        "set min, max or both",
        id="thresholdRange empty",
    ),
    pytest.param(
        {"strategy.analysis.metrics.0.thresholdRange": DELETE},
        "spec.strategy.analysis.metrics[0]",
        "the threshold judge needs a thresholdRange",
        id="threshold judge without a range",
    ),
    pytest.param(
        {"strategy.analysis.metrics.0.query": "vector(1)"},
        "spec.strategy.analysis.metrics[0]",
        "set exactly one of templateRef and query",
        id="metric with templateRef and query",
    ),
    pytest.param(
        {"strategy.analysis.metrics.0.templateRef": DELETE},
        "spec.strategy.analysis.metrics[0]",
        "set exactly one of templateRef and query",
        id="metric with neither templateRef nor query",
    ),
    pytest.param(
        {"strategy.analysis.metrics.1": METRIC},
        "spec.strategy.analysis.metrics",
        "metric names must be unique",
        id="duplicate metric names",
    ),
    pytest.param(
        {"strategy.analysis.metrics.0.failureLimit": -1},
        "spec.strategy.analysis.metrics[0].failureLimit",
        "greater than or equal to 0",
        id="failureLimit -1",
    ),
    pytest.param(
        {"strategy.analysis.interval": "0ms"},
        "spec.strategy.analysis.interval",
        "must be longer than zero",
        id="analysis interval zero",
    ),
    pytest.param(
        {"target.router": "istio"},
        "spec.target.router",
        'supported values: "kserve-serverless", "kserve-raw"',
        id="router istio",
    ),
    pytest.param(
        {"target.inferenceService": DELETE},
        "spec.target.inferenceService",
        "Required value",
        id="no inferenceService",
    ),
    pytest.param(
        {"historyLimit": 101},
        "spec.historyLimit",
        "less than or equal to 100",
        id="historyLimit 101",
    ),
    pytest.param(
        {"progressDeadlineSeconds": 0},
        "spec.progressDeadlineSeconds",
        "greater than or equal to 1",
        id="progressDeadlineSeconds 0",
    ),
    pytest.param(
        {"registry": {"gates": {"holdout": [{"metric": "rmse", "direction": "down"}]}}},
        "spec.registry.gates.holdout[0].direction",
        "supported values",
        id="holdout direction",
    ),
]


@pytest.mark.parametrize(("changes", "path", "says"), REFUSED_ROLLOUTS)
def test_rollout_refused(
    rollout_schema: dict[str, Any], changes: dict[str, Any], path: str, says: str
) -> None:
    errors = _error_paths(rollout_schema, _changed(_valid_rollout(), changes))
    assert [p for p, _ in errors] == [path], errors
    assert says in errors[0][1]


REFUSED_TEMPLATES = [
    pytest.param(
        {"query": DELETE}, "spec", "set query, counts or both", id="neither query nor counts"
    ),
    pytest.param(
        {"counts": {"total": "vector(1)"}},
        "spec.counts",
        "set total and bad together",
        id="counts total without bad",
    ),
    pytest.param(
        {"provider.prometheus.address": "prometheus:9090"},
        "spec.provider.prometheus.address",
        "must be an http:// or https:// URL",
        id="address without scheme",
    ),
    pytest.param(
        {"provider.prometheus.timeout": "10 seconds"},
        "spec.provider.prometheus.timeout",
        "should match",
        id="timeout 10 seconds",
    ),
]


@pytest.mark.parametrize(("changes", "path", "says"), REFUSED_TEMPLATES)
def test_template_refused(
    template_schema: dict[str, Any], changes: dict[str, Any], path: str, says: str
) -> None:
    errors = _error_paths(template_schema, _changed(_valid_template(), changes))
    assert [p for p, _ in errors] == [path], errors
    assert any(says in message for _, message in errors), errors


def test_unknown_spec_fields_are_pruned_but_predictor_fields_kept(
    rollout_schema: dict[str, Any],
) -> None:
    predictor = {"model": {"modelFormat": {"name": "sklearn"}}, "minReplicas": 2}
    obj = _changed(
        _valid_rollout(),
        {
            "canaryWeight": 30,
            "strategy.steps.0.weight": 5,
            "target.predictor": predictor,
        },
    )
    stored, dropped = _admit(rollout_schema, obj)
    assert dropped == ["spec.canaryWeight", "spec.strategy.steps[0].weight"]
    assert stored["spec"]["target"]["predictor"] == predictor
    assert schema.validate(rollout_schema, stored) == []


def test_spec_defaults_are_the_dataclass_defaults_end_to_end(
    rollout_schema: dict[str, Any],
) -> None:
    """A minimal rollout, defaulted by the schema, reads back as the dataclass defaults."""
    obj = _changed(_valid_rollout(), {"strategy": DELETE})
    stored, _ = _admit(rollout_schema, obj)
    spec = serde.from_json(api.ModelRolloutSpec, stored["spec"], "spec")
    assert spec == api.ModelRolloutSpec(
        model=api.ModelSource(uri="models:/fraud/7"),
        target=api.TargetSpec(inference_service="fraud"),
    )
    assert serde.to_json(spec) == stored["spec"]
