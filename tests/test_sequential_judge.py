"""The sequential judge, check by check: verdicts, evidence, state and odd counts.

Covers: pending before ``minSamples`` (the evidence still accumulates); FAIL on
a clear regression; an early PASS for a canary clearly within the tolerance;
the ``maxSamples`` horizon; the state (compact JSON, round trip, a fresh start
when it is unreadable or the tolerance changed); the evidence keys; increments
between checks (a weight change with a moving base rate, which pooled counts
get wrong); counter resets (counts going down are skipped, not judged); latency
histograms (the bound nearest the stable's p90, fixed once); provider errors, no
data and malformed counts. The statistical properties (false rollbacks under
continuous peeking, power) are in ``test_sequential_statistics.py``.
"""

from __future__ import annotations

import json
import math
from typing import Any

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
from modelrollout.judges import JUDGES, Judgement
from modelrollout.judges.sequential import HARM_GRID, WITHIN_GRID, SequentialJudge, State

ALPHA = 0.05


def metric(**settings: Any) -> MetricSpec:
    """A sequential metric; no tolerance and no horizon unless a test sets them."""
    return MetricSpec(
        name="errors",
        template_ref=LocalObjectRef("t"),
        judge=Judge.SEQUENTIAL,
        sequential=SequentialSpec(**{"tolerance": 0.0, "max_samples": None, **settings}),
    )


def counts(canary: tuple[float, float], stable: tuple[float, float]) -> Measurement:
    """Cumulative (total, bad) per arm."""
    return Measurement(
        canary={"total": canary[0], "bad": canary[1]},
        stable={"total": stable[0], "bad": stable[1]},
        evidence={"query": "sum(increase(requests[5m]))"},
    )


def check(
    measurement: Measurement,
    state: str | None = None,
    of: MetricSpec | None = None,
    alpha: float = ALPHA,
) -> Judgement:
    previous = MetricStatus(name="errors", state=state)
    return SequentialJudge().judge(of or metric(), measurement, previous, alpha=alpha)


def run(*measurements: Measurement, of: MetricSpec | None = None) -> list[Judgement]:
    """Judge ``measurements`` one check after another, carrying the state."""
    out: list[Judgement] = []
    state = None
    for measurement in measurements:
        judgement = check(measurement, state, of)
        out.append(judgement)
        state = judgement.state
    return out


def state_of(judgement: Judgement, tolerance: float = 0.0) -> State:
    return State.load(judgement.state, 1.0 + tolerance)


def log_ratio(multiple: float, increments: list[tuple[float, float, float, float]]) -> float:
    """The log likelihood ratio of rho = multiple (against rho0 = 1), by hand."""
    total = 0.0
    for nc, bc, ns, bs in increments:
        theta = multiple * nc / (multiple * nc + ns)
        theta0 = nc / (nc + ns)
        total += bc * math.log(theta / theta0) + bs * math.log((1 - theta) / (1 - theta0))
    return total


def test_the_registry_maps_sequential_to_the_sequential_judge() -> None:
    assert isinstance(JUDGES[Judge.SEQUENTIAL], SequentialJudge)


# ---------------------------------------------------------------- verdicts


def test_pending_before_min_samples_even_with_a_clear_regression() -> None:
    result = check(counts((99, 30), (900, 9)))

    assert (result.verdict, result.pending) == (Verdict.INCONCLUSIVE, True)
    assert result.message == "99 of the 100 canary requests needed"
    assert state_of(result).harm_crossed


def test_evidence_gathered_before_min_samples_counts_once_they_are_reached() -> None:
    early, reached = run(counts((99, 30), (900, 9)), counts((100, 30), (910, 9)))

    assert early.pending
    assert (reached.verdict, reached.pending) == (Verdict.FAIL, False)


def test_a_clear_regression_fails() -> None:
    result = check(counts((1000, 50), (9000, 90)))

    assert result.verdict == Verdict.FAIL
    assert result.value == pytest.approx(5.0)
    assert result.message == (
        "the canary is worse than the stable beyond the tolerance: its bad-event rate is 5x "
        f"the stable's (evidence {result.evidence['eValueHarm']}, threshold 20)"
    )
    assert float(result.evidence["eValueHarm"]) >= 20


def test_a_canary_as_good_as_the_stable_is_pending_without_a_tolerance() -> None:
    results = run(*(counts((1000 * i, 10 * i), (9000 * i, 90 * i)) for i in range(1, 30)))

    assert all(r.pending for r in results)
    assert results[-1].message == (
        "its bad-event rate is 1x the stable's; evidence of harm "
        f"{results[-1].evidence['eValueHarm']}, of being within the tolerance "
        f"{results[-1].evidence['eValueWithin']}, threshold 20"
    )


def test_a_canary_clearly_within_the_tolerance_passes_early() -> None:
    result = check(counts((2000, 2), (18000, 180)), of=metric(tolerance=0.5))

    assert (result.verdict, result.pending) == (Verdict.PASS, False)
    assert result.value == pytest.approx(0.1)
    assert result.message.startswith(
        "the canary is within the tolerance: its bad-event rate is 0.1x the stable's (evidence "
    )


def test_a_pass_is_remembered_but_harm_found_later_still_fails() -> None:
    of = metric(tolerance=0.5)
    passed, still, failed = run(
        counts((2000, 2), (18000, 180)),
        counts((2100, 3), (18900, 189)),
        counts((4100, 203), (36900, 369)),
        of=of,
    )

    assert (passed.verdict, still.verdict, failed.verdict) == (
        Verdict.PASS,
        Verdict.PASS,
        Verdict.FAIL,
    )


def test_a_crossing_is_final_even_when_the_evidence_dips_after_it() -> None:
    crossed, later = run(counts((1000, 50), (9000, 90)), counts((21000, 50), (189000, 1890)))

    assert (crossed.verdict, later.verdict) == (Verdict.FAIL, Verdict.FAIL)
    assert float(later.evidence["eValueHarm"]) < 20
    assert later.message.endswith(
        f"(evidence reached the threshold 20 at an earlier check, now "
        f"{later.evidence['eValueHarm']})"
    )


def test_the_horizon_passes_a_canary_with_no_evidence_of_harm() -> None:
    of = metric(max_samples=5000)
    before, reached = run(counts((4999, 50), (45000, 450)), counts((5000, 50), (45010, 450)), of=of)

    assert before.pending
    assert (reached.verdict, reached.pending) == (Verdict.PASS, False)
    assert reached.evidence["horizon"] == "reached: 5000 >= maxSamples 5000"
    assert reached.message == (
        "no evidence of harm after 5000 canary requests (maxSamples 5000): its bad-event "
        "rate is 1x the stable's"
    )


def test_the_horizon_never_passes_a_harmful_canary() -> None:
    result = check(counts((5000, 250), (45000, 450)), of=metric(max_samples=1000))

    assert result.verdict == Verdict.FAIL


def test_min_samples_comes_before_the_horizon() -> None:
    result = check(counts((50, 0), (450, 4)), of=metric(min_samples=100, max_samples=10))

    assert result.pending


@pytest.mark.parametrize(("alpha", "verdict"), [(0.05, Verdict.FAIL), (0.0001, None)])
def test_the_threshold_is_one_over_this_metrics_alpha(alpha: float, verdict: Verdict) -> None:
    result = check(counts((1000, 25), (9000, 90)), alpha=alpha)

    assert result.evidence["threshold"] == f"{1 / alpha:.4g}"
    assert (result.verdict if not result.pending else None) == verdict


# ---------------------------------------------------------------- evidence and state


def test_the_evidence_shows_why() -> None:
    result = check(counts((1000, 20), (9000, 90)), of=metric(tolerance=0.1))

    assert result.evidence == {
        "query": "sum(increase(requests[5m]))",
        "canaryTotal": "1000",
        "canaryBad": "20",
        "stableTotal": "9000",
        "stableBad": "90",
        "ratio": "2",
        "tolerance": "0.1",
        "eValueHarm": result.evidence["eValueHarm"],
        "eValueWithin": result.evidence["eValueWithin"],
        "threshold": "20",
    }
    harm = sum(math.exp(x) for x in state_of(result, 0.1).harm) / len(HARM_GRID)
    assert float(result.evidence["eValueHarm"]) == pytest.approx(harm, rel=1e-3)


def test_the_state_is_compact_json_that_round_trips() -> None:
    results = run(*(counts((100 * i, i + i % 3), (900 * i, 9 * i)) for i in range(1, 200)))

    text = results[-1].state
    assert text is not None
    assert len(text.encode()) < 1024
    assert json.loads(text)["v"] == 1
    assert State.load(text, 1.0).dump() == text


@pytest.mark.parametrize("state", ["not json", '{"v": 99}', '{"v": 1, "rho0": 1.0}', "[]"])
def test_an_unreadable_state_starts_over_from_the_counts_since_the_start(state: str) -> None:
    measurement = counts((1000, 20), (9000, 90))

    assert check(measurement, state) == check(measurement, None)


def test_a_changed_tolerance_starts_over() -> None:
    first = check(counts((1000, 20), (9000, 90)), of=metric(tolerance=0.0))

    again = check(counts((1000, 20), (9000, 90)), first.state, of=metric(tolerance=0.2))

    assert again == check(counts((1000, 20), (9000, 90)), None, of=metric(tolerance=0.2))


def test_errors_and_no_data_keep_the_state() -> None:
    first = check(counts((1000, 10), (9000, 90)))

    broken = check(Measurement(error="timeout"), first.state)
    empty = check(Measurement(), first.state)

    assert broken == Judgement(
        Verdict.ERROR, None, "metric provider error: timeout", {}, first.state
    )
    assert empty == Judgement(
        Verdict.INCONCLUSIVE,
        None,
        "no data for the canary: is it receiving traffic?",
        {},
        first.state,
    )


def test_no_stable_data_is_inconclusive() -> None:
    result = check(Measurement(canary={"total": 10, "bad": 0}))

    assert (result.verdict, result.pending) == (Verdict.INCONCLUSIVE, False)
    assert result.message == "no data for the stable: is it receiving traffic?"


# ---------------------------------------------------------------- increments


def test_each_increment_is_judged_with_its_own_traffic_split() -> None:
    """Given the base rate falling from 10% to 0.1% while the canary's share
    drops from 50% to 10%, and the canary exactly as good as the stable in each
    interval, then the judge, which works on increments, finds no harm, while
    the same final counts judged in one piece (no history) look 4.6x worse."""
    first = counts((1000, 100), (1000, 100))
    second = counts((2000, 101), (10000, 109))

    in_steps = run(first, second)
    pooled = check(second)

    assert in_steps[-1].verdict != Verdict.FAIL
    assert in_steps[-1].value == pytest.approx(1.0)
    assert pooled.verdict == Verdict.FAIL
    increments = [(1000, 100, 1000, 100), (1000, 1, 9000, 9)]
    for k, multiple in enumerate(HARM_GRID):
        assert state_of(in_steps[-1]).harm[k] == pytest.approx(
            log_ratio(multiple, increments), abs=1e-5
        )
    for k, multiple in enumerate(WITHIN_GRID):
        assert state_of(in_steps[-1]).within[k] == pytest.approx(
            log_ratio(multiple, increments), abs=1e-5
        )


def test_a_check_with_no_new_bad_events_changes_no_evidence() -> None:
    first, second = run(counts((1000, 20), (9000, 90)), counts((1500, 20), (13000, 90)))

    assert state_of(first).harm == state_of(second).harm


# ---------------------------------------------------------------- counter resets


def test_counts_going_down_are_skipped_and_become_the_new_baseline() -> None:
    """A restarted pod drops out of the sum: the counts go down. The judge does
    not read that as data: the evidence is unchanged at that check, the reset is
    reported, and the next check counts only what came after the new baseline."""
    before, reset, after = run(
        counts((1000, 10), (9000, 90)),
        counts((600, 5), (9500, 95)),
        counts((1600, 45), (18500, 185)),
    )

    assert state_of(reset).harm == state_of(before).harm
    assert reset.evidence["counterResets"] == "1"
    assert "counterResets" not in before.evidence
    expected = [log_ratio(m, [(1000, 10, 9000, 90), (1000, 40, 9000, 90)]) for m in HARM_GRID]
    assert state_of(after).harm == pytest.approx(expected, abs=1e-5)
    assert after.verdict == Verdict.FAIL


def test_fractional_counts_are_rounded_to_whole_events() -> None:
    assert check(counts((999.6, 19.7), (9000.2, 89.8))) == check(counts((1000, 20), (9000, 90)))


def test_a_missing_bad_count_is_zero() -> None:
    missing = Measurement(canary={"total": 1000}, stable={"total": 9000, "bad": 90})

    assert check(missing) == check(
        Measurement(canary={"total": 1000, "bad": 0}, stable={"total": 9000, "bad": 90})
    )


@pytest.mark.parametrize(
    ("canary", "message"),
    [
        ({"total": -5, "bad": 0}, "the canary's 'total' count is -5, not a count"),
        ({"total": math.nan, "bad": 0}, "the canary's 'total' count is nan, not a count"),
        (
            {"requests": 5},
            "the canary's counts are neither total/bad nor buckets by le: ['requests']",
        ),
        ({"0.1": 5, "1": 9}, "the canary's histogram has no +Inf bucket"),
    ],
)
def test_malformed_counts_are_an_error(canary: dict[str, float], message: str) -> None:
    result = check(Measurement(canary=canary, stable={"total": 100, "bad": 1}), "kept")

    assert (result.verdict, result.message, result.state) == (Verdict.ERROR, message, "kept")


# ---------------------------------------------------------------- latency histograms


def buckets(total: float, below: dict[str, float]) -> dict[str, float]:
    """Cumulative latency buckets: ``below`` maps an ``le`` to the count under it."""
    return {**below, "+Inf": total}


def latency(canary: dict[str, float], stable: dict[str, float]) -> Measurement:
    return Measurement(canary=canary, stable=stable)


def test_latency_waits_for_enough_stable_requests_to_fix_the_bound() -> None:
    result = check(latency(buckets(10, {"100": 5}), buckets(90, {"100": 80})))

    assert result.pending
    assert result.message == "90 of the 100 stable requests needed to fix the latency bound"
    assert state_of(result).bound is None


@pytest.mark.parametrize(
    ("below", "bound"),
    [
        # shares below each bound: 0.5, 0.88, 0.95, 0.99 -> 0.88 is nearest 0.9
        ({"50": 500, "100": 880, "250": 950, "500": 990}, "100"),
        # 0.5, 0.8, 0.93, 0.99 -> 0.93
        ({"50": 500, "100": 800, "250": 930, "500": 990}, "250"),
        # 0.85 and 0.95 are as near: the lower bound
        ({"50": 500, "100": 850, "250": 950, "500": 990}, "100"),
    ],
)
def test_latency_bound_is_the_bucket_bound_nearest_the_stables_p90(
    below: dict[str, float], bound: str
) -> None:
    canary = buckets(200, {"50": 20, "100": 40, "250": 60, "500": 100})

    result = check(latency(canary, buckets(1000, below)))

    assert state_of(result).bound == bound
    assert result.evidence["latencyBound"] == f"le={bound} (the bound nearest the stable's p90)"
    assert result.evidence["canaryBad"] == str(200 - int(canary[bound]))
    assert result.evidence["stableBad"] == str(1000 - int(below[bound]))


def test_the_check_that_fixes_the_latency_bound_only_sets_the_baseline() -> None:
    stable = buckets(1000, {"100": 500, "250": 900})
    much_slower = buckets(1000, {"100": 10, "250": 20})

    result = check(latency(much_slower, stable))

    assert result.pending
    assert state_of(result).harm == [0.0] * len(HARM_GRID)


def test_a_slower_canary_fails_on_its_share_of_slow_requests() -> None:
    """Stable: 10% of requests slower than 250 ms; canary: 40% from the bound on."""
    bounds = ("100", "250", "1000")
    checks = []
    for i in range(1, 6):
        stable = buckets(1000 * i, dict(zip(bounds, (500 * i, 900 * i, 990 * i), strict=True)))
        canary = buckets(200 * i, dict(zip(bounds, (50 * i, 120 * i, 190 * i), strict=True)))
        checks.append(latency(canary, stable))

    results = run(*checks)

    assert results[-1].verdict == Verdict.FAIL
    assert results[-1].value == pytest.approx(4.0)
    assert "share of requests slower than le=250 is 4x the stable's" in results[-1].message


def test_a_latency_bound_missing_later_is_an_error() -> None:
    stable = buckets(1000, {"100": 500, "250": 900})
    first = check(latency(buckets(200, {"100": 100, "250": 180}), stable))

    later = check(latency(buckets(300, {"100": 150}), buckets(1500, {"100": 700})), first.state)

    assert (later.verdict, later.message) == (
        Verdict.ERROR,
        "the canary's histogram has no bucket le=250",
    )
    assert later.state == first.state
