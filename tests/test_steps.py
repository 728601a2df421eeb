"""steps: the spec checks in ``problems`` and what each step asks for.

Specs are read with ``serde.from_json`` (as ``builders.spec`` does), which does
not run the CRD's validation, so values the API server would refuse (a weight
of 150, a zero interval) reach ``problems`` the way they would after a
``--validate=false``. Also covers ``step_at``, ``describe``, ``weight_before``,
``pause_remaining`` and ``done`` for each kind of step.
"""

from __future__ import annotations

from typing import Any

import pytest

from builders import T0, at, metric, spec
from modelrollout import steps
from modelrollout.api import AnalysisStatus, MetricStatus, ModelRolloutSpec, PauseStep, Step

BAD_DURATION = "use a number with ms, s, m or h, e.g. 30s"
GIT = {"repository": "https://git.example/models.git", "path": "fraud/model.yaml"}
NO_RANGE = {"name": "a", "query": "q"}


def judged(judge: str, **settings: Any) -> dict[str, Any]:
    """A metric ``a`` for the sequential or drift judge, from a template."""
    return {"name": "a", "templateRef": {"name": "t"}, "judge": judge, **settings}


def valid(**extra: Any) -> ModelRolloutSpec:
    return spec(
        steps=[
            {"setWeight": 0},
            {"setWeight": 20},
            {"pause": {"duration": "0s"}},
            {"analysis": {"metrics": ["a"], "count": 2}},
            {"analysis": {}},
            {"setWeight": 100},
            {"pause": {}},
        ],
        metrics=[
            metric("a", interval="500ms"),
            metric("b", query=None, templateRef={"name": "t"}, thresholdRange={"max": 0.5}),
            metric("c", thresholdRange={"min": 1, "max": 1}, background=False),
        ],
        **extra,
    )


@pytest.mark.parametrize(
    "rollout",
    [
        valid(),
        valid(model={"git": {**GIT, "interval": "30s"}}),
        spec(),
        spec(steps=[]),
        spec(progressDeadlineSeconds=1),
        spec(metrics=[judged("sequential"), {**judged("drift"), "name": "b"}]),
        spec(
            metrics=[
                judged("sequential", sequential={"tolerance": 0, "minSamples": 1}),
                {**judged("drift", drift={"max": 0, "minSamples": 1}), "name": "b"},
            ]
        ),
    ],
)
def test_a_valid_spec_has_no_problems(rollout: ModelRolloutSpec) -> None:
    assert steps.problems(rollout) == []


@pytest.mark.parametrize(
    ("rollout", "problem"),
    [
        # the model source
        (
            spec(model={"uri": "models:/fraud/2", "git": GIT}),
            "spec.model: set exactly one of uri and git",
        ),
        (spec(model={}), "spec.model: set exactly one of uri and git"),
        (
            spec(model={"uri": "s3://bucket/fraud"}),
            "spec.model.uri: 's3://bucket/fraud' is not an MLflow registry URI (models:/…)",
        ),
        (
            spec(model={"uri": "runs:/abc/model"}),
            "spec.model.uri: 'runs:/abc/model' is not an MLflow registry URI (models:/…)",
        ),
        # durations, wherever they appear
        (
            spec(metrics=[metric("a")], interval="soon"),
            f"spec.strategy.analysis.interval: invalid duration 'soon': {BAD_DURATION}",
        ),
        (
            spec(metrics=[metric("a"), metric("b", interval="5")]),
            f"spec.strategy.analysis.metrics[1].interval: invalid duration '5': {BAD_DURATION}",
        ),
        (
            spec(steps=[{"setWeight": 10}, {"pause": {"duration": "1d"}}]),
            f"spec.strategy.steps[1].pause.duration: invalid duration '1d': {BAD_DURATION}",
        ),
        (
            spec(model={"git": {**GIT, "interval": "5 minutes"}}),
            f"spec.model.git.interval: invalid duration '5 minutes': {BAD_DURATION}",
        ),
        (
            spec(metrics=[metric("a")], interval="0s"),
            "spec.strategy.analysis.interval: must be longer than zero",
        ),
        (
            spec(metrics=[metric("a", interval="0ms")]),
            "spec.strategy.analysis.metrics[0].interval: must be longer than zero",
        ),
        (
            spec(model={"git": {**GIT, "interval": "0m"}}),
            "spec.model.git.interval: must be longer than zero",
        ),
        # metrics
        (
            spec(metrics=[metric("a"), metric("b"), metric("a"), metric("b"), metric("c")]),
            "spec.strategy.analysis.metrics: duplicate names ['a', 'b']",
        ),
        (
            spec(metrics=[metric("a", templateRef={"name": "t"})]),
            "spec.strategy.analysis.metrics[0]: set exactly one of templateRef and query",
        ),
        (
            spec(metrics=[metric("a"), metric("b", query=None)]),
            "spec.strategy.analysis.metrics[1]: set exactly one of templateRef and query",
        ),
        (
            spec(metrics=[NO_RANGE]),
            "spec.strategy.analysis.metrics[0].thresholdRange: "
            "the threshold judge needs a min or a max",
        ),
        (
            spec(metrics=[{**NO_RANGE, "thresholdRange": {}}]),
            "spec.strategy.analysis.metrics[0].thresholdRange: "
            "the threshold judge needs a min or a max",
        ),
        (
            spec(metrics=[metric("a", thresholdRange={"min": 2, "max": 1})]),
            "spec.strategy.analysis.metrics[0].thresholdRange: min is greater than max",
        ),
        # the sequential and drift judges' settings and the alpha budget
        (
            spec(metrics=[judged("sequential", sequential={"tolerance": -0.1})]),
            "spec.strategy.analysis.metrics[0].sequential.tolerance: must be 0 or more",
        ),
        (
            spec(metrics=[judged("sequential", sequential={"minSamples": 0})]),
            "spec.strategy.analysis.metrics[0].sequential.minSamples: must be at least 1",
        ),
        (
            spec(metrics=[judged("sequential", sequential={"maxSamples": 0})]),
            "spec.strategy.analysis.metrics[0].sequential.maxSamples: must be at least 1",
        ),
        (
            spec(metrics=[judged("drift", drift={"max": -1})]),
            "spec.strategy.analysis.metrics[0].drift.max: must be 0 or more",
        ),
        (
            spec(metrics=[judged("drift", drift={"minSamples": 0})]),
            "spec.strategy.analysis.metrics[0].drift.minSamples: must be at least 1",
        ),
        (
            spec(strategy={"analysis": {"alpha": 0, "metrics": [judged("sequential")]}}),
            "spec.strategy.analysis.alpha: must be more than 0 and at most 0.5, not 0",
        ),
        (
            spec(strategy={"analysis": {"alpha": 0.6, "metrics": [judged("sequential")]}}),
            "spec.strategy.analysis.alpha: must be more than 0 and at most 0.5, not 0.6",
        ),
        # steps
        (
            spec(steps=[{"setWeight": 10}, {"setWeight": 20, "pause": {}}]),
            "spec.strategy.steps[1]: set exactly one of setWeight, pause and analysis",
        ),
        (
            spec(steps=[{}]),
            "spec.strategy.steps[0]: set exactly one of setWeight, pause and analysis",
        ),
        (
            spec(
                steps=[{"pause": {}, "analysis": {}}],
                metrics=[metric("a")],
            ),
            "spec.strategy.steps[0]: set exactly one of setWeight, pause and analysis",
        ),
        (
            spec(steps=[{"setWeight": 10}, {"setWeight": 150}]),
            "spec.strategy.steps[1].setWeight: 150 is outside 0..100",
        ),
        (
            spec(steps=[{"setWeight": -1}]),
            "spec.strategy.steps[0].setWeight: -1 is outside 0..100",
        ),
        (
            spec(
                steps=[{"setWeight": 10}, {"analysis": {"metrics": ["a", "zz", "b"]}}],
                metrics=[metric("a")],
            ),
            "spec.strategy.steps[1].analysis.metrics: unknown metrics ['b', 'zz']",
        ),
        (
            spec(steps=[{"setWeight": 10}, {"analysis": {"metrics": ["a"]}}]),
            "spec.strategy.steps[1].analysis.metrics: unknown metrics ['a']",
        ),
        (
            spec(steps=[{"setWeight": 10}, {"analysis": {}}]),
            "spec.strategy.steps[1].analysis: there are no metrics in spec.strategy.analysis",
        ),
        (
            spec(steps=[{"analysis": {"count": 0}}], metrics=[metric("a")]),
            "spec.strategy.steps[0].analysis.count: must be at least 1",
        ),
        (
            spec(steps=[{"analysis": {"metrics": ["a"], "count": -2}}], metrics=[metric("a")]),
            "spec.strategy.steps[0].analysis.count: must be at least 1",
        ),
        # the deadline
        (spec(progressDeadlineSeconds=0), "spec.progressDeadlineSeconds: must be at least 1"),
        (spec(progressDeadlineSeconds=-5), "spec.progressDeadlineSeconds: must be at least 1"),
    ],
)
def test_problems(rollout: ModelRolloutSpec, problem: str) -> None:
    assert steps.problems(rollout) == [problem]


def test_a_zero_pause_is_not_a_problem() -> None:
    assert steps.problems(spec(steps=[{"pause": {"duration": "0s"}}])) == []


def test_every_problem_is_reported_not_just_the_first() -> None:
    rollout = spec(
        model={"uri": "s3://x"},
        steps=[{"setWeight": 101}, {}, {"pause": {"duration": "later"}}],
        metrics=[NO_RANGE],
        interval="0s",
        progressDeadlineSeconds=0,
    )

    found = steps.problems(rollout)

    assert [p.split(":")[0] for p in found] == [
        "spec.model.uri",
        "spec.strategy.analysis.interval",
        "spec.strategy.steps[2].pause.duration",
        "spec.strategy.analysis.metrics[0].thresholdRange",
        "spec.strategy.steps[0].setWeight",
        "spec.strategy.steps[1]",
        "spec.progressDeadlineSeconds",
    ]


# ---------------------------------------------------------------- the step list

FIVE = spec(
    steps=[
        {"setWeight": 20},
        {"pause": {"duration": "5m"}},
        {"setWeight": 50},
        {"analysis": {"count": 2}},
        {"pause": {}},
    ],
    metrics=[metric("a"), metric("b", background=False)],
)


@pytest.mark.parametrize(
    ("index", "expected"),
    [(None, None), (-1, None), (0, 0), (4, 4), (5, None), (99, None)],
)
def test_step_at(index: int | None, expected: int | None) -> None:
    found = steps.step_at(FIVE, index)

    assert found == (None if expected is None else FIVE.strategy.steps[expected])


def test_step_at_without_steps() -> None:
    assert steps.step_at(spec(steps=[]), 0) is None


@pytest.mark.parametrize(
    ("index", "text"),
    [
        (0, "setWeight 20"),
        (1, "pause 5m"),
        (3, "analysis"),
        (4, "pause until promoted"),
    ],
)
def test_describe(index: int, text: str) -> None:
    assert steps.describe(FIVE.strategy.steps[index]) == text


def test_describe_weight_zero() -> None:
    assert steps.describe(Step(set_weight=0)) == "setWeight 0"


@pytest.mark.parametrize(
    ("index", "weight"),
    [(0, 0), (1, 20), (2, 20), (3, 50), (4, 50), (5, 50), (9, 50)],
)
def test_weight_before(index: int, weight: int) -> None:
    assert steps.weight_before(FIVE, index) == weight


def test_weight_before_sees_a_weight_of_zero() -> None:
    rollout = spec(steps=[{"setWeight": 20}, {"setWeight": 0}, {"pause": {}}])

    assert steps.weight_before(rollout, 2) == 0


TIMED = FIVE.strategy.steps[1]
INDEFINITE = FIVE.strategy.steps[4]
T0_TEXT = "2026-11-27T12:00:00Z"


@pytest.mark.parametrize(
    ("step", "started_at", "now", "remaining"),
    [
        (TIMED, T0_TEXT, 0, 300.0),
        (TIMED, T0_TEXT, 60, 240.0),
        (TIMED, T0_TEXT, 299.5, 0.5),
        (TIMED, T0_TEXT, 300, 0.0),
        (TIMED, T0_TEXT, 3600, 0.0),
        (TIMED, "2026-11-27T12:00:00.250000Z", 60, 240.25),
        (TIMED, None, 600, 300.0),
        (INDEFINITE, T0_TEXT, 600, None),
        (FIVE.strategy.steps[0], T0_TEXT, 600, None),
        (FIVE.strategy.steps[3], T0_TEXT, 600, None),
    ],
)
def test_pause_remaining(
    step: Step, started_at: str | None, now: float, remaining: float | None
) -> None:
    left = steps.pause_remaining(step, started_at, at(now))

    assert left == (None if remaining is None else pytest.approx(remaining))


@pytest.mark.parametrize(
    ("index", "now", "passes", "finished"),
    [
        (0, 0, {}, True),
        (2, 0, {}, True),
        (1, 299, {}, False),
        (1, 300, {}, True),
        (4, 86400, {}, False),
        (3, 0, {"a": 2, "b": 1}, False),
        (3, 0, {"a": 2, "b": 2}, True),
        (3, 0, {"a": 5}, False),
    ],
)
def test_done(index: int, now: float, passes: dict[str, int], finished: bool) -> None:
    status = AnalysisStatus(
        metrics=tuple(MetricStatus(name=n, step_passes=p) for n, p in passes.items())
    )

    assert steps.done(FIVE, FIVE.strategy.steps[index], T0_TEXT, status, at(now)) is finished


def test_a_zero_pause_is_done_at_once() -> None:
    zero = Step(pause=PauseStep(duration="0s"))

    assert steps.done(FIVE, zero, T0_TEXT, None, T0) is True


def test_an_analysis_step_without_analysis_status_is_not_done() -> None:
    assert steps.done(FIVE, FIVE.strategy.steps[3], T0_TEXT, None, at(3600)) is False


@pytest.mark.parametrize("limit", ["failureLimit", "inconclusiveLimit", "consecutiveErrorLimit"])
def test_a_negative_metric_limit_is_a_problem(limit: str) -> None:
    # A limit below zero is exceeded before anything is measured: the first
    # analysis pass would fail (or pause) the rollout with "failed 0 time(s)".
    rollout = spec(metrics=[metric("a", **{limit: -1})])

    found = steps.problems(rollout)

    assert [p.split(":")[0] for p in found] == [f"spec.strategy.analysis.metrics[0].{limit}"]
