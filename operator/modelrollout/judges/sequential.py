"""The sequential judge: the canary's bad events against the stable's, anytime-valid.

What it tests. Bad events (errors; for latency, requests slower than a bound)
arrive on each arm in proportion to its requests, at rates ``lc`` and ``ls``
per request; ``rho = lc / ls`` is how many times worse the canary is. The null
hypothesis "the canary is no worse than the tolerance" is
``rho <= rho0 = 1 + tolerance``.

The data. Providers give counts per arm since the canary started; the traffic
split changes between checks, so the judge works on the increments between
two checks and keeps the last counts it saw in its state. In increment ``i``
the arms served ``nc`` and ``ns`` requests and had ``bc`` and ``bs`` bad
events. Two independent Poisson counts conditioned on their sum ``B = bc + bs``
make ``bc ~ Binomial(B, t_i(rho))`` with ``t_i(rho) = rho*nc / (rho*nc + ns)``:
each bad event lands on the canary with the canary's share of the traffic,
weighted by ``rho``. The base rate may move from one increment to the next;
only the ratio matters.

Harm e-process. For a fixed ``rho1 > rho0``, an increment's likelihood ratio
``L_i = (t_i(rho1) / t_i(rho0))^bc * ((1 - t_i(rho1)) / (1 - t_i(rho0)))^bs``
has expectation exactly 1 when ``rho = rho0``. It increases with ``bc``
(``t_i(rho1) > t_i(rho0)``: the binomial family has a monotone likelihood
ratio in ``rho``), and for any ``rho <= rho0`` the binomial is stochastically
smaller than at ``rho0``, so ``E[L_i | past] <= 1`` everywhere in the null.
The product of the ``L_i`` is therefore a non-negative supermartingale under
the null, and so is any mixture of such products over ``rho1`` with weights
fixed in advance (here uniform over :data:`HARM_GRID`, multiples of ``rho0``).
Ville's inequality bounds the chance that it ever reaches ``1/alpha`` by
``alpha``, however often it is looked at: FAIL when it does. This holds even if
``rho`` changes between increments, as long as it stays in the null.

Within e-process. The mirror image (null ``rho >= rho0``, mixture over
:data:`WITHIN_GRID`, below ``rho0``, where the ratio decreases with ``bc``)
reaching ``1/alpha`` is evidence that the canary is within the tolerance:
PASS, which lets a step pass early. With a tolerance of 0 a canary exactly as
good as the stable never gets there (it would have to be better), and errors
are rare, so proving a small tolerance takes many requests: ``maxSamples`` is
the way out. Once the canary has served that many requests with no harm found,
it passes ("horizon reached" in the evidence). The harm e-process keeps
running through any PASS and the whole rollout: one alpha budget (this
metric's share of ``spec.strategy.analysis.alpha``) for every step.

Crossings are sticky: the first time either e-value reaches ``1/alpha`` is
remembered, as that is when the test decides. Before ``minSamples`` canary
requests the verdict is pending whatever the evidence (the e-processes still
accumulate), and it stays pending while neither has crossed: see
``Judgement.pending``, which holds the rollout at its step without counting
towards ``inconclusiveLimit``.

Latency (histogram buckets keyed by ``le``, cumulative, ``+Inf`` last). The
judge reduces it to the same test. At the first check where the stable has
served :data:`BOUND_SAMPLES` requests it fixes a bound: the bucket bound
nearest the stable's 90th percentile (:data:`TAIL_QUANTILE`), and from then on
a bad event is a request slower than it. The null hypothesis is then "the
canary's share of requests slower than that bound is at most
(1 + tolerance) times the stable's". The check that fixes the bound only sets
the baseline: its counts are never tested, so the bound is chosen before the
data it judges. A distribution test (Dirichlet-multinomial, all buckets) was
the alternative; it tests equality, so it would roll back a faster canary and
has no natural tolerance, while the tail share is what latency objectives are
written about.

Approximations, stated. Requests that are each bad with some probability make
``bc`` given ``B`` a noncentral hypergeometric rather than a binomial; for rare
events the two agree. A weight change inside an increment while the base rate
also moves makes ``t_i`` approximate (checks are far more frequent than steps).

Counter resets. Cumulative counts that go down (a restarted pod's series gone
from a sum) are a measurement fault, not data: that increment is skipped, the
new counts become the baseline and ``counterResets`` in the evidence says how
often it happened. Events between the two checks are lost to the test, which
costs power but never validity. State that cannot be read, or a tolerance
changed mid-rollout, starts the e-processes over from the counts since the
canary started (pooled, as if seen at once).

The value recorded is the Mantel-Haenszel estimate of ``rho``, stratified by
increment so that weight changes do not bias it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from modelrollout.api import MetricSpec, MetricStatus, SequentialSpec, Verdict
from modelrollout.decision import Measurement
from modelrollout.judges.base import Judgement, without_counts

#: The alternatives the harm e-process mixes over, as multiples of ``rho0``.
HARM_GRID = (1.25, 1.5, 2.0, 3.0, 5.0, 10.0)
#: The alternatives the within e-process mixes over, as multiples of ``rho0``.
WITHIN_GRID = (0.9, 0.8, 0.65, 0.5, 0.3)
#: Latency: a bad event is a request slower than the bucket bound nearest this quantile
#: of the stable's latency.
TAIL_QUANTILE = 0.9
#: Latency: stable requests needed before the bound is fixed.
BOUND_SAMPLES = 100
STATE_VERSION = 1

_INF = "+Inf"


class CountsError(ValueError):
    """The counts do not have the shape the judge needs."""


@dataclass(frozen=True)
class Counts:
    """Cumulative counts of both arms: requests and bad events."""

    canary_total: float
    canary_bad: float
    stable_total: float
    stable_bad: float

    def minus(self, earlier: Counts) -> Counts:
        return Counts(
            self.canary_total - earlier.canary_total,
            self.canary_bad - earlier.canary_bad,
            self.stable_total - earlier.stable_total,
            self.stable_bad - earlier.stable_bad,
        )

    def as_list(self) -> list[float]:
        return [self.canary_total, self.canary_bad, self.stable_total, self.stable_bad]


@dataclass
class State:
    """What the judge carries between checks (``MetricStatus.state``, compact JSON)."""

    rho0: float
    #: Latency: the ``le`` bound that separates slow requests, once fixed.
    bound: str | None = None
    last: Counts | None = None
    #: Log likelihood ratios against ``rho0``, one per grid point.
    harm: list[float] = field(default_factory=lambda: [0.0] * len(HARM_GRID))
    within: list[float] = field(default_factory=lambda: [0.0] * len(WITHIN_GRID))
    #: Mantel-Haenszel numerator and denominator of the ratio estimate.
    mh_num: float = 0.0
    mh_den: float = 0.0
    harm_crossed: bool = False
    within_crossed: bool = False
    resets: int = 0

    def dump(self) -> str:
        data = {
            "v": STATE_VERSION,
            "rho0": self.rho0,
            "le": self.bound,
            "last": self.last.as_list() if self.last else None,
            "harm": [round(x, 6) for x in self.harm],
            "within": [round(x, 6) for x in self.within],
            "mh": [round(self.mh_num, 6), round(self.mh_den, 6)],
            "crossed": [self.harm_crossed, self.within_crossed],
            "resets": self.resets,
        }
        return json.dumps(data, separators=(",", ":"))

    @classmethod
    def load(cls, text: str | None, rho0: float) -> State:
        """The state carried from the last check, or a fresh one if there is none
        that fits (none yet, unreadable, another version or another tolerance)."""
        if not text:
            return cls(rho0)
        try:
            data = json.loads(text)
            if data["v"] != STATE_VERSION or data["rho0"] != rho0:
                return cls(rho0)
            harm = [float(x) for x in data["harm"]]
            within = [float(x) for x in data["within"]]
            if len(harm) != len(HARM_GRID) or len(within) != len(WITHIN_GRID):
                return cls(rho0)
            last = Counts(*(float(x) for x in data["last"])) if data["last"] else None
            mh_num, mh_den = (float(x) for x in data["mh"])
            harm_crossed, within_crossed = (bool(x) for x in data["crossed"])
            bound = data["le"]
            return cls(
                rho0=rho0,
                bound=str(bound) if bound is not None else None,
                last=last,
                harm=harm,
                within=within,
                mh_num=mh_num,
                mh_den=mh_den,
                harm_crossed=harm_crossed,
                within_crossed=within_crossed,
                resets=int(data["resets"]),
            )
        except (ValueError, TypeError, KeyError):
            return cls(rho0)


def log_e_value(log_ratios: list[float]) -> float:
    """The log of the mixture (uniform weights) of the likelihood ratios."""
    top = max(log_ratios)
    return top + math.log(sum(math.exp(x - top) for x in log_ratios) / len(log_ratios))


def update(state: State, counts: Counts, log_threshold: float) -> None:
    """Fold the increment since ``state.last`` into the e-processes (in place)."""
    increment = counts if state.last is None else counts.minus(state.last)
    state.last = counts
    if min(increment.as_list()) < 0:
        state.resets += 1
        return
    nc, bc, ns, bs = increment.as_list()
    if nc <= 0 or ns <= 0 or bc + bs <= 0:
        return  # one arm served nothing, or nothing went wrong: no information
    rho0 = state.rho0
    baseline = math.log(rho0 * nc + ns)
    for grid, ratios in ((HARM_GRID, state.harm), (WITHIN_GRID, state.within)):
        for k, multiple in enumerate(grid):
            rho = rho0 * multiple
            ratios[k] += bc * math.log(multiple) - (bc + bs) * (math.log(rho * nc + ns) - baseline)
    state.mh_num += bc * ns / (nc + ns)
    state.mh_den += bs * nc / (nc + ns)
    state.harm_crossed = state.harm_crossed or log_e_value(state.harm) >= log_threshold
    state.within_crossed = state.within_crossed or log_e_value(state.within) >= log_threshold


def _number(arm: Mapping[str, float], key: str, which: str) -> float:
    value = arm[key]
    if not math.isfinite(value) or value < 0:
        raise CountsError(f"the {which}'s {key!r} count is {value}, not a count")
    # Events are whole; Prometheus' increase() extrapolates to fractions.
    return float(round(value))


def bad_total(arm: Mapping[str, float], which: str) -> tuple[float, float]:
    """Requests and bad events of one arm from ``{"total": n, "bad": b}``.

    A missing ``bad`` is 0: Prometheus returns nothing for a sum over no 5xx
    series. Bad events are capped at the total (two queries, scraped apart).
    """
    total = _number(arm, "total", which)
    bad = _number(arm, "bad", which) if "bad" in arm else 0.0
    return total, min(bad, total)


def cumulative(arm: Mapping[str, float], which: str) -> dict[float, float]:
    """Histogram buckets keyed by their ``le`` bound as numbers (``+Inf`` included)."""
    buckets = {}
    for le in arm:
        try:
            bound = float(le)
        except ValueError:
            raise CountsError(
                f"the {which}'s counts are neither total/bad nor buckets by le: {sorted(arm)}"
            ) from None
        buckets[bound] = _number(arm, le, which)
    if math.inf not in buckets:
        raise CountsError(f"the {which}'s histogram has no {_INF} bucket")
    return buckets


def tail_bound(stable: Mapping[float, float]) -> float:
    """The finite bound nearest the stable's ``TAIL_QUANTILE`` quantile: the one
    whose share of the stable's requests below it is closest to it (the lower
    of two equally close)."""
    total = stable[math.inf]
    finite = sorted(le for le in stable if le != math.inf)
    if not finite:
        raise CountsError(f"the stable's histogram has only the {_INF} bucket")
    return min(finite, key=lambda le: abs(stable[le] - TAIL_QUANTILE * total))


def slower_than(arm: Mapping[float, float], bound: float, which: str) -> tuple[float, float]:
    if bound not in arm:
        raise CountsError(f"the {which}'s histogram has no bucket le={bound:g}")
    total = arm[math.inf]
    return total, max(0.0, total - arm[bound])


def _format(x: float) -> str:
    return f"{x:.4g}"


def _count(x: float) -> str:
    return str(int(x))


class SequentialJudge:
    def judge(
        self, metric: MetricSpec, measurement: Measurement, previous: MetricStatus, *, alpha: float
    ) -> Judgement:
        settings = metric.sequential or SequentialSpec()
        evidence = dict(measurement.evidence)
        carried = previous.state
        early = without_counts(measurement, carried)
        if early is not None:
            return early
        rho0 = 1.0 + settings.tolerance
        state = State.load(previous.state, rho0)
        log_threshold = math.log(1.0 / alpha)
        try:
            counts = self._counts(measurement, state)
        except CountsError as error:
            return Judgement(Verdict.ERROR, None, str(error), evidence, carried)
        if isinstance(counts, str):
            return Judgement(
                Verdict.INCONCLUSIVE, None, counts, evidence, state.dump(), pending=True
            )
        update(state, counts, log_threshold)
        return self._verdict(settings, state, counts, evidence, alpha)

    def _counts(self, measurement: Measurement, state: State) -> Counts | str:
        """This check's cumulative counts, or why the latency bound is not fixed yet.

        Counts with a ``total`` are bad/total counts (with buckets too, the
        buckets are ignored); any other keys must be histogram buckets."""
        if "total" in measurement.canary:
            canary = bad_total(measurement.canary, "canary")
            stable = bad_total(measurement.stable, "stable")
            return Counts(*canary, *stable)
        canary_buckets = cumulative(measurement.canary, "canary")
        stable_buckets = cumulative(measurement.stable, "stable")
        if state.bound is None:
            served = stable_buckets[math.inf]
            if served < BOUND_SAMPLES:
                return (
                    f"{_count(served)} of the {BOUND_SAMPLES} stable requests needed "
                    "to fix the latency bound"
                )
            bound = tail_bound(stable_buckets)
            state.bound = next(le for le in measurement.stable if float(le) == bound)
        bound = float(state.bound)
        counts = Counts(
            *slower_than(canary_buckets, bound, "canary"),
            *slower_than(stable_buckets, bound, "stable"),
        )
        if state.last is None:
            state.last = counts  # the check that fixed the bound is only the baseline
        return counts

    def _verdict(
        self,
        settings: SequentialSpec,
        state: State,
        counts: Counts,
        evidence: dict[str, str],
        alpha: float,
    ) -> Judgement:
        harm = math.exp(min(log_e_value(state.harm), 700.0))
        within = math.exp(min(log_e_value(state.within), 700.0))
        threshold = 1.0 / alpha
        ratio = _ratio(state)
        bad = "bad-event rate"
        if state.bound is not None:
            bad = f"share of requests slower than le={state.bound}"
            evidence["latencyBound"] = f"le={state.bound} (the bound nearest the stable's p90)"
        evidence.update(
            canaryTotal=_count(counts.canary_total),
            canaryBad=_count(counts.canary_bad),
            stableTotal=_count(counts.stable_total),
            stableBad=_count(counts.stable_bad),
            ratio="n/a" if ratio is None else _format(ratio),
            tolerance=_format(settings.tolerance),
            eValueHarm=_format(harm),
            eValueWithin=_format(within),
            threshold=_format(threshold),
        )
        if state.resets:
            evidence["counterResets"] = str(state.resets)
        value = ratio
        compared = _compared(ratio)
        done = state.dump()
        seen = counts.canary_total
        if seen < settings.min_samples:
            message = f"{_count(seen)} of the {settings.min_samples} canary requests needed"
            return Judgement(Verdict.INCONCLUSIVE, value, message, evidence, done, pending=True)
        if state.harm_crossed:
            message = (
                f"the canary is worse than the stable beyond the tolerance: its {bad} is "
                f"{compared} the stable's ({_against(harm, threshold)})"
            )
            return Judgement(Verdict.FAIL, value, message, evidence, done)
        if state.within_crossed:
            message = (
                f"the canary is within the tolerance: its {bad} is {compared} the stable's "
                f"({_against(within, threshold)})"
            )
            return Judgement(Verdict.PASS, value, message, evidence, done)
        if settings.max_samples is not None and seen >= settings.max_samples:
            evidence["horizon"] = f"reached: {_count(seen)} >= maxSamples {settings.max_samples}"
            message = (
                f"no evidence of harm after {_count(seen)} canary requests (maxSamples "
                f"{settings.max_samples}): its {bad} is {compared} the stable's"
            )
            return Judgement(Verdict.PASS, value, message, evidence, done)
        message = (
            f"its {bad} is {compared} the stable's; evidence of harm {_format(harm)}, "
            f"of being within the tolerance {_format(within)}, threshold {_format(threshold)}"
        )
        return Judgement(Verdict.INCONCLUSIVE, value, message, evidence, done, pending=True)


def _against(e_value: float, threshold: float) -> str:
    """How a crossed e-value reads: it may have dipped since it crossed."""
    if e_value >= threshold:
        return f"evidence {_format(e_value)}, threshold {_format(threshold)}"
    return (
        f"evidence reached the threshold {_format(threshold)} at an earlier check, "
        f"now {_format(e_value)}"
    )


def _compared(ratio: float | None) -> str:
    if ratio is None:
        return "not comparable yet with"
    if math.isinf(ratio):
        return "above zero against"
    return f"{_format(ratio)}x"


def _ratio(state: State) -> float | None:
    if state.mh_den > 0:
        return state.mh_num / state.mh_den
    return math.inf if state.mh_num > 0 else None
