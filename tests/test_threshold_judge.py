"""The threshold judge and ``without_value``: an inclusive range per measurement.

Inside the range (bounds included) is PASS, outside is FAIL; NaN and no data
are INCONCLUSIVE (with the "is the canary receiving traffic?" hint), a
provider error is ERROR. Evidence from the provider is carried through.
"""

from __future__ import annotations

import math

import pytest

from modelrollout.api import Judge, MetricSpec, MetricStatus, ThresholdRange, Verdict
from modelrollout.decision import Measurement
from modelrollout.judges import JUDGES, Judgement
from modelrollout.judges.base import without_value
from modelrollout.judges.threshold import ThresholdJudge

EVIDENCE = {"query": "sum(rate(ok[1m])) / sum(rate(all[1m]))", "samples": "120"}


def judge(value: float | None, low: float | None = None, high: float | None = None) -> Judgement:
    metric = MetricSpec(name="m", query="q", threshold_range=ThresholdRange(min=low, max=high))
    measurement = Measurement(value=value, evidence=EVIDENCE)
    return ThresholdJudge().judge(metric, measurement, MetricStatus(name="m"), alpha=0.05)


def test_the_registry_maps_threshold_to_the_threshold_judge() -> None:
    assert isinstance(JUDGES[Judge.THRESHOLD], ThresholdJudge)


@pytest.mark.parametrize(
    ("value", "low", "high", "verdict", "message"),
    [
        (0.5, 0.0, 1.0, Verdict.PASS, "0.5 is within range"),
        (0.0, 0.0, 1.0, Verdict.PASS, "0 is within range"),
        (1.0, 0.0, 1.0, Verdict.PASS, "1 is within range"),
        (0.99, 0.99, 0.99, Verdict.PASS, "0.99 is within range"),
        (-0.1, 0.0, 1.0, Verdict.FAIL, "-0.1 is below the minimum 0"),
        (1.25, 0.0, 1.0, Verdict.FAIL, "1.25 is above the maximum 1"),
        (0.995, 0.99, None, Verdict.PASS, "0.995 is within range"),
        (0.98, 0.99, None, Verdict.FAIL, "0.98 is below the minimum 0.99"),
        (1e9, 0.99, None, Verdict.PASS, "1e+09 is within range"),
        (0.3, None, 0.5, Verdict.PASS, "0.3 is within range"),
        (0.75, None, 0.5, Verdict.FAIL, "0.75 is above the maximum 0.5"),
        (-1e9, None, 0.5, Verdict.PASS, "-1e+09 is within range"),
        (math.inf, None, 0.5, Verdict.FAIL, "inf is above the maximum 0.5"),
    ],
)
def test_range(
    value: float, low: float | None, high: float | None, verdict: Verdict, message: str
) -> None:
    assert judge(value, low, high) == Judgement(verdict, value, message, EVIDENCE)


@pytest.mark.parametrize(("value", "low", "high"), [(math.inf, 0.99, None), (-math.inf, None, 0.5)])
def test_an_infinity_with_no_bound_on_its_side_is_no_evidence(
    value: float, low: float | None, high: float | None
) -> None:
    """+Inf from ``x/0`` is not a perfect success rate: INCONCLUSIVE, never a PASS."""
    result = judge(value, low, high)
    assert (result.verdict, result.value) == (Verdict.INCONCLUSIVE, None)
    assert result.message.startswith("no data: the query returned")


def test_evidence_is_a_copy_of_the_providers() -> None:
    result = judge(0.5, 0.0, 1.0)

    assert result.evidence == EVIDENCE
    assert result.evidence is not EVIDENCE


def test_nan_is_inconclusive() -> None:
    result = judge(math.nan, 0.0, 1.0)

    assert result.verdict == Verdict.INCONCLUSIVE
    assert result.value is None
    assert result.message == "no data: the query returned NaN"


def test_no_data_is_inconclusive_and_asks_about_traffic() -> None:
    result = judge(None, 0.0, 1.0)

    assert result.verdict == Verdict.INCONCLUSIVE
    assert result.value is None
    assert result.message == "no data: is the canary receiving traffic?"


def test_provider_error_is_an_error_even_with_a_value() -> None:
    metric = MetricSpec(name="m", query="q", threshold_range=ThresholdRange(min=0.0))
    measurement = Measurement(value=0.5, error="connection refused")

    result = ThresholdJudge().judge(metric, measurement, MetricStatus(name="m"), alpha=0.05)

    assert result == Judgement(Verdict.ERROR, None, "metric provider error: connection refused")


@pytest.mark.parametrize(
    ("measurement", "expected"),
    [
        (Measurement(value=0.0), None),
        (Measurement(value=-3.0), None),
        (
            Measurement(error="timeout"),
            Judgement(Verdict.ERROR, None, "metric provider error: timeout"),
        ),
        (
            Measurement(),
            Judgement(Verdict.INCONCLUSIVE, None, "no data: is the canary receiving traffic?"),
        ),
        (
            Measurement(value=math.nan),
            Judgement(Verdict.INCONCLUSIVE, None, "no data: the query returned NaN"),
        ),
    ],
)
def test_without_value(measurement: Measurement, expected: Judgement | None) -> None:
    assert without_value(measurement) == expected
