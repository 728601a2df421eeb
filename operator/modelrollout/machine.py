"""The rollout state machine: ``decide(spec, status, observations, now)``.

Pure: no I/O, no clock, no randomness. The same inputs always give the same
:class:`~modelrollout.decision.Decision`, which is what makes an operator
restart safe: a pass that is repeated re-emits the same idempotent router
actions and counts no measurement twice (a metric is only counted when due).

The shape of a rollout, as Argo Rollouts users know it: a list of steps and an
index in status. Traffic moves only through router actions, and the machine
never advances until the router reports the split it asked for. Every way a
canary can end badly goes through ``RollingBack``: traffic to stable first,
then the InferenceService spec back to the stable model.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime

from modelrollout import analysis, steps
from modelrollout import conditions as cond
from modelrollout.api import (
    MAX_FAILED_VERSIONS,
    MAX_HISTORY,
    Action,
    AnalysisPhase,
    ConditionStatus,
    ConditionType,
    HistoryEntry,
    ModelRolloutSpec,
    ModelRolloutStatus,
    ModelVersionRef,
    Outcome,
    Phase,
    Reason,
    RollbackStatus,
    Step,
)
from modelrollout.clock import rfc3339, seconds_since
from modelrollout.decision import (
    ActionType,
    Decision,
    DesiredModel,
    Event,
    EventType,
    GateResult,
    Observations,
    Promote,
    Restore,
    SetWeight,
    SourceProblem,
    WriteBack,
)

#: A canary that starts may, in the same pass, already be paused or promoting
#: (when the router already shows the split and the steps ask for it).
_STARTS = frozenset({Phase.PROGRESSING, Phase.PAUSED, Phase.PROMOTING})

#: Phases each phase may move to in one pass.
ALLOWED_TRANSITIONS: dict[Phase, frozenset[Phase]] = {
    Phase.PENDING: frozenset({Phase.PENDING, Phase.INITIALIZING, Phase.SUCCEEDED, Phase.FAILED})
    | _STARTS,
    Phase.INITIALIZING: frozenset(
        {Phase.INITIALIZING, Phase.SUCCEEDED, Phase.FAILED, Phase.PENDING}
    ),
    Phase.PROGRESSING: frozenset(
        {Phase.PROGRESSING, Phase.PAUSED, Phase.PROMOTING, Phase.ROLLING_BACK}
    ),
    Phase.PAUSED: frozenset({Phase.PAUSED, Phase.PROGRESSING, Phase.PROMOTING, Phase.ROLLING_BACK}),
    Phase.PROMOTING: frozenset({Phase.PROMOTING, Phase.SUCCEEDED, Phase.ROLLING_BACK}),
    Phase.ROLLING_BACK: frozenset({Phase.ROLLING_BACK, Phase.FAILED, Phase.PENDING}),
    Phase.SUCCEEDED: frozenset({Phase.SUCCEEDED, Phase.FAILED, Phase.INITIALIZING}) | _STARTS,
    Phase.FAILED: frozenset({Phase.FAILED, Phase.SUCCEEDED, Phase.INITIALIZING}) | _STARTS,
}

#: How soon to look again while waiting for the router to converge. A fallback: the operator
#: watches InferenceServices and runs the pass as soon as KServe reports (handlers.py).
CONVERGE_POLL_SECONDS = 10.0
#: How soon to measure again when a metric is due but has nothing to measure yet.
MEASURE_RETRY_SECONDS = 2.0


def decide(
    spec: ModelRolloutSpec, status: ModelRolloutStatus, obs: Observations, now: datetime
) -> Decision:
    """One reconcile pass: the new status, the actions to carry out, the events."""
    return _replay_lost_pass(spec, status, obs, now) or _Pass(spec, status, obs, now).run()


def _replay_lost_pass(
    spec: ModelRolloutSpec, status: ModelRolloutStatus, obs: Observations, now: datetime
) -> Decision | None:
    """The pass whose status write was lost, if the router shows it was carried out.

    An operator killed after a pass moved traffic but before it wrote status restarts from
    the older status, and finds the canary at a split that status does not name. Sending
    traffic back to the split named would undo a step (and swallow the request that made
    it). When the pass as it ran then (the route at the status's split) asks for exactly the
    split observed now, that pass is replayed instead: its status, without its events, which
    the killed operator has posted already. The next pass goes on from there.

    A router still on the split before the status's one is lagging, not ahead: that split is
    never taken for a lost pass. Nor is a pass that needed measurements (the router may show
    no traffic yet): those are judged again once traffic is where the status says.
    """
    route, stable, canary = obs.route, status.stable, status.canary
    if status.phase not in (Phase.PROGRESSING, Phase.PAUSED) or route is None:
        return None
    if stable is None or canary is None or not route.ready:
        return None
    lagging = (stable.storage_uri, canary.storage_uri, _weight_before(spec, status))
    if (route.stable_storage_uri, route.canary_storage_uri, route.canary_weight) == lagging:
        return None
    then = replace(
        route,
        stable_storage_uri=stable.storage_uri,
        canary_storage_uri=canary.storage_uri,
        canary_weight=status.canary_weight,
    )
    if then == route:
        return None
    lost = _Pass(spec, status, replace(obs, route=then, measurements={}), now).run()
    asked = [_split_of(a) for a in lost.actions if isinstance(a, SetWeight | Promote | Restore)]
    observed = (route.stable_storage_uri, route.canary_storage_uri, route.canary_weight)
    if not asked or asked[-1] != observed:
        return None
    return replace(lost, events=(), requeue_after=0.0)


def _weight_before(spec: ModelRolloutSpec, status: ModelRolloutStatus) -> int:
    """The canary weight before the step that set the current one (0 before the first)."""
    weights = [
        step.set_weight
        for step in spec.strategy.steps[: (status.current_step_index or 0) + 1]
        if step.set_weight is not None
    ]
    return weights[-2] if len(weights) > 1 else 0


def _split_of(action: SetWeight | Promote | Restore) -> tuple[str, str | None, int]:
    """The split a router action leaves the InferenceService in."""
    if isinstance(action, SetWeight):
        return action.stable.storage_uri, action.canary.storage_uri, action.weight
    if isinstance(action, Promote):
        return action.model.storage_uri, None, 0
    return action.stable.storage_uri, None, 0


@dataclass
class _Pass:
    spec: ModelRolloutSpec
    status: ModelRolloutStatus
    obs: Observations
    now: datetime
    actions: list[ActionType] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    gates: tuple[GateResult, ...] = ()
    action: Action | None = None
    action_used: bool = False
    progress_reason: Reason | None = None
    requeue: list[float] = field(default_factory=list)

    # ------------------------------------------------------------ entry

    def run(self) -> Decision:
        if self.obs.generation is not None:
            self.status = replace(self.status, observed_generation=self.obs.generation)
        found = steps.problems(self.spec)
        if found:
            self._invalid_spec("; ".join(found))
            return self._decision()
        self.action = self._take_action()
        desired = self._read_source()
        if self.action == Action.RETRY:
            self._retry(desired)
        phase = self.status.phase
        if phase == Phase.INITIALIZING:
            self._initializing(desired)
        elif phase in (Phase.PROGRESSING, Phase.PAUSED):
            self._progressing(desired)
        elif phase == Phase.PROMOTING:
            self._promoting()
        elif phase == Phase.ROLLING_BACK:
            self._rolling_back()
        else:
            self._at_rest(desired)
        if self.action is not None and not self.action_used:
            self._event(
                EventType.WARNING,
                Reason.INVALID_ACTION,
                f"{self.action} does nothing while the rollout is {self.status.phase}",
            )
        return self._decision()

    def _decision(self) -> Decision:
        self._set_conditions()
        if self.status.history and len(self.status.history) > self._history_limit():
            self._update(history=self.status.history[-self._history_limit() :])
        return Decision(
            status=self.status,
            actions=tuple(self.actions),
            events=tuple(self.events),
            requeue_after=min(self.requeue, default=None),
        )

    # ------------------------------------------------------------ small helpers

    def _arms(self) -> tuple[ModelVersionRef, ModelVersionRef]:
        stable, canary = self.status.stable, self.status.canary
        if stable is None or canary is None:
            raise AssertionError(f"phase {self.status.phase} needs a stable and a canary model")
        return stable, canary

    def _update(self, **changes: object) -> None:
        self.status = replace(self.status, **changes)  # type: ignore[arg-type]

    def _stamp(self) -> str:
        return rfc3339(self.now)

    def _decided_at(self) -> str:
        """When the outcome now written back was decided: the start of the phase that ends
        (kept in status). A pass whose write-back failed is retried from the same status, so
        the retry writes the same time rather than a time of its own."""
        return self.status.progress_at or self._stamp()

    def _event(self, kind: EventType, reason: Reason, message: str) -> None:
        self.events.append(Event(kind, reason, message))

    def _history_limit(self) -> int:
        return max(1, min(self.spec.history_limit, MAX_HISTORY))

    def _condition(
        self, kind: ConditionType, status: ConditionStatus, reason: Reason, message: str = ""
    ) -> bool:
        """Set a condition; True when its status or reason changed (worth an event)."""
        old = cond.get(self.status.conditions, kind)
        self._update(
            conditions=cond.set_condition(
                self.status.conditions,
                kind,
                status,
                reason,
                message,
                self.now,
                self.status.observed_generation,
            )
        )
        return old is None or (old.status, old.reason, old.message) != (status, reason, message)

    def _invalid_spec(self, message: str) -> None:
        """A spec the core cannot follow freezes the rollout where it stands."""
        if self._condition(ConditionType.READY, cond.FALSE, Reason.INVALID_SPEC, message):
            self._event(EventType.WARNING, Reason.INVALID_SPEC, message)
        self._update(message=f"invalid spec: {message}")
        self.progress_reason = Reason.INVALID_SPEC

    def _take_action(self) -> Action | None:
        """A one-shot request from the annotation, acted on once per value."""
        raw = self.obs.action
        if not raw or raw == self.status.last_action:
            return None
        self._update(last_action=raw)
        name = raw.split(":", 1)[0].strip()
        try:
            return Action(name)
        except ValueError:
            allowed = ", ".join(a.value for a in Action)
            self._event(
                EventType.WARNING,
                Reason.INVALID_ACTION,
                f"unknown action {name!r}; use one of {allowed}",
            )
            return None

    def _use(self, action: Action) -> bool:
        if self.action == action:
            self.action_used = True
            return True
        return False

    def _read_source(self) -> ModelVersionRef | None:
        """The model the source wants now, or None to carry on as is."""
        desired = self.obs.desired
        if desired is None:
            self._condition(ConditionType.SOURCE_READY, cond.UNKNOWN, Reason.WAITING_FOR_SOURCE)
            return None
        if isinstance(desired, SourceProblem):
            if self._condition(
                ConditionType.SOURCE_READY, cond.FALSE, desired.reason, desired.message
            ):
                self._event(EventType.WARNING, desired.reason, desired.message)
            return None
        ref = self._pin_alias(desired)
        # The commit read last, even when it names the version already serving (a history
        # rewritten by a force-push): the branch is the truth, and status says where it is.
        commit = desired.ref.git_commit
        read_from = f", read from commit {commit}" if commit else ""
        self._condition(
            ConditionType.SOURCE_READY,
            cond.TRUE,
            Reason.SOURCE_RESOLVED,
            f"{desired.ref.uri} is {desired.ref.label}{read_from}",
        )
        if ref is desired.ref:
            self.gates = desired.gates
        return ref

    def _pin_alias(self, desired: DesiredModel) -> ModelVersionRef:
        """An alias is resolved once per rollout: if it moves with no change in
        git (or the inline URI), say so and stay on the pinned version."""
        ref = desired.ref
        pinned = self.status.canary or self.status.stable
        drifted = (
            pinned is not None
            and _moves(ref.uri)
            and ref.uri == pinned.uri
            and ref.git_commit == pinned.git_commit
            and ref.key != pinned.key
        )
        if pinned is None or not drifted or self.action == Action.RETRY:
            self._update(conditions=cond.remove(self.status.conditions, ConditionType.ALIAS_DRIFT))
            return ref
        message = (
            f"{ref.uri} now points to {ref.label}, but this rollout pinned {pinned.label}; "
            "commit a change or run 'modelrollout retry' to follow the alias"
        )
        if self._condition(ConditionType.ALIAS_DRIFT, cond.TRUE, Reason.ALIAS_DRIFT, message):
            self._event(EventType.WARNING, Reason.ALIAS_DRIFT, message)
        return pinned

    def _retry(self, desired: ModelVersionRef | None) -> None:
        self.action_used = True
        if desired is not None and desired.key in self.status.failed_versions:
            self._update(
                failed_versions=tuple(k for k in self.status.failed_versions if k != desired.key)
            )
        self._event(
            EventType.NORMAL,
            Reason.RETRY_REQUESTED,
            f"retry requested for {desired.label if desired else 'the current model'}",
        )

    # ------------------------------------------------------------ at rest

    def _at_rest(self, desired: ModelVersionRef | None) -> None:
        stable = self.status.stable
        if desired is None or (stable is not None and desired.key == stable.key):
            if stable is None:
                self._update(phase=Phase.PENDING, message="waiting for the model source")
                return
            self._keep_serving(stable)
            if desired is not None:
                self._update(phase=Phase.SUCCEEDED, message=f"{stable.label} is stable")
            return
        if desired.key in self.status.failed_versions:
            # Keep why it failed in sight: the message is what `kubectl get mro` shows.
            last = next((h for h in reversed(self.status.history) if h.model.key == desired.key),
                        None)  # fmt: skip
            why = f" ({last.outcome.value}: {last.message})" if last and last.message else ""
            message = (
                f"{desired.label} failed a rollout before{why}; commit another version, or run "
                "'modelrollout retry' to try it again"
            )
            self._refuse(desired, Reason.PREVIOUSLY_FAILED, message, record=False)
            return
        failed = [g for g in self.gates if not g.passed]
        if failed:
            message = "; ".join(f"{g.name}: {g.message}" for g in failed)
            self._refuse(desired, Reason.GATE_FAILED, f"{desired.label} {message}", record=True)
            return
        self._condition(ConditionType.GATED, cond.TRUE, Reason.GATES_PASSED)
        if self.spec.paused:
            # Paused means no traffic moves: a new model waits for the resume.
            if stable is not None:
                self._keep_serving(stable)
            self.progress_reason = Reason.PAUSED_BY_SPEC
            self._update(message=f"paused by spec.paused: {desired.label} starts on resume")
            return
        if stable is None:
            self._start_initializing(desired)
        else:
            self._start_canary(stable, desired)

    def _keep_serving(self, stable: ModelVersionRef) -> None:
        """At rest, the InferenceService serves the stable model alone; put it
        back if someone changed it by hand."""
        if not self._route_is(stable, None, 0):
            self.actions.append(Restore(stable))
            self.requeue.append(CONVERGE_POLL_SECONDS)

    def _refuse(
        self, desired: ModelVersionRef, reason: Reason, message: str, *, record: bool
    ) -> None:
        """No traffic for this model: Failed, with the reason in a condition."""
        if self.status.stable is not None:
            self._keep_serving(self.status.stable)
        self._update(phase=Phase.FAILED, message=message)
        self.progress_reason = reason
        if self._condition(ConditionType.GATED, cond.FALSE, reason, message):
            self._event(EventType.WARNING, reason, message)
            if record:
                self._record(desired, Outcome.GATE_FAILED, reason, message)

    def _start_initializing(self, model: ModelVersionRef) -> None:
        self._update(
            phase=Phase.INITIALIZING,
            canary=model,
            canary_weight=100,
            canary_started_at=self._stamp(),
            progress_at=self._stamp(),
            current_step_index=None,
            message=f"deploying {model.label} as the first stable model",
        )
        self.actions.append(Promote(model))
        self.requeue.append(CONVERGE_POLL_SECONDS)
        self._event(
            EventType.NORMAL, Reason.INITIALIZING, f"no stable model yet: deploying {model.label}"
        )

    def _start_canary(self, stable: ModelVersionRef, canary: ModelVersionRef) -> None:
        self._update(
            phase=Phase.PROGRESSING,
            canary=canary,
            canary_started_at=self._stamp(),
            rollback=None,
            analysis=analysis.fresh_status(self.spec),
            message=f"rolling out {canary.label} beside {stable.label}",
        )
        self._event(
            EventType.NORMAL,
            Reason.ROLLOUT_STARTED,
            f"canary {canary.label} started beside stable {stable.label}",
        )
        self._set_weight(0)
        self._enter_step(0)
        self._walk_steps()

    # ------------------------------------------------------------ initializing

    def _initializing(self, desired: ModelVersionRef | None) -> None:
        model = self.status.canary
        assert model is not None
        if desired is not None and desired.key != model.key:
            self._record(model, Outcome.SUPERSEDED, Reason.SUPERSEDED, f"{desired.label} wanted")
            self._clear_canary(Phase.PENDING, f"{desired.label} replaces {model.label}")
            self.requeue.append(0.0)
            return
        if self._use(Action.ABORT):
            message = f"first deployment of {model.label} aborted by request"
            self._mark_failed(model, Outcome.ABORTED, Reason.ROLLOUT_ABORTED, message)
            return
        if self._route_is(model, None, 0):
            self._record(model, Outcome.INITIALIZED, Reason.INITIALIZED, "first stable model")
            self.actions.append(
                WriteBack(model, Outcome.INITIALIZED, Reason.INITIALIZED, at=self._decided_at())
            )
            self._event(EventType.NORMAL, Reason.INITIALIZED, f"{model.label} is now stable")
            self._update(stable=model)
            self._clear_canary(Phase.SUCCEEDED, f"{model.label} is stable")
            return
        self.actions.append(Promote(model))
        self._wait_for_route()

    # ------------------------------------------------------------ canary

    def _progressing(self, desired: ModelVersionRef | None) -> None:
        stable, canary = self._arms()
        if desired is not None and desired.key != canary.key:
            message = f"{desired.label} replaces canary {canary.label}"
            self._start_rollback(Outcome.SUPERSEDED, Reason.SUPERSEDED, message)
            return
        if self._use(Action.ABORT):
            self._start_rollback(Outcome.ABORTED, Reason.ROLLOUT_ABORTED, "aborted by request")
            return
        step = steps.step_at(self.spec, self.status.current_step_index)
        # Measurements mean something only once the canary serves traffic.
        route = self.obs.route
        serving = (
            route is not None
            and route.canary_storage_uri == canary.storage_uri
            and route.canary_weight > 0
        )
        judged = analysis.record(
            self.spec,
            self.status.analysis,
            step,
            self.obs.measurements if serving else {},
            self.now,
        )
        self._update(analysis=judged)
        if judged is not None and judged.phase in (AnalysisPhase.FAILED, AnalysisPhase.ERROR):
            reason = (
                Reason.ANALYSIS_FAILED
                if judged.phase == AnalysisPhase.FAILED
                else Reason.ANALYSIS_ERROR
            )
            self._start_rollback(Outcome.ROLLED_BACK, reason, judged.message or reason)
            return
        self._schedule_analysis(step)
        if self._route_is(stable, canary, self.status.canary_weight):
            self._update(progress_at=None)
        else:
            if self._deadline_passed():
                message = (
                    f"traffic did not reach {self.status.canary_weight}% on the canary within "
                    f"{self.spec.progress_deadline_seconds}s"
                )
                self._start_rollback(
                    Outcome.ROLLED_BACK, Reason.PROGRESS_DEADLINE_EXCEEDED, message
                )
                return
            self.actions.append(SetWeight(stable, canary, self.status.canary_weight))
            self._wait_for_route()
            return
        if judged is not None and judged.phase == AnalysisPhase.INCONCLUSIVE:
            if not self._use(Action.PROMOTE):
                self._pause(Reason.INCONCLUSIVE_ANALYSIS, f"{judged.message}; promote or abort")
                return
            self._update(analysis=analysis.forgive_inconclusive(judged))
            self._event(EventType.NORMAL, Reason.STEP_PROMOTED, "inconclusive analysis accepted")
        if self.spec.paused:
            self._pause(Reason.PAUSED_BY_SPEC, "paused by spec.paused")
            return
        if self._use(Action.PROMOTE_FULL):
            self._start_promoting("promoted in full by request, skipping the remaining steps")
            return
        if self._use(Action.PROMOTE):
            if step is None:
                self._start_promoting("promoted by request")
                return
            self._event(
                EventType.NORMAL,
                Reason.STEP_PROMOTED,
                f"step {self.status.current_step_index} ({steps.describe(step)}) "
                "skipped by request",
            )
            self._enter_step((self.status.current_step_index or 0) + 1)
        self._walk_steps()

    def _walk_steps(self) -> None:
        """Finish as many steps as the observations allow (each needs traffic in place)."""
        for _ in range(len(self.spec.strategy.steps) + 1):
            stable, canary = self._arms()
            if not self._route_is(stable, canary, self.status.canary_weight):
                self._wait_for_route()
                return
            index = self.status.current_step_index or 0
            step = steps.step_at(self.spec, index)
            if step is None:
                self._finish_steps()
                return
            if not steps.done(
                self.spec, step, self.status.step_started_at, self.status.analysis, self.now
            ):
                self._waiting_in(index, step)
                return
            holding = analysis.holding_back(self.spec, self.status.analysis)
            if holding:
                self._progress(Reason.HOLDING, f"holding at step {index}: {holding}")
                return
            self._enter_step(index + 1)
            self._event(
                EventType.NORMAL,
                Reason.STEP_ADVANCED,
                f"step {index} ({steps.describe(step)}) done",
            )

    def _finish_steps(self) -> None:
        waiting = analysis.holding_back(self.spec, self.status.analysis) or (
            analysis.missing_evidence(self.spec, self.status.analysis, self.status.step_started_at)
        )
        if waiting:
            self._progress(Reason.HOLDING, f"all steps done; {waiting}")
            return
        self._start_promoting("all steps done and the analysis passed")

    def _waiting_in(self, index: int, step: Step) -> None:
        if step.pause is not None:
            left = steps.pause_remaining(step, self.status.step_started_at, self.now)
            if left is None:
                self._pause(Reason.ROLLOUT_PAUSED, f"step {index}: paused until promoted")
            else:
                self.requeue.append(left)
                self._pause(Reason.ROLLOUT_PAUSED, f"step {index}: pause, {left:.0f}s left")
            return
        self._progress(Reason.WAITING_FOR_ANALYSIS, f"step {index}: waiting for analysis")

    def _enter_step(self, index: int) -> None:
        if self.status.phase == Phase.PAUSED:
            self._progress(Reason.STEP_ADVANCED, f"leaving the pause at step {index - 1}")
        self._update(
            current_step_index=index,
            step_started_at=self._stamp(),
            analysis=analysis.reset_step_passes(self.status.analysis),
        )
        step = steps.step_at(self.spec, index)
        if step is not None and step.set_weight is not None:
            self._set_weight(step.set_weight)

    def _set_weight(self, weight: int) -> None:
        stable, canary = self._arms()
        self.actions = [a for a in self.actions if not isinstance(a, SetWeight)]
        self.actions.append(SetWeight(stable, canary, weight))
        if weight != self.status.canary_weight:
            self._event(
                EventType.NORMAL,
                Reason.TRAFFIC_WEIGHT_UPDATED,
                f"canary weight {self.status.canary_weight}% -> {weight}%",
            )
        self._update(canary_weight=weight)

    def _pause(self, reason: Reason, message: str) -> None:
        if self.status.phase != Phase.PAUSED:
            self._event(EventType.NORMAL, reason, message)
        self._update(phase=Phase.PAUSED, message=message)
        self.progress_reason = reason

    def _progress(self, reason: Reason, message: str) -> None:
        if self.status.phase == Phase.PAUSED:
            self._event(EventType.NORMAL, Reason.ROLLOUT_RESUMED, message)
        self._update(phase=Phase.PROGRESSING, message=message)
        self.progress_reason = reason

    def _schedule_analysis(self, step: Step | None) -> None:
        wait = analysis.next_due_in(self.spec, self.status.analysis, step, self.now)
        if wait is not None:
            # A metric due but not measurable yet (no traffic) is no reason to spin.
            self.requeue.append(max(wait, MEASURE_RETRY_SECONDS))

    # ------------------------------------------------------------ promotion

    def _start_promoting(self, message: str) -> None:
        canary = self.status.canary
        assert canary is not None
        self._update(
            phase=Phase.PROMOTING, canary_weight=100, progress_at=self._stamp(), message=message
        )
        self.actions = [a for a in self.actions if not isinstance(a, SetWeight)]
        self.actions.append(Promote(canary))
        self.requeue.append(CONVERGE_POLL_SECONDS)
        self._event(EventType.NORMAL, Reason.PROMOTING, f"promoting {canary.label}: {message}")

    def _promoting(self) -> None:
        canary = self.status.canary
        assert canary is not None
        if self._use(Action.ABORT):
            self._start_rollback(Outcome.ABORTED, Reason.ROLLOUT_ABORTED, "aborted by request")
            return
        if self._route_is(canary, None, 0):
            self._record(canary, Outcome.PROMOTED, Reason.ROLLOUT_PROMOTED, "analysis passed")
            self.actions.append(
                WriteBack(canary, Outcome.PROMOTED, Reason.ROLLOUT_PROMOTED, at=self._decided_at())
            )
            self._event(
                EventType.NORMAL, Reason.ROLLOUT_PROMOTED, f"{canary.label} promoted to stable"
            )
            self._update(stable=canary)
            self._clear_canary(Phase.SUCCEEDED, f"{canary.label} is stable")
            return
        self.actions.append(Promote(canary))
        self._wait_for_route()

    # ------------------------------------------------------------ rollback

    def _start_rollback(self, outcome: Outcome, reason: Reason, message: str) -> None:
        _, canary = self._arms()
        self._update(
            phase=Phase.ROLLING_BACK,
            rollback=RollbackStatus(outcome=outcome, reason=reason, message=message),
            progress_at=self._stamp(),
            message=f"rolling back {canary.label}: {message}",
        )
        self.actions = [a for a in self.actions if not isinstance(a, SetWeight | Promote)]
        self._set_weight(0)
        self.requeue.append(CONVERGE_POLL_SECONDS)
        kind = EventType.NORMAL if outcome == Outcome.SUPERSEDED else EventType.WARNING
        self._event(kind, reason, f"rolling back {canary.label}: {message}")

    def _rolling_back(self) -> None:
        stable, canary = self._arms()
        rollback = self.status.rollback
        assert rollback is not None
        route = self.obs.route
        if route is not None and route.canary_weight > 0:
            self.actions.append(SetWeight(stable, canary, 0))
            self._wait_for_route()
            return
        if not self._route_is(stable, None, 0):
            self.actions.append(Restore(stable))
            self._wait_for_route(f"restoring {stable.label} in the InferenceService spec")
            return
        self._event(EventType.NORMAL, Reason.STABLE_RESTORED, f"{stable.label} serves all traffic")
        if rollback.outcome == Outcome.SUPERSEDED:
            self._record(canary, rollback.outcome, rollback.reason, rollback.message)
            self._clear_canary(Phase.PENDING, f"{rollback.message}; starting it next")
            self.requeue.append(0.0)
            return
        self._mark_failed(canary, rollback.outcome, rollback.reason, rollback.message)

    def _mark_failed(
        self, model: ModelVersionRef, outcome: Outcome, reason: Reason, message: str
    ) -> None:
        """The canary ended badly: remember it so it is not retried unasked."""
        self._record(model, outcome, reason, message)
        self.actions.append(WriteBack(model, outcome, reason, message, at=self._decided_at()))
        self._event(EventType.WARNING, Reason.ROLLED_BACK, f"{model.label}: {message}")
        kept = (*(k for k in self.status.failed_versions if k != model.key), model.key)
        self._update(failed_versions=kept[-MAX_FAILED_VERSIONS:])
        self.progress_reason = reason
        self._clear_canary(Phase.FAILED, f"{model.label} rolled back: {message}")

    # ------------------------------------------------------------ shared

    def _clear_canary(self, phase: Phase, message: str) -> None:
        self._update(
            phase=phase,
            message=message,
            canary=None,
            canary_weight=0,
            current_step_index=None,
            step_started_at=None,
            canary_started_at=None,
            progress_at=None,
            rollback=None,
        )

    def _record(
        self,
        model: ModelVersionRef,
        outcome: Outcome,
        reason: Reason,
        message: str,
    ) -> None:
        entry = HistoryEntry(
            model=model,
            outcome=outcome,
            reason=reason,
            message=message,
            started_at=self.status.canary_started_at,
            finished_at=self._stamp(),
        )
        self._update(history=(*self.status.history, entry))

    def _route_is(
        self, stable: ModelVersionRef, canary: ModelVersionRef | None, weight: int
    ) -> bool:
        """Whether the router reports exactly this split (and the revisions are ready)."""
        route = self.obs.route
        if route is None or not route.ready:
            return False
        return (
            route.stable_storage_uri == stable.storage_uri
            and route.canary_storage_uri == (canary.storage_uri if canary else None)
            and route.canary_weight == (weight if canary else 0)
        )

    def _wait_for_route(self, doing: str | None = None) -> None:
        route = self.obs.route
        seen = "no InferenceService yet" if route is None else f"observed {route.canary_weight}%"
        if route is not None and not route.ready:
            seen += ", not ready"
        self.progress_reason = self.progress_reason or Reason.WAITING_FOR_TRAFFIC
        if self.status.progress_at is None:
            self._update(progress_at=self._stamp())
        doing = doing or f"waiting for the router: desired {self.status.canary_weight}%"
        self._update(message=f"{doing}, {seen}")
        self.requeue.append(CONVERGE_POLL_SECONDS)

    def _deadline_passed(self) -> bool:
        elapsed = seconds_since(self.status.progress_at, self.now)
        return elapsed is not None and elapsed > self.spec.progress_deadline_seconds

    def _set_conditions(self) -> None:
        """Ready, Progressing and Healthy from the pass's outcome, written once."""
        phase = self.status.phase
        if self.progress_reason == Reason.INVALID_SPEC:
            return
        active = phase in (
            Phase.INITIALIZING,
            Phase.PROGRESSING,
            Phase.PAUSED,
            Phase.PROMOTING,
            Phase.ROLLING_BACK,
        )
        reason = self.progress_reason or PHASE_REASON[phase]
        self._condition(
            ConditionType.PROGRESSING,
            cond.TRUE if active else cond.FALSE,
            reason,
            self.status.message or "",
        )
        stable = self.status.stable
        serving = stable is not None and (
            self._route_is(stable, self.status.canary, self.status.canary_weight)
            or (not active and self._route_is(stable, None, 0))
        )
        self._condition(
            ConditionType.READY,
            cond.TRUE if serving else cond.FALSE,
            Reason.SERVING if serving else Reason.WAITING_FOR_TRAFFIC,
            "the traffic split matches the desired one" if serving else self.status.message or "",
        )
        judged = self.status.analysis
        if judged is None:
            self._condition(ConditionType.HEALTHY, cond.UNKNOWN, Reason.NO_ANALYSIS)
        else:
            health_reason, health = _HEALTH[judged.phase]
            self._condition(ConditionType.HEALTHY, health, health_reason, judged.message or "")


def _moves(uri: str) -> bool:
    """Whether a URI names something that can move: an alias or a (deprecated) stage."""
    return "@" in uri or not uri.rsplit("/", 1)[-1].isdigit()


#: The reason a phase stands for (the Progressing condition's default; notifications too).
PHASE_REASON: dict[Phase, Reason] = {
    Phase.PENDING: Reason.WAITING_FOR_SOURCE,
    Phase.INITIALIZING: Reason.INITIALIZING,
    Phase.PROGRESSING: Reason.ROLLOUT_STARTED,
    Phase.PAUSED: Reason.ROLLOUT_PAUSED,
    Phase.PROMOTING: Reason.PROMOTING,
    Phase.SUCCEEDED: Reason.ROLLOUT_COMPLETED,
    Phase.ROLLING_BACK: Reason.ROLLBACK_STARTED,
    Phase.FAILED: Reason.ROLLED_BACK,
}

_HEALTH: dict[AnalysisPhase, tuple[Reason, ConditionStatus]] = {
    AnalysisPhase.RUNNING: (Reason.ANALYSIS_PASSING, cond.TRUE),
    AnalysisPhase.SUCCESSFUL: (Reason.ANALYSIS_PASSING, cond.TRUE),
    AnalysisPhase.FAILED: (Reason.ANALYSIS_FAILED, cond.FALSE),
    AnalysisPhase.ERROR: (Reason.ANALYSIS_ERROR, cond.FALSE),
    AnalysisPhase.INCONCLUSIVE: (Reason.INCONCLUSIVE_ANALYSIS, cond.FALSE),
}
