"""analysis: which metrics are due, how verdicts are counted, and when a run ends.

Covers the interval (per metric or for the analysis, counted from each
metric's last ``measuredAt``), background against step-only metrics, the
counters ``record`` keeps, the Failed/Error/Inconclusive limits with the worst
winning, and the checks that hold a rollout back or keep it from promoting.
"""

from __future__ import annotations

from typing import Any

import pytest

from builders import T0, at, metric, spec
from modelrollout import analysis
from modelrollout.api import (
    AnalysisPhase,
    AnalysisStatus,
    MetricStatus,
    ModelRolloutSpec,
    Step,
    Verdict,
)
from modelrollout.decision import Measurement

T0_TEXT = "2026-11-27T12:00:00Z"
PASSING = Measurement(value=0.995)
FAILING = Measurement(value=0.5)
NO_DATA = Measurement()
BROKEN = Measurement(error="boom")

STEPS: list[dict[str, Any]] = [
    {"setWeight": 20},
    {"analysis": {"metrics": ["step-only"]}},
    {"analysis": {}},
    {"analysis": {"metrics": ["bg"], "count": 2}},
    {"pause": {}},
]
SET_WEIGHT, NAMES_STEP_ONLY, NAMES_NONE, NAMES_BG, PAUSE = range(5)


def rollout(**bg: Any) -> ModelRolloutSpec:
    """One background metric ``bg`` and one step-only metric ``step-only``."""
    return spec(
        steps=STEPS,
        metrics=[metric("bg", **bg), metric("step-only", background=False)],
        interval="30s",
    )


def step(of: ModelRolloutSpec, index: int) -> Step:
    return of.strategy.steps[index]


def measured(*metrics: MetricStatus) -> AnalysisStatus:
    return AnalysisStatus(metrics=metrics)


def names(metrics: tuple[Any, ...]) -> list[str]:
    return [m.name for m in metrics]


# ---------------------------------------------------------------- due


@pytest.mark.parametrize(
    ("step_index", "expected"),
    [
        (None, ["bg"]),
        (SET_WEIGHT, ["bg"]),
        (PAUSE, ["bg"]),
        (NAMES_STEP_ONLY, ["bg", "step-only"]),
        (NAMES_NONE, ["bg", "step-only"]),
        (NAMES_BG, ["bg"]),
    ],
)
def test_step_only_metrics_are_due_only_while_an_analysis_step_names_them(
    step_index: int | None, expected: list[str]
) -> None:
    of = rollout()
    current = None if step_index is None else step(of, step_index)

    assert names(analysis.due(of, None, current, T0)) == expected


@pytest.mark.parametrize(
    ("now", "due"),
    [(0, False), (29.9, False), (30, True), (31, True)],
)
def test_the_analysis_interval(now: float, due: bool) -> None:
    of = rollout()
    status = measured(MetricStatus(name="bg", measured_at=T0_TEXT))

    assert names(analysis.due(of, status, None, at(now))) == (["bg"] if due else [])


@pytest.mark.parametrize(
    ("now", "due"),
    [(30, False), (59.9, False), (60, True)],
)
def test_a_metric_interval_overrides_the_analysis_interval(now: float, due: bool) -> None:
    of = rollout(interval="1m")
    status = measured(MetricStatus(name="bg", measured_at=T0_TEXT))

    assert names(analysis.due(of, status, None, at(now))) == (["bg"] if due else [])


def test_the_interval_counts_from_the_last_measurement() -> None:
    of = rollout()
    status = measured(MetricStatus(name="bg", measured_at="2026-11-27T12:00:10.500000Z"))

    assert analysis.due(of, status, None, at(40)) == ()
    assert names(analysis.due(of, status, None, at(40.5))) == ["bg"]


def test_each_metric_keeps_its_own_clock() -> None:
    of = rollout()
    status = measured(
        MetricStatus(name="bg", measured_at=T0_TEXT),
        MetricStatus(name="step-only", measured_at="2026-11-27T12:00:20Z"),
    )
    in_step = step(of, NAMES_NONE)

    assert names(analysis.due(of, status, in_step, at(30))) == ["bg"]
    assert names(analysis.due(of, status, in_step, at(50))) == ["bg", "step-only"]


@pytest.mark.parametrize(
    ("status", "step_index", "now", "wait"),
    [
        (None, None, 0, 0.0),
        (measured(MetricStatus(name="bg", measured_at=T0_TEXT)), None, 10, 20.0),
        (measured(MetricStatus(name="bg", measured_at=T0_TEXT)), None, 45, 0.0),
        (
            measured(
                MetricStatus(name="bg", measured_at=T0_TEXT),
                MetricStatus(name="step-only", measured_at="2026-11-27T12:00:05Z"),
            ),
            NAMES_NONE,
            10,
            20.0,
        ),
        (
            measured(MetricStatus(name="bg", measured_at=T0_TEXT)),
            NAMES_STEP_ONLY,
            10,
            0.0,
        ),
    ],
)
def test_next_due_in(
    status: AnalysisStatus | None, step_index: int | None, now: float, wait: float
) -> None:
    of = rollout()
    current = None if step_index is None else step(of, step_index)

    assert analysis.next_due_in(of, status, current, at(now)) == pytest.approx(wait)


def test_next_due_in_without_metrics_is_none() -> None:
    assert analysis.next_due_in(spec(), None, None, T0) is None


# ---------------------------------------------------------------- record


def test_record_starts_a_fresh_status() -> None:
    recorded = analysis.record(rollout(), None, None, {"bg": PASSING}, T0)

    assert recorded == AnalysisStatus(
        phase=AnalysisPhase.RUNNING,
        message=None,
        metrics=(
            MetricStatus(
                name="bg",
                verdict=Verdict.PASS,
                value=0.995,
                message="0.995 is within range",
                measured_at=T0_TEXT,
                count=1,
                successful=1,
                step_passes=1,
            ),
            MetricStatus(name="step-only"),
        ),
    )


def test_record_without_metrics_is_none() -> None:
    assert analysis.record(spec(), None, None, {"bg": PASSING}, T0) is None


@pytest.mark.parametrize(
    ("measurement", "verdict", "counts"),
    [
        # (successful, failed, inconclusive, error, consecutive_errors, step_passes)
        (PASSING, Verdict.PASS, (1, 0, 0, 0, 0, 1)),
        (FAILING, Verdict.FAIL, (0, 1, 0, 0, 0, 0)),
        (NO_DATA, Verdict.INCONCLUSIVE, (0, 0, 1, 0, 0, 0)),
        (BROKEN, Verdict.ERROR, (0, 0, 0, 1, 1, 0)),
    ],
)
def test_record_counts_each_verdict_apart(
    measurement: Measurement, verdict: Verdict, counts: tuple[int, ...]
) -> None:
    recorded = analysis.record(rollout(), None, None, {"bg": measurement}, T0)

    assert recorded is not None
    bg = recorded.metrics[0]
    assert bg.verdict == verdict
    assert bg.count == 1
    assert (
        bg.successful,
        bg.failed,
        bg.inconclusive,
        bg.error,
        bg.consecutive_errors,
        bg.step_passes,
    ) == counts


def run(
    of: ModelRolloutSpec, *measurements: Measurement, every: float = 30
) -> AnalysisStatus | None:
    """Record ``measurements`` of ``bg`` one interval apart, starting at T0."""
    status = None
    for i, measurement in enumerate(measurements):
        status = analysis.record(of, status, None, {"bg": measurement}, at(i * every))
    return status


def test_consecutive_errors_reset_on_any_other_verdict() -> None:
    of = rollout(consecutiveErrorLimit=10)

    after_errors = run(of, BROKEN, BROKEN)
    after_recovery = run(of, BROKEN, BROKEN, NO_DATA)
    after_more = run(of, BROKEN, BROKEN, PASSING, BROKEN)

    assert after_errors is not None
    assert after_recovery is not None
    assert after_more is not None
    assert (after_errors.metrics[0].consecutive_errors, after_errors.metrics[0].error) == (2, 2)
    assert (after_recovery.metrics[0].consecutive_errors, after_recovery.metrics[0].error) == (
        0,
        2,
    )
    assert (after_more.metrics[0].consecutive_errors, after_more.metrics[0].error) == (1, 3)


def test_counts_add_up_over_a_run() -> None:
    of = rollout(failureLimit=5, inconclusiveLimit=5)

    status = run(of, PASSING, FAILING, NO_DATA, BROKEN, PASSING)

    assert status is not None
    bg = status.metrics[0]
    assert (bg.count, bg.successful, bg.failed, bg.inconclusive, bg.error) == (5, 2, 1, 1, 1)
    assert bg.step_passes == 2
    assert bg.measured_at == "2026-11-27T12:02:00Z"
    assert status.phase == AnalysisPhase.RUNNING


def test_value_and_evidence_come_from_the_latest_judgement() -> None:
    first = analysis.record(
        rollout(), None, None, {"bg": Measurement(value=0.995, evidence={"samples": "10"})}, T0
    )
    second = analysis.record(
        rollout(), first, None, {"bg": Measurement(value=0.5, evidence={"samples": "12"})}, at(30)
    )

    assert first is not None
    assert second is not None
    assert (first.metrics[0].value, first.metrics[0].evidence) == (0.995, {"samples": "10"})
    assert (second.metrics[0].value, second.metrics[0].evidence) == (0.5, {"samples": "12"})


def test_recording_the_same_moment_twice_counts_once() -> None:
    of = rollout()
    once = analysis.record(of, None, None, {"bg": PASSING}, T0)

    twice = analysis.record(of, once, None, {"bg": PASSING}, T0)

    assert twice == once


def test_measurements_of_metrics_not_due_are_ignored() -> None:
    of = rollout()
    first = analysis.record(of, None, None, {"bg": PASSING}, T0)

    later = analysis.record(of, first, None, {"bg": FAILING, "step-only": FAILING}, at(29))

    assert later == first


def test_a_due_metric_without_a_measurement_is_left_alone() -> None:
    of = rollout()
    first = analysis.record(of, None, step(of, NAMES_NONE), {"bg": PASSING}, T0)

    assert first is not None
    assert first.metrics[1] == MetricStatus(name="step-only")


def test_a_step_only_metric_is_recorded_inside_its_step() -> None:
    of = rollout()

    recorded = analysis.record(
        of, None, step(of, NAMES_STEP_ONLY), {"bg": PASSING, "step-only": PASSING}, T0
    )

    assert recorded is not None
    assert [m.count for m in recorded.metrics] == [1, 1]
    assert recorded.metrics[1].step_passes == 1


def test_a_metric_added_to_the_spec_joins_the_status() -> None:
    of = rollout()
    old = AnalysisStatus(metrics=(MetricStatus(name="bg", measured_at=T0_TEXT, count=1),))

    recorded = analysis.record(of, old, step(of, NAMES_NONE), {"step-only": FAILING}, at(1))

    assert recorded is not None
    assert names(recorded.metrics) == ["bg", "step-only"]
    assert recorded.metrics[1].verdict == Verdict.FAIL


# ---------------------------------------------------------------- limits


@pytest.mark.parametrize(
    ("limits", "counts", "phase"),
    [
        ({}, {}, AnalysisPhase.RUNNING),
        ({}, {"failed": 1}, AnalysisPhase.FAILED),
        ({"failureLimit": 2}, {"failed": 2}, AnalysisPhase.RUNNING),
        ({"failureLimit": 2}, {"failed": 3}, AnalysisPhase.FAILED),
        ({}, {"consecutive_errors": 4, "error": 9}, AnalysisPhase.RUNNING),
        ({}, {"consecutive_errors": 5}, AnalysisPhase.ERROR),
        ({"consecutiveErrorLimit": 0}, {"consecutive_errors": 1}, AnalysisPhase.ERROR),
        ({}, {"inconclusive": 1}, AnalysisPhase.INCONCLUSIVE),
        ({"inconclusiveLimit": 1}, {"inconclusive": 1}, AnalysisPhase.RUNNING),
        ({"inconclusiveLimit": 1}, {"inconclusive": 2}, AnalysisPhase.INCONCLUSIVE),
        ({}, {"failed": 1, "consecutive_errors": 5, "inconclusive": 1}, AnalysisPhase.FAILED),
        ({}, {"consecutive_errors": 5, "inconclusive": 1}, AnalysisPhase.ERROR),
    ],
)
def test_metric_phase(limits: dict[str, int], counts: dict[str, Any], phase: AnalysisPhase) -> None:
    bg = analysis.metrics_of(rollout(**limits))[0]

    assert analysis.metric_phase(bg, MetricStatus(name="bg", **counts)) == phase


@pytest.mark.parametrize(
    ("limits", "measurements", "phase", "message"),
    [
        (
            {"failureLimit": 1},
            [FAILING, FAILING],
            AnalysisPhase.FAILED,
            "metric 'bg' failed 2 time(s), more than failureLimit 1 "
            "(last: 0.5 is below the minimum 0.99)",
        ),
        (
            {"consecutiveErrorLimit": 1},
            [BROKEN, BROKEN],
            AnalysisPhase.ERROR,
            "metric 'bg' errored 2 time(s) in a row, more than consecutiveErrorLimit 1 "
            "(last: metric provider error: boom)",
        ),
        (
            {},
            [NO_DATA],
            AnalysisPhase.INCONCLUSIVE,
            "metric 'bg' was inconclusive 1 time(s), more than inconclusiveLimit 0 "
            "(last: no data: is the canary receiving traffic?)",
        ),
        ({"failureLimit": 1}, [FAILING, PASSING], AnalysisPhase.RUNNING, None),
        ({"consecutiveErrorLimit": 1}, [BROKEN, PASSING, BROKEN], AnalysisPhase.RUNNING, None),
    ],
)
def test_record_applies_the_limits(
    limits: dict[str, int],
    measurements: list[Measurement],
    phase: AnalysisPhase,
    message: str | None,
) -> None:
    status = run(rollout(**limits), *measurements)

    assert status is not None
    assert (status.phase, status.message) == (phase, message)


def three() -> ModelRolloutSpec:
    return spec(metrics=[metric("a"), metric("b"), metric("c")])


FAILED: dict[str, Any] = {"failed": 1}
ERRORED: dict[str, Any] = {"consecutive_errors": 5}
UNSURE: dict[str, Any] = {"inconclusive": 1}


def failed(name: str) -> str:
    return f"metric {name!r} failed 1 time(s), more than failureLimit 0"


def errored(name: str) -> str:
    return f"metric {name!r} errored 5 time(s) in a row, more than consecutiveErrorLimit 4"


def unsure(name: str) -> str:
    return f"metric {name!r} was inconclusive 1 time(s), more than inconclusiveLimit 0"


@pytest.mark.parametrize(
    ("a", "b", "c", "phase", "message"),
    [
        ({}, {}, {}, AnalysisPhase.RUNNING, None),
        (UNSURE, ERRORED, FAILED, AnalysisPhase.FAILED, failed("c")),
        (FAILED, ERRORED, UNSURE, AnalysisPhase.FAILED, failed("a")),
        (UNSURE, ERRORED, {}, AnalysisPhase.ERROR, errored("b")),
        (ERRORED, UNSURE, {}, AnalysisPhase.ERROR, errored("a")),
        ({}, {}, UNSURE, AnalysisPhase.INCONCLUSIVE, unsure("c")),
        (FAILED, FAILED, {}, AnalysisPhase.FAILED, failed("a")),
    ],
)
def test_the_worst_metric_wins(
    a: dict[str, Any],
    b: dict[str, Any],
    c: dict[str, Any],
    phase: AnalysisPhase,
    message: str | None,
) -> None:
    metrics = (
        MetricStatus(name="a", **a),
        MetricStatus(name="b", **b),
        MetricStatus(name="c", **c),
    )

    assert analysis.summarize(three(), metrics) == (phase, message)


def test_summarize_message_without_a_last_message() -> None:
    assert analysis.summarize(three(), (MetricStatus(name="b", failed=1),)) == (
        AnalysisPhase.FAILED,
        "metric 'b' failed 1 time(s), more than failureLimit 0",
    )


def test_summarize_ignores_metrics_no_longer_in_the_spec() -> None:
    assert analysis.summarize(three(), (MetricStatus(name="gone", failed=9),)) == (
        AnalysisPhase.RUNNING,
        None,
    )


# ---------------------------------------------------------------- holding back


def latest(name: str, verdict: Verdict | None, message: str | None = None) -> MetricStatus:
    return MetricStatus(name=name, verdict=verdict, message=message, measured_at=T0_TEXT)


@pytest.mark.parametrize(
    ("bg", "step_only", "expected"),
    [
        (None, None, None),
        (Verdict.PASS, None, None),
        (Verdict.PASS, Verdict.FAIL, None),
        (Verdict.PASS, Verdict.ERROR, None),
        (Verdict.FAIL, Verdict.PASS, "metric 'bg' is FAIL: latest says so"),
        (Verdict.INCONCLUSIVE, None, "metric 'bg' is INCONCLUSIVE: latest says so"),
        (Verdict.ERROR, None, "metric 'bg' is ERROR: latest says so"),
    ],
)
def test_holding_back(bg: Verdict | None, step_only: Verdict | None, expected: str | None) -> None:
    status = measured(latest("bg", bg, "latest says so"), latest("step-only", step_only, "x"))

    assert analysis.holding_back(rollout(), status) == expected


def test_holding_back_without_status() -> None:
    assert analysis.holding_back(rollout(), None) is None


def test_holding_back_names_the_first_background_metric_in_spec_order() -> None:
    status = measured(latest("c", Verdict.FAIL, "c"), latest("b", Verdict.ERROR, "b"))

    assert analysis.holding_back(three(), status) == "metric 'b' is ERROR: b"


# ---------------------------------------------------------------- missing evidence

WAITING = "waiting for a passing measurement of 'bg' at the final weight"


@pytest.mark.parametrize(
    ("verdict", "measured_at", "since", "expected"),
    [
        (Verdict.PASS, "2026-11-27T12:00:00Z", "2026-11-27T12:00:00Z", None),
        (Verdict.PASS, "2026-11-27T12:00:30Z", "2026-11-27T12:00:00Z", None),
        (Verdict.PASS, "2026-11-27T11:59:59Z", "2026-11-27T12:00:00Z", WAITING),
        (Verdict.PASS, "2026-11-27T12:00:00Z", "2026-11-27T12:00:00.500000Z", WAITING),
        (Verdict.PASS, "2026-11-27T12:00:00.500000Z", "2026-11-27T12:00:00Z", None),
        (Verdict.PASS, "2026-11-27T12:00:00.500000Z", "2026-11-27T12:00:00.500000Z", None),
        (Verdict.PASS, "2026-11-27T12:00:00.400000Z", "2026-11-27T12:00:00.500000Z", WAITING),
        (Verdict.PASS, "2026-11-27T12:00:01Z", "2026-11-27T12:00:00.999999Z", None),
        (Verdict.PASS, "2026-11-27T12:00:00Z", None, WAITING),
        (Verdict.PASS, None, "2026-11-27T12:00:00Z", WAITING),
        (Verdict.FAIL, "2026-11-27T12:00:30Z", "2026-11-27T12:00:00Z", WAITING),
        (Verdict.INCONCLUSIVE, "2026-11-27T12:00:30Z", "2026-11-27T12:00:00Z", WAITING),
        (None, None, "2026-11-27T12:00:00Z", WAITING),
    ],
)
def test_missing_evidence(
    verdict: Verdict | None, measured_at: str | None, since: str | None, expected: str | None
) -> None:
    status = measured(MetricStatus(name="bg", verdict=verdict, measured_at=measured_at))

    assert analysis.missing_evidence(rollout(), status, since) == expected


def test_missing_evidence_ignores_step_only_metrics() -> None:
    status = measured(
        latest("bg", Verdict.PASS), MetricStatus(name="step-only", verdict=Verdict.FAIL)
    )

    assert analysis.missing_evidence(rollout(), status, T0_TEXT) is None


def test_missing_evidence_without_status_waits_for_background_metrics() -> None:
    assert analysis.missing_evidence(rollout(), None, T0_TEXT) == WAITING


def test_missing_evidence_without_metrics_is_none() -> None:
    assert analysis.missing_evidence(spec(), None, None) is None


def test_missing_evidence_names_the_first_background_metric_lacking_a_pass() -> None:
    status = measured(latest("a", Verdict.PASS), latest("b", Verdict.FAIL))

    assert analysis.missing_evidence(three(), status, T0_TEXT) == (
        "waiting for a passing measurement of 'b' at the final weight"
    )


# ---------------------------------------------------------------- analysis steps


@pytest.mark.parametrize(
    ("step_index", "passes", "satisfied"),
    [
        (NAMES_BG, {"bg": 1}, False),
        (NAMES_BG, {"bg": 2}, True),
        (NAMES_BG, {"bg": 3, "step-only": 0}, True),
        (NAMES_STEP_ONLY, {"bg": 0, "step-only": 1}, True),
        (NAMES_STEP_ONLY, {"bg": 5, "step-only": 0}, False),
        (NAMES_NONE, {"bg": 1, "step-only": 0}, False),
        (NAMES_NONE, {"bg": 1, "step-only": 1}, True),
        (NAMES_NONE, {}, False),
    ],
)
def test_step_satisfied(step_index: int, passes: dict[str, int], satisfied: bool) -> None:
    of = rollout()
    status = measured(*(MetricStatus(name=n, step_passes=p) for n, p in passes.items()))

    assert analysis.step_satisfied(of, status, step(of, step_index)) is satisfied


def test_step_satisfied_without_status_is_false() -> None:
    of = rollout()

    assert analysis.step_satisfied(of, None, step(of, NAMES_BG)) is False


def test_reset_step_passes_keeps_everything_else() -> None:
    status = measured(MetricStatus(name="bg", successful=3, step_passes=3, count=3))

    assert analysis.reset_step_passes(status) == measured(
        MetricStatus(name="bg", successful=3, step_passes=0, count=3)
    )
    assert analysis.reset_step_passes(None) is None


def test_forgive_inconclusive() -> None:
    status = AnalysisStatus(
        phase=AnalysisPhase.INCONCLUSIVE,
        message="metric 'bg' was inconclusive 1 time(s)",
        metrics=(
            MetricStatus(
                name="bg",
                verdict=Verdict.INCONCLUSIVE,
                count=4,
                successful=1,
                failed=1,
                inconclusive=2,
                error=1,
                consecutive_errors=1,
            ),
            MetricStatus(name="step-only", inconclusive=1),
        ),
    )

    forgiven = analysis.forgive_inconclusive(status)

    assert forgiven == AnalysisStatus(
        phase=AnalysisPhase.RUNNING,
        message=None,
        metrics=(
            MetricStatus(
                name="bg",
                verdict=Verdict.INCONCLUSIVE,
                count=4,
                successful=1,
                failed=1,
                inconclusive=0,
                error=1,
                consecutive_errors=1,
            ),
            MetricStatus(name="step-only", inconclusive=0),
        ),
    )
    assert analysis.summarize(rollout(failureLimit=1), forgiven.metrics) == (
        AnalysisPhase.RUNNING,
        None,
    )
