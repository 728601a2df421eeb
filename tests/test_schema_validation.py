"""Tests for modelrollout.schema: kube-apiserver's structural-schema semantics, offline.

Covers validate() (each supported OpenAPI keyword passing and failing, int-or-string,
embedded resources, list-type set/map duplicates, CEL rules: has(), all(), exists_one(),
custom message, messageExpression, fieldPath, reason, transition rules with oldSelf, the
"blocking" errors that stop CEL), compile_rules(), apply_defaults() (nested, arrays, maps,
nulls, never overriding values or creating absent parents) and prune() (unknown fields dropped
and reported, preserve-unknown-fields, embedded resources, apiVersion/kind/metadata at the
root). Expected paths, cause types and messages are kube-apiserver's.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from modelrollout.schema import FieldError, apply_defaults, compile_rules, prune, validate

REQUIRED = "FieldValueRequired"
INVALID = "FieldValueInvalid"
TYPE_INVALID = "FieldValueTypeInvalid"
NOT_SUPPORTED = "FieldValueNotSupported"
FORBIDDEN = "FieldValueForbidden"
TOO_LONG = "FieldValueTooLong"
TOO_MANY = "FieldValueTooMany"
DUPLICATE = "FieldValueDuplicate"

Error = tuple[str, str, str]


def errors_of(found: list[FieldError]) -> list[Error]:
    return [(e.path, e.type, e.message) for e in found]


def must_be(path: str, want: str, got: str) -> Error:
    return (
        path,
        TYPE_INVALID,
        f'Invalid value: "{got}": {path} in body must be of type {want}: "{got}"',
    )


# Each case: schema, value, expected errors; validated at path "spec.x".
KEYWORD_CASES: list[tuple[str, dict[str, Any], Any, list[Error]]] = [
    ("integer ok", {"type": "integer"}, 5, []),
    ("integer accepts whole float", {"type": "integer"}, 5.0, []),
    (
        "integer rejects fraction",
        {"type": "integer"},
        5.5,
        [must_be("spec.x", "integer", "number")],
    ),
    ("integer rejects bool", {"type": "integer"}, True, [must_be("spec.x", "integer", "boolean")]),
    ("integer rejects string", {"type": "integer"}, "5", [must_be("spec.x", "integer", "string")]),
    ("number accepts int", {"type": "number"}, 5, []),
    ("number rejects bool", {"type": "number"}, False, [must_be("spec.x", "number", "boolean")]),
    ("boolean rejects int", {"type": "boolean"}, 1, [must_be("spec.x", "boolean", "integer")]),
    ("string rejects null", {"type": "string"}, None, [must_be("spec.x", "string", "null")]),
    ("nullable accepts null", {"type": "string", "nullable": True}, None, []),
    ("object rejects array", {"type": "object"}, [], [must_be("spec.x", "object", "array")]),
    ("array rejects object", {"type": "array"}, {}, [must_be("spec.x", "array", "object")]),
    ("enum ok", {"type": "string", "enum": ["a", "b"]}, "b", []),
    (
        "enum rejects",
        {"type": "string", "enum": ["a", "b"]},
        "c",
        [("spec.x", NOT_SUPPORTED, 'Unsupported value: "c": supported values: "a", "b"')],
    ),
    ("numeric enum accepts whole float", {"type": "number", "enum": [1, 2]}, 1.0, []),
    (
        "numeric enum rejects",
        {"type": "integer", "enum": [1, 2]},
        3,
        [("spec.x", NOT_SUPPORTED, 'Unsupported value: 3: supported values: "1", "2"')],
    ),
    (
        "enum never matches null",
        {"type": "string", "nullable": True, "enum": ["a"]},
        None,
        [("spec.x", NOT_SUPPORTED, 'Unsupported value: null: supported values: "a"')],
    ),
    ("minimum ok", {"type": "integer", "minimum": 1}, 1, []),
    (
        "minimum",
        {"type": "integer", "minimum": 1},
        0,
        [
            (
                "spec.x",
                INVALID,
                "Invalid value: 0: spec.x in body should be greater than or equal to 1",
            )
        ],
    ),
    (
        "exclusiveMinimum",
        {"type": "integer", "minimum": 1, "exclusiveMinimum": True},
        1,
        [("spec.x", INVALID, "Invalid value: 1: spec.x in body should be greater than 1")],
    ),
    ("maximum ok", {"type": "integer", "maximum": 100}, 100, []),
    (
        "maximum",
        {"type": "integer", "maximum": 100},
        150,
        [
            (
                "spec.x",
                INVALID,
                "Invalid value: 150: spec.x in body should be less than or equal to 100",
            )
        ],
    ),
    (
        "exclusiveMaximum",
        {"type": "number", "maximum": 0.25, "exclusiveMaximum": True},
        0.25,
        [("spec.x", INVALID, "Invalid value: 0.25: spec.x in body should be less than 0.25")],
    ),
    ("minLength ok", {"type": "string", "minLength": 2}, "ab", []),
    (
        "minLength",
        {"type": "string", "minLength": 2},
        "a",
        [("spec.x", INVALID, 'Invalid value: "a": spec.x in body should be at least 2 chars long')],
    ),
    ("maxLength counts characters", {"type": "string", "maxLength": 3}, "ééé", []),
    (
        "maxLength",
        {"type": "string", "maxLength": 3},
        "abcd",
        [("spec.x", TOO_LONG, "Too long: may not be more than 3 bytes")],
    ),
    (
        "maxLength of one",
        {"type": "string", "maxLength": 1},
        "ab",
        [("spec.x", TOO_LONG, "Too long: may not be more than 1 byte")],
    ),
    ("pattern is a search", {"type": "string", "pattern": "b"}, "abc", []),
    (
        "pattern",
        {"type": "string", "pattern": "^[a-z]+$"},
        "ABC",
        [("spec.x", INVALID, "Invalid value: \"ABC\": spec.x in body should match '^[a-z]+$'")],
    ),
    ("minItems ok", {"type": "array", "minItems": 1}, [1], []),
    (
        "minItems",
        {"type": "array", "minItems": 1},
        [],
        [("spec.x", INVALID, "Invalid value: 0: spec.x in body should have at least 1 items")],
    ),
    ("maxItems ok", {"type": "array", "maxItems": 2}, [1, 2], []),
    (
        "maxItems",
        {"type": "array", "maxItems": 2},
        [1, 2, 3],
        [("spec.x", TOO_MANY, "Too many: 3: must have at most 2 items")],
    ),
    ("uniqueItems tells true from 1", {"type": "array", "uniqueItems": True}, [1, True], []),
    (
        "uniqueItems",
        {"type": "array", "uniqueItems": True},
        [{"a": 1}, {"a": 1}],
        [("spec.x", INVALID, 'Invalid value: "": spec.x in body shouldn\'t contain duplicates')],
    ),
    ("minProperties ok", {"type": "object", "minProperties": 1}, {"a": 1}, []),
    (
        "minProperties",
        {"type": "object", "minProperties": 1},
        {},
        [("spec.x", INVALID, "Invalid value: 0: spec.x in body should have at least 1 properties")],
    ),
    (
        "maxProperties",
        {"type": "object", "maxProperties": 1},
        {"a": 1, "b": 2},
        [("spec.x", TOO_MANY, "Too many: 2: must have at most 1 item")],
    ),
    ("date-time ok", {"type": "string", "format": "date-time"}, "2024-05-01T10:00:00Z", []),
    (
        "date-time with offset and fraction",
        {"type": "string", "format": "date-time"},
        "2024-05-01t10:00:00.123456789+02:00",
        [],
    ),
    (
        "date-time needs a time zone",
        {"type": "string", "format": "date-time"},
        "2024-05-01T10:00:00",
        [must_be("spec.x", "date-time", "2024-05-01T10:00:00")],
    ),
    (
        "date-time needs a real date",
        {"type": "string", "format": "date-time"},
        "2024-02-30T10:00:00Z",
        [must_be("spec.x", "date-time", "2024-02-30T10:00:00Z")],
    ),
    ("other formats are not checked", {"type": "string", "format": "byte"}, "not base64!", []),
    ("int32 format is not checked", {"type": "integer", "format": "int32"}, 2**40, []),
    ("description is ignored", {"type": "integer", "description": "n"}, 1, []),
    ("int-or-string int", {"x-kubernetes-int-or-string": True}, 80, []),
    ("int-or-string string", {"x-kubernetes-int-or-string": True}, "http", []),
    (
        "int-or-string rejects fraction",
        {"x-kubernetes-int-or-string": True},
        1.5,
        [must_be("spec.x", "integer,string", "number")],
    ),
    (
        "int-or-string rejects bool",
        {"x-kubernetes-int-or-string": True},
        True,
        [must_be("spec.x", "integer,string", "boolean")],
    ),
    (
        "preserve-unknown-fields takes anything",
        {"x-kubernetes-preserve-unknown-fields": True},
        {"a": [1, {"b": None}]},
        [],
    ),
    ("map-type is ignored", {"type": "object", "x-kubernetes-map-type": "atomic"}, {"a": 1}, []),
    ("anyOf ok", {"anyOf": [{"minimum": 10}, {"maximum": 0}]}, 11, []),
    (
        "anyOf",
        {"anyOf": [{"minimum": 10}, {"maximum": 0}]},
        5,
        [
            (
                "spec.x",
                INVALID,
                'Invalid value: "": "spec.x" must validate at least one schema (anyOf)',
            ),
            (
                "spec.x",
                INVALID,
                "Invalid value: 5: spec.x in body should be greater than or equal to 10",
            ),
        ],
    ),
    (
        "oneOf ok",
        {"type": "object", "oneOf": [{"required": ["a"]}, {"required": ["b"]}]},
        {"a": 1},
        [],
    ),
    (
        "oneOf none",
        {"type": "object", "oneOf": [{"required": ["a"]}, {"required": ["b"]}]},
        {},
        [
            (
                "spec.x",
                INVALID,
                'Invalid value: "": "spec.x" must validate one and only one schema (oneOf). '
                "Found none valid",
            ),
            ("spec.x.a", REQUIRED, "Required value"),
        ],
    ),
    (
        "oneOf two",
        {"type": "object", "oneOf": [{"required": ["a"]}, {"required": ["b"]}]},
        {"a": 1, "b": 2},
        [
            (
                "spec.x",
                INVALID,
                'Invalid value: "": "spec.x" must validate one and only one schema (oneOf). '
                "Found 2 valid alternatives",
            )
        ],
    ),
    ("allOf ok", {"allOf": [{"minimum": 1}, {"maximum": 3}]}, 2, []),
    (
        "allOf",
        {"allOf": [{"minimum": 1}, {"maximum": 3}]},
        5,
        [
            (
                "spec.x",
                INVALID,
                "Invalid value: 5: spec.x in body should be less than or equal to 3",
            ),
            (
                "spec.x",
                INVALID,
                'Invalid value: "": "spec.x" must validate all the schemas (allOf)',
            ),
        ],
    ),
    ("not ok", {"type": "string", "not": {"enum": ["x"]}}, "y", []),
    (
        "not",
        {"type": "string", "not": {"enum": ["x"]}},
        "x",
        [("spec.x", INVALID, 'Invalid value: "": "spec.x" must not validate the schema (not)')],
    ),
]


@pytest.mark.parametrize(
    ("schema", "value", "expected"),
    [case[1:] for case in KEYWORD_CASES],
    ids=[case[0] for case in KEYWORD_CASES],
)
def test_keyword(schema: dict[str, Any], value: Any, expected: list[Error]) -> None:
    assert errors_of(validate(schema, value, "spec.x")) == expected


ROLLOUT: dict[str, Any] = {
    "type": "object",
    "properties": {
        "spec": {
            "type": "object",
            "required": ["model"],
            "properties": {
                "model": {"type": "string"},
                "strategy": {
                    "type": "object",
                    "properties": {
                        "steps": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "properties": {
                                    "setWeight": {"type": "integer", "maximum": 100},
                                    "pause": {"type": "string"},
                                },
                            },
                        }
                    },
                },
                "labels": {"type": "object", "additionalProperties": {"type": "string"}},
            },
        }
    },
}


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ({"spec": {"model": "m", "strategy": {"steps": [{"setWeight": 10}]}}}, []),
        ({"spec": {}}, [("spec.model", REQUIRED, "Required value")]),
        ({}, []),  # required only applies where the parent object is present
        (
            {"spec": {"model": "m", "strategy": {"steps": [{"setWeight": 5}, {"setWeight": 150}]}}},
            [
                (
                    "spec.strategy.steps[1].setWeight",
                    INVALID,
                    "Invalid value: 150: spec.strategy.steps[1].setWeight in body should be "
                    "less than or equal to 100",
                )
            ],
        ),
        (
            {"spec": {"model": "m", "labels": {"team": "a", "tier": 1}}},
            [must_be("spec.labels.tier", "string", "integer")],
        ),
    ],
    ids=["valid", "required", "absent parent", "nested array item", "additionalProperties"],
)
def test_nested_paths(value: Any, expected: list[Error]) -> None:
    assert errors_of(validate(ROLLOUT, value)) == expected


EMBEDDED: dict[str, Any] = {
    "type": "object",
    "properties": {
        "template": {
            "type": "object",
            "x-kubernetes-embedded-resource": True,
            "x-kubernetes-preserve-unknown-fields": True,
        }
    },
}


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {}}, []),
        (
            {"metadata": {}},
            [
                ("template.apiVersion", REQUIRED, "Required value"),
                ("template.kind", REQUIRED, "Required value"),
            ],
        ),
        (
            {"apiVersion": "", "kind": 5},
            [
                ("template.apiVersion", INVALID, 'Invalid value: "": must not be empty'),
                ("template.kind", INVALID, "Invalid value: 5: must be a string"),
            ],
        ),
    ],
    ids=["ok", "missing", "empty and not a string"],
)
def test_embedded_resource(template: dict[str, Any], expected: list[Error]) -> None:
    assert errors_of(validate(EMBEDDED, {"template": template})) == expected


def list_schema(list_type: str, keys: list[str] | None = None) -> dict[str, Any]:
    items: dict[str, Any] = {"type": "string"}
    if keys is not None:
        items = {
            "type": "object",
            "properties": {k: {"x-kubernetes-int-or-string": True} for k in keys},
        }
    schema: dict[str, Any] = {"type": "array", "x-kubernetes-list-type": list_type, "items": items}
    if keys is not None:
        schema["x-kubernetes-list-map-keys"] = keys
    return {"type": "object", "properties": {"l": schema}}


@pytest.mark.parametrize(
    ("schema", "value", "expected"),
    [
        (list_schema("atomic"), ["a", "a"], []),
        (list_schema("set"), ["a", "b"], []),
        (
            list_schema("set"),
            ["a", "b", "a", "a", "b"],
            [
                ("l[2]", DUPLICATE, 'Duplicate value: "a"'),
                ("l[4]", DUPLICATE, 'Duplicate value: "b"'),
            ],
        ),
        (list_schema("map", ["name"]), [{"name": "a"}, {"name": "b"}], []),
        (
            list_schema("map", ["name"]),
            [{"name": "a", "port": 1}, {"name": "a", "port": 2}],
            [("l[1]", DUPLICATE, 'Duplicate value: {"name":"a"}')],
        ),
        (
            list_schema("map", ["name", "port"]),
            [{"name": "a", "port": 1}, {"name": "a", "port": 2}],
            [],
        ),
        (
            list_schema("map", ["name", "port"]),
            [{"name": "a", "port": 1}, {"port": 1, "name": "a"}],
            [("l[1]", DUPLICATE, 'Duplicate value: {"name":"a","port":1}')],
        ),
        (
            list_schema("map", ["name"]),
            [{"name": "a"}, "b"],
            [
                must_be("l[1]", "object", "string"),
                (
                    "l[1]",
                    INVALID,
                    'Invalid value: "b": must be an object for an array of list-type map',
                ),
            ],
        ),
    ],
    ids=[
        "atomic",
        "set ok",
        "set",
        "map ok",
        "map",
        "two keys ok",
        "two keys",
        "map of non-objects",
    ],
)
def test_list_types(schema: dict[str, Any], value: Any, expected: list[Error]) -> None:
    assert errors_of(validate(schema, {"l": value})) == expected


def test_list_duplicates_already_stored_are_tolerated_on_update() -> None:
    schema = list_schema("set")
    assert errors_of(validate(schema, {"l": ["a", "a", "b"]}, old={"l": ["a", "a"]})) == []
    assert errors_of(validate(schema, {"l": ["a", "a"]}, old={"l": ["a"]})) == [
        ("l[1]", DUPLICATE, 'Duplicate value: "a"')
    ]


def ruled(schema: dict[str, Any], *rules: dict[str, Any]) -> dict[str, Any]:
    return {**schema, "x-kubernetes-validations": list(rules)}


PAIR = {"type": "object", "properties": {"a": {"type": "string"}, "b": {"type": "string"}}}
RANGE = {"type": "object", "properties": {"min": {"type": "integer"}, "max": {"type": "integer"}}}
BACKENDS = {
    "type": "array",
    "items": {
        "type": "object",
        "properties": {"name": {"type": "string"}, "primary": {"type": "boolean"}},
    },
}

# Each case: schema, value, expected errors; validated at path "spec".
CEL_CASES: list[tuple[str, dict[str, Any], Any, list[Error]]] = [
    ("has ok", ruled(PAIR, {"rule": "has(self.a) == has(self.b)"}), {"a": "x", "b": "y"}, []),
    (
        "has with message",
        ruled(PAIR, {"rule": "has(self.a) == has(self.b)", "message": " a and b go together "}),
        {"a": "x"},
        [("spec", INVALID, "Invalid value: a and b go together")],
    ),
    (
        "all on a scalar list",
        ruled({"type": "array", "items": {"type": "integer"}}, {"rule": "self.all(x, x > 0)"}),
        [1, -1],
        [("spec", INVALID, "Invalid value: failed rule: self.all(x, x > 0)")],
    ),
    (
        "exists_one ok",
        ruled(BACKENDS, {"rule": "self.exists_one(b, b.primary)"}),
        [{"name": "a", "primary": True}, {"name": "b", "primary": False}],
        [],
    ),
    (
        "exists_one",
        ruled(BACKENDS, {"rule": "self.exists_one(b, b.primary)", "message": "one primary"}),
        [{"name": "a", "primary": True}, {"name": "b", "primary": True}],
        [("spec", INVALID, "Invalid value: one primary")],
    ),
    (
        "scalar failure shows the value",
        ruled({"type": "integer"}, {"rule": "self % 5 == 0"}),
        7,
        [("spec", INVALID, "Invalid value: 7: failed rule: self % 5 == 0")],
    ),
    ("whole float is an int", ruled({"type": "integer"}, {"rule": "self > 3"}), 5.0, []),
    ("int in a number field is a double", ruled({"type": "number"}, {"rule": "self > 0.5"}), 1, []),
    (
        "date-time is a timestamp",
        ruled(
            {"type": "string", "format": "date-time"},
            {"rule": "self < timestamp('2030-01-01T00:00:00Z')"},
        ),
        "2024-05-01T10:00:00Z",
        [],
    ),
    (
        "messageExpression",
        ruled(
            RANGE,
            {
                "rule": "self.min <= self.max",
                "message": "unused",
                "messageExpression": "'min ' + string(self.min) + ' exceeds max'",
            },
        ),
        {"min": 5, "max": 1},
        [("spec", INVALID, "Invalid value: min 5 exceeds max")],
    ),
    (
        "failing messageExpression falls back to message",
        ruled(
            RANGE, {"rule": "self.min <= self.max", "message": "bad", "messageExpression": "self.x"}
        ),
        {"min": 5, "max": 1},
        [("spec", INVALID, "Invalid value: bad")],
    ),
    (
        "fieldPath and Forbidden",
        ruled(
            RANGE,
            {
                "rule": "self.min <= self.max",
                "message": "min must not exceed max",
                "fieldPath": ".min",
                "reason": FORBIDDEN,
            },
        ),
        {"min": 5, "max": 1},
        [("spec.min", FORBIDDEN, "Forbidden: min must not exceed max")],
    ),
    (
        "quoted fieldPath and Required",
        ruled(RANGE, {"rule": "has(self.max)", "fieldPath": "['max']", "reason": REQUIRED}),
        {"min": 5},
        [("spec.max", REQUIRED, "Required value: failed rule: has(self.max)")],
    ),
    (
        "Duplicate on a scalar",
        ruled({"type": "integer"}, {"rule": "self != 3", "reason": DUPLICATE}),
        3,
        [("spec", DUPLICATE, "Duplicate value: 3")],
    ),
    (
        "Duplicate on an object",
        ruled(PAIR, {"rule": "self.a != self.b", "reason": DUPLICATE}),
        {"a": "x", "b": "x"},
        [("spec", DUPLICATE, "Duplicate value")],
    ),
    (
        "evaluation error",
        ruled(PAIR, {"rule": "self.a == 'x'"}),
        {},
        [
            (
                "spec",
                INVALID,
                "Invalid value: \"object\": no such member in mapping: 'a' evaluating rule: "
                "self.a == 'x'",
            )
        ],
    ),
    (
        "compile error",
        ruled({"type": "integer"}, {"rule": "self >"}),
        1,
        [
            (
                "spec",
                INVALID,
                'Invalid value: "integer": rule compile error: ERROR: <input>:1:6: Syntax error',
            )
        ],
    ),
    (
        "rules on absent fields do not run",
        {"type": "object", "properties": {"a": ruled({"type": "string"}, {"rule": "false"})}},
        {},
        [],
    ),
    (
        "rules on null do not run",
        {
            "type": "object",
            "properties": {"a": ruled({"type": "string", "nullable": True}, {"rule": "false"})},
        },
        {"a": None},
        [],
    ),
    (
        "rules on nested items",
        {
            "type": "object",
            "properties": {
                "l": {"type": "array", "items": ruled({"type": "string"}, {"rule": "self != ''"})}
            },
        },
        {"l": ["a", ""]},
        [("spec.l[1]", INVALID, "Invalid value: \"\": failed rule: self != ''")],
    ),
    (
        "rules in allOf",
        {"type": "integer", "allOf": [ruled({}, {"rule": "self < 3"})]},
        4,
        [("spec", INVALID, "Invalid value: 4: failed rule: self < 3")],
    ),
    (
        "blocking errors stop the rules",
        {"type": "object", "required": ["a"], "x-kubernetes-validations": [{"rule": "false"}]},
        {},
        [
            ("spec.a", REQUIRED, "Required value"),
            (
                "spec",
                INVALID,
                "Invalid value: null: some validation rules were not checked because the object "
                "was invalid; correct the existing errors to complete validation",
            ),
        ],
    ),
    (
        "non-blocking errors do not",
        ruled({"type": "integer", "minimum": 5}, {"rule": "self > 3"}),
        1,
        [
            (
                "spec",
                INVALID,
                "Invalid value: 1: spec in body should be greater than or equal to 5",
            ),
            ("spec", INVALID, "Invalid value: 1: failed rule: self > 3"),
        ],
    ),
]


@pytest.mark.parametrize(
    ("schema", "value", "expected"),
    [case[1:] for case in CEL_CASES],
    ids=[case[0] for case in CEL_CASES],
)
def test_cel_rule(schema: dict[str, Any], value: Any, expected: list[Error]) -> None:
    assert errors_of(validate(schema, value, "spec")) == expected


NO_DECREASE = {
    "type": "object",
    "properties": {
        "replicas": ruled(
            {"type": "integer"}, {"rule": "self >= oldSelf", "message": "may not decrease"}
        )
    },
}


@pytest.mark.parametrize(
    ("value", "old", "expected"),
    [
        ({"replicas": 1}, None, []),  # create: transition rules do not run
        ({"replicas": 1}, {}, []),  # no old value at that path
        ({"replicas": 3}, {"replicas": 2}, []),
        (
            {"replicas": 1},
            {"replicas": 2},
            [("replicas", INVALID, "Invalid value: 1: may not decrease")],
        ),
    ],
    ids=["create", "old field absent", "increase", "decrease"],
)
def test_transition_rule(value: Any, old: Any, expected: list[Error]) -> None:
    assert errors_of(validate(NO_DECREASE, value, old=old)) == expected


def test_transition_rules_correlate_list_map_items_by_key() -> None:
    item = ruled(
        {"type": "object", "properties": {"name": {"type": "string"}, "image": {"type": "string"}}},
        {"rule": "self.image == oldSelf.image", "message": "image is immutable"},
    )
    schema = {
        "type": "object",
        "properties": {
            "keyed": {
                "type": "array",
                "x-kubernetes-list-type": "map",
                "x-kubernetes-list-map-keys": ["name"],
                "items": item,
            },
            "atomic": {"type": "array", "items": item},
        },
    }
    old = {"keyed": [{"name": "a", "image": "x"}], "atomic": [{"name": "a", "image": "x"}]}
    new = {
        "keyed": [{"name": "b", "image": "y"}, {"name": "a", "image": "z"}],
        "atomic": [{"name": "a", "image": "z"}],
    }
    assert errors_of(validate(schema, new, old=old)) == [
        ("keyed[1]", INVALID, "Invalid value: image is immutable")
    ]


def test_compile_rules_reports_what_does_not_compile() -> None:
    schema = {
        "type": "object",
        "properties": {
            "spec": ruled(
                {"type": "object"},
                {"rule": "self.a >"},
                {"rule": "true", "messageExpression": "'a' +"},
            )
        },
        "x-kubernetes-validations": [{"rule": "has(self.spec)"}],
    }
    assert errors_of(compile_rules(schema, "openAPIV3Schema")) == [
        (
            "openAPIV3Schema.properties[spec].x-kubernetes-validations[0].rule",
            INVALID,
            'Invalid value: "self.a >": compilation failed: ERROR: <input>:1:8: Syntax error',
        ),
        (
            "openAPIV3Schema.properties[spec].x-kubernetes-validations[1].messageExpression",
            INVALID,
            "Invalid value: \"'a' +\": compilation failed: ERROR: <input>:1:5: Syntax error",
        ),
    ]


DEFAULTS: dict[str, Any] = {
    "type": "object",
    "properties": {
        "spec": {
            "type": "object",
            "properties": {
                "replicas": {"type": "integer", "default": 1},
                "strategy": {
                    "type": "object",
                    "default": {},
                    "properties": {
                        "maxSurge": {"type": "integer", "default": 1},
                        "steps": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "properties": {"pause": {"type": "string", "default": "1m"}},
                            },
                        },
                    },
                },
                "note": {"type": "string"},
                "comment": {"type": "string", "nullable": True, "default": "none"},
                "judges": {
                    "type": "object",
                    "additionalProperties": {
                        "type": "object",
                        "properties": {"weight": {"type": "number", "default": 1.0}},
                    },
                },
                "ports": {"type": "array", "items": {"type": "integer", "default": 80}},
            },
        }
    },
}


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ({}, {}),
        (
            {"spec": {}},
            {"spec": {"replicas": 1, "strategy": {"maxSurge": 1}, "comment": "none"}},
        ),
        (
            {"spec": {"replicas": 3, "strategy": {"maxSurge": 0, "steps": [{}, {"pause": "5m"}]}}},
            {
                "spec": {
                    "replicas": 3,
                    "strategy": {"maxSurge": 0, "steps": [{"pause": "1m"}, {"pause": "5m"}]},
                    "comment": "none",
                }
            },
        ),
        (
            {"spec": {"replicas": None, "note": None, "comment": None, "ports": [None, 8080]}},
            {
                "spec": {
                    "replicas": 1,
                    "strategy": {"maxSurge": 1},
                    "comment": None,
                    "ports": [80, 8080],
                }
            },
        ),
        (
            {"spec": {"judges": {"latency": {}, "errors": {"weight": 2}}}},
            {
                "spec": {
                    "replicas": 1,
                    "strategy": {"maxSurge": 1},
                    "comment": "none",
                    "judges": {"latency": {"weight": 1.0}, "errors": {"weight": 2}},
                }
            },
        ),
        (
            {"spec": {"unknown": {"replicas": None}}},
            {
                "spec": {
                    "unknown": {"replicas": None},
                    "replicas": 1,
                    "strategy": {"maxSurge": 1},
                    "comment": "none",
                }
            },
        ),
    ],
    ids=[
        "absent parent",
        "nested",
        "kept values and array items",
        "nulls",
        "map values",
        "unknown",
    ],
)
def test_apply_defaults(value: Any, expected: Any) -> None:
    before = copy.deepcopy(value)
    assert apply_defaults(DEFAULTS, value) == expected
    assert value == before


def test_defaults_are_copies() -> None:
    first = apply_defaults(DEFAULTS, {"spec": {}})
    first["spec"]["strategy"]["maxSurge"] = 9
    assert DEFAULTS["properties"]["spec"]["properties"]["strategy"]["default"] == {}
    assert apply_defaults(DEFAULTS, {"spec": {}})["spec"]["strategy"] == {"maxSurge": 1}


PRUNED: dict[str, Any] = {
    "type": "object",
    "properties": {
        "spec": {
            "type": "object",
            "properties": {
                "steps": {
                    "type": "array",
                    "items": {"type": "object", "properties": {"setWeight": {"type": "integer"}}},
                },
                "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                "extra": {"type": "object", "additionalProperties": True},
                "config": {
                    "type": "object",
                    "x-kubernetes-preserve-unknown-fields": True,
                    "properties": {
                        "known": {"type": "object", "properties": {"a": {"type": "integer"}}}
                    },
                },
                "template": {
                    "type": "object",
                    "x-kubernetes-embedded-resource": True,
                    "properties": {
                        "spec": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
                    },
                },
            },
        },
        "status": {"type": "object", "properties": {"phase": {"type": "string"}}},
    },
}


@pytest.mark.parametrize(
    ("value", "expected", "dropped"),
    [
        (
            {"apiVersion": "v1", "kind": "K", "metadata": {"name": "n", "x": 1}, "spec": {}},
            {"apiVersion": "v1", "kind": "K", "metadata": {"name": "n", "x": 1}, "spec": {}},
            [],
        ),
        (
            {"spec": {"junk": 1, "steps": [{"setWeight": 5, "x": 1}, {"y": 2}]}, "other": True},
            {"spec": {"steps": [{"setWeight": 5}, {}]}},
            ["other", "spec.junk", "spec.steps[0].x", "spec.steps[1].y"],
        ),
        (
            {"spec": {"metadata": {"name": "n"}}, "status": {"phase": "A", "old": 1}},
            {"spec": {}, "status": {"phase": "A"}},
            ["spec.metadata", "status.old"],
        ),
        (
            {"spec": {"labels": {"a": "b"}, "extra": {"any": {"thing": 1}}}},
            {"spec": {"labels": {"a": "b"}, "extra": {"any": {"thing": 1}}}},
            [],
        ),
        (
            {"spec": {"config": {"free": {"x": 1}, "known": {"a": 1, "b": 2}}}},
            {"spec": {"config": {"free": {"x": 1}, "known": {"a": 1}}}},
            ["spec.config.known.b"],
        ),
        (
            {
                "spec": {
                    "template": {
                        "apiVersion": "v1",
                        "kind": "Pod",
                        "metadata": {"labels": {"a": "b"}},
                        "spec": {"containers": []},
                        "junk": 1,
                    }
                }
            },
            {
                "spec": {
                    "template": {
                        "apiVersion": "v1",
                        "kind": "Pod",
                        "metadata": {"labels": {"a": "b"}},
                        "spec": {"containers": []},
                    }
                }
            },
            ["spec.template.junk"],
        ),
    ],
    ids=["resource root", "unknown fields", "metadata below root", "maps", "preserve", "embedded"],
)
def test_prune(value: Any, expected: Any, dropped: list[str]) -> None:
    before = copy.deepcopy(value)
    assert prune(PRUNED, value) == (expected, dropped)
    assert value == before


def test_prune_below_the_root_uses_the_path() -> None:
    spec = PRUNED["properties"]["spec"]
    assert prune(spec, {"metadata": {}, "steps": [{"z": 1}]}, "spec") == (
        {"steps": [{}]},
        ["spec.metadata", "spec.steps[0].z"],
    )
