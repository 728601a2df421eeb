"""CEL validation ratcheting on update, as kube-apiserver does it (CRDValidationRatcheting).

An update keeps no error of a rule without ``oldSelf`` on a value it left unchanged, so the
emulator does not run such rules there (a status write no longer re-checks the whole spec's
rules); transition rules still run, and changed values and creates are checked in full.
"""

from __future__ import annotations

from typing import Any

from modelrollout.schema import INVALID, validate

POSITIVE = {
    "type": "object",
    "properties": {
        "spec": {
            "type": "object",
            "properties": {"replicas": {"type": "integer"}},
            "x-kubernetes-validations": [
                {"rule": "self.replicas > 0", "message": "replicas must be positive"}
            ],
        },
        "status": {"type": "object", "properties": {"phase": {"type": "string"}}},
    },
}
GROWING = {
    "type": "object",
    "properties": {"replicas": {"type": "integer"}},
    "x-kubernetes-validations": [{"rule": "self.replicas > oldSelf.replicas"}],
}


def causes(schema: dict[str, Any], new: Any, old: Any = None) -> list[tuple[str, str, str]]:
    return [(e.path, e.type, e.message) for e in validate(schema, new, old=old)]


def test_an_unchanged_value_is_not_held_to_a_rule_again() -> None:
    """Given a stored object whose spec breaks a rule, when only its status changes,
    then the update is accepted."""
    old = {"spec": {"replicas": 0}, "status": {"phase": "A"}}
    new = {"spec": {"replicas": 0}, "status": {"phase": "B"}}
    assert causes(POSITIVE, new, old) == []


def test_a_changed_value_is_checked() -> None:
    old = {"spec": {"replicas": 1}}
    new = {"spec": {"replicas": -1}}
    assert causes(POSITIVE, new, old) == [
        ("spec", INVALID, "Invalid value: replicas must be positive")
    ]


def test_a_create_is_checked_in_full() -> None:
    assert causes(POSITIVE, {"spec": {"replicas": 0}}) == [
        ("spec", INVALID, "Invalid value: replicas must be positive")
    ]


def test_transition_rules_run_on_unchanged_values() -> None:
    assert causes(GROWING, {"replicas": 2}, {"replicas": 2}) == [
        ("", INVALID, "Invalid value: failed rule: self.replicas > oldSelf.replicas")
    ]


STEPS = {
    "type": "object",
    "properties": {
        "steps": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"weight": {"type": "integer"}},
                "x-kubernetes-validations": [{"rule": "self.weight <= 100"}],
            },
        },
        "note": {"type": "string"},
    },
}


def test_items_of_an_unchanged_atomic_list_are_not_checked_again() -> None:
    """Items of an atomic list have no old value of their own; the list as a whole does."""
    old = {"steps": [{"weight": 120}], "note": "a"}
    assert causes(STEPS, {"steps": [{"weight": 120}], "note": "b"}, old) == []


def test_items_of_a_changed_atomic_list_are_checked() -> None:
    old = {"steps": [{"weight": 120}], "note": "a"}
    assert causes(STEPS, {"steps": [{"weight": 120}, {"weight": 10}]}, old) == [
        ("steps[0]", INVALID, "Invalid value: failed rule: self.weight <= 100")
    ]
