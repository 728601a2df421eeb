"""The sequential judge's statistics, by simulation with continuous peeking.

Traffic as a rollout sees it: 20 checks, the canary's weight stepping
10% -> 25% -> 50% (7, 7 and 6 checks), Poisson(500) requests per check split
by the weight, a base error rate of 1%; the judge (the real one, state carried
as JSON from check to check) is called after every check and a FAIL rolls the
canary back. alpha is 0.05.

- A/A (canary as good as the stable), 10,000 rollouts: the false rollback rate
  is at most alpha. Monte-Carlo margin: the upper end of the 99% Clopper-Pearson
  interval of the observed rate must be at most alpha, i.e. the simulation
  shows with 99% confidence that the rate is within the budget (it is far
  below: Ville's inequality is conservative). On the same simulations, a
  fixed-sample one-sided z-test re-run at every check (Kayenta style) rolls
  back far more often than alpha (the lower end of its 99% interval is above).
- Known regressions, 1,000 rollouts each: a canary with 2x and 5x the stable's
  error rate is detected (power and exposure, the bad canary requests served
  until the rollback, are printed; run with ``-s`` to see them).
- Tolerance: a canary 5% worse with a tolerance of 10% is rolled back no more
  often than alpha (same margin, 10,000 rollouts).
- Latency histograms: A/A stays within alpha; a canary 1.5x slower is detected.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pytest

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

ALPHA = 0.05
CHECKS = 20
WEIGHTS = np.array([0.10] * 7 + [0.25] * 7 + [0.50] * 6)
REQUESTS = 500
BASE_ERROR_RATE = 0.01
MIN_SAMPLES = 100
#: One-sided 95% normal quantile, for the naive z-test at level alpha.
Z_ALPHA = 1.6448536269514722

#: Latency buckets (ms) and the stable's log-normal latency: median 100 ms.
LATENCY_BOUNDS = (25.0, 50.0, 100.0, 200.0, 400.0, 800.0, 1600.0)
LATENCY_SIGMA = 0.6


@dataclass(frozen=True)
class Outcome:
    """Per simulated rollout: rolled back?, at which check, bad canary requests by then."""

    rolled_back: np.ndarray
    check: np.ndarray
    exposure: np.ndarray

    @property
    def rate(self) -> float:
        return float(self.rolled_back.mean())


def split_traffic(rng: np.random.Generator, runs: int) -> tuple[np.ndarray, np.ndarray]:
    requests = rng.poisson(REQUESTS, size=(runs, CHECKS))
    canary = rng.binomial(requests, WEIGHTS)
    return canary, requests - canary


def error_counts(
    rng: np.random.Generator, runs: int, canary_rate: float, stable_rate: float = BASE_ERROR_RATE
) -> np.ndarray:
    """Cumulative (canary total, canary bad, stable total, stable bad) per run and check."""
    canary, stable = split_traffic(rng, runs)
    increments = np.stack(
        [canary, rng.binomial(canary, canary_rate), stable, rng.binomial(stable, stable_rate)],
        axis=-1,
    )
    return np.cumsum(increments, axis=1)


def latency_buckets(
    rng: np.random.Generator, runs: int, slowdown: float
) -> tuple[np.ndarray, np.ndarray]:
    """Cumulative bucket counts per run, check and bound (``+Inf`` last), per arm."""
    canary, stable = split_traffic(rng, runs)

    def bucket_shares(scale: float) -> np.ndarray:
        edges = np.log(np.array(LATENCY_BOUNDS) / (100.0 * scale)) / LATENCY_SIGMA
        below = np.array([0.5 * math.erfc(-x / math.sqrt(2)) for x in edges])
        return np.diff(np.concatenate([[0.0], below, [1.0]]))

    def cumulative(served: np.ndarray, shares: np.ndarray) -> np.ndarray:
        per_bin = rng.multinomial(served, shares)
        return np.cumsum(np.cumsum(per_bin, axis=-1), axis=1)

    return cumulative(canary, bucket_shares(slowdown)), cumulative(stable, bucket_shares(1.0))


def judge_all(measurements: Iterator[list[Measurement]], tolerance: float = 0.0) -> Outcome:
    """Run the judge after every check of every rollout; a FAIL ends the rollout."""
    judge = SequentialJudge()
    metric = MetricSpec(
        name="errors",
        template_ref=LocalObjectRef("t"),
        judge=Judge.SEQUENTIAL,
        sequential=SequentialSpec(tolerance=tolerance, min_samples=MIN_SAMPLES, max_samples=None),
    )
    rolled_back, at, exposure = [], [], []
    for rollout in measurements:
        state = None
        failed_at = -1
        for index, measurement in enumerate(rollout):
            judgement = judge.judge(
                metric, measurement, MetricStatus(name="errors", state=state), alpha=ALPHA
            )
            state = judgement.state
            if judgement.verdict == Verdict.FAIL:
                failed_at = index
                break
        rolled_back.append(failed_at >= 0)
        at.append(failed_at)
        exposure.append(float(rollout[failed_at].canary.get("bad", 0)) if failed_at >= 0 else 0)
    return Outcome(np.array(rolled_back), np.array(at), np.array(exposure))


def error_measurements(cumulative: np.ndarray) -> Iterator[list[Measurement]]:
    for run in cumulative.tolist():
        yield [
            Measurement(
                canary={"total": float(c[0]), "bad": float(c[1])},
                stable={"total": float(c[2]), "bad": float(c[3])},
            )
            for c in run
        ]


def histogram_measurements(canary: np.ndarray, stable: np.ndarray) -> Iterator[list[Measurement]]:
    keys = [f"{b:g}" for b in LATENCY_BOUNDS] + ["+Inf"]
    for canary_run, stable_run in zip(canary.tolist(), stable.tolist(), strict=True):
        yield [
            Measurement(
                canary=dict(zip(keys, map(float, c), strict=True)),
                stable=dict(zip(keys, map(float, s), strict=True)),
            )
            for c, s in zip(canary_run, stable_run, strict=True)
        ]


def naive_z_test(cumulative: np.ndarray) -> np.ndarray:
    """Kayenta style: a one-sided two-proportion z-test on the counts so far,
    at level alpha, re-run at every check (once the canary has MIN_SAMPLES)."""
    nc, bc, ns, bs = (cumulative[..., i].astype(float) for i in range(4))
    pooled = (bc + bs) / (nc + ns)
    spread = np.sqrt(pooled * (1 - pooled) * (1 / np.maximum(nc, 1) + 1 / np.maximum(ns, 1)))
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(spread > 0, (bc / np.maximum(nc, 1) - bs / np.maximum(ns, 1)) / spread, 0.0)
    looks = nc >= MIN_SAMPLES
    return np.asarray(((z > Z_ALPHA) & looks).any(axis=1))


# ---------------------------------------------------------------- Clopper-Pearson


def _binomial_cdf(k: int, n: int, p: float) -> float:
    if p <= 0:
        return 1.0
    if p >= 1:
        return 1.0 if k >= n else 0.0
    logs = [
        math.lgamma(n + 1)
        - math.lgamma(i + 1)
        - math.lgamma(n - i + 1)
        + i * math.log(p)
        + (n - i) * math.log1p(-p)
        for i in range(k + 1)
    ]
    top = max(logs)
    return min(1.0, math.exp(top) * sum(math.exp(x - top) for x in logs))


def _solve(falls: bool, target: float, probability: float) -> float:
    """Bisection for p where ``probability(p) = target``; ``falls``: decreasing in p."""
    low, high = 0.0, 1.0
    for _ in range(60):
        middle = (low + high) / 2
        above = probability(middle) > target
        if above == falls:
            low = middle
        else:
            high = middle
    return (low + high) / 2


def upper_bound(k: int, n: int, confidence: float = 0.99) -> float:
    """The upper end of the two-sided Clopper-Pearson interval for k successes in n."""
    if k >= n:
        return 1.0
    return _solve(True, (1 - confidence) / 2, lambda p: _binomial_cdf(k, n, p))


def lower_bound(k: int, n: int, confidence: float = 0.99) -> float:
    if k <= 0:
        return 0.0
    return _solve(False, (1 - confidence) / 2, lambda p: 1 - _binomial_cdf(k - 1, n, p))


def test_the_clopper_pearson_bounds_match_known_values() -> None:
    # 0 of 100: the upper end solves (1 - p)^100 = 0.005.
    assert upper_bound(0, 100) == pytest.approx(1 - 0.005 ** (1 / 100), rel=1e-9)
    # k of n and n - k of n mirror each other.
    assert lower_bound(70, 100) == pytest.approx(1 - upper_bound(30, 100), rel=1e-9)
    assert lower_bound(0, 100) == 0.0
    # scipy.stats.beta.ppf(0.995, 51, 50), worked out once.
    assert upper_bound(50, 100) == pytest.approx(0.6311385626, rel=1e-8)


# ---------------------------------------------------------------- the simulations


@pytest.fixture(scope="module")
def a_a() -> tuple[np.ndarray, Outcome, float]:
    rng = np.random.default_rng(20261127)
    counts = error_counts(rng, 10_000, BASE_ERROR_RATE)
    started = time.perf_counter()
    outcome = judge_all(error_measurements(counts))
    return counts, outcome, time.perf_counter() - started


def test_a_a_false_rollbacks_stay_within_alpha_however_often_it_looks(
    a_a: tuple[np.ndarray, Outcome, float],
) -> None:
    _, outcome, seconds = a_a
    runs = len(outcome.rolled_back)
    rolled_back = int(outcome.rolled_back.sum())
    upper = upper_bound(rolled_back, runs)

    print(
        f"\nA/A, {runs} rollouts x {CHECKS} checks ({seconds:.1f}s): sequential false "
        f"rollback rate {outcome.rate:.4f} (99% CI upper {upper:.4f}), alpha {ALPHA}"
    )
    assert runs >= 10_000
    assert upper <= ALPHA


def test_a_fixed_sample_test_re_run_at_every_check_exceeds_alpha(
    a_a: tuple[np.ndarray, Outcome, float],
) -> None:
    counts, outcome, _ = a_a
    naive = naive_z_test(counts)
    rolled_back = int(naive.sum())
    lower = lower_bound(rolled_back, len(naive))

    print(
        f"\nA/A: naive z-test at every check {naive.mean():.4f} (99% CI lower {lower:.4f}) "
        f"against the sequential judge's {outcome.rate:.4f}"
    )
    assert lower > ALPHA
    assert naive.mean() > outcome.rate


@pytest.mark.parametrize(("times", "least_power"), [(2.0, 0.6), (5.0, 0.99)])
def test_known_regressions_are_detected(times: float, least_power: float) -> None:
    rng = np.random.default_rng(int(times * 1000))
    counts = error_counts(rng, 1_000, BASE_ERROR_RATE * times)

    outcome = judge_all(error_measurements(counts))

    caught = outcome.rolled_back
    exposure = outcome.exposure[caught].mean()
    check = outcome.check[caught].mean() + 1
    served_anyway = counts[~caught, -1, 1].mean() if (~caught).any() else 0.0
    print(
        f"\n{times:g}x the stable's error rate: power {outcome.rate:.3f}, rolled back at check "
        f"{check:.1f} on average after {exposure:.1f} bad canary requests; missed rollouts "
        f"served {served_anyway:.1f} in {CHECKS} checks"
    )
    assert outcome.rate >= least_power


def test_a_regression_within_the_tolerance_is_not_rolled_back_beyond_alpha() -> None:
    rng = np.random.default_rng(105)
    counts = error_counts(rng, 10_000, BASE_ERROR_RATE * 1.05)

    outcome = judge_all(error_measurements(counts), tolerance=0.1)

    rolled_back = int(outcome.rolled_back.sum())
    upper = upper_bound(rolled_back, len(outcome.rolled_back))
    print(f"\n5% worse, tolerance 10%: rollback rate {outcome.rate:.4f} (99% CI upper {upper:.4f})")
    assert upper <= ALPHA


def test_latency_a_a_stays_within_alpha() -> None:
    rng = np.random.default_rng(7)
    canary, stable = latency_buckets(rng, 2_000, slowdown=1.0)

    outcome = judge_all(histogram_measurements(canary, stable))

    upper = upper_bound(int(outcome.rolled_back.sum()), len(outcome.rolled_back))
    print(f"\nlatency A/A: false rollback rate {outcome.rate:.4f} (99% CI upper {upper:.4f})")
    assert upper <= ALPHA


def test_a_latency_regression_is_detected() -> None:
    rng = np.random.default_rng(15)
    canary, stable = latency_buckets(rng, 500, slowdown=1.5)

    outcome = judge_all(histogram_measurements(canary, stable))

    caught = outcome.rolled_back
    print(
        f"\nlatency 1.5x slower: power {outcome.rate:.3f}, rolled back at check "
        f"{outcome.check[caught].mean() + 1:.1f} on average"
    )
    assert outcome.rate >= 0.99
