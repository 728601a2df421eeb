"""Metric providers: one contract, run against the real Prometheus and against StaticMetrics.

The shared suite (parametrized by ``backend``) pins what a measurement means:
a scalar value, no data, NaN, several series, a refused query, an unreachable
provider, a timeout, and vectors keyed by a label (``le``). The real backend is
Prometheus from the Debian package scraping a test-controlled exporter every
second; the fake answers from a JSON file describing the same series.

Prometheus only: range and string results, the bearer token (through an
auth-checking reverse proxy) and HTTP faults, template values read back
unchanged by Prometheus's own parser, importing without pandas, and exact
results of the default MetricTemplates (deploy/examples) on a known hour of
history backfilled with ``promtool tsdb create-blocks-from openmetrics``.
We ship no recording rules, so there is nothing for ``promtool test rules``.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from modelrollout import api, templates
from modelrollout.decision import Measurement
from modelrollout.metrics.base import BadQuery, NoData, Unavailable, VectorProvider
from modelrollout.metrics.measure import measure_metric
from modelrollout.metrics.prometheus import PrometheusProvider
from modelrollout.metrics.static import StaticMetrics
from prometheus_history import (
    CANARY,
    CANARY_LATENCY,
    CANARY_PREDICTIONS,
    INFERENCE_SERVICE,
    LATENCY_LE,
    NAMESPACE,
    PREDICTION_LE,
    STABLE,
    STABLE_LATENCY,
    STABLE_PREDICTIONS,
    HistoryServer,
)
from prometheus_servers import AuthProxy, LivePrometheus, black_hole, free_port

REPO = Path(__file__).resolve().parents[1]
TIMEOUT = 5.0
SHORT_TIMEOUT = 0.3

SCALAR = 'contract_value{case="scalar"}'
SCALAR_RESULT = 'scalar(contract_value{case="scalar"})'
ABSENT = 'contract_value{case="absent"}'
NAN = 'contract_value{case="nan"}'
MULTI = 'contract_value{case="multi"}'
SAME_LE = 'label_replace(contract_value{case="multi"}, "le", "1", "", "")'
BUCKETS = 'sum by (le) (contract_latency_bucket{case="buckets"})'
BAD = 'sum(contract_value{case="scalar"}'
SLOW = 'contract_value{case="slow"}'

EXPORTED = """\
# TYPE contract_value gauge
contract_value{case="scalar"} 0.25
contract_value{case="nan"} NaN
contract_value{case="multi",n="1"} 1
contract_value{case="multi",n="2"} 2
contract_value{case="multi",n="3"} 3
# TYPE contract_latency histogram
contract_latency_bucket{case="buckets",le="0.1"} 1
contract_latency_bucket{case="buckets",le="0.5"} 4
contract_latency_bucket{case="buckets",le="+Inf"} 6
contract_latency_count{case="buckets"} 6
contract_latency_sum{case="buckets"} 2.5
"""


def _series(case: str, value: Any, **labels: str) -> dict[str, Any]:
    return {"labels": {"__name__": "contract_value", "case": case, **labels}, "value": value}


#: The same series as EXPORTED, as the static provider's answers.
STATIC_ANSWERS: dict[str, Any] = {
    SCALAR: [_series("scalar", 0.25)],
    SCALAR_RESULT: 0.25,
    NAN: [_series("nan", "NaN")],
    MULTI: [_series("multi", n, n=str(n)) for n in (1, 2, 3)],
    SAME_LE: [_series("multi", n, n=str(n), le="1") for n in (1, 2, 3)],
    BUCKETS: [
        {"labels": {"le": le}, "value": value}
        for le, value in (("0.1", 1), ("0.5", 4), ("+Inf", 6))
    ],
    BAD: {"badQuery": "1:34: parse error: unclosed left parenthesis"},
    SLOW: {"delaySeconds": 30, "answer": 1},
}


@dataclass
class Backend:
    name: str
    healthy: VectorProvider
    unreachable: VectorProvider
    #: Answers SLOW (and, for Prometheus, anything) long after SHORT_TIMEOUT.
    slow: VectorProvider


@pytest.fixture(scope="module")
def exported(live_prometheus: LivePrometheus) -> LivePrometheus:
    live_prometheus.publish(EXPORTED)
    return live_prometheus


@pytest.fixture(params=["prometheus", "static"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    if request.param == "prometheus":
        live: LivePrometheus = request.getfixturevalue("exported")
        with black_hole() as hole:
            yield Backend(
                "prometheus",
                PrometheusProvider(live.url),
                PrometheusProvider(f"http://127.0.0.1:{free_port()}"),
                PrometheusProvider(hole),
            )
        return
    answers = tmp_path / "answers.json"
    answers.write_text(json.dumps(STATIC_ANSWERS))
    yield Backend(
        "static",
        StaticMetrics(answers),
        StaticMetrics(tmp_path / "absent.json"),
        StaticMetrics(answers),
    )


# ---------------------------------------------------------------- the shared contract


@pytest.mark.asyncio
async def test_a_single_series_is_the_value(backend: Backend) -> None:
    measured = await backend.healthy.measure(SCALAR, TIMEOUT)

    assert measured == Measurement(value=0.25, evidence={"query": SCALAR, "samples": "1"})


@pytest.mark.asyncio
async def test_a_scalar_result_is_the_value_and_an_unlabelled_vector(backend: Backend) -> None:
    measured = await backend.healthy.measure(SCALAR_RESULT, TIMEOUT)

    assert measured.value == 0.25
    assert await backend.healthy.vector(SCALAR_RESULT, TIMEOUT, "") == {"": 0.25}


@pytest.mark.asyncio
async def test_no_series_is_no_data_never_an_error(backend: Backend) -> None:
    measured = await backend.healthy.measure(ABSENT, TIMEOUT)

    assert measured == Measurement(evidence={"query": ABSENT, "samples": "0"})
    assert measured.no_data
    with pytest.raises(NoData):
        await backend.healthy.vector(ABSENT, TIMEOUT, "le")


@pytest.mark.asyncio
async def test_nan_is_no_data(backend: Backend) -> None:
    measured = await backend.healthy.measure(NAN, TIMEOUT)

    assert measured == Measurement(evidence={"query": NAN, "samples": "1", "result": "NaN"})
    with pytest.raises(NoData):
        await backend.healthy.vector(NAN, TIMEOUT, "")


@pytest.mark.asyncio
async def test_several_series_for_one_value_is_an_error_asking_to_aggregate(
    backend: Backend,
) -> None:
    measured = await backend.healthy.measure(MULTI, TIMEOUT)

    assert measured.value is None
    assert measured.error == "query returned 3 series; aggregate it (e.g. with sum)"
    assert measured.evidence == {"query": MULTI, "samples": "3"}
    with pytest.raises(BadQuery, match=r"query returned 3 series; aggregate it \(e.g. with sum\)"):
        await backend.healthy.vector(MULTI, TIMEOUT, "")


@pytest.mark.asyncio
async def test_a_vector_is_keyed_by_the_label(backend: Backend) -> None:
    assert await backend.healthy.vector(BUCKETS, TIMEOUT, "le") == {
        "0.1": 1.0,
        "0.5": 4.0,
        "+Inf": 6.0,
    }
    assert await backend.healthy.vector(MULTI, TIMEOUT, "n") == {"1": 1.0, "2": 2.0, "3": 3.0}


@pytest.mark.asyncio
async def test_a_vector_needs_the_label_on_every_series_once(backend: Backend) -> None:
    with pytest.raises(BadQuery, match=r"a series has no 'le' label; aggregate it by \(le\)"):
        await backend.healthy.vector(MULTI, TIMEOUT, "le")
    with pytest.raises(
        BadQuery, match=r"query returned 3 series with le='1'; aggregate it by \(le\)"
    ):
        await backend.healthy.vector(SAME_LE, TIMEOUT, "le")


@pytest.mark.asyncio
async def test_a_refused_query_is_an_error_with_the_providers_reason(backend: Backend) -> None:
    measured = await backend.healthy.measure(BAD, TIMEOUT)

    assert measured.value is None
    assert measured.error is not None
    assert "parse error: unclosed left parenthesis" in measured.error
    with pytest.raises(BadQuery, match="parse error: unclosed left parenthesis"):
        await backend.healthy.vector(BAD, TIMEOUT, "le")


@pytest.mark.asyncio
async def test_an_unreachable_provider_is_an_error_and_offline(backend: Backend) -> None:
    measured = await backend.unreachable.measure(SCALAR, TIMEOUT)

    assert measured.value is None
    assert measured.error is not None
    assert measured.evidence == {"query": SCALAR}
    with pytest.raises(Unavailable):
        await backend.unreachable.vector(SCALAR, TIMEOUT, "")
    assert await backend.unreachable.is_online() is False
    assert await backend.healthy.is_online() is True


@pytest.mark.asyncio
async def test_a_provider_slower_than_the_timeout_is_unavailable_in_time(backend: Backend) -> None:
    started = time.monotonic()
    measured = await backend.slow.measure(SLOW, SHORT_TIMEOUT)
    elapsed = time.monotonic() - started

    assert measured.error is not None
    assert measured.error.endswith(f"did not answer within {SHORT_TIMEOUT:g}s")
    assert SHORT_TIMEOUT <= elapsed < SHORT_TIMEOUT + 2
    with pytest.raises(Unavailable, match="did not answer within"):
        await backend.slow.vector(SLOW, SHORT_TIMEOUT, "")


# ---------------------------------------------------------------- Prometheus only


@pytest.fixture
def live(exported: LivePrometheus) -> PrometheusProvider:
    return PrometheusProvider(exported.url)


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("query", "message"),
    [
        (SCALAR + "[5m]", "query returned a range vector; give an instant vector"),
        ('"text"', "query returned a string; it needs a number"),
    ],
)
async def test_results_that_are_not_numbers_are_bad_queries(
    live: PrometheusProvider, query: str, message: str
) -> None:
    measured = await live.measure(query, TIMEOUT)

    assert measured.error is not None
    assert measured.error.startswith(message)
    with pytest.raises(BadQuery):
        await live.vector(query, TIMEOUT, "le")


@pytest.mark.asyncio
async def test_refused_queries_carry_prometheus_error_text(live: PrometheusProvider) -> None:
    measured = await live.measure(BAD, TIMEOUT)

    assert measured.error == (
        'Prometheus refused the query: invalid parameter "query": '
        "1:34: parse error: unclosed left parenthesis"
    )


@pytest.mark.asyncio
async def test_an_unreachable_prometheus_is_named_by_its_address() -> None:
    address = f"http://127.0.0.1:{free_port()}"

    measured = await PrometheusProvider(address).measure(SCALAR, TIMEOUT)

    assert measured.error == f"cannot connect to Prometheus at {address}"


TOKEN = "s3cr3t-t0ken-for-the-test"


@pytest.fixture
def proxy(exported: LivePrometheus) -> Iterator[AuthProxy]:
    with AuthProxy(exported.url, TOKEN).running() as running:
        yield running


@pytest.mark.asyncio
async def test_the_bearer_token_is_sent_with_every_query(proxy: AuthProxy) -> None:
    provider = PrometheusProvider(proxy.url, token=TOKEN)

    measured = await provider.measure(SCALAR, TIMEOUT)
    online = await provider.is_online()

    assert measured.value == 0.25
    assert online is True
    assert proxy.seen == [f"Bearer {TOKEN}", f"Bearer {TOKEN}"]


@pytest.mark.asyncio
async def test_whitespace_around_the_token_is_not_sent(proxy: AuthProxy) -> None:
    """A Secret made with ``kubectl create secret --from-file`` often ends in a newline."""
    measured = await PrometheusProvider(proxy.url, token=f" {TOKEN}\n").measure(SCALAR, TIMEOUT)

    assert measured.value == 0.25
    assert proxy.seen == [f"Bearer {TOKEN}"]


@pytest.mark.asyncio
@pytest.mark.parametrize("token", [None, "wrong-token-that-must-not-leak"])
async def test_refused_credentials_are_an_error_that_never_shows_a_token(
    proxy: AuthProxy, token: str | None
) -> None:
    provider = PrometheusProvider(proxy.url, token=token)

    measured = await provider.measure(SCALAR, TIMEOUT)

    assert measured.error == f"Prometheus at {proxy.url} refused the credentials (HTTP 401)"
    assert await provider.is_online() is False
    assert proxy.seen[0] == (f"Bearer {token}" if token else None)
    assert TOKEN not in repr(provider)
    if token:
        assert token not in measured.error


def test_credentials_in_the_address_are_not_shown() -> None:
    provider = PrometheusProvider("http://user:hunter2@127.0.0.1:9/prom", token=TOKEN)

    assert repr(provider) == "PrometheusProvider('http://127.0.0.1:9/prom')"


PROMETHEUS_TIMEOUT = json.dumps(
    {
        "status": "error",
        "errorType": "timeout",
        "error": "query timed out in expression evaluation",
    }
).encode()
EXECUTION_ERROR = json.dumps(
    {"status": "error", "errorType": "execution", "error": "found duplicate series"}
).encode()


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("fault", "kind", "message"),
    [
        (
            (503, "application/json", PROMETHEUS_TIMEOUT),
            Unavailable,
            "gave up on the query: query timed out in expression evaluation",
        ),
        ((500, "text/html", b"<html>oops</html>"), Unavailable, "answered HTTP 500"),
        ((502, "text/plain", b"bad gateway"), Unavailable, "answered HTTP 502"),
        (
            (422, "application/json", EXECUTION_ERROR),
            BadQuery,
            "Prometheus refused the query: found duplicate series",
        ),
        ((200, "text/html", b"<html>login</html>"), Unavailable, "did not answer like"),
        ((200, "application/json", b'{"data": {}}'), Unavailable, "did not answer like"),
    ],
)
async def test_http_faults_are_sorted_into_unavailable_and_bad_query(
    proxy: AuthProxy, fault: tuple[int, str, bytes], kind: type[Exception], message: str
) -> None:
    proxy.fault = fault
    provider = PrometheusProvider(proxy.url, token=TOKEN)

    measured = await provider.measure(SCALAR, TIMEOUT)

    assert measured.error is not None
    assert message in measured.error
    with pytest.raises(kind, match=message):
        await provider.vector(SCALAR, TIMEOUT, "le")


NASTY = [
    'x"} or vector(1) #',
    "back\\slash\\",
    "it's",
    "{{ namespace }}",
    "} or vector(1) {",
    "ünïcødé ✓",
    "`tick`",
]


@pytest.mark.asyncio
@pytest.mark.parametrize("value", NASTY)
@pytest.mark.parametrize("quote", ['"', "'"])
async def test_prometheus_reads_an_escaped_value_back_unchanged(
    live: PrometheusProvider, value: str, quote: str
) -> None:
    template = f'label_replace(vector(1), "v", {quote}{{{{ arg }}}}{quote}, "", "")'
    query = templates.render(template, {"arg": value})

    samples = await live.samples(query, TIMEOUT)

    assert [(s.labels, s.value) for s in samples] == [({"v": value}, 1.0)]


def test_importing_the_provider_does_not_import_pandas() -> None:
    code = (
        "import sys, modelrollout.metrics.prometheus, modelrollout.metrics.measure; "
        "print(sorted(m for m in ('pandas', 'numpy', 'matplotlib') if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )

    assert done.stdout.strip() == "[]"


@pytest.mark.asyncio
async def test_the_static_file_is_read_again_whenever_it_changed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """StaticMetrics parses its file once while it stays the same, and sees every change at
    once: a rewrite of the same size (within the file clock's resolution too), a file put in
    its place, and a file gone."""
    answers = tmp_path / "answers.json"
    answers.write_text('{"q": 1}')
    provider = StaticMetrics(answers)
    values = []
    for text in ('{"q": 2}', '{"q": 3}'):  # same size, written back to back
        values.append((await provider.samples("q", 1.0))[0].value)
        answers.write_text(text)
    values.append((await provider.samples("q", 1.0))[0].value)
    replacement = tmp_path / "next.json"
    replacement.write_text('{"q": 40}')
    os.replace(replacement, answers)
    values.append((await provider.samples("q", 1.0))[0].value)
    assert values == [1.0, 2.0, 3.0, 40.0]

    # Settled (modified long before it was read): it is parsed once, then again on a change
    # of its modification time alone.
    old = time.time() - 60
    os.utime(answers, (old, old))
    parsed: list[str] = []
    real = json.loads
    monkeypatch.setattr(json, "loads", lambda text: parsed.append(text) or real(text))
    for _ in range(3):
        assert (await provider.samples("q", 1.0))[0].value == 40.0
    assert len(parsed) == 1
    before = answers.stat()
    answers.write_text('{"q": 50}')
    os.utime(answers, ns=(before.st_atime_ns, before.st_mtime_ns + 1))
    assert (await provider.samples("q", 1.0))[0].value == 50.0
    assert len(parsed) == 2
    answers.unlink()
    with pytest.raises(Unavailable):
        await provider.samples("q", 1.0)


# ---------------------------------------------------------------- default templates, exact


def example_template(name: str) -> api.MetricTemplateSpec:
    document = yaml.safe_load(
        (REPO / "deploy/examples" / f"metrictemplate-{name}.yaml").read_text()
    )
    return api.read_template(document["spec"])


EXAMPLES = sorted(
    p.name.removeprefix("metrictemplate-").removesuffix(".yaml")
    for p in (REPO / "deploy/examples").glob("metrictemplate-*.yaml")
)


@dataclass(frozen=True)
class At:
    moment: datetime

    def now(self) -> datetime:
        return self.moment


def standard(minute: float, interval: str = "5m") -> dict[str, str]:
    """The variables of a measurement at ``minute`` of the known hour (canary from minute 20)."""
    return templates.variables(
        namespace=NAMESPACE,
        inference_service=INFERENCE_SERVICE,
        stable_revision=STABLE,
        canary_revision=CANARY,
        interval=interval,
        since_canary_start_seconds=(minute - 20) * 60,
    )


async def measure_example(
    history: HistoryServer, name: str, minute: float, judge: api.Judge = api.Judge.THRESHOLD
) -> Measurement:
    template = example_template(name)
    provider = PrometheusProvider(history.url, clock=At(history.history.at(minute)))
    asked: list[api.PrometheusProvider | None] = []

    def provider_for(settings: api.PrometheusProvider | None) -> VectorProvider:
        asked.append(settings)
        return provider

    metric = api.MetricSpec(name=name, template_ref=api.LocalObjectRef(name), judge=judge)
    measured = await measure_metric(metric, template, standard(minute), provider_for)
    assert asked == [template.provider.prometheus]
    return measured


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("minute", "value"),
    [
        (35, 1.0),  # minutes 30-35: 30 requests per 15 s, all 200
        (45, 0.9),  # minutes 40-45: 27 of 30 are 200
        (50, 0.9),
    ],
)
async def test_success_rate_is_exact_on_the_known_hour(
    prometheus_history: HistoryServer, minute: float, value: float
) -> None:
    measured = await measure_example(prometheus_history, "success-rate", minute)

    assert measured.error is None
    assert measured.value == pytest.approx(value, abs=1e-12)
    assert measured.evidence["samples"] == "1"
    assert f'revision_name="{CANARY}"' in measured.evidence["query"]


@pytest.mark.asyncio
@pytest.mark.parametrize("minute", [15, 55, 60])
async def test_success_rate_without_canary_requests_is_no_data(
    prometheus_history: HistoryServer, minute: float
) -> None:
    """Before the canary exists, and once it serves nothing (its counters flat)."""
    measured = await measure_example(prometheus_history, "success-rate", minute)

    assert measured.no_data
    assert measured.evidence["samples"] == "0"


@pytest.mark.asyncio
async def test_latency_p99_is_exact_on_the_known_hour(prometheus_history: HistoryServer) -> None:
    """Rank 0.99 x 30 = 29.7 falls in the bucket (100, 250] holding the 30th request:
    100 + 0.7 x 150 = 205 ms."""
    measured = await measure_example(prometheus_history, "latency-p99", 35)

    assert measured.value == pytest.approx(205.0, rel=1e-9)


@pytest.mark.asyncio
async def test_latency_p99_without_requests_is_no_data(prometheus_history: HistoryServer) -> None:
    measured = await measure_example(prometheus_history, "latency-p99", 55)

    assert measured.no_data


def _logit(share: float) -> float:
    share = min(max(share, 0.0001), 0.9999)
    return math.log(share / (1 - share))


@pytest.mark.asyncio
async def test_prediction_drift_is_the_largest_two_bin_psi(
    prometheus_history: HistoryServer,
) -> None:
    def clamp(share: float) -> float:
        return min(max(share, 0.0001), 0.9999)

    expected = max(
        (clamp(c / 100) - clamp(s / 100)) * (_logit(c / 100) - _logit(s / 100))
        for c, s in zip(CANARY_PREDICTIONS, STABLE_PREDICTIONS, strict=True)
    )

    measured = await measure_example(prometheus_history, "prediction-drift", 35)

    assert expected == pytest.approx(0.1040, abs=1e-4)  # le=0.75: 0.6 against 0.75
    assert measured.value == pytest.approx(expected, rel=1e-9)


@pytest.mark.asyncio
async def test_event_counts_per_arm_since_the_canary_started(
    prometheus_history: HistoryServer,
) -> None:
    """At minute 45, 25 minutes after the canary started: the canary served 80 steps of
    30 and 20 steps of 30 with 3 errors each; the stable 100 steps of 150 with 1 error."""
    measured = await measure_example(
        prometheus_history, "success-rate", 45, judge=api.Judge.SEQUENTIAL
    )

    assert measured.error is None
    assert measured.canary == {"total": pytest.approx(3000), "bad": pytest.approx(60)}
    assert measured.stable == {"total": pytest.approx(15000), "bad": pytest.approx(100)}
    assert measured.evidence["query.total"].startswith("sum(increase(revision_app_request_count{")
    assert "[1500s]" in measured.evidence["query.bad"]


@pytest.mark.asyncio
async def test_a_canary_without_errors_counts_zero_bad_events(
    prometheus_history: HistoryServer,
) -> None:
    measured = await measure_example(
        prometheus_history, "success-rate", 40, judge=api.Judge.SEQUENTIAL
    )

    assert measured.canary == {"total": pytest.approx(2400), "bad": 0.0}
    assert measured.stable == {"total": pytest.approx(12000), "bad": pytest.approx(80)}


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("name", "judge", "bounds", "canary", "stable"),
    [
        ("latency-p99", api.Judge.SEQUENTIAL, LATENCY_LE, CANARY_LATENCY, STABLE_LATENCY),
        (
            "prediction-drift",
            api.Judge.DRIFT,
            PREDICTION_LE,
            CANARY_PREDICTIONS,
            STABLE_PREDICTIONS,
        ),
    ],
)
async def test_bucket_counts_per_arm_since_the_canary_started(
    prometheus_history: HistoryServer,
    name: str,
    judge: api.Judge,
    bounds: tuple[str, ...],
    canary: tuple[int, ...],
    stable: tuple[int, ...],
) -> None:
    """At minute 40: 80 canary steps since minute 20; the same 80 steps of the stable."""
    measured = await measure_example(prometheus_history, name, 40, judge=judge)

    assert measured.error is None
    assert list(measured.canary) == list(bounds)  # ordered by bound, +Inf last
    expected_canary = {le: 80 * n for le, n in zip(bounds, canary, strict=True)}
    expected_stable = {le: 80 * n for le, n in zip(bounds, stable, strict=True)}
    assert measured.canary == pytest.approx(expected_canary)
    assert measured.stable == pytest.approx(expected_stable)
    assert measured.evidence["samples.canary"] == str(len(bounds))


@pytest.mark.asyncio
@pytest.mark.parametrize("name", EXAMPLES)
async def test_every_example_template_renders_and_prometheus_accepts_each_query(
    prometheus_history: HistoryServer, name: str
) -> None:
    template = example_template(name)
    at = At(prometheus_history.history.at(45))
    provider = PrometheusProvider(prometheus_history.url, clock=at)
    variables = standard(45)
    queries = [templates.render(template.query, variables)] if template.query else []
    counts = template.counts or api.CountQueries()
    for arm in (templates.CANARY_REVISION, templates.STABLE_REVISION):
        queries += [
            templates.render(q, templates.for_arm(variables, arm))
            for q in (counts.total, counts.bad, counts.buckets)
            if q
        ]

    answers = [await provider.samples(q, TIMEOUT) for q in queries]

    assert queries
    assert all(answers), "each query of the example matches data at minute 45"


@pytest.mark.asyncio
async def test_the_inline_example_rollouts_query_is_exact_on_the_known_hour(
    prometheus_history: HistoryServer,
) -> None:
    """deploy/examples/rollout-inline.yaml: the canary's mean predicted value, 0.6 by design."""
    document = yaml.safe_load((REPO / "deploy/examples/rollout-inline.yaml").read_text())
    strategy_analysis = api.read_spec(document["spec"]).strategy.analysis
    assert strategy_analysis is not None
    (metric,) = strategy_analysis.metrics
    provider = PrometheusProvider(
        prometheus_history.url, clock=At(prometheus_history.history.at(35))
    )

    measured = await measure_metric(metric, None, standard(35, "1m"), lambda _: provider)

    assert measured.value == pytest.approx(0.6, rel=1e-9)
