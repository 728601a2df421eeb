"""The threshold judge end to end: analysis.record fed by measure_metric on a real Prometheus.

The success-rate MetricTemplate from deploy/examples runs against the known
hour of tests/prometheus_history.py, evaluated at chosen minutes (the canary
is healthy from minute 20, serves 10% errors from minute 40, nothing from
minute 50): a passing value, failing values up to ``failureLimit``, no data up
to ``inconclusiveLimit``, and a Prometheus that stops answering up to
``consecutiveErrorLimit``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pytest
import yaml

from builders import spec
from modelrollout import analysis, api, templates
from modelrollout.api import AnalysisPhase, AnalysisStatus, Verdict
from modelrollout.metrics.base import VectorProvider
from modelrollout.metrics.measure import measure_metric
from modelrollout.metrics.prometheus import PrometheusProvider
from prometheus_history import CANARY, INFERENCE_SERVICE, NAMESPACE, STABLE, HistoryServer
from prometheus_servers import copy_tsdb, prometheus

REPO = Path(__file__).resolve().parents[1]
NAME = "success-rate"
ROLLOUT = spec(
    metrics=[
        {
            "name": NAME,
            "templateRef": {"name": NAME},
            "thresholdRange": {"min": 0.99},
            "failureLimit": 1,
            "inconclusiveLimit": 1,
            "consecutiveErrorLimit": 1,
        }
    ],
    interval="5m",
)
(METRIC,) = analysis.metrics_of(ROLLOUT)
TEMPLATE = api.read_template(
    yaml.safe_load((REPO / "deploy/examples/metrictemplate-success-rate.yaml").read_text())["spec"]
)


@dataclass(frozen=True)
class At:
    moment: datetime

    def now(self) -> datetime:
        return self.moment


class Analysis:
    """Measures the metric at a minute of the known hour and records the verdict."""

    def __init__(self, history: HistoryServer, url: str) -> None:
        self.history = history
        self.url = url
        self.status: AnalysisStatus | None = None

    async def check_at(self, minute: float) -> api.MetricStatus:
        now = self.history.history.at(minute)
        provider = PrometheusProvider(self.url, clock=At(now))

        def provider_for(settings: api.PrometheusProvider | None) -> VectorProvider:
            return provider

        variables = templates.variables(
            namespace=NAMESPACE,
            inference_service=INFERENCE_SERVICE,
            stable_revision=STABLE,
            canary_revision=CANARY,
            interval="5m",
            since_canary_start_seconds=(minute - 20) * 60,
        )
        measured = await measure_metric(METRIC, TEMPLATE, variables, provider_for)
        self.status = analysis.record(ROLLOUT, self.status, None, {NAME: measured}, now)
        assert self.status is not None
        return analysis.metric_status(self.status, NAME)

    @property
    def phase(self) -> AnalysisPhase:
        assert self.status is not None
        return self.status.phase


@pytest.fixture
def checks(prometheus_history: HistoryServer) -> Analysis:
    return Analysis(prometheus_history, prometheus_history.url)


@pytest.mark.asyncio
async def test_a_success_rate_within_range_passes(checks: Analysis) -> None:
    # Given a canary answering every request with 200 in minutes 30-35
    # When the success rate is measured at minute 35
    measured = await checks.check_at(35)

    # Then it passes with the measured value and the query as evidence
    assert (measured.verdict, measured.value, measured.message) == (
        Verdict.PASS,
        1.0,
        "1 is within range",
    )
    assert f'revision_name="{CANARY}"' in measured.evidence["query"]
    assert checks.phase == AnalysisPhase.RUNNING


@pytest.mark.asyncio
async def test_failures_beyond_the_failure_limit_fail_the_analysis(checks: Analysis) -> None:
    # Given a canary that starts answering 10% of requests with 500 at minute 40
    await checks.check_at(35)

    # When it is measured at minutes 45 and 50
    first = await checks.check_at(45)
    phase_after_first = checks.phase
    second = await checks.check_at(50)

    # Then the first failure is within failureLimit 1, the second fails the analysis
    assert (first.verdict, first.message) == (Verdict.FAIL, "0.9 is below the minimum 0.99")
    assert phase_after_first == AnalysisPhase.RUNNING
    assert (second.verdict, second.failed, second.successful) == (Verdict.FAIL, 2, 1)
    assert checks.phase == AnalysisPhase.FAILED
    assert checks.status is not None
    assert checks.status.message == (
        "metric 'success-rate' failed 2 time(s), more than failureLimit 1 "
        "(last: 0.9 is below the minimum 0.99)"
    )


@pytest.mark.asyncio
async def test_no_data_is_inconclusive_never_a_pass(checks: Analysis) -> None:
    # Given a canary that serves no requests after minute 50
    # When it is measured at minutes 55 and 60
    first = await checks.check_at(55)
    second = await checks.check_at(60)

    # Then each result is INCONCLUSIVE, and the second exceeds inconclusiveLimit 1
    assert (first.verdict, first.value) == (Verdict.INCONCLUSIVE, None)
    assert first.message == "no data: is the canary receiving traffic?"
    assert (second.verdict, second.inconclusive, second.successful) == (
        Verdict.INCONCLUSIVE,
        2,
        0,
    )
    assert checks.phase == AnalysisPhase.INCONCLUSIVE


@pytest.mark.asyncio
async def test_a_stopped_prometheus_is_an_error_up_to_the_error_limit(
    prometheus_history: HistoryServer, tmp_path: Path
) -> None:
    # Given a Prometheus of its own on the known hour, measured once while it runs
    copy_tsdb(prometheus_history.blocks, tmp_path)
    with prometheus(tmp_path) as server:
        checks = Analysis(prometheus_history, server.url)
        before = await checks.check_at(35)

    # When Prometheus has stopped and the metric is measured twice more
    first = await checks.check_at(40)
    phase_after_first = checks.phase
    second = await checks.check_at(45)

    # Then both are ERRORs naming the address, and the second exceeds consecutiveErrorLimit 1
    assert before.verdict == Verdict.PASS
    assert (first.verdict, first.message) == (
        Verdict.ERROR,
        f"metric provider error: cannot connect to Prometheus at {server.url}",
    )
    assert phase_after_first == AnalysisPhase.RUNNING
    assert (second.verdict, second.consecutive_errors, second.error) == (Verdict.ERROR, 2, 2)
    assert checks.phase == AnalysisPhase.ERROR
