"""The model manifest in git: what parses, what is refused, and what the messages name.

Covers ``modelrollout.gitsource.manifest``: the accepted keys and shapes, unknown keys with
a suggestion, safe YAML only (no tags, no anchors or aliases, so an alias bomb is refused
before anything is built), one document, bounded nesting and size, and the model URI rule
it shares with the CRD.
"""

from __future__ import annotations

import time

import pytest

from modelrollout.api import Reason
from modelrollout.gitsource.base import ManifestError
from modelrollout.gitsource.manifest import MAX_MANIFEST_BYTES, MODEL_URI, Manifest, parse

BILLION_LAUGHS = """\
a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
modelUri: models:/fraud/7
"""

GOOD = [
    ("modelUri: models:/fraud/7\n", Manifest("models:/fraud/7")),
    ("modelUri: models:/fraud@champion", Manifest("models:/fraud@champion")),
    ('modelUri: "models:/fraud/12"\n', Manifest("models:/fraud/12")),
    (
        "# approved in review 42\nmodelUri: models:/fraud/7\nnotes: better recall\n"
        "approvedBy: alice\n",
        Manifest("models:/fraud/7", "better recall", ("alice",)),
    ),
    (
        "modelUri: models:/fraud/7\napprovedBy:\n  - alice\n  - bob\n",
        Manifest("models:/fraud/7", None, ("alice", "bob")),
    ),
    ("---\nmodelUri: models:/fraud/7\nnotes:\n", Manifest("models:/fraud/7")),
    (
        "modelUri: models:/fraud/7\nnotes: |\n  line one\n  line two\n",
        Manifest("models:/fraud/7", "line one\nline two\n"),
    ),
    (b"modelUri: models:/fr\xc3\xa4ud/7\n", Manifest("models:/fräud/7")),
]

BAD = [
    # (text, words the message must contain)
    ("", ["empty"]),
    ("# only a comment\n", ["empty"]),
    ("models:/fraud/7\n", ["mapping", "a string"]),
    ("- modelUri: models:/fraud/7\n", ["mapping", "a list"]),
    ("---\n", ["mapping", "null"]),
    ("notes: hello\n", ["modelUri is required"]),
    ("modelURI: models:/fraud/7\n", ["unknown key 'modelURI'", "did you mean modelUri"]),
    ("modelUri: models:/fraud/7\nimage: evil\n", ["unknown key 'image'"]),
    ("modelUri: models:/fraud/7\n1: x\n", ["keys must be strings", "a number"]),
    ("modelUri: 7\n", ["modelUri must be a string", "a number"]),
    ("modelUri: s3://bucket/model\n", ["modelUri", "s3://bucket/model", "models:/<name>"]),
    ("modelUri: models:/fraud\n", ["not an MLflow registry URI"]),
    ("modelUri: models:/fraud/latest\n", ["not an MLflow registry URI"]),
    ("modelUri: models:/fraud/7\nmodelUri: models:/fraud/8\n", ["'modelUri' appears twice"]),
    ("modelUri: models:/fraud/7\nnotes: [a]\n", ["notes must be a string"]),
    ("modelUri: models:/fraud/7\nnotes: " + "x" * 2001 + "\n", ["notes is longer"]),
    ("modelUri: models:/fraud/7\napprovedBy: {a: b}\n", ["approvedBy must be", "a mapping"]),
    ("modelUri: models:/fraud/7\napprovedBy: [alice, 3]\n", ["approvedBy[1] must be a string"]),
    ("modelUri: models:/fraud/7\napprovedBy: ['']\n", ["approvedBy[0] is empty"]),
    ("modelUri: models:/fraud/7\napprovedBy: yes\n", ["approvedBy must be", "a boolean"]),
    (
        "modelUri: models:/fraud/7\napprovedBy: [" + ",".join(["a"] * 33) + "]\n",
        ["more than 32 names"],
    ),
    ("modelUri: &u models:/fraud/7\n", ["anchors are not allowed", "&u"]),
    ("x: &a 1\nmodelUri: *a\n", ["anchors are not allowed"]),
    (BILLION_LAUGHS, ["anchors are not allowed", "&a"]),
    ("modelUri: !!str models:/fraud/7\n", ["tags are not allowed"]),
    ("modelUri: !!python/object:os.system x\n", ["tags are not allowed"]),
    ("modelUri: !!binary aGVsbG8=\n", ["tags are not allowed"]),
    ("!!map {modelUri: models:/fraud/7}\n", ["tags are not allowed"]),
    ("modelUri: models:/fraud/7\n---\nmodelUri: models:/fraud/8\n", ["one YAML document"]),
    ("modelUri: models:/fraud/7\napprovedBy: [[alice]]\n", ["nested too deeply"]),
    ("modelUri: [models:/fraud/7\n", ["not valid YAML", "line"]),
    ("modelUri: models:/fraud/7\n\tnotes: x\n", ["not valid YAML"]),
    (b"modelUri: models:/fraud/7\nnotes: \xff\n", ["not UTF-8"]),
]


@pytest.mark.parametrize(("text", "expected"), GOOD)
def test_a_valid_manifest_parses(text: str | bytes, expected: Manifest) -> None:
    assert parse(text) == expected


@pytest.mark.parametrize(("text", "words"), BAD)
def test_an_invalid_manifest_is_refused_with_a_message_naming_the_problem(
    text: str | bytes, words: list[str]
) -> None:
    with pytest.raises(ManifestError) as caught:
        parse(text)
    for word in words:
        assert word in str(caught.value)
    assert caught.value.reason == Reason.SOURCE_ERROR


def test_the_alias_bomb_is_refused_before_it_is_built() -> None:
    """Built, BILLION_LAUGHS would be 9**9 strings; refusing it takes no time at all."""
    started = time.perf_counter()
    with pytest.raises(ManifestError):
        parse(BILLION_LAUGHS * 20)
    assert time.perf_counter() - started < 0.5


def test_a_manifest_above_the_size_limit_is_refused_before_parsing() -> None:
    padding = "#" + "x" * 100 + "\n"
    text = "modelUri: models:/fraud/7\n" + padding * (MAX_MANIFEST_BYTES // len(padding) + 1)
    with pytest.raises(ManifestError, match=r"above the limit of 65536"):
        parse(text)
    assert parse(text, max_bytes=len(text.encode())) == Manifest("models:/fraud/7")


def test_deep_nesting_is_refused_without_recursing() -> None:
    """Our depth rule or libyaml's own nesting limit, whichever speaks first; never a crash."""
    with pytest.raises(ManifestError, match=r"nest(ed|ing)"):
        parse("modelUri: " + "[" * 30_000 + "]" * 30_000 + "\n")


def test_the_uri_rule_is_the_crds(rollout_schema: dict[str, object]) -> None:
    model = rollout_schema["properties"]["spec"]["properties"]["model"]  # type: ignore[index]
    rule = model["properties"]["uri"]["x-kubernetes-validations"][0]["rule"]
    assert MODEL_URI.pattern in rule
