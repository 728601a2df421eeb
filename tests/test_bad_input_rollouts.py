"""The bad-input corpus for ModelRollouts: hypothesis-made specs that must never move traffic.

Each input goes where a real one goes: through what kube-apiserver does with the CRD
(prune, defaults, openAPI schema and CEL rules, ``tests/bad_inputs.admit``), and then through
one full engine pass (``engine.reconcile``, in-memory ports: ``tests/bad_inputs.Bench``)
starting from fraud v1 stable and serving alone. An input the schema refuses must be refused
with an error naming its field, and is then given to the engine as it was written anyway, as
a laxer API server (or an older CRD) would pass it on: defence in depth. Either way the pass
must write nothing to the InferenceService, keep the stable model in status, and give the
input a condition with a reason (InvalidSpec, SourceError…) and a warning event.

Kinds: weights outside 0..100 and non-integers; bad durations (no unit, negative, units the
operator does not read, empty, spaces, newlines, digits that are not ASCII, too long, and
longer than the operator can count); malformed model URIs (empty parts, other schemes,
spaces, control characters, too long); unknown models, versions, aliases and stages (the
in-memory registry answers not-found as MLflow does); InferenceService names that are no
Kubernetes names. Each input tried is counted with ``ledger.bad_input``. PromQL injection
and MetricTemplates are in tests/test_bad_input_templates.py, git manifests in
tests/test_bad_input_git.py, the end-to-end sample in tests/test_bad_input_e2e.py.
"""

from __future__ import annotations

import copy
import re
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

import ledger
from bad_inputs import (
    KNOWN_ALIASES,
    KNOWN_VERSIONS,
    MODEL,
    Bench,
    admit,
    check_untouched,
    crd_schema,
    resource,
    rollout_spec,
)
from modelrollout import api


@pytest.fixture(scope="module")
def rest() -> Bench:
    """Given fraud v1 stable, serving alone, and the rollout Succeeded."""
    crd_schema(api.ROLLOUT_KIND)
    return Bench.at_rest()


def refused(rest: Bench, spec: dict[str, Any], path: str, kind: str) -> api.Reason:
    """The API server refuses ``spec`` naming ``path`` (or admits it), and either way an
    engine pass from ``rest`` changes nothing that serves traffic and says why."""
    ledger.bad_input(kind)
    admission = admit(resource(api.ROLLOUT_KIND, spec))
    if admission.stored is None:
        assert admission.names(path), [(e.path, e.message) for e in admission.errors]
    given_spec = spec if admission.stored is None else admission.stored["spec"]
    bench = rest.copy()
    before = copy.deepcopy(bench.status)
    result = bench.reconcile(given_spec)
    return check_untouched(before, bench, result)


# ---------------------------------------------------------------- weights


def _is_weight(value: Any) -> bool:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return float(value).is_integer() and 0 <= value <= api.MAX_WEIGHT


BAD_WEIGHTS = st.one_of(
    st.integers(max_value=-1),
    st.integers(min_value=api.MAX_WEIGHT + 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=8),
    st.booleans(),
    st.lists(st.integers(0, 100), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(0, 100), max_size=1),
).filter(lambda value: not _is_weight(value))

GOOD_STEPS: st.SearchStrategy[list[dict[str, Any]]] = st.lists(
    st.one_of(
        st.integers(0, 100).map(lambda w: {"setWeight": w}),
        st.just({"pause": {}}),
        st.sampled_from(["1s", "1m"]).map(lambda d: {"pause": {"duration": d}}),
    ),
    max_size=4,
)


@given(steps=GOOD_STEPS, weight=BAD_WEIGHTS, at=st.integers(0, 4))
@example(steps=[], weight=150, at=0).via("the issue's example")
@example(steps=[{"setWeight": 10}], weight=-1, at=1)
@example(steps=[], weight=12.5, at=0)
@example(steps=[], weight="50%", at=0)
@example(steps=[], weight=2**63, at=0).via("crashed the CEL rules of the emulator's schema")
def test_a_weight_outside_0_to_100_or_not_an_integer_moves_no_traffic(
    rest: Bench, steps: list[dict[str, Any]], weight: Any, at: int
) -> None:
    at = min(at, len(steps))
    spec = rollout_spec("2")
    spec["strategy"]["steps"] = [*steps[:at], {"setWeight": weight}, *steps[at:]]
    path = f"spec.strategy.steps[{at}].setWeight"

    reason = refused(rest, spec, path, "weight outside 0..100 or not an integer")

    assert reason == api.Reason.INVALID_SPEC


# ---------------------------------------------------------------- durations

#: Seconds the operator can add to a time (Python's timedelta tops out near 2.7 million years).
COUNTABLE_SECONDS = 86_399_999_999_999.0

BAD_DURATION_TEXTS = [
    "5",
    "-1s",
    "1y",
    "1d",
    "1w",
    "",
    "5 m",
    " 5m",
    "5m ",
    "5m\n",
    "1.s",
    ".5s",
    "1e3s",
    "0x10s",
    "PT1M",
    "5M",
    "5mins",
    "1h-1m",
    "\u0663s",
    "\uff15s",
    "infs",
    "NaNs",
    "9" * 33 + "s",
    "9" * 31 + "h",
]


def _unreadable_duration(text: str) -> bool:
    return re.fullmatch(r"([0-9]+(\.[0-9]+)?(ms|s|m|h))+", text) is None


BAD_DURATIONS = st.one_of(
    st.sampled_from(BAD_DURATION_TEXTS),
    st.text(st.characters(codec="utf-8"), max_size=12).filter(_unreadable_duration),
    # readable, but longer than any clock can count
    st.integers(min_value=10**14, max_value=10**30).map(lambda n: f"{n}h"),
)

DURATION_FIELDS = {
    "spec.strategy.steps[1].pause.duration": ("strategy", "steps", 1, "pause", "duration"),
    "spec.strategy.analysis.interval": ("strategy", "analysis", "interval"),
    "spec.strategy.analysis.metrics[0].interval": (
        "strategy",
        "analysis",
        "metrics",
        0,
        "interval",
    ),
}


def _set(obj: Any, where: tuple[str | int, ...], value: Any) -> None:
    for key in where[:-1]:
        obj = obj[key]
    obj[where[-1]] = value


@given(field=st.sampled_from(sorted(DURATION_FIELDS)), text=BAD_DURATIONS)
@example(field="spec.strategy.steps[1].pause.duration", text="99999999999999h")
@example(field="spec.strategy.analysis.interval", text="5m\n")
def test_a_bad_duration_moves_no_traffic(rest: Bench, field: str, text: str) -> None:
    spec = rollout_spec("2")
    _set(spec, DURATION_FIELDS[field], text)

    reason = refused(rest, spec, field, "bad duration")

    assert reason == api.Reason.INVALID_SPEC


# ---------------------------------------------------------------- model URIs

MALFORMED_URIS = [
    "",
    "models:/",
    "models://2",
    "models:/fraud/",
    "models:/fraud@",
    "models:/@challenger",
    "models:/fraud//2",
    "models:/fraud/2/",
    "models:fraud/2",
    "Models:/fraud/2",
    "models:/fraud/two",
    "models:/fraud/-2",
    "models:/fraud/latest",
    "models:/fraud@challenger/2",
    "runs:/0123456789abcdef/model",
    "s3://models/fraud/2",
    "file:///etc/passwd",
    "http://evil.example/fraud/2",
    "mlflow-artifacts:/1/2/artifacts/model",
    "models:/fraud@challenger\n",
    "models:/fraud/2\n",
    " models:/fraud/2",
    "models:/fraud/2 ",
    "models:/fr aud/2",
    "models:/fraud\x00/2",
    "models:/fraud/2\x1b[31m",
    "models:/../../etc/2",
    "models:/fraud@chall enger",
    "models:/fraud@ch%61llenger",
    "models:/" + "a" * 600 + "/2",
    "models:/fraud/" + "2" * 600,
]


def _names_a_known_version(uri: str) -> bool:
    """Whether ``uri`` is a well-formed name for fraud v1 or v2 (not a bad input)."""
    aliases = "|".join(KNOWN_ALIASES)
    versions = "|".join(KNOWN_VERSIONS)
    pattern = rf"models:/{MODEL}(/0*({versions})|@({aliases}))"
    return re.fullmatch(pattern, uri) is not None


URIS = st.one_of(
    st.sampled_from(MALFORMED_URIS),
    st.text(st.characters(codec="utf-8"), max_size=40).map(lambda tail: f"models:/{tail}"),
    st.text(st.characters(codec="utf-8"), max_size=40),
).filter(lambda uri: not _names_a_known_version(uri))


@given(uri=URIS)
@example(uri="models:/fraud@challenger\n")
def test_a_malformed_model_uri_moves_no_traffic(rest: Bench, uri: str) -> None:
    spec = rollout_spec("2")
    spec["model"] = {"uri": uri}

    reason = refused(rest, spec, "spec.model.uri", "malformed model URI")

    assert reason in (api.Reason.INVALID_SPEC, api.Reason.SOURCE_ERROR)


# ---------------------------------------------------------------- unknown references

NAME = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,30}", fullmatch=True)
ALIAS = st.from_regex(r"[A-Za-z0-9_-]{1,30}", fullmatch=True)
UNKNOWN = st.one_of(
    st.integers(min_value=len(KNOWN_VERSIONS) + 1, max_value=10**15).map(
        lambda v: f"models:/{MODEL}/{v}"
    ),
    ALIAS.filter(lambda a: a not in KNOWN_ALIASES).map(lambda a: f"models:/{MODEL}@{a}"),
    NAME.filter(lambda n: n != MODEL).map(lambda n: f"models:/{n}/2"),
    NAME.filter(lambda n: n != MODEL).map(lambda n: f"models:/{n}@challenger"),
    st.sampled_from(["Staging", "Production", "Archived"]).map(lambda s: f"models:/{MODEL}/{s}"),
)


@given(uri=UNKNOWN)
@example(uri="models:/fraud/3")
@example(uri="models:/fraud@CHALLENGER")
@example(uri="models:/fraud/Production")
def test_an_unknown_model_version_or_alias_moves_no_traffic(rest: Bench, uri: str) -> None:
    spec = rollout_spec("2")
    spec["model"] = {"uri": uri}

    reason = refused(rest, spec, "spec.model.uri", "unknown model, version or alias")

    assert reason in (api.Reason.INVALID_SPEC, api.Reason.SOURCE_ERROR)


# ---------------------------------------------------------------- InferenceService names

NOT_KUBERNETES_NAMES = st.one_of(
    st.sampled_from(
        [
            'fraud"} or vector(1) #',
            "Fraud",
            "fraud_v2",
            "-fraud",
            "fraud-",
            "fraud/../other",
            "../secrets",
            "fraud predictor",
            "fraud\n",
            "a" * 254,
        ]
    ),
    st.text(st.characters(codec="utf-8"), min_size=1, max_size=30),
).filter(
    lambda name: (
        re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*", name)
        is None
        or len(name) > 253
    )
)


@given(name=NOT_KUBERNETES_NAMES)
@example(name='fraud"} or vector(1) #')
def test_an_inference_service_name_that_is_no_kubernetes_name_moves_no_traffic(
    rest: Bench, name: str
) -> None:
    spec = rollout_spec("2")
    spec["target"] = {"inferenceService": name}

    reason = refused(rest, spec, "spec.target.inferenceService", "InferenceService name")

    assert reason == api.Reason.INVALID_SPEC


@pytest.mark.parametrize("field", sorted(DURATION_FIELDS))
def test_the_api_server_reads_a_pattern_as_kube_apiserver_does(rest: Bench, field: str) -> None:
    """RE2's ``$`` is the end of the text: "5m" and a newline is refused by the pattern, as
    kube-apiserver refuses it (Python's ``$`` would also match before the newline)."""
    spec = rollout_spec("2")
    _set(spec, DURATION_FIELDS[field], "5m\n")

    admission = admit(resource(api.ROLLOUT_KIND, spec))

    assert admission.stored is None
    assert [(e.path, "should match" in e.message) for e in admission.errors] == [(field, True)]
