"""The bad-input corpus for metric queries: PromQL injection, and MetricTemplates that are wrong.

Starting point: fraud v2 canary at 10% beside stable v1, holding at its first step with its
metric due (``tests/bad_inputs.Bench.in_canary``), so the engine pass renders and sends the
metric's query. Each input goes through what kube-apiserver does with the CRD first
(``tests/bad_inputs.admit``), then one full engine pass; the provider records the query and
answers "no data". In every case the pass writes nothing to the InferenceService and keeps
the stable, the canary and the weight.

- PromQL injection through metric args (quotes, braces, ``"} or vector(1) #``, newlines,
  backslashes, backticks…) placed inside ``"…"``, ``'…'``, ```…``` or outside quotes, and
  through the revision names KServe reports: either the pass refuses the query (InvalidSpec,
  with a warning event) or the query it sends keeps the value whole. That is checked by the
  real Prometheus (``live_prometheus``): ``absent(probe{probe="<value>"})`` answers with one
  series whose ``probe`` label is exactly the value, which no injected operator survives.
  Outside quotes, the value must be one PromQL token.
- MetricTemplates: addresses that are not http(s) URLs, bad and too long timeouts,
  malformed placeholders, unknown variables, ``{{ revision }}`` outside count queries, and a
  template with no query for the threshold judge: refused by the API server naming the
  field, or by the pass with InvalidSpec and a warning event.
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
    Bench,
    admit,
    check_untouched,
    crd_schema,
    metric,
    resource,
    rollout_spec,
    template_spec,
)
from modelrollout import api
from prometheus_servers import LivePrometheus, query

PROBE = "modelrollout_injection_probe"
#: Where a placeholder may stand, and the query around it.
CONTEXTS = {
    "double": f'absent({PROBE}{{probe="{{{{ arg }}}}"}})',
    "single": f"absent({PROBE}{{probe='{{{{ arg }}}}'}})",
    "raw": f"absent({PROBE}{{probe=`{{{{ arg }}}}`}})",
    "bare": f'absent({PROBE}{{probe="bare"}}) * {{{{ arg }}}}',
}
#: What may not appear in a value left outside quotes: whatever could end or add a clause.
SHAPE = re.compile(r"[\s\"'`{}()\[\],#=!~<>*/%^|&@;]")

NASTY = [
    'x"} or vector(1) #',
    "x'} or vector(1) #",
    "x`} or vector(1) #",
    '"} or vector(1) {"',
    '\\"} or vector(1) #',
    "x\n} or vector(1)",
    "x\\",
    "{{ namespace }}",
    "}}{{",
    "or",
    "1) or vector(1",
    "0.99",
    "5m",
    "ünïcødé ✓",
]

TEXT = st.text(st.characters(codec="utf-8"), max_size=40)
VALUES = st.one_of(
    st.sampled_from(NASTY),
    TEXT,
    st.text(st.sampled_from("\"'`{}()[]\\#\n ,=!~orvectr1"), max_size=30),
)


@pytest.fixture(scope="module")
def canary() -> Bench:
    """Given fraud v2 at 10% beside stable v1, holding at its first step, its metric due."""
    crd_schema(api.ROLLOUT_KIND)
    crd_schema(api.TEMPLATE_KIND)
    return Bench.in_canary()


def _admitted_spec(spec: dict[str, Any]) -> dict[str, Any]:
    admission = admit(resource(api.ROLLOUT_KIND, spec))
    assert admission.stored is not None, admission.errors
    stored: dict[str, Any] = admission.stored["spec"]
    return stored


def _pass(canary: Bench, spec: dict[str, Any]) -> tuple[list[str], api.Reason | None]:
    """One pass from the canary; the queries it sent, and the refusal's reason if refused."""
    bench = canary.copy()
    before = copy.deepcopy(bench.status)
    result = bench.reconcile(spec)
    if not bench.metrics.queries:
        return [], check_untouched(before, bench, result)
    assert bench.router.writes == [], bench.router.writes
    for key in ("stable", "canary", "canaryWeight", "currentStepIndex"):
        assert result.status.get(key) == before.get(key), key
    return bench.metrics.queries, None


def _probe_label(prometheus: LivePrometheus, promql: str) -> list[dict[str, str]]:
    """The label sets of the answer of the real Prometheus; [] also when it refuses the query."""
    try:
        found = query(prometheus.url, promql)
    except OSError:  # HTTPError (400 bad_data) is an OSError
        return []
    return [series["metric"] for series in found["result"]]


# ---------------------------------------------------------------- injection through args


@given(context=st.sampled_from(sorted(CONTEXTS)), value=VALUES, name=st.one_of(st.none(), TEXT))
@example(context="double", value='x"} or vector(1) #', name=None).via("the issue's example")
@example(context="single", value="x'} or vector(1) #", name='"} or vector(1) #')
@example(context="raw", value="x`} or vector(1) #", name=None)
@example(context="bare", value="1) or vector(1", name=None)
@example(context="double", value="x\n} or vector(1)", name=None)
def test_a_metric_arg_cannot_change_the_shape_of_the_query(
    canary: Bench, live_prometheus: LivePrometheus, context: str, value: str, name: str | None
) -> None:
    ledger.bad_input("PromQL injection through metric args and names")
    spec = rollout_spec("2")
    changes: dict[str, Any] = {"query": CONTEXTS[context], "args": {"arg": value}}
    if name is not None and 1 <= len(name) <= 63:
        changes["name"] = name
    spec["strategy"]["analysis"]["metrics"] = [metric(**changes)]

    sent, reason = _pass(canary, _admitted_spec(spec))

    if reason is not None:
        assert reason == api.Reason.INVALID_SPEC
        return
    (promql,) = sent
    if context == "bare":
        assert promql == CONTEXTS["bare"].replace("{{ arg }}", value)
        assert not SHAPE.search(value), promql
        return
    assert _probe_label(live_prometheus, promql) == [_labels(value)], promql


def _labels(value: str) -> dict[str, str]:
    """What ``absent`` answers for ``probe="<value>"``: an empty value is no label at all."""
    return {"probe": value} if value else {}


# ---------------------------------------------------------------- injection through names

REVISIONS = st.one_of(
    st.sampled_from(['fraud-00002"} or vector(1) #', "fraud\n", "Fraud-00002", "a" * 254]),
    TEXT,
    st.from_regex(r"[a-z0-9]([-a-z0-9]{0,20}[a-z0-9])?", fullmatch=True),
)


@given(revision=REVISIONS)
@example(revision='fraud-00002"} or vector(1) #')
def test_a_revision_name_from_kserve_cannot_change_the_shape_of_the_query(
    canary: Bench, live_prometheus: LivePrometheus, revision: str
) -> None:
    ledger.bad_input("PromQL injection through template variables")
    bench = canary.copy()
    assert bench.router.route is not None
    bench.router.route = type(bench.router.route)(
        bench.router.route.stable_storage_uri,
        bench.router.route.canary_storage_uri,
        bench.router.route.canary_weight,
        stable_revision=bench.router.route.stable_revision,
        canary_revision=revision,
    )
    spec = rollout_spec("2")
    probe = f'absent({PROBE}{{probe="{{{{ canaryRevision }}}}"}})'
    spec["strategy"]["analysis"]["metrics"] = [metric(query=probe)]

    sent, reason = _pass(bench, _admitted_spec(spec))

    if reason is not None:
        assert reason == api.Reason.INVALID_SPEC
        return
    (promql,) = sent
    assert _probe_label(live_prometheus, promql) == [_labels(revision)], promql


# ---------------------------------------------------------------- MetricTemplates

BAD_DURATIONS = st.one_of(
    st.sampled_from(["5", "-1s", "1y", "", "10 seconds", "5m\n", "0s", "9999999h", "1d"]),
    TEXT.filter(lambda t: not re.fullmatch(r"([0-9]+(\.[0-9]+)?(ms|s|m|h))+", t)),
)
TEMPLATE_CHANGES = st.one_of(
    st.tuples(
        st.just("spec.provider.prometheus.address"),
        st.one_of(
            st.sampled_from(
                ["prometheus:9090", "ftp://prometheus", "file:///etc/passwd", "", " http://p"]
            ),
            TEXT.filter(lambda t: not t.startswith(("http://", "https://"))),
        ).map(lambda a: {"provider": {"prometheus": {"address": a}}}),
    ),
    st.tuples(
        st.just("spec.provider.prometheus.timeout"),
        BAD_DURATIONS.map(
            lambda t: {"provider": {"prometheus": {"address": "http://p:9090", "timeout": t}}}
        ),
    ),
    st.tuples(
        st.just("spec.query"),
        st.one_of(
            st.sampled_from(
                [
                    "rate(x[{{ interval }]",
                    "{{ 1x }}",
                    "{{ }}",
                    'x{a="{{ nope }}"}',
                    'x{revision_name="{{ revision }}"}',
                    'x{a="{{ namespace }}\\{{ namespace }}"}',
                ]
            ),
            st.tuples(TEXT, st.from_regex(r"[a-z][A-Za-z0-9_]{0,10}", fullmatch=True)).map(
                lambda t: f"{t[0]}{{{{ {t[1]}x }}}}"
            ),
        ).map(lambda q: {"query": q}),
    ),
    st.tuples(
        st.just("spec.query"),
        st.just({"query": None, "counts": {"total": "sum(x)", "bad": "sum(y)"}}),
    ),
)


@given(change=TEMPLATE_CHANGES)
@example(change=("spec.provider.prometheus.timeout", {"provider": {"prometheus": {
    "address": "http://p:9090", "timeout": "99999999999999h"}}}))  # fmt: skip
@example(change=("spec.query", {"query": 'x{revision_name="{{ revision }}"}'}))
@example(change=("spec.provider.prometheus.address", {"provider": {"prometheus": {
    "address": "file:///etc/passwd"}}}))  # fmt: skip
def test_a_bad_metric_template_moves_no_traffic(
    canary: Bench, change: tuple[str, dict[str, Any]]
) -> None:
    ledger.bad_input("bad MetricTemplate")
    path, changes = change
    template = {k: v for k, v in (template_spec() | changes).items() if v is not None}
    admission = admit(resource(api.TEMPLATE_KIND, template, name="success-rate"))
    if admission.stored is None:
        assert admission.names(path), [(e.path, e.message) for e in admission.errors]
        return
    spec = rollout_spec("2")
    spec["strategy"]["analysis"]["metrics"] = [
        metric(query=None, templateRef={"name": "success-rate"})
    ]
    spec["strategy"]["analysis"]["metrics"][0].pop("query")
    bench = canary.copy()
    bench.templates.specs["success-rate"] = admission.stored["spec"]
    before = copy.deepcopy(bench.status)

    result = bench.reconcile(_admitted_spec(spec))

    assert bench.metrics.queries == [], "a bad template's query was sent"
    assert check_untouched(before, bench, result) == api.Reason.INVALID_SPEC
