"""The judge interface every judge implements."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from modelrollout.api import MetricSpec, MetricStatus, Verdict
from modelrollout.decision import Measurement


@dataclass(frozen=True)
class Judgement:
    verdict: Verdict
    value: float | None
    message: str
    evidence: dict[str, str] = field(default_factory=dict)
    #: Carried to the next check in ``MetricStatus.state`` (None: keep none).
    state: str | None = None
    #: Still collecting evidence: recorded as INCONCLUSIVE "collecting evidence" but
    #: counted as neither a pass nor an inconclusive result, so it holds the rollout
    #: at its step without ever reaching ``inconclusiveLimit``.
    pending: bool = False


class Judge(Protocol):
    def judge(
        self, metric: MetricSpec, measurement: Measurement, previous: MetricStatus, *, alpha: float
    ) -> Judgement:
        """Judge one measurement; ``previous`` carries what earlier checks saw (its
        ``state`` is the judge's own), ``alpha`` is this metric's share of the
        rollout's false-rollback budget."""
        ...


def without_value(measurement: Measurement) -> Judgement | None:
    """The verdicts every judge shares: provider errors and no data never pass."""
    evidence = dict(measurement.evidence)
    if measurement.error is not None:
        message = f"metric provider error: {measurement.error}"
        return Judgement(Verdict.ERROR, None, message, evidence)
    if measurement.value is None:
        message = "no data: is the canary receiving traffic?"
        return Judgement(Verdict.INCONCLUSIVE, None, message, evidence)
    if measurement.value != measurement.value:  # NaN, e.g. 0/0 in PromQL
        return Judgement(Verdict.INCONCLUSIVE, None, "no data: the query returned NaN", evidence)
    return None


def without_counts(measurement: Measurement, state: str | None = None) -> Judgement | None:
    """The same for judges of per-arm counts: an error, or an arm with no data, never
    passes (``state`` is carried through unchanged)."""
    evidence = dict(measurement.evidence)
    if measurement.error is not None:
        message = f"metric provider error: {measurement.error}"
        return Judgement(Verdict.ERROR, None, message, evidence, state)
    if not measurement.canary or not measurement.stable:
        arm = "canary" if not measurement.canary else "stable"
        message = f"no data for the {arm}: is it receiving traffic?"
        return Judgement(Verdict.INCONCLUSIVE, None, message, evidence, state)
    return None
