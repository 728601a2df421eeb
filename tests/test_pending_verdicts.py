"""Pending judgements: a judge that is still collecting evidence holds the rollout.

A judgement with ``pending=True`` (the sequential judge before ``minSamples`` or
before either e-value crosses; the drift judge before ``minSamples``) is shown
as INCONCLUSIVE with the message "collecting evidence: …", so ``holding_back``
holds the rollout at its step, but it adds to no verdict counter (only to
``count``, the measurements taken): it never reaches ``inconclusiveLimit`` and
never pauses the rollout the way a real INCONCLUSIVE (no data) does. It resets
the run of consecutive errors like any other non-error result. Judgements that
are not pending are counted exactly as before (``tests/test_analysis.py``).
"""

from __future__ import annotations

from typing import Any

from builders import V1, V2, at, spec, split
from modelrollout import analysis, api
from modelrollout.api import AnalysisPhase, AnalysisStatus, MetricStatus, ModelRolloutSpec, Verdict
from modelrollout.decision import DesiredModel, Measurement, Observations
from modelrollout.machine import decide

#: Too few canary requests for a verdict (minSamples is 100).
EARLY = Measurement(canary={"total": 40, "bad": 0}, stable={"total": 360, "bad": 3})
NO_DATA = Measurement()
BROKEN = Measurement(error="connection refused")
COLLECTING = "collecting evidence: 40 of the 100 canary requests needed"


def sequential(**extra: Any) -> dict[str, Any]:
    return {"name": "errors", "templateRef": {"name": "t"}, "judge": "sequential", **extra}


def rollout(**extra: Any) -> ModelRolloutSpec:
    return spec(
        steps=[{"setWeight": 10}, {"analysis": {}}, {"setWeight": 50}],
        metrics=[sequential(**extra)],
    )


def run(of: ModelRolloutSpec, *measurements: Measurement) -> AnalysisStatus:
    status = None
    for i, measurement in enumerate(measurements):
        status = analysis.record(of, status, None, {"errors": measurement}, at(30 * i))
    assert status is not None
    return status


def test_a_pending_judgement_reads_as_inconclusive_collecting_evidence() -> None:
    status = run(rollout(), EARLY)

    errors = status.metrics[0]
    assert (errors.verdict, errors.message) == (Verdict.INCONCLUSIVE, COLLECTING)
    assert errors.state is not None


def test_a_pending_judgement_adds_to_no_verdict_counter_only_to_count() -> None:
    errors = run(rollout(), EARLY, EARLY, EARLY).metrics[0]

    assert errors.count == 3
    assert (
        errors.successful,
        errors.failed,
        errors.inconclusive,
        errors.error,
        errors.consecutive_errors,
        errors.step_passes,
    ) == (0, 0, 0, 0, 0, 0)


def test_pending_never_reaches_the_inconclusive_limit() -> None:
    status = run(rollout(inconclusiveLimit=0), *[EARLY] * 20)

    assert (status.phase, status.message) == (AnalysisPhase.RUNNING, None)


def test_no_data_is_still_counted_as_inconclusive() -> None:
    status = run(rollout(inconclusiveLimit=0), NO_DATA)

    assert status.metrics[0].inconclusive == 1
    assert status.phase == AnalysisPhase.INCONCLUSIVE


def test_pending_ends_a_run_of_errors() -> None:
    errors = run(rollout(consecutiveErrorLimit=5), BROKEN, BROKEN, EARLY).metrics[0]

    assert (errors.error, errors.consecutive_errors) == (2, 0)


def test_pending_holds_advancement() -> None:
    status = run(rollout(), EARLY)

    assert analysis.holding_back(rollout(), status) == (
        f"metric 'errors' is INCONCLUSIVE: {COLLECTING}"
    )


def test_pending_neither_satisfies_an_analysis_step_nor_allows_promotion() -> None:
    of = rollout()
    status = run(of, EARLY)

    assert not analysis.step_satisfied(of, status, of.strategy.steps[1])
    assert analysis.missing_evidence(of, status, "2026-11-27T12:00:00Z") == (
        "waiting for a passing measurement of 'errors' at the final weight"
    )


def test_the_drift_judge_is_pending_the_same_way() -> None:
    of = spec(metrics=[{"name": "drift", "templateRef": {"name": "t"}, "judge": "drift"}])
    few = Measurement(canary={"a": 5, "b": 5}, stable={"a": 50, "b": 50})

    status = analysis.record(of, None, None, {"drift": few}, at(0))

    assert status is not None
    drift = status.metrics[0]
    assert (drift.verdict, drift.inconclusive, drift.count) == (Verdict.INCONCLUSIVE, 0, 1)
    assert drift.message == (
        "collecting evidence: 10 canary and 100 stable predictions, 100 needed on each"
    )


def test_a_rollout_waits_at_its_step_while_evidence_is_collected() -> None:
    """Given a canary at 10% with too few requests for a verdict, when the
    operator checks it for ten minutes, then it holds at its setWeight step
    (Progressing), never pausing for a person and never moving on."""
    of = rollout(inconclusiveLimit=0)
    current = api.ModelRolloutStatus(
        phase=api.Phase.PROGRESSING,
        stable=V1,
        canary=V2,
        current_step_index=0,
        canary_weight=10,
        canary_started_at="2026-11-27T12:00:00Z",
        step_started_at="2026-11-27T12:00:00Z",
        analysis=analysis.fresh_status(of),
    )
    observed = Observations(
        desired=DesiredModel(V2),
        route=split(V1, V2, 10),
        measurements={"errors": EARLY},
        generation=1,
    )

    for second in range(0, 600, 30):
        current = decide(of, current, observed, at(second)).status
        assert current.phase == api.Phase.PROGRESSING
        assert current.current_step_index == 0

    assert current.analysis is not None
    assert current.analysis.metrics[0] == MetricStatus(
        name="errors",
        verdict=Verdict.INCONCLUSIVE,
        value=0.0,
        message=COLLECTING,
        measured_at="2026-11-27T12:09:30Z",
        count=20,
        evidence=current.analysis.metrics[0].evidence,
        state=current.analysis.metrics[0].state,
    )
    assert current.message == f"holding at step 0: metric 'errors' is INCONCLUSIVE: {COLLECTING}"
