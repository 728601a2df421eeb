"""Status writes as JSON merge patches (RFC 7386): ``serde.merge_patch`` and
``serde.merge_patch_from``, checked by applying the patch the way the API server does."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from modelrollout.serde import merge_patch, merge_patch_from


def apply(target: Any, patch: Any) -> Any:
    """RFC 7386 as the API server applies it."""
    if not isinstance(patch, dict):
        return patch
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = apply(out.get(key), value)
    return out


@pytest.mark.parametrize(
    ("old", "new", "patch"),
    [
        ({}, {}, {}),
        ({"a": 1}, {"a": 1}, {}),
        ({"a": 1}, {"a": 2}, {"a": 2}),
        ({"a": 1, "b": 2}, {"a": 1}, {"b": None}),
        ({"canary": {"uri": "x", "version": "2"}}, {}, {"canary": None}),
        ({"c": {"x": 1, "y": 2}}, {"c": {"x": 1}}, {"c": {"y": None}}),
        ({"h": [1, 2]}, {"h": [1, 2, 3]}, {"h": [1, 2, 3]}),
        ({"s": "a"}, {"s": {"k": 1}}, {"s": {"k": 1}}),
    ],
)
def test_the_patch_names_only_what_changed(old: Any, new: Any, patch: Any) -> None:
    assert merge_patch(old, new) == patch
    assert apply(old, merge_patch(old, new)) == new


json_leaf = st.one_of(st.integers(-3, 3), st.text(max_size=2), st.booleans())
json_tree = st.recursive(
    json_leaf,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from("abcd"), inner, max_size=3)
    ),
    max_leaves=8,
)
json_object = st.dictionaries(st.sampled_from("abcde"), json_tree, max_size=4)


@given(json_object, json_object)
def test_applying_the_patch_gives_the_new_object(old: dict[str, Any], new: dict[str, Any]) -> None:
    assert apply(old, merge_patch(old, new)) == new


@given(json_object, json_object, json_object)
def test_one_patch_serves_every_base(
    first: dict[str, Any], second: dict[str, Any], new: dict[str, Any]
) -> None:
    """A handler may be given an older status than the one the last pass wrote;
    the patch must be right whichever of the two the API server holds."""
    expected = copy.deepcopy(new)
    patch = merge_patch_from([first, second], new)
    assert new == expected, "the new object must not be changed by building the patch"
    assert apply(first, patch) == new
    assert apply(second, patch) == new
