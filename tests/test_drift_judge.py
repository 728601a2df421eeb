"""The drift judge: PSI and KS between the canary's and the stable's predictions.

Covers both shapes of counts (a regression model's cumulative histogram by
``le``, a classifier's counts per class, told apart by the keys), PSI and KS
against values computed by hand for small histograms, the epsilon for empty
bins, identical distributions giving 0, bounds only one arm has, PASS/FAIL
against ``drift.max``, pending below ``drift.minSamples`` on either arm, the
evidence, and provider errors, no data and malformed counts.
"""

from __future__ import annotations

import math
from typing import Any

import pytest

from modelrollout.api import (
    DriftSpec,
    DriftStatistic,
    Judge,
    LocalObjectRef,
    MetricSpec,
    MetricStatus,
    Verdict,
)
from modelrollout.decision import Measurement
from modelrollout.judges import JUDGES, Judgement
from modelrollout.judges.drift import EPSILON, DriftJudge

#: Bins (-inf, 1], (1, 2], (2, inf]: canary shares 0.3, 0.5, 0.2; stable 0.2, 0.4, 0.4.
CANARY_VALUES = {"1": 30.0, "2": 80.0, "+Inf": 100.0}
STABLE_VALUES = {"1": 200.0, "2": 600.0, "+Inf": 1000.0}
VALUES_PSI = 0.1 * math.log(0.3 / 0.2) + 0.1 * math.log(0.5 / 0.4) + 0.2 * math.log(0.4 / 0.2)
#: CDFs 0.3, 0.8 against 0.2, 0.6: the widest gap is 0.2, at le=2.
VALUES_KS = 0.2

#: Shares bird 0, cat 0.7, dog 0.3 against bird 0.1, cat 0.5, dog 0.4.
CANARY_CLASSES = {"cat": 70.0, "dog": 30.0}
STABLE_CLASSES = {"bird": 100.0, "cat": 500.0, "dog": 400.0}
CLASSES_PSI = (
    (EPSILON - 0.1) * math.log(EPSILON / 0.1)
    + 0.2 * math.log(0.7 / 0.5)
    + (-0.1) * math.log(0.3 / 0.4)
)
#: Total variation: half of 0.1 + 0.2 + 0.1.
CLASSES_KS = 0.2


def metric(**settings: Any) -> MetricSpec:
    return MetricSpec(
        name="drift",
        template_ref=LocalObjectRef("t"),
        judge=Judge.DRIFT,
        drift=DriftSpec(**settings),
    )


def judge(canary: dict[str, float], stable: dict[str, float], **settings: Any) -> Judgement:
    measurement = Measurement(canary=canary, stable=stable)
    return DriftJudge().judge(
        metric(**settings), measurement, MetricStatus(name="drift"), alpha=0.05
    )


def test_the_registry_maps_drift_to_the_drift_judge() -> None:
    assert isinstance(JUDGES[Judge.DRIFT], DriftJudge)


def test_defaults_apply_without_drift_settings() -> None:
    bare = MetricSpec(name="drift", template_ref=LocalObjectRef("t"), judge=Judge.DRIFT)

    result = DriftJudge().judge(
        bare,
        Measurement(canary=CANARY_VALUES, stable=STABLE_VALUES),
        MetricStatus(name="drift"),
        alpha=0.05,
    )

    assert result == judge(CANARY_VALUES, STABLE_VALUES, statistic=DriftStatistic.PSI, max=0.2)


@pytest.mark.parametrize(
    ("canary", "stable", "statistic", "expected"),
    [
        (CANARY_VALUES, STABLE_VALUES, DriftStatistic.PSI, VALUES_PSI),
        (CANARY_VALUES, STABLE_VALUES, DriftStatistic.KS, VALUES_KS),
        (CANARY_CLASSES, STABLE_CLASSES, DriftStatistic.PSI, CLASSES_PSI),
        (CANARY_CLASSES, STABLE_CLASSES, DriftStatistic.KS, CLASSES_KS),
    ],
)
def test_statistics_match_the_hand_computed_values(
    canary: dict[str, float],
    stable: dict[str, float],
    statistic: DriftStatistic,
    expected: float,
) -> None:
    result = judge(canary, stable, statistic=statistic, max=10)

    assert result.value == pytest.approx(expected, rel=1e-12)
    assert result.verdict == Verdict.PASS


def test_the_hand_computed_values_are_what_they_say() -> None:
    assert round(VALUES_PSI, 7) == 0.2014903
    assert round(CLASSES_PSI, 7) == 0.7861474


@pytest.mark.parametrize("statistic", list(DriftStatistic))
@pytest.mark.parametrize(
    "counts",
    [
        {"0.5": 10.0, "1": 40.0, "5": 40.0, "+Inf": 100.0},
        {"a": 300.0, "b": 0.0, "c": 700.0},
    ],
)
def test_identical_distributions_give_zero(
    statistic: DriftStatistic, counts: dict[str, float]
) -> None:
    scaled = {k: 7 * v for k, v in counts.items()}

    result = judge(counts, scaled, statistic=statistic, max=0)

    assert result.value == 0
    assert result.verdict == Verdict.PASS


@pytest.mark.parametrize(
    ("statistic", "value", "worst"),
    [
        (DriftStatistic.PSI, VALUES_PSI, "(2, inf]: canary 20% vs stable 40%"),
        (DriftStatistic.KS, VALUES_KS, "le=2: canary 80% vs stable 60% below"),
    ],
)
def test_above_the_maximum_fails_and_names_the_worst_bin(
    statistic: DriftStatistic, value: float, worst: str
) -> None:
    result = judge(CANARY_VALUES, STABLE_VALUES, statistic=statistic, max=0.1)

    name = statistic.value.upper()
    assert result.verdict == Verdict.FAIL
    assert result.message == (
        f"{name} {value:.4g} is above the maximum 0.1; the widest gap is at {worst}"
    )
    assert result.evidence == {
        "canarySamples": "100",
        "stableSamples": "1000",
        "statistic": statistic.value,
        "value": f"{value:.4g}",
        "max": "0.1",
        "worstBin": worst,
    }


def test_at_the_maximum_passes() -> None:
    result = judge(CANARY_VALUES, STABLE_VALUES, statistic=DriftStatistic.KS, max=VALUES_KS)

    assert result.verdict == Verdict.PASS
    assert result.message == "KS 0.2 is within the maximum 0.2"


def test_classes_name_the_class_with_the_widest_gap() -> None:
    result = judge(CANARY_CLASSES, STABLE_CLASSES, statistic=DriftStatistic.KS, max=0.1)

    assert result.evidence["worstBin"] == "cat: canary 70% vs stable 50%"


def test_numeric_class_labels_without_an_inf_bucket_are_classes() -> None:
    """Labels "0" and "1" parse as numbers but are not cumulative buckets:
    read as a histogram they would give a KS of 0.4, as classes 0.2."""
    result = judge({"0": 70.0, "1": 30.0}, {"0": 500.0, "1": 500.0}, statistic=DriftStatistic.KS)

    assert result.value == pytest.approx(0.2)


def test_only_the_bounds_both_arms_have_make_bins() -> None:
    finer = {"1": 30.0, "1.5": 55.0, "2": 80.0, "+Inf": 100.0}

    assert judge(finer, STABLE_VALUES).value == pytest.approx(VALUES_PSI)


@pytest.mark.parametrize(
    ("canary", "stable"),
    [({"a": 99.0}, {"a": 1000.0}), ({"a": 1000.0}, {"a": 60.0, "b": 39.0})],
)
def test_below_min_samples_on_either_arm_is_pending(
    canary: dict[str, float], stable: dict[str, float]
) -> None:
    result = judge(canary, stable)

    assert (result.verdict, result.pending, result.value) == (Verdict.INCONCLUSIVE, True, None)


def test_min_samples_is_configurable() -> None:
    assert not judge({"a": 5.0, "b": 5.0}, {"a": 6.0, "b": 4.0}, min_samples=10).pending


def test_buckets_slightly_out_of_order_from_extrapolation_are_empty_bins() -> None:
    """increase() extrapolates each bucket series on its own: a bucket a little below the one
    before it (here 40 of 1,000) is an empty bin, not an error; 5 % of the total is the most."""
    stable = {"1": 300.0, "2": 800.0, "+Inf": 1000.0}
    jittered = judge({"1": 300.0, "1.5": 300.0, "2": 260.0, "+Inf": 1000.0}, stable)
    exact = judge({"1": 300.0, "1.5": 300.0, "2": 300.0, "+Inf": 1000.0}, stable)

    assert jittered.verdict == exact.verdict
    assert jittered.value == pytest.approx(exact.value, rel=1e-3)
    too_far = judge({"1": 300.0, "2": 249.0, "+Inf": 1000.0}, stable)
    assert too_far.verdict == Verdict.ERROR
    assert "not cumulative at le=2" in (too_far.message or "")


def test_a_young_window_is_pending_however_its_buckets_are_ordered() -> None:
    """What Prometheus answered for a sandbox canary 8 s old (the +Inf bucket below two of the
    others): below minSamples it is pending, not an error that counts towards a rollback; the
    same canary at 150 predictions, about 2 out of order, is judged."""
    young = {"200": 36.03, "225": 39.02, "250": 39.02, "275": 31.52, "+Inf": 31.52}
    stable = {"200": 100.0, "225": 110.0, "250": 115.0, "275": 120.0, "+Inf": 120.0}
    result = judge(young, stable, min_samples=100)
    assert (result.verdict, result.pending) == (Verdict.INCONCLUSIVE, True)
    assert "39 canary and 120 stable predictions" in (result.message or "")
    later = {"200": 117.97, "225": 128.58, "250": 143.03, "275": 141.32, "+Inf": 143.63}
    judged = judge(later, stable, min_samples=100)
    assert judged.verdict in (Verdict.PASS, Verdict.FAIL)


@pytest.mark.parametrize(
    ("measurement", "verdict", "message"),
    [
        (Measurement(error="timeout"), Verdict.ERROR, "metric provider error: timeout"),
        (Measurement(), Verdict.INCONCLUSIVE, "no data for the canary: is it receiving traffic?"),
        (
            Measurement(canary={"a": 1.0}),
            Verdict.INCONCLUSIVE,
            "no data for the stable: is it receiving traffic?",
        ),
        (
            Measurement(canary=CANARY_VALUES, stable=STABLE_CLASSES),
            Verdict.ERROR,
            "one arm has histogram buckets, the other counts per class",
        ),
        (
            Measurement(canary={"1": 50.0, "2": 40.0, "+Inf": 100.0}, stable=STABLE_VALUES),
            Verdict.ERROR,
            "the canary's buckets are not cumulative at le=2",
        ),
        (
            Measurement(canary={"a": -1.0}, stable=STABLE_CLASSES),
            Verdict.ERROR,
            "the canary's count for 'a' is -1.0, not a count",
        ),
    ],
)
def test_errors_no_data_and_malformed_counts(
    measurement: Measurement, verdict: Verdict, message: str
) -> None:
    result = DriftJudge().judge(metric(), measurement, MetricStatus(name="drift"), alpha=0.05)

    assert (result.verdict, result.message, result.pending) == (verdict, message, False)
