"""measure_metric: which queries a metric runs for its judge, and how answers become a Measurement.

Against StaticMetrics (the same contract as Prometheus, see
tests/test_metrics_contract.py): the inline or template query of the
threshold judge, per-arm total/bad counts or buckets for the sequential and
drift judges, which provider and timeout are used, template errors (raised)
against transient problems (a measurement with an error), and how no data on
either arm is read. The real-Prometheus side is in the contract suite.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from modelrollout import api, templates
from modelrollout.api import Judge
from modelrollout.decision import Measurement
from modelrollout.metrics.base import VectorProvider
from modelrollout.metrics.measure import measure_metric
from modelrollout.metrics.static import StaticMetrics
from modelrollout.templates import TemplateError

VARIABLES = templates.variables(
    namespace="models",
    inference_service="fraud",
    stable_revision="rev-1",
    canary_revision="rev-2",
    interval="30s",
    since_canary_start_seconds=600,
)
PROMETHEUS = api.PrometheusProvider(address="http://prometheus:9090", timeout="200ms")
TOTAL = 'total{r="{{ revision }}"}'
BAD = 'bad{r="{{ revision }}"}'
BUCKETS = 'buckets{r="{{ revision }}"}'


def template(
    query: str | None = None,
    total: str | None = None,
    bad: str | None = None,
    buckets: str | None = None,
) -> api.MetricTemplateSpec:
    counts = api.CountQueries(total, bad, buckets) if total or buckets else None
    return api.MetricTemplateSpec(api.ProviderSpec(PROMETHEUS), query=query, counts=counts)


def metric(judge: Judge = Judge.THRESHOLD, query: str | None = None) -> api.MetricSpec:
    ref = None if query else api.LocalObjectRef("t")
    return api.MetricSpec(name="m", query=query, template_ref=ref, judge=judge)


class Provider:
    """A StaticMetrics over ``answers`` that records what it was asked for."""

    def __init__(self, tmp_path: Path, answers: dict[str, Any]) -> None:
        path = tmp_path / "answers.json"
        path.write_text(json.dumps(answers))
        self.metrics = StaticMetrics(path)
        self.asked: list[api.PrometheusProvider | None] = []

    def __call__(self, settings: api.PrometheusProvider | None) -> VectorProvider:
        self.asked.append(settings)
        return self.metrics


def buckets(**counts: float) -> list[dict[str, Any]]:
    return [{"labels": {"le": le}, "value": n} for le, n in counts.items()]


@pytest.mark.asyncio
async def test_an_inline_query_is_rendered_and_sent_to_the_default_provider(
    tmp_path: Path,
) -> None:
    provider = Provider(tmp_path, {'ok{r="rev-2"}[30s]': 0.995})

    measured = await measure_metric(
        metric(query='ok{r="{{ canaryRevision }}"}[{{ interval }}]'), None, VARIABLES, provider
    )

    assert measured == Measurement(
        value=0.995, evidence={"query": 'ok{r="rev-2"}[30s]', "samples": "1"}
    )
    assert provider.asked == [None]


@pytest.mark.asyncio
async def test_a_template_query_goes_to_the_templates_prometheus(tmp_path: Path) -> None:
    provider = Provider(tmp_path, {'q{ns="models"}': 0.5})

    measured = await measure_metric(
        metric(), template(query='q{ns="{{ namespace }}"}'), VARIABLES, provider
    )

    assert measured.value == 0.5
    assert provider.asked == [PROMETHEUS]


@pytest.mark.asyncio
async def test_the_templates_timeout_applies_to_its_queries(tmp_path: Path) -> None:
    slow = {"delaySeconds": 30, "answer": 1}
    provider = Provider(tmp_path, {"slow": slow})

    by_template = await measure_metric(metric(), template(query="slow"), VARIABLES, provider)
    inline = await measure_metric(
        metric(query="slow"), None, VARIABLES, provider, timeout_seconds=0.1
    )

    assert by_template.error is not None
    assert by_template.error.endswith("did not answer within 0.2s")
    assert inline.error is not None
    assert inline.error.endswith("did not answer within 0.1s")


@pytest.mark.asyncio
async def test_event_counts_run_once_per_arm_with_its_revision(tmp_path: Path) -> None:
    provider = Provider(
        tmp_path,
        {
            'total{r="rev-2"}': 1000,
            'bad{r="rev-2"}': 7,
            'total{r="rev-1"}': 9000,
            'bad{r="rev-1"}': 30,
        },
    )

    measured = await measure_metric(
        metric(Judge.SEQUENTIAL), template(total=TOTAL, bad=BAD), VARIABLES, provider
    )

    assert measured == Measurement(
        canary={"total": 1000.0, "bad": 7.0},
        stable={"total": 9000.0, "bad": 30.0},
        evidence={"query.total": 'total{r="rev-2"}', "query.bad": 'bad{r="rev-2"}'},
    )


@pytest.mark.asyncio
async def test_no_bad_events_and_an_idle_stable_count_as_zero(tmp_path: Path) -> None:
    provider = Provider(tmp_path, {'total{r="rev-2"}': 50})

    measured = await measure_metric(
        metric(Judge.SEQUENTIAL), template(total=TOTAL, bad=BAD), VARIABLES, provider
    )

    assert (measured.canary, measured.stable) == (
        {"total": 50.0, "bad": 0.0},
        {"total": 0.0, "bad": 0.0},
    )


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("judge", "counts"),
    [
        (Judge.SEQUENTIAL, {"total": TOTAL, "bad": BAD}),
        (Judge.SEQUENTIAL, {"buckets": BUCKETS}),
        (Judge.DRIFT, {"buckets": BUCKETS}),
    ],
)
async def test_a_canary_without_data_is_no_data(
    tmp_path: Path, judge: Judge, counts: dict[str, str]
) -> None:
    provider = Provider(tmp_path, {'total{r="rev-1"}': 10, 'buckets{r="rev-1"}': buckets(x=1)})

    measured = await measure_metric(metric(judge), template(**counts), VARIABLES, provider)

    assert measured.no_data
    assert measured.error is None
    assert measured.evidence["samples.canary"] == "0"


@pytest.mark.asyncio
async def test_a_provider_error_on_any_arm_is_an_error_naming_it(tmp_path: Path) -> None:
    provider = Provider(
        tmp_path,
        {
            'total{r="rev-2"}': 10,
            'bad{r="rev-2"}': 0,
            'total{r="rev-1"}': 10,
            'bad{r="rev-1"}': {"error": "Prometheus at http://p answered HTTP 503"},
        },
    )

    measured = await measure_metric(
        metric(Judge.SEQUENTIAL), template(total=TOTAL, bad=BAD), VARIABLES, provider
    )

    assert measured.error == "stable bad: Prometheus at http://p answered HTTP 503"
    assert (measured.canary, measured.stable) == ({}, {})


@pytest.mark.asyncio
async def test_a_count_query_must_give_one_value(tmp_path: Path) -> None:
    two = [{"labels": {"code": c}, "value": 1} for c in ("200", "500")]
    provider = Provider(tmp_path, {'total{r="rev-2"}': two, 'bad{r="rev-2"}': 0})

    measured = await measure_metric(
        metric(Judge.SEQUENTIAL), template(total=TOTAL, bad=BAD), VARIABLES, provider
    )

    assert measured.error == "canary total: query returned 2 series; aggregate it (e.g. with sum)"


@pytest.mark.asyncio
@pytest.mark.parametrize("judge", [Judge.SEQUENTIAL, Judge.DRIFT])
async def test_buckets_per_arm_are_ordered_by_bound_with_inf_last(
    tmp_path: Path, judge: Judge
) -> None:
    canary = [
        {"labels": {"le": "+Inf"}, "value": 30},
        {"labels": {"le": "10"}, "value": 20},
        {"labels": {"le": "2.5"}, "value": 5},
    ]
    provider = Provider(
        tmp_path, {'buckets{r="rev-2"}': canary, 'buckets{r="rev-1"}': buckets(**{"10": 9})}
    )

    measured = await measure_metric(metric(judge), template(buckets=BUCKETS), VARIABLES, provider)

    assert list(measured.canary.items()) == [("2.5", 5.0), ("10", 20.0), ("+Inf", 30.0)]
    assert measured.stable == {"10": 9.0}
    assert measured.evidence == {
        "query.buckets": 'buckets{r="rev-2"}',
        "samples.canary": "3",
        "samples.stable": "1",
    }


@pytest.mark.asyncio
async def test_class_counts_are_ordered_by_class_name(tmp_path: Path) -> None:
    provider = Provider(
        tmp_path,
        {
            'buckets{r="rev-2"}': buckets(setosa=3, virginica=1, versicolor=2),
            'buckets{r="rev-1"}': buckets(virginica=4),
        },
    )

    measured = await measure_metric(
        metric(Judge.DRIFT), template(buckets=BUCKETS), VARIABLES, provider
    )

    assert list(measured.canary) == ["setosa", "versicolor", "virginica"]


@pytest.mark.asyncio
async def test_a_stable_arm_without_buckets_is_empty(tmp_path: Path) -> None:
    provider = Provider(tmp_path, {'buckets{r="rev-2"}': buckets(**{"+Inf": 3})})

    measured = await measure_metric(
        metric(Judge.DRIFT), template(buckets=BUCKETS), VARIABLES, provider
    )

    assert (measured.canary, measured.stable) == ({"+Inf": 3.0}, {})


@pytest.mark.asyncio
async def test_a_revision_not_named_yet_is_an_error_not_an_invalid_spec(tmp_path: Path) -> None:
    without_canary = {k: v for k, v in VARIABLES.items() if k != templates.CANARY_REVISION}
    provider = Provider(tmp_path, {})

    measured = await measure_metric(
        metric(Judge.SEQUENTIAL), template(total=TOTAL, bad=BAD), without_canary, provider
    )

    assert measured.error == (
        "template variable canaryRevision has no value yet: "
        "is the InferenceService reporting its revisions?"
    )


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("judge", "spec", "message"),
    [
        (Judge.THRESHOLD, template(total=TOTAL, bad=BAD), "has no query for the threshold judge"),
        (Judge.SEQUENTIAL, template(query="q"), "needs a MetricTemplate with count queries"),
        (Judge.DRIFT, template(total=TOTAL, bad=BAD), "has no counts.buckets for the drift"),
        (Judge.THRESHOLD, template(query="q{{ nope }}"), "unknown template variable nope"),
        (Judge.SEQUENTIAL, template(total="{{ nope }}", bad=BAD), "unknown template variable"),
        (Judge.DRIFT, template(buckets='b{r="{{ x }}"}'), "unknown template variable x"),
    ],
)
async def test_a_template_that_cannot_serve_the_judge_is_a_template_error(
    tmp_path: Path, judge: Judge, spec: api.MetricTemplateSpec, message: str
) -> None:
    provider = Provider(tmp_path, {})

    with pytest.raises(TemplateError, match=message) as caught:
        await measure_metric(metric(judge), spec, VARIABLES, provider)

    assert caught.value.reason == api.Reason.INVALID_SPEC


@pytest.mark.asyncio
async def test_inline_metrics_for_count_judges_are_a_template_error(tmp_path: Path) -> None:
    with pytest.raises(TemplateError, match="needs a MetricTemplate with count queries"):
        await measure_metric(
            metric(Judge.DRIFT, query="q"), None, VARIABLES, Provider(tmp_path, {})
        )
