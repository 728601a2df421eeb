"""The threshold judge: an absolute range per measurement, as Flagger and Argo do.

PASS inside ``thresholdRange`` (bounds inclusive), FAIL outside it; errors and
no data are never a PASS (see :func:`without_value`). An infinite value (PromQL's ``x/0``)
FAILs a bound on its side and is otherwise no evidence at all: +Inf "success rate" is a
division by zero, not a perfect canary.
"""

from __future__ import annotations

import math

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
        if math.isinf(value) and (high if value > 0 else low) is None:
            return Judgement(
                Verdict.INCONCLUSIVE,
                None,
                f"no data: the query returned {value:+g}, which no bound on that side can judge",
                evidence,
            )
        if low is not None and value < low:
            return Judgement(
                Verdict.FAIL, value, f"{value:g} is below the minimum {low:g}", evidence
            )
        if high is not None and value > high:
            return Judgement(
                Verdict.FAIL, value, f"{value:g} is above the maximum {high:g}", evidence
            )
        return Judgement(Verdict.PASS, value, f"{value:g} is within range", evidence)
