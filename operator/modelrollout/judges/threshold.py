"""The threshold judge: an absolute range per measurement, as Flagger and Argo do.

PASS inside ``thresholdRange`` (bounds inclusive), FAIL outside it; errors and
no data are never a PASS (see :func:`without_value`).
"""

from __future__ import annotations

from modelrollout.api import MetricSpec, MetricStatus, Verdict
from modelrollout.decision import Measurement
from modelrollout.judges.base import Judgement, without_value


class ThresholdJudge:
    def judge(
        self, metric: MetricSpec, measurement: Measurement, previous: MetricStatus, *, alpha: float
    ) -> Judgement:
        early = without_value(measurement)
        if early is not None:
            return early
        value = measurement.value
        assert value is not None
        bounds = metric.threshold_range
        low = bounds.min if bounds else None
        high = bounds.max if bounds else None
        evidence = dict(measurement.evidence)
        if low is not None and value < low:
            return Judgement(
                Verdict.FAIL, value, f"{value:g} is below the minimum {low:g}", evidence
            )
        if high is not None and value > high:
            return Judgement(
                Verdict.FAIL, value, f"{value:g} is above the maximum {high:g}", evidence
            )
        return Judgement(Verdict.PASS, value, f"{value:g} is within range", evidence)
