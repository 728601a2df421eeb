"""The drift judge: the canary's predictions against the stable's, PSI or KS.

The counts are per arm since the canary started, in one of two shapes, told
apart by their keys:

- a regression model's histogram of predicted values: cumulative buckets keyed
  by their ``le`` bound, as Prometheus keeps them. Every key parses as a number
  and ``+Inf`` is among them (numeric class labels such as ``"0"``/``"1"`` have
  no ``+Inf``, so they stay classes). The bins are the bounds both arms have,
  each bin holding what lies between one bound and the next;
- a classifier's counts per predicted class, any other keys; a class one arm
  never predicted counts 0 there.

Statistics, over the shares ``p`` (canary) and ``q`` (stable) of each bin:

- PSI, the population stability index ``Σ (p - q)·ln(p / q)``. An empty bin
  would make it infinite, so an empty bin's share counts as :data:`EPSILON`
  (0.0001, one in ten thousand), the usual convention; shares are not
  renormalised after that, so the statistic of two identical histograms is
  exactly 0;
- KS, for a histogram the largest gap between the two cumulative distributions
  at the shared bounds (the Kolmogorov-Smirnov statistic, as far as buckets
  can tell it); classes have no order, so for them it is the largest gap over
  any set of classes, the total variation distance ``½·Σ|p - q|`` (which is
  what KS would be under the worst ordering of the classes).

Prometheus' ``increase()`` extrapolates each bucket series on its own (it
stops where that series would reach zero), so the buckets of one window can
come out out of order, the more so the younger the window: in the sandbox a
canary's buckets 8 s after it started dropped by 7 predictions of 30, and by
about 2 of 150 later on. Below ``drift.minSamples`` on either arm (an arm's
total is its ``+Inf`` bucket) the verdict is pending before the buckets are
looked at; from there, a bucket below the one before it by at most
:data:`SLACK` of the arm's total, or :data:`SLACK_EVENTS` predictions, is read
as an empty bin (as ``histogram_quantile`` mends such buckets); a larger drop
is an error: not cumulative buckets.

PASS when the statistic is at most ``drift.max``, FAIL above it. These are
effect sizes, not tests: with few samples PSI reads high by chance (roughly
``(bins - 1)·(1/Nc + 1/Ns)``), which ``minSamples`` keeps in check.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from modelrollout.api import DriftSpec, DriftStatistic, MetricSpec, MetricStatus, Verdict
from modelrollout.decision import Measurement
from modelrollout.judges.base import Judgement, without_counts

#: The share an empty bin counts as in PSI.
EPSILON = 1e-4
#: How far below the bucket before it a bucket may read (a share of the arm's total, or a
#: number of predictions) and still count as an empty bin: ``increase()``'s extrapolation,
#: not a malformed histogram.
SLACK = 0.05
SLACK_EVENTS = 3.0

_INF = "+Inf"


class CountsError(ValueError):
    """The counts do not have the shape the judge needs."""


@dataclass(frozen=True)
class Bins:
    """Counts per bin of both arms; ``ordered`` for a histogram's bins."""

    names: tuple[str, ...]
    canary: tuple[float, ...]
    stable: tuple[float, ...]
    #: A histogram's upper bounds, one per bin; empty for classes (no order).
    bounds: tuple[float, ...] = ()

    @property
    def ordered(self) -> bool:
        return bool(self.bounds)

    @property
    def canary_total(self) -> float:
        return sum(self.canary)

    @property
    def stable_total(self) -> float:
        return sum(self.stable)


def _is_histogram(arm: Mapping[str, float]) -> bool:
    if _INF not in arm:
        return False
    try:
        for le in arm:
            float(le)
    except ValueError:
        return False
    return True


def total(arm: Mapping[str, float]) -> float:
    """How many predictions an arm's counts hold: a histogram's ``+Inf`` bucket (its
    largest, should extrapolation have put another above it), or the sum of the classes."""
    return max(arm.values(), default=0.0) if _is_histogram(arm) else sum(arm.values())


def _checked(arm: Mapping[str, float], which: str) -> None:
    for key, value in arm.items():
        if not math.isfinite(value) or value < 0:
            raise CountsError(f"the {which}'s count for {key!r} is {value}, not a count")


def bins(canary: Mapping[str, float], stable: Mapping[str, float]) -> Bins:
    """Per-bin counts of both arms, from cumulative buckets or counts per class."""
    _checked(canary, "canary")
    _checked(stable, "stable")
    histograms = (_is_histogram(canary), _is_histogram(stable))
    if histograms == (False, False):
        labels = tuple(sorted(set(canary) | set(stable)))
        return Bins(
            labels,
            tuple(float(canary.get(c, 0.0)) for c in labels),
            tuple(float(stable.get(c, 0.0)) for c in labels),
        )
    if histograms != (True, True):
        raise CountsError("one arm has histogram buckets, the other counts per class")
    by_bound_canary = {float(le): v for le, v in canary.items()}
    by_bound_stable = {float(le): v for le, v in stable.items()}
    shared = sorted(set(by_bound_canary) & set(by_bound_stable))
    names = []
    per_bin: tuple[list[float], list[float]] = ([], [])
    # Per arm, the highest bucket so far: a bucket below it is an empty bin, and the next
    # bin counts from that highest, not from the dip.
    level = [0.0, 0.0]
    below = -math.inf
    for bound in shared:
        names.append(f"({below:g}, {bound:g}]")
        for side, (which, arm) in enumerate(
            (("canary", by_bound_canary), ("stable", by_bound_stable))
        ):
            count = arm[bound] - level[side]
            if count < -max(SLACK_EVENTS, SLACK * max(arm.values())):
                raise CountsError(f"the {which}'s buckets are not cumulative at le={bound:g}")
            per_bin[side].append(max(count, 0.0))
            level[side] = max(level[side], arm[bound])
        below = bound
    return Bins(tuple(names), tuple(per_bin[0]), tuple(per_bin[1]), tuple(shared))


def _shares(counts: tuple[float, ...]) -> list[float]:
    total = sum(counts)
    return [c / total for c in counts]


def psi(of: Bins) -> tuple[float, int]:
    """The population stability index and the bin that adds most to it."""
    p = [x or EPSILON for x in _shares(of.canary)]
    q = [x or EPSILON for x in _shares(of.stable)]
    terms = [(pi - qi) * math.log(pi / qi) for pi, qi in zip(p, q, strict=True)]
    worst = max(range(len(terms)), key=terms.__getitem__)
    return sum(terms), worst


def ks(of: Bins) -> tuple[float, int]:
    """KS (histograms) or total variation (classes), and where the gap is widest."""
    p = _shares(of.canary)
    q = _shares(of.stable)
    if not of.ordered:
        gaps = [abs(pi - qi) for pi, qi in zip(p, q, strict=True)]
        return sum(gaps) / 2, max(range(len(gaps)), key=gaps.__getitem__)
    cdf_gaps = []
    below_p = below_q = 0.0
    for pi, qi in zip(p, q, strict=True):
        below_p += pi
        below_q += qi
        cdf_gaps.append(abs(below_p - below_q))
    worst = max(range(len(cdf_gaps)), key=cdf_gaps.__getitem__)
    return cdf_gaps[worst], worst


def _percent(share: float) -> str:
    return f"{100 * share:.3g}%"


class DriftJudge:
    def judge(
        self, metric: MetricSpec, measurement: Measurement, previous: MetricStatus, *, alpha: float
    ) -> Judgement:
        settings = metric.drift or DriftSpec()
        evidence = dict(measurement.evidence)
        early = without_counts(measurement)
        if early is not None:
            return early
        try:
            _checked(measurement.canary, "canary")
            _checked(measurement.stable, "stable")
            counted = total(measurement.canary), total(measurement.stable)
            evidence.update(canarySamples=f"{counted[0]:.0f}", stableSamples=f"{counted[1]:.0f}")
            if min(counted) < max(1, settings.min_samples):
                message = (
                    f"{counted[0]:.0f} canary and {counted[1]:.0f} stable predictions, "
                    f"{settings.min_samples} needed on each"
                )
                return Judgement(Verdict.INCONCLUSIVE, None, message, evidence, pending=True)
            of = bins(measurement.canary, measurement.stable)
        except CountsError as error:
            return Judgement(Verdict.ERROR, None, str(error), evidence)
        evidence.update(
            canarySamples=f"{of.canary_total:.0f}", stableSamples=f"{of.stable_total:.0f}"
        )
        name = settings.statistic.value.upper()
        value, worst = psi(of) if settings.statistic == DriftStatistic.PSI else ks(of)
        if settings.statistic == DriftStatistic.KS and of.ordered:
            where = f"le={of.bounds[worst]:g}"
            canary_share = sum(of.canary[: worst + 1]) / of.canary_total
            stable_share = sum(of.stable[: worst + 1]) / of.stable_total
            shares = f"canary {_percent(canary_share)} vs stable {_percent(stable_share)} below"
        else:
            where = of.names[worst]
            canary_share = of.canary[worst] / of.canary_total
            stable_share = of.stable[worst] / of.stable_total
            shares = f"canary {_percent(canary_share)} vs stable {_percent(stable_share)}"
        worst_bin = f"{where}: {shares}"
        evidence.update(
            statistic=settings.statistic.value,
            value=f"{value:.4g}",
            max=f"{settings.max:g}",
            worstBin=worst_bin,
        )
        if value <= settings.max:
            message = f"{name} {value:.4g} is within the maximum {settings.max:g}"
            return Judgement(Verdict.PASS, value, message, evidence)
        message = (
            f"{name} {value:.4g} is above the maximum {settings.max:g}; "
            f"the widest gap is at {worst_bin}"
        )
        return Judgement(Verdict.FAIL, value, message, evidence)
