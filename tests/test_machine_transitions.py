"""Every transition of the rollout state machine, one pass of ``decide`` each.

Given a status and observations, when ``decide`` runs, then the phase, the
actions (as data), the condition reasons and the event reasons are exactly
the expected ones. Reasons are asserted as constants, never as free text.
"""

from __future__ import annotations

from dataclasses import replace

from builders import (
    V1,
    V2,
    V3,
    at,
    metric,
    model,
    spec,
    split,
    stable_only,
    stable_status,
    status,
    wants,
)
from modelrollout import api, conditions
from modelrollout.api import Outcome, Phase, Reason
from modelrollout.clock import rfc3339
from modelrollout.decision import (
    Decision,
    DesiredModel,
    GateResult,
    Measurement,
    Observations,
    Promote,
    Restore,
    RouteObservation,
    SetWeight,
    SourceProblem,
    WriteBack,
)
from modelrollout.machine import decide


def reasons(decision: Decision) -> list[Reason]:
    return [e.reason for e in decision.events]


def condition(decision: Decision, kind: api.ConditionType) -> tuple[str, Reason]:
    found = conditions.get(decision.status.conditions, kind)
    assert found is not None, f"no {kind} condition"
    return found.status, found.reason


def canary_status(
    step: int = 0,
    weight: int = 20,
    phase: Phase = Phase.PROGRESSING,
    started: float = 0,
    rollout_spec: api.ModelRolloutSpec | None = None,
    **fields: object,
) -> api.ModelRolloutStatus:
    """V1 stable, V2 canary at ``weight``, in step ``step`` since ``started``."""
    from modelrollout import analysis

    base = api.ModelRolloutStatus(
        phase=phase,
        stable=V1,
        canary=V2,
        current_step_index=step,
        canary_weight=weight,
        canary_started_at=rfc3339(at(0)),
        step_started_at=rfc3339(at(started)),
        progress_at=rfc3339(at(started)),
        analysis=analysis.fresh_status(rollout_spec) if rollout_spec else None,
    )
    return replace(base, **fields)  # type: ignore[arg-type]


# ------------------------------------------------------------------ at rest


def test_pending_without_a_source_waits() -> None:
    decision = decide(spec(), status(), Observations(), at(0))
    assert decision.status.phase == Phase.PENDING
    assert decision.actions == ()
    assert condition(decision, api.ConditionType.SOURCE_READY) == (
        conditions.UNKNOWN,
        Reason.WAITING_FOR_SOURCE,
    )


def test_first_model_is_deployed_as_stable_without_a_canary() -> None:
    decision = decide(spec(), status(), wants(V1), at(0))
    assert decision.status.phase == Phase.INITIALIZING
    assert decision.actions == (Promote(V1),)
    assert reasons(decision) == [Reason.INITIALIZING]


def test_initializing_waits_until_the_router_serves_the_model() -> None:
    given = decide(spec(), status(), wants(V1), at(0)).status
    decision = decide(spec(), given, wants(V1, route=None), at(5))
    assert decision.status.phase == Phase.INITIALIZING
    assert decision.actions == (Promote(V1),)


def test_initializing_ends_stable_when_the_router_shows_it() -> None:
    given = decide(spec(), status(), wants(V1), at(0)).status
    decision = decide(spec(), given, wants(V1, route=stable_only(V1)), at(5))
    assert decision.status.phase == Phase.SUCCEEDED
    assert decision.status.stable == V1
    assert decision.status.canary is None
    # Written back with the time initializing began, which a retried pass keeps.
    assert decision.actions == (
        WriteBack(V1, Outcome.INITIALIZED, Reason.INITIALIZED, at=rfc3339(at(0))),
    )
    assert [h.outcome for h in decision.status.history] == [Outcome.INITIALIZED]
    assert condition(decision, api.ConditionType.READY) == (conditions.TRUE, Reason.SERVING)


def test_initializing_superseded_by_a_new_model_starts_over() -> None:
    given = decide(spec(), status(), wants(V1), at(0)).status
    decision = decide(spec(), given, wants(V2), at(5))
    assert decision.status.phase == Phase.PENDING
    assert decision.status.canary is None
    assert decision.status.history[-1].outcome == Outcome.SUPERSEDED
    assert decide(spec(), decision.status, wants(V2), at(6)).actions == (Promote(V2),)


def test_initializing_aborted_fails_and_remembers_the_version() -> None:
    given = decide(spec(), status(), wants(V1), at(0)).status
    obs = replace(wants(V1), action="abort:1")
    decision = decide(spec(), given, obs, at(5))
    assert decision.status.phase == Phase.FAILED
    assert decision.status.failed_versions == ("fraud/1",)


def test_new_model_starts_a_canary_at_the_first_step_weight() -> None:
    decision = decide(spec(), stable_status(), wants(V2, route=stable_only(V1)), at(0))
    assert decision.status.phase == Phase.PROGRESSING
    assert decision.status.canary == V2
    assert decision.status.current_step_index == 0
    assert decision.status.canary_weight == 20
    assert decision.actions == (SetWeight(V1, V2, 20),)
    assert reasons(decision) == [
        Reason.ROLLOUT_STARTED,
        Reason.TRAFFIC_WEIGHT_UPDATED,
    ]
    assert condition(decision, api.ConditionType.GATED) == (conditions.TRUE, Reason.GATES_PASSED)


def test_stable_model_at_rest_is_kept_serving_alone() -> None:
    decision = decide(spec(), stable_status(), wants(V1, route=stable_only(V1)), at(0))
    assert decision.status.phase == Phase.SUCCEEDED
    assert decision.actions == ()
    assert condition(decision, api.ConditionType.PROGRESSING) == (
        conditions.FALSE,
        Reason.ROLLOUT_COMPLETED,
    )


def test_stable_model_changed_by_hand_is_put_back() -> None:
    decision = decide(spec(), stable_status(), wants(V1, route=split(V1, V3, 40)), at(0))
    assert decision.actions == (Restore(V1),)
    assert condition(decision, api.ConditionType.READY)[0] == conditions.FALSE


# ------------------------------------------------------------------ walking steps


def test_rollout_never_advances_while_observed_differs_from_desired() -> None:
    decision = decide(spec(), canary_status(weight=20), wants(V2, route=split(V1, V2, 10)), at(5))
    assert decision.status.current_step_index == 0
    assert decision.actions == (SetWeight(V1, V2, 20),)
    assert condition(decision, api.ConditionType.PROGRESSING) == (
        conditions.TRUE,
        Reason.WAITING_FOR_TRAFFIC,
    )


def test_a_set_weight_step_is_done_once_the_router_shows_it() -> None:
    decision = decide(spec(), canary_status(weight=20), wants(V2, route=split(V1, V2, 20)), at(5))
    assert decision.status.current_step_index == 1
    assert decision.status.canary_weight == 50
    assert decision.actions == (SetWeight(V1, V2, 50),)
    assert reasons(decision) == [Reason.TRAFFIC_WEIGHT_UPDATED, Reason.STEP_ADVANCED]


def test_a_timed_pause_waits_then_moves_on() -> None:
    rollout = spec(steps=[{"setWeight": 20}, {"pause": {"duration": "1m"}}, {"setWeight": 60}])
    given = canary_status(step=1, started=0)
    route = split(V1, V2, 20)
    waiting = decide(rollout, given, wants(V2, route=route), at(30))
    assert waiting.status.phase == Phase.PAUSED
    assert waiting.status.current_step_index == 1
    assert waiting.requeue_after == 30
    assert reasons(waiting) == [Reason.ROLLOUT_PAUSED]
    done = decide(rollout, waiting.status, wants(V2, route=route), at(60))
    assert done.status.phase == Phase.PROGRESSING
    assert done.status.current_step_index == 2
    assert done.actions == (SetWeight(V1, V2, 60),)
    assert Reason.ROLLOUT_RESUMED in reasons(done)


def test_an_indefinite_pause_waits_for_promote() -> None:
    rollout = spec(steps=[{"setWeight": 20}, {"pause": {}}, {"setWeight": 60}])
    given = canary_status(step=1, phase=Phase.PAUSED)
    route = split(V1, V2, 20)
    later = decide(rollout, given, wants(V2, route=route), at(10_000))
    assert later.status.phase == Phase.PAUSED
    assert later.status.current_step_index == 1
    promoted = decide(rollout, given, replace(wants(V2, route=route), action="promote:1"), at(5))
    assert promoted.status.current_step_index == 2
    assert promoted.status.last_action == "promote:1"
    assert Reason.STEP_PROMOTED in reasons(promoted)


def test_an_action_is_acted_on_once() -> None:
    rollout = spec(steps=[{"setWeight": 20}, {"pause": {}}, {"pause": {}}, {"setWeight": 60}])
    given = canary_status(step=1, phase=Phase.PAUSED)
    obs = replace(wants(V2, route=split(V1, V2, 20)), action="promote:1")
    first = decide(rollout, given, obs, at(5))
    second = decide(rollout, first.status, obs, at(6))
    assert first.status.current_step_index == 2
    assert second.status.current_step_index == 2
    assert reasons(second) == []


def test_an_unknown_action_is_refused_with_an_event() -> None:
    obs = replace(wants(V2, route=split(V1, V2, 20)), action="launch")
    decision = decide(spec(), canary_status(), obs, at(5))
    assert Reason.INVALID_ACTION in reasons(decision)
    assert decision.status.last_action == "launch"


def test_an_analysis_step_waits_for_its_passing_measurements() -> None:
    rollout = spec(
        steps=[{"setWeight": 20}, {"analysis": {"count": 2}}, {"setWeight": 60}],
        metrics=[metric()],
        interval="30s",
    )
    given = canary_status(step=1, rollout_spec=rollout)
    route = split(V1, V2, 20)
    first = decide(rollout, given, wants(V2, route=route, success_rate=0.999), at(0))
    assert first.status.current_step_index == 1
    assert condition(first, api.ConditionType.PROGRESSING)[1] == Reason.WAITING_FOR_ANALYSIS
    too_soon = decide(rollout, first.status, wants(V2, route=route, success_rate=0.999), at(10))
    assert too_soon.status.current_step_index == 1
    second = decide(rollout, too_soon.status, wants(V2, route=route, success_rate=0.999), at(30))
    assert second.status.current_step_index == 2
    assert second.actions == (SetWeight(V1, V2, 60),)


def test_background_analysis_is_measured_each_interval_not_each_pass() -> None:
    rollout = spec(steps=[{"setWeight": 20}, {"pause": {}}], metrics=[metric()], interval="1m")
    given = canary_status(step=1, phase=Phase.PAUSED, rollout_spec=rollout)
    route = split(V1, V2, 20)
    current = given
    for second in (0, 10, 20, 59, 60, 61):
        current = decide(
            rollout, current, wants(V2, route=route, success_rate=0.999), at(second)
        ).status
    assert current.analysis is not None
    assert current.analysis.metrics[0].count == 2


def test_no_measurement_counts_before_the_canary_has_traffic() -> None:
    rollout = spec(metrics=[metric()])
    decision = decide(
        rollout,
        canary_status(rollout_spec=rollout),
        wants(V2, route=split(V1, V2, 0), success_rate=0.2),
        at(0),
    )
    assert decision.status.analysis is not None
    assert decision.status.analysis.metrics[0].count == 0
    assert decision.status.phase == Phase.PROGRESSING


def test_after_the_last_step_the_canary_is_promoted() -> None:
    decision = decide(
        spec(), canary_status(step=1, weight=50), wants(V2, route=split(V1, V2, 50)), at(5)
    )
    assert decision.status.phase == Phase.PROMOTING
    assert decision.status.canary_weight == 100
    assert decision.actions == (Promote(V2),)
    assert Reason.PROMOTING in reasons(decision)


def test_promotion_waits_for_a_pass_at_the_final_weight() -> None:
    rollout = spec(steps=[{"setWeight": 50}], metrics=[metric()], interval="30s")
    given = canary_status(step=0, weight=50, rollout_spec=rollout)
    route = split(V1, V2, 50)
    entered = decide(rollout, given, wants(V2, route=route), at(0))
    assert entered.status.phase == Phase.PROGRESSING
    assert entered.status.current_step_index == 1
    measured = decide(rollout, entered.status, wants(V2, route=route, success_rate=0.999), at(1))
    assert measured.status.phase == Phase.PROMOTING


def test_no_data_never_passes() -> None:
    rollout = spec(
        steps=[{"setWeight": 50}],
        metrics=[metric(inconclusiveLimit=100)],
        interval="30s",
    )
    current = canary_status(step=0, weight=50, rollout_spec=rollout)
    route = split(V1, V2, 50)
    for second in range(0, 600, 30):
        current = decide(
            rollout, current, wants(V2, route=route, success_rate=None), at(second)
        ).status
        assert current.phase == Phase.PROGRESSING
    assert current.analysis is not None
    assert current.analysis.metrics[0].inconclusive == 20
    assert "receiving traffic" in (current.message or "")


def test_promote_full_skips_every_remaining_step() -> None:
    rollout = spec(steps=[{"setWeight": 10}, {"pause": {}}, {"setWeight": 50}, {"pause": {}}])
    obs = replace(wants(V2, route=split(V1, V2, 10)), action="promote-full:7")
    decision = decide(rollout, canary_status(step=1, weight=10, phase=Phase.PAUSED), obs, at(5))
    assert decision.status.phase == Phase.PROMOTING
    assert decision.actions == (Promote(V2),)


def test_spec_paused_holds_the_step() -> None:
    rollout = spec(paused=True)
    decision = decide(rollout, canary_status(), wants(V2, route=split(V1, V2, 20)), at(5))
    assert decision.status.phase == Phase.PAUSED
    assert decision.status.current_step_index == 0
    assert decision.actions == ()
    assert condition(decision, api.ConditionType.PROGRESSING) == (
        conditions.TRUE,
        Reason.PAUSED_BY_SPEC,
    )


def test_spec_paused_still_rolls_back_on_a_failing_metric() -> None:
    rollout = spec(paused=True, metrics=[metric()])
    given = canary_status(phase=Phase.PAUSED, rollout_spec=rollout)
    decision = decide(rollout, given, wants(V2, route=split(V1, V2, 20), success_rate=0.5), at(5))
    assert decision.status.phase == Phase.ROLLING_BACK


# ------------------------------------------------------------------ analysis verdicts


def test_a_failure_beyond_the_limit_rolls_back_traffic_first() -> None:
    rollout = spec(metrics=[metric(failureLimit=1)])
    given = canary_status(rollout_spec=rollout)
    route = split(V1, V2, 20)
    first = decide(rollout, given, wants(V2, route=route, success_rate=0.5), at(0))
    assert first.status.phase == Phase.PROGRESSING
    assert condition(first, api.ConditionType.PROGRESSING)[1] == Reason.HOLDING
    second = decide(rollout, first.status, wants(V2, route=route, success_rate=0.5), at(30))
    assert second.status.phase == Phase.ROLLING_BACK
    assert second.status.rollback == api.RollbackStatus(
        Outcome.ROLLED_BACK,
        Reason.ANALYSIS_FAILED,
        second.status.rollback.message,  # type: ignore[union-attr]
    )
    assert second.status.canary_weight == 0
    assert second.actions == (SetWeight(V1, V2, 0),)
    assert Reason.ANALYSIS_FAILED in reasons(second)
    assert condition(second, api.ConditionType.HEALTHY) == (
        conditions.FALSE,
        Reason.ANALYSIS_FAILED,
    )


def test_provider_errors_beyond_the_limit_roll_back() -> None:
    rollout = spec(metrics=[metric(consecutiveErrorLimit=1)])
    current = canary_status(rollout_spec=rollout)
    error = Observations(
        desired=DesiredModel(V2),
        route=split(V1, V2, 20),
        measurements={"success-rate": Measurement(error="connection refused")},
    )
    first = decide(rollout, current, error, at(0))
    assert first.status.phase == Phase.PROGRESSING
    second = decide(rollout, first.status, error, at(30))
    assert second.status.phase == Phase.ROLLING_BACK
    assert second.status.rollback is not None
    assert second.status.rollback.reason == Reason.ANALYSIS_ERROR


def test_inconclusive_beyond_the_limit_pauses_for_a_person() -> None:
    rollout = spec(metrics=[metric()])
    given = canary_status(rollout_spec=rollout)
    route = split(V1, V2, 20)
    paused = decide(rollout, given, wants(V2, route=route, success_rate=None), at(0))
    assert paused.status.phase == Phase.PAUSED
    assert condition(paused, api.ConditionType.PROGRESSING)[1] == Reason.INCONCLUSIVE_ANALYSIS
    assert condition(paused, api.ConditionType.HEALTHY) == (
        conditions.FALSE,
        Reason.INCONCLUSIVE_ANALYSIS,
    )
    resumed = decide(
        rollout,
        paused.status,
        replace(wants(V2, route=route, success_rate=0.999), action="promote:2"),
        at(30),
    )
    assert resumed.status.phase == Phase.PROGRESSING
    assert resumed.status.current_step_index == 1


# ------------------------------------------------------------------ endings


def test_progress_deadline_rolls_back() -> None:
    rollout = spec(progressDeadlineSeconds=60)
    decision = decide(rollout, canary_status(started=0), wants(V2, route=split(V1, V2, 0)), at(61))
    assert decision.status.phase == Phase.ROLLING_BACK
    assert decision.status.rollback is not None
    assert decision.status.rollback.reason == Reason.PROGRESS_DEADLINE_EXCEEDED


def test_abort_rolls_back_then_remembers_the_version() -> None:
    obs = replace(wants(V2, route=split(V1, V2, 20)), action="abort:1")
    aborting = decide(spec(), canary_status(), obs, at(5))
    assert aborting.status.phase == Phase.ROLLING_BACK
    assert aborting.actions == (SetWeight(V1, V2, 0),)
    assert Reason.ROLLOUT_ABORTED in reasons(aborting)
    restored = decide(spec(), aborting.status, replace(obs, route=stable_only(V1)), at(10))
    assert restored.status.phase == Phase.FAILED
    assert restored.status.failed_versions == ("fraud/2",)
    assert restored.status.history[-1].outcome == Outcome.ABORTED
    assert restored.actions == (
        WriteBack(
            V2, Outcome.ABORTED, Reason.ROLLOUT_ABORTED, "aborted by request", at=rfc3339(at(5))
        ),
    )


def test_rollback_moves_traffic_before_the_spec() -> None:
    rolling = canary_status(
        phase=Phase.ROLLING_BACK,
        weight=0,
        rollback=api.RollbackStatus(Outcome.ROLLED_BACK, Reason.ANALYSIS_FAILED, "bad"),
    )
    still_on_canary = decide(spec(), rolling, wants(V2, route=split(V1, V2, 20)), at(5))
    assert still_on_canary.actions == (SetWeight(V1, V2, 0),)
    traffic_back = decide(spec(), rolling, wants(V2, route=split(V1, V2, 0)), at(6))
    assert traffic_back.actions == (Restore(V1),)
    assert traffic_back.status.phase == Phase.ROLLING_BACK
    done = decide(spec(), rolling, wants(V2, route=stable_only(V1)), at(7))
    assert done.status.phase == Phase.FAILED
    assert done.status.canary is None
    assert done.status.canary_weight == 0
    assert done.actions == (
        WriteBack(V2, Outcome.ROLLED_BACK, Reason.ANALYSIS_FAILED, "bad", at=rfc3339(at(0))),
    )
    assert reasons(done) == [Reason.STABLE_RESTORED, Reason.ROLLED_BACK]
    assert condition(done, api.ConditionType.PROGRESSING) == (
        conditions.FALSE,
        Reason.ANALYSIS_FAILED,
    )


def test_promoting_ends_with_the_canary_stable_and_written_back() -> None:
    given = canary_status(step=2, weight=100, phase=Phase.PROMOTING)
    waiting = decide(spec(), given, wants(V2, route=split(V1, V2, 50)), at(5))
    assert waiting.status.phase == Phase.PROMOTING
    assert waiting.actions == (Promote(V2),)
    done = decide(spec(), given, wants(V2, route=stable_only(V2)), at(6))
    assert done.status.phase == Phase.SUCCEEDED
    assert done.status.stable == V2
    assert done.status.canary is None
    assert done.actions == (
        WriteBack(V2, Outcome.PROMOTED, Reason.ROLLOUT_PROMOTED, at=rfc3339(at(0))),
    )
    assert reasons(done) == [Reason.ROLLOUT_PROMOTED]


def test_a_retried_write_back_writes_the_time_the_outcome_was_decided() -> None:
    """A pass whose write-back failed writes no status; the pass that retries it, later,
    must write back the same time (MLflow would otherwise get the time tag twice)."""
    given = canary_status(step=2, weight=100, phase=Phase.PROMOTING, progress_at=rfc3339(at(3)))
    first = decide(spec(), given, wants(V2, route=stable_only(V2)), at(6))
    retried = decide(spec(), given, wants(V2, route=stable_only(V2)), at(40))
    written = (WriteBack(V2, Outcome.PROMOTED, Reason.ROLLOUT_PROMOTED, at=rfc3339(at(3))),)
    assert first.actions == written
    assert retried.actions == written


def test_promoting_can_still_be_aborted() -> None:
    given = canary_status(step=2, weight=100, phase=Phase.PROMOTING)
    obs = replace(wants(V2, route=split(V1, V2, 50)), action="abort:9")
    decision = decide(spec(), given, obs, at(5))
    assert decision.status.phase == Phase.ROLLING_BACK
    assert decision.actions == (SetWeight(V1, V2, 0),)


def test_a_new_model_mid_rollout_replaces_the_canary() -> None:
    superseding = decide(spec(), canary_status(), wants(V3, route=split(V1, V2, 20)), at(5))
    assert superseding.status.phase == Phase.ROLLING_BACK
    assert superseding.actions == (SetWeight(V1, V2, 0),)
    assert Reason.SUPERSEDED in reasons(superseding)
    restored = decide(spec(), superseding.status, wants(V3, route=stable_only(V1)), at(6))
    assert restored.status.phase == Phase.PENDING
    assert restored.status.failed_versions == ()
    assert restored.actions == ()
    started = decide(spec(), restored.status, wants(V3, route=stable_only(V1)), at(7))
    assert started.status.phase == Phase.PROGRESSING
    assert started.status.canary == V3
    assert started.actions == (SetWeight(V1, V3, 20),)


def test_reverting_the_source_to_stable_mid_rollout_returns_to_stable() -> None:
    superseding = decide(spec(), canary_status(), wants(V1, route=split(V1, V2, 20)), at(5))
    assert superseding.status.phase == Phase.ROLLING_BACK
    restored = decide(spec(), superseding.status, wants(V1, route=stable_only(V1)), at(6))
    settled = decide(spec(), restored.status, wants(V1, route=stable_only(V1)), at(7))
    assert settled.status.phase == Phase.SUCCEEDED
    assert settled.status.stable == V1


def test_a_failed_version_is_not_retried_without_retry() -> None:
    failed = replace(stable_status(), phase=Phase.FAILED, failed_versions=("fraud/2",))
    refused = decide(spec(), failed, wants(V2, route=stable_only(V1)), at(0))
    assert refused.status.phase == Phase.FAILED
    assert refused.actions == ()
    assert condition(refused, api.ConditionType.GATED) == (
        conditions.FALSE,
        Reason.PREVIOUSLY_FAILED,
    )
    retried = decide(
        spec(), failed, replace(wants(V2, route=stable_only(V1)), action="retry:1"), at(1)
    )
    assert retried.status.phase == Phase.PROGRESSING
    assert retried.status.failed_versions == ()
    assert retried.actions == (SetWeight(V1, V2, 20),)
    assert reasons(retried)[0] == Reason.RETRY_REQUESTED


def test_a_refused_failed_version_keeps_why_it_failed_in_the_message() -> None:
    rolled_back = api.HistoryEntry(
        model=V2, outcome=Outcome.ROLLED_BACK, reason=Reason.ANALYSIS_FAILED,
        message="metric 'errors' failed 1 time(s)",
    )  # fmt: skip
    failed = replace(
        stable_status(), phase=Phase.FAILED, failed_versions=("fraud/2",),
        history=(*stable_status().history, rolled_back),
    )  # fmt: skip
    refused = decide(spec(), failed, wants(V2, route=stable_only(V1)), at(0))
    assert refused.status.message == (
        f"{V2.label} failed a rollout before (RolledBack: metric 'errors' failed 1 time(s)); "
        "commit another version, or run 'modelrollout retry' to try it again"
    )


def test_a_failed_gate_moves_no_traffic_and_is_recorded_once() -> None:
    gates = (GateResult("validation_status", passed=False, message="tag is 'pending'"),)
    obs = wants(V2, route=stable_only(V1), gates=gates)
    first = decide(spec(), stable_status(), obs, at(0))
    assert first.status.phase == Phase.FAILED
    assert first.actions == ()
    assert condition(first, api.ConditionType.GATED) == (conditions.FALSE, Reason.GATE_FAILED)
    assert reasons(first) == [Reason.GATE_FAILED]
    again = decide(spec(), first.status, obs, at(60))
    assert reasons(again) == []
    assert [h.outcome for h in again.status.history] == [Outcome.GATE_FAILED]
    passed = decide(spec(), again.status, wants(V2, route=stable_only(V1)), at(120))
    assert passed.status.phase == Phase.PROGRESSING


def test_failed_returns_to_succeeded_when_the_source_goes_back_to_stable() -> None:
    failed = replace(stable_status(), phase=Phase.FAILED, failed_versions=("fraud/2",))
    decision = decide(spec(), failed, wants(V1, route=stable_only(V1)), at(0))
    assert decision.status.phase == Phase.SUCCEEDED


# ------------------------------------------------------------------ source and spec


def test_a_source_problem_mid_rollout_keeps_the_rollout_going() -> None:
    obs = Observations(
        desired=SourceProblem(Reason.SOURCE_ERROR, "git: could not resolve host"),
        route=split(V1, V2, 20),
    )
    decision = decide(spec(), canary_status(), obs, at(5))
    assert decision.status.phase == Phase.PROGRESSING
    assert decision.status.current_step_index == 1
    assert condition(decision, api.ConditionType.SOURCE_READY) == (
        conditions.FALSE,
        Reason.SOURCE_ERROR,
    )
    assert Reason.SOURCE_ERROR in reasons(decision)


def test_an_alias_that_moves_without_a_commit_is_not_followed() -> None:
    pinned = replace(V2, uri="models:/fraud@champion", git_commit="abc")
    moved = replace(model(3, commit="abc"), uri="models:/fraud@champion")
    given = canary_status(canary=pinned)
    decision = decide(spec(), given, wants(moved, route=split(V1, pinned, 20)), at(5))
    assert decision.status.canary == pinned
    assert decision.status.phase == Phase.PROGRESSING
    assert condition(decision, api.ConditionType.ALIAS_DRIFT) == (
        conditions.TRUE,
        Reason.ALIAS_DRIFT,
    )
    committed = replace(moved, git_commit="def")
    followed = decide(spec(), given, wants(committed, route=split(V1, pinned, 20)), at(6))
    assert followed.status.phase == Phase.ROLLING_BACK
    assert conditions.get(followed.status.conditions, api.ConditionType.ALIAS_DRIFT) is None


def test_an_invalid_spec_changes_nothing_that_serves_traffic() -> None:
    bad = spec(steps=[{"setWeight": 150}])
    given = canary_status()
    decision = decide(bad, given, wants(V2, route=split(V1, V2, 20)), at(5))
    assert decision.actions == ()
    assert decision.status.phase == Phase.PROGRESSING
    assert decision.status.current_step_index == 0
    assert condition(decision, api.ConditionType.READY) == (conditions.FALSE, Reason.INVALID_SPEC)
    assert reasons(decision) == [Reason.INVALID_SPEC]
    assert reasons(decide(bad, decision.status, wants(V2), at(6))) == []


def test_history_is_bounded_by_the_history_limit() -> None:
    rollout = spec(historyLimit=2)
    entries = tuple(
        api.HistoryEntry(model=model(n), outcome=Outcome.PROMOTED, reason=Reason.ROLLOUT_PROMOTED)
        for n in range(1, 4)
    )
    given = canary_status(step=2, weight=100, phase=Phase.PROMOTING, history=entries)
    done = decide(rollout, given, wants(V2, route=stable_only(V2)), at(5))
    assert [h.model.version for h in done.status.history] == ["3", "2"]


def test_observed_generation_follows_the_spec() -> None:
    obs = replace(wants(V1, route=stable_only(V1)), generation=7)
    assert decide(spec(), stable_status(), obs, at(0)).status.observed_generation == 7


def test_a_router_that_is_not_ready_is_not_converged() -> None:
    route = RouteObservation(V1.storage_uri, V2.storage_uri, 20, ready=False)
    decision = decide(spec(), canary_status(), wants(V2, route=route), at(5))
    assert decision.status.current_step_index == 0
    assert "not ready" in (decision.status.message or "")


def test_a_paused_rollout_starts_no_new_model_until_resumed() -> None:
    paused = spec(paused=True)
    held = decide(paused, stable_status(), wants(V2, route=stable_only(V1)), at(0))
    assert held.status.phase == Phase.SUCCEEDED
    assert held.status.canary is None
    assert held.actions == ()
    assert condition(held, api.ConditionType.PROGRESSING)[1] == Reason.PAUSED_BY_SPEC
    resumed = decide(spec(), held.status, wants(V2, route=stable_only(V1)), at(1))
    assert resumed.status.phase == Phase.PROGRESSING
    assert resumed.actions == (SetWeight(V1, V2, 20),)


def test_the_progress_deadline_counts_from_when_the_split_went_off() -> None:
    rollout = spec(steps=[{"setWeight": 20}, {"pause": {}}], progressDeadlineSeconds=60)
    converged = decide(
        rollout,
        canary_status(step=1, phase=Phase.PAUSED),
        wants(V2, route=split(V1, V2, 20)),
        at(0),
    )
    assert converged.status.progress_at is None
    off = decide(rollout, converged.status, wants(V2, route=split(V1, V2, 5)), at(600))
    assert off.status.phase == Phase.PAUSED
    assert off.actions == (SetWeight(V1, V2, 20),)
    still_off = decide(rollout, off.status, wants(V2, route=split(V1, V2, 5)), at(661))
    assert still_off.status.phase == Phase.ROLLING_BACK
    assert still_off.status.rollback is not None
    assert still_off.status.rollback.reason == Reason.PROGRESS_DEADLINE_EXCEEDED


def test_a_stage_that_moves_without_a_commit_is_not_followed_either() -> None:
    pinned = replace(V2, uri="models:/fraud/Production")
    moved = replace(V3, uri="models:/fraud/Production")
    decision = decide(
        spec(), canary_status(canary=pinned), wants(moved, route=split(V1, pinned, 20)), at(5)
    )
    assert decision.status.canary == pinned
    assert condition(decision, api.ConditionType.ALIAS_DRIFT) == (
        conditions.TRUE,
        Reason.ALIAS_DRIFT,
    )
