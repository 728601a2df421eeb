"""Sequential against threshold judging on the same simulated rollouts.

Run: ``python bench/sequential_vs_threshold.py`` (numpy; under a minute).

Each simulated rollout walks the steps 10% -> 25% -> 50% -> promoted. At every
check (one analysis interval) the canary and the stable serve Poisson(500)
requests split by the weight; the stable's error rate is 0.5%. A check that
PASSes moves the rollout one step on (a PASS at 50% promotes it, as
``missingEvidence`` asks for a pass at the final weight); a FAIL rolls it back;
anything else holds it at its step. At most 300 checks per rollout.

- threshold: the canary's success rate in the interval must be at least 0.99
  (twice the stable's error rate), failureLimit 0, as Flagger and Argo
  Rollouts judge it;
- sequential: the real judge, tolerance 0.2, minSamples 100, maxSamples 2000,
  alpha 0.05, its state carried from check to check; "loose" is tolerance 0.5
  and maxSamples 1000.

Figures (means over the rollouts of each scenario):

- exposure: bad requests a bad canary (5x the stable's error rate) served
  before it was rolled back, over the rollouts that rolled it back ("caught"
  says how many did; the others were promoted or still held at the end);
- time to promote: checks until a good canary (the stable's error rate) is
  promoted, over the rollouts that were promoted;
- false rollback: the share of good canaries rolled back.

The 2x regression and the sequential judge on latency histograms (where every
request carries evidence) are printed too; the RESULT line is the 5x
error-rate scenario.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from modelrollout.api import (
    Judge,
    LocalObjectRef,
    MetricSpec,
    MetricStatus,
    SequentialSpec,
    Verdict,
)
from modelrollout.decision import Measurement
from modelrollout.judges.sequential import SequentialJudge

ROLLOUTS = 1_500
WEIGHTS = (0.10, 0.25, 0.50)
REQUESTS = 500
STABLE_ERROR_RATE = 0.005
MAX_CHECKS = 300
ALPHA = 0.05
SETTINGS = SequentialSpec(tolerance=0.2, min_samples=100, max_samples=2000)
#: A looser setting, to show the knob: up to 1.5x the stable's error rate, an earlier horizon.
LOOSE = SequentialSpec(tolerance=0.5, min_samples=100, max_samples=1000)
LATENCY_BOUNDS = (25.0, 50.0, 100.0, 200.0, 400.0, 800.0, 1600.0)


@dataclass
class Totals:
    """Cumulative counts of both arms since the canary started."""

    canary: int = 0
    canary_bad: int = 0
    stable: int = 0
    stable_bad: int = 0


@dataclass(frozen=True)
class Result:
    promoted: bool
    rolled_back: bool
    checks: int
    canary_bad: int


#: One check's judge: (totals so far, this interval's canary requests and bad ones) -> verdict.
Check = Callable[[Totals, int, int], Verdict | None]


def threshold_judge() -> Check:
    def check(totals: Totals, served: int, bad: int) -> Verdict | None:
        if served == 0:
            return None
        return Verdict.PASS if 1 - bad / served >= 0.99 else Verdict.FAIL

    return check


def sequential_judge(settings: SequentialSpec = SETTINGS) -> Check:
    judge = SequentialJudge()
    metric = MetricSpec(
        name="errors", template_ref=LocalObjectRef("t"), judge=Judge.SEQUENTIAL, sequential=settings
    )
    state: list[str | None] = [None]

    def check(totals: Totals, served: int, bad: int) -> Verdict | None:
        measurement = Measurement(
            canary={"total": totals.canary, "bad": totals.canary_bad},
            stable={"total": totals.stable, "bad": totals.stable_bad},
        )
        judgement = judge.judge(
            metric, measurement, MetricStatus(name="errors", state=state[0]), alpha=ALPHA
        )
        state[0] = judgement.state
        return None if judgement.pending else judgement.verdict

    return check


def roll_out(rng: np.random.Generator, canary_rate: float, check: Check) -> Result:
    totals = Totals()
    step = 0
    for index in range(1, MAX_CHECKS + 1):
        requests = int(rng.poisson(REQUESTS))
        served = int(rng.binomial(requests, WEIGHTS[step]))
        bad = int(rng.binomial(served, canary_rate))
        totals.canary += served
        totals.canary_bad += bad
        totals.stable += requests - served
        totals.stable_bad += int(rng.binomial(requests - served, STABLE_ERROR_RATE))
        verdict = check(totals, served, bad)
        if verdict == Verdict.FAIL:
            return Result(False, True, index, totals.canary_bad)
        if verdict == Verdict.PASS:
            step += 1
            if step == len(WEIGHTS):
                return Result(True, False, index, totals.canary_bad)
    return Result(False, False, MAX_CHECKS, totals.canary_bad)


def latency_roll_out(rng: np.random.Generator, slowdown: float) -> Result:
    """The sequential judge on latency buckets: log-normal, median 100 ms."""
    judge = SequentialJudge()
    metric = MetricSpec(
        name="latency",
        template_ref=LocalObjectRef("t"),
        judge=Judge.SEQUENTIAL,
        sequential=SETTINGS,
    )

    def shares(scale: float) -> np.ndarray:
        edges = np.log(np.array(LATENCY_BOUNDS) / (100.0 * scale)) / 0.6
        below = np.array([0.5 * math.erfc(-x / math.sqrt(2)) for x in edges])
        return np.diff(np.concatenate([[0.0], below, [1.0]]))

    keys = [f"{b:g}" for b in LATENCY_BOUNDS] + ["+Inf"]
    canary_shares, stable_shares = shares(slowdown), shares(1.0)
    canary = np.zeros(len(keys))
    stable = np.zeros(len(keys))
    state = None
    step = 0
    for index in range(1, MAX_CHECKS + 1):
        requests = int(rng.poisson(REQUESTS))
        served = int(rng.binomial(requests, WEIGHTS[step]))
        canary += np.cumsum(rng.multinomial(served, canary_shares))
        stable += np.cumsum(rng.multinomial(requests - served, stable_shares))
        measurement = Measurement(
            canary=dict(zip(keys, canary.tolist(), strict=True)),
            stable=dict(zip(keys, stable.tolist(), strict=True)),
        )
        judgement = judge.judge(
            metric, measurement, MetricStatus(name="latency", state=state), alpha=ALPHA
        )
        state = judgement.state
        if judgement.pending:
            continue
        if judgement.verdict == Verdict.FAIL:
            return Result(False, True, index, 0)
        if judgement.verdict == Verdict.PASS:
            step += 1
            if step == len(WEIGHTS):
                return Result(True, False, index, 0)
    return Result(False, False, MAX_CHECKS, 0)


@dataclass(frozen=True)
class Summary:
    exposure: float
    detected: float
    promote_checks: float
    promoted: float
    false_rollback: float


def summarize(bad: list[Result], good: list[Result]) -> Summary:
    promoted = [r.checks for r in good if r.promoted]
    caught = [r.canary_bad for r in bad if r.rolled_back]
    return Summary(
        exposure=float(np.mean(caught)) if caught else math.nan,
        detected=float(np.mean([r.rolled_back for r in bad])),
        promote_checks=float(np.mean(promoted)) if promoted else math.nan,
        promoted=len(promoted) / len(good),
        false_rollback=float(np.mean([r.rolled_back for r in good])),
    )


def scenario(seed: int, times: float, make: Callable[[], Check]) -> Summary:
    rng = np.random.default_rng(seed)
    bad = [roll_out(rng, STABLE_ERROR_RATE * times, make()) for _ in range(ROLLOUTS)]
    good = [roll_out(rng, STABLE_ERROR_RATE, make()) for _ in range(ROLLOUTS)]
    return summarize(bad, good)


def show(name: str, summary: Summary) -> None:
    print(
        f"{name:<34} exposure {summary.exposure:6.1f} bad requests (caught "
        f"{summary.detected:6.1%})  promote in {summary.promote_checks:6.1f} checks "
        f"(promoted {summary.promoted:6.1%})  false rollback {summary.false_rollback:6.1%}"
    )


def main() -> None:
    started = time.perf_counter()
    print(
        f"{ROLLOUTS} rollouts per scenario; steps {', '.join(f'{w:.0%}' for w in WEIGHTS)}; "
        f"Poisson({REQUESTS}) requests per check; stable error rate {STABLE_ERROR_RATE:.1%}"
    )
    results = {}
    judges: tuple[tuple[str, Callable[[], Check]], ...] = (
        ("threshold", threshold_judge),
        ("sequential", sequential_judge),
        ("sequential (loose)", lambda: sequential_judge(LOOSE)),
    )
    for times in (5.0, 2.0):
        for name, make in judges:
            results[name, times] = summary = scenario(int(times * 10), times, make)
            show(f"{name}, bad canary {times:g}x", summary)
    rng = np.random.default_rng(99)
    slow = [latency_roll_out(rng, 1.5) for _ in range(ROLLOUTS // 4)]
    fine = [latency_roll_out(rng, 1.0) for _ in range(ROLLOUTS // 4)]
    latency = summarize(slow, fine)
    print(
        f"{'sequential on latency, 1.5x slower':<34} caught {latency.detected:6.1%}  promote "
        f"a good canary in {latency.promote_checks:6.1f} checks (promoted "
        f"{latency.promoted:6.1%})  false rollback {latency.false_rollback:6.1%}"
    )
    print(f"took {time.perf_counter() - started:.1f}s")
    seq, thr = results["sequential", 5.0], results["threshold", 5.0]
    print(
        f"RESULT seq_exposure={seq.exposure:.1f} thr_exposure={thr.exposure:.1f} "
        f"seq_promote_checks={seq.promote_checks:.1f} thr_promote_checks={thr.promote_checks:.1f} "
        f"seq_false_rollback={seq.false_rollback:.4f} thr_false_rollback={thr.false_rollback:.4f}"
    )


if __name__ == "__main__":
    main()
