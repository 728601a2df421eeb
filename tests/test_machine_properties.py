"""Property tests for the pure core: ``decide`` driven through whole simulated rollouts.

Hypothesis generates specs (setWeight, timed and indefinite pause and analysis
steps; up to three threshold metrics with their failure, inconclusive and
consecutive-error limits, intervals and background flags), a router that
applies writes up to three passes late, each metric's behaviour pass by pass
(pass, fail, no data, provider error), changes of the desired model (V1, V2,
V3, back to the stable one mid-rollout), ``spec.paused`` toggles, one-shot
actions and hand edits of the InferenceService at random passes.
``tests/world.py`` plays the router, the metrics and the clock. Each test
checks one property over every pass:

1. only allowed phase transitions (a table written here, kept equal to the core's);
2. the canary weight in status and in every SetWeight stays within 0..100;
3. every failed end has the stable model alone at 100% and no canary in status;
4. a rollback restores the spec only once the canary gets no traffic;
5. ``decide`` is deterministic, and repeating a pass counts nothing twice;
6. no promotion unless every background metric's latest verdict is PASS;
7. a failed version gets no traffic again until someone asks for a retry;
8. ``status.history`` and ``status.failedVersions`` stay bounded;
9. the step index advances only once the router shows the desired split;
10. ``spec.paused`` holds a rollout where it stands, also a canary that starts;
11. the progress deadline counts only time the router spends off the desired split.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from builders import T0, V1, V2, V3, metric, spec
from modelrollout import api, machine, serde
from modelrollout.analysis import metric_status
from modelrollout.api import Phase
from modelrollout.clock import rfc3339
from modelrollout.decision import (
    Decision,
    DesiredModel,
    Measurement,
    Observations,
    Promote,
    Restore,
    RouteObservation,
    SetWeight,
)
from world import SimRouter, World

#: Written out here from the design, not imported, so a change to the core's
#: table has to be made twice (``test_the_table_matches_the_core`` keeps them equal).
ALLOWED: dict[Phase, frozenset[Phase]] = {
    Phase.PENDING: frozenset(
        {
            Phase.PENDING,
            Phase.INITIALIZING,
            Phase.PROGRESSING,
            Phase.PAUSED,
            Phase.PROMOTING,
            Phase.SUCCEEDED,
            Phase.FAILED,
        }
    ),
    Phase.INITIALIZING: frozenset(
        {Phase.INITIALIZING, Phase.SUCCEEDED, Phase.FAILED, Phase.PENDING}
    ),
    Phase.PROGRESSING: frozenset(
        {Phase.PROGRESSING, Phase.PAUSED, Phase.PROMOTING, Phase.ROLLING_BACK}
    ),
    Phase.PAUSED: frozenset({Phase.PAUSED, Phase.PROGRESSING, Phase.PROMOTING, Phase.ROLLING_BACK}),
    Phase.PROMOTING: frozenset({Phase.PROMOTING, Phase.SUCCEEDED, Phase.ROLLING_BACK}),
    Phase.ROLLING_BACK: frozenset({Phase.ROLLING_BACK, Phase.FAILED, Phase.PENDING}),
    Phase.SUCCEEDED: frozenset(
        {
            Phase.SUCCEEDED,
            Phase.FAILED,
            Phase.INITIALIZING,
            Phase.PROGRESSING,
            Phase.PAUSED,
            Phase.PROMOTING,
        }
    ),
    Phase.FAILED: frozenset(
        {
            Phase.FAILED,
            Phase.SUCCEEDED,
            Phase.INITIALIZING,
            Phase.PROGRESSING,
            Phase.PAUSED,
            Phase.PROMOTING,
        }
    ),
}

CANARY_PHASES = frozenset({Phase.PROGRESSING, Phase.PAUSED, Phase.PROMOTING, Phase.ROLLING_BACK})
AT_REST = frozenset({Phase.PENDING, Phase.SUCCEEDED, Phase.FAILED})
MODELS: dict[int, api.ModelVersionRef] = {1: V1, 2: V2, 3: V3}
MAX_PASSES = 40
DURATIONS = ("0s", "5s", "10s", "20s", "30s", "45s", "1m", "90s", "2m")
INTERVALS = ("10s", "20s", "30s", "1m")
PASSING, FAILING_LOW, FAILING_HIGH = 0.5, 0.1, 0.9
#: Weights someone might set by hand in the InferenceService.
WEIGHTS = (0, 10, 50, 100)


class Behaviour(StrEnum):
    """What a metric's query returns in one pass."""

    PASS = "pass"
    FAIL = "fail"
    NO_DATA = "no-data"
    ERROR = "error"


# ---------------------------------------------------------------- strategies


#: (failureLimit, inconclusiveLimit, consecutiveErrorLimit, background), drawn at once.
LIMITS = tuple(itertools.product(range(3), range(3), range(4), (True, False)))


@st.composite
def metric_bodies(draw: st.DrawFn, name: str) -> dict[str, Any]:
    bounds = draw(st.sampled_from(({"min": 0.4}, {"max": 0.6}, {"min": 0.4, "max": 0.6})))
    failures, inconclusive, errors, background = draw(st.sampled_from(LIMITS))
    body = metric(
        name,
        thresholdRange=dict(bounds),
        failureLimit=failures,
        inconclusiveLimit=inconclusive,
        consecutiveErrorLimit=errors,
        background=background,
    )
    interval = draw(st.sampled_from((None, *INTERVALS)))
    if interval is not None:
        body["interval"] = interval
    return body


@st.composite
def step_bodies(draw: st.DrawFn, metric_names: tuple[str, ...]) -> dict[str, Any]:
    # Repeats weigh the choice: indefinite pauses only now and then.
    kinds = ["setWeight"] * 3 + ["pause"] * 2 + ["pause-until-promoted"]
    if metric_names:
        kinds += ["analysis"] * 2
    kind = draw(st.sampled_from(kinds))
    if kind == "setWeight":
        return {"setWeight": draw(st.integers(0, 100))}
    if kind == "pause":
        return {"pause": {"duration": draw(st.sampled_from(DURATIONS))}}
    if kind == "pause-until-promoted":
        return {"pause": {}}
    step: dict[str, Any] = {"count": draw(st.integers(1, 3))}
    named = draw(st.lists(st.sampled_from(metric_names), unique=True))
    if named:
        step["metrics"] = named
    return {"analysis": step}


#: A metric's behaviour, cycled pass by pass. Healthy metrics are common, so
#: that rollouts get as far as promotion; the others mostly pass.
BEHAVIOUR_CYCLES = st.just((Behaviour.PASS,)) | st.lists(
    st.sampled_from([Behaviour.PASS] * 4 + [b for b in Behaviour if b != Behaviour.PASS]),
    min_size=1,
    max_size=6,
).map(tuple)

EVENTS = st.one_of(
    st.tuples(st.just("desired"), st.sampled_from(tuple(MODELS))),
    st.tuples(st.just("paused"), st.booleans()),
    st.tuples(
        st.just("action"), st.sampled_from(("promote", "promote-full", "abort", "retry", "bogus"))
    ),
    st.tuples(
        st.just("hand-edit"), st.tuples(st.sampled_from(tuple(MODELS)), st.sampled_from(WEIGHTS))
    ),
)


@dataclass(frozen=True)
class Scenario:
    """One simulated run; ``steps``/``metrics``/``extra`` are the spec as JSON."""

    steps: tuple[dict[str, Any], ...]
    metrics: tuple[dict[str, Any], ...]
    interval: str
    extra: dict[str, Any]
    behaviours: dict[str, tuple[Behaviour, ...]]
    start_stable: bool
    first_desired: int
    lag: int
    step_seconds: float
    passes: int
    events: tuple[tuple[int, tuple[str, Any]], ...]
    failed_before: int
    v3_failed_before: bool
    history_before: int

    def spec(self) -> api.ModelRolloutSpec:
        return spec(
            steps=list(self.steps),
            metrics=list(self.metrics) if self.metrics else None,
            interval=self.interval,
            **self.extra,
        )

    def initial_status(self) -> api.ModelRolloutStatus:
        failed = tuple(f"other/{i}" for i in range(self.failed_before))
        if self.v3_failed_before:
            failed += (V3.key,)
        history = tuple(
            api.HistoryEntry(
                model=replace(V1, version=f"old{i}"),
                outcome=api.Outcome.PROMOTED,
                reason=api.Reason.ROLLOUT_PROMOTED,
            )
            for i in range(self.history_before)
        )
        if self.start_stable:
            return api.ModelRolloutStatus(
                phase=Phase.SUCCEEDED, stable=V1, failed_versions=failed, history=history
            )
        return api.ModelRolloutStatus(failed_versions=failed, history=history)

    def measure(self, name: str, index: int) -> float | Measurement | None:
        behaviours = self.behaviours[name]
        behaviour = behaviours[index % len(behaviours)]
        if behaviour == Behaviour.PASS:
            return PASSING
        if behaviour == Behaviour.NO_DATA:
            return None
        if behaviour == Behaviour.ERROR:
            return Measurement(error="prometheus: connection refused")
        bounds = next(m["thresholdRange"] for m in self.metrics if m["name"] == name)
        return FAILING_LOW if "min" in bounds else FAILING_HIGH

    def world(self) -> World:
        router = SimRouter(stable=V1.storage_uri if self.start_stable else None, lag=self.lag)
        world = World(
            spec=self.spec(),
            desired=MODELS[self.first_desired],
            now=T0,
            router=router,
            status=self.initial_status(),
            step_seconds=self.step_seconds,
        )
        world.metric = lambda name, _weight: self.measure(name, len(world.decisions))
        return world


@st.composite
def specs_json(
    draw: st.DrawFn,
) -> tuple[tuple[dict[str, Any], ...], tuple[dict[str, Any], ...], str, dict[str, Any]]:
    names = tuple(f"m{i}" for i in range(draw(st.integers(0, 3))))
    metrics = tuple(draw(metric_bodies(name)) for name in names)
    steps = tuple(draw(st.lists(step_bodies(names), max_size=6)))
    extra = {
        "paused": draw(st.sampled_from((False, False, False, True))),
        "progressDeadlineSeconds": draw(st.sampled_from((600, 600, 60, 20))),
        "historyLimit": draw(st.integers(1, 12)),
    }
    return steps, metrics, draw(st.sampled_from(INTERVALS)), extra


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    steps, metrics, interval, extra = draw(specs_json())
    behaviours = {m["name"]: draw(BEHAVIOUR_CYCLES) for m in metrics}
    start_stable = draw(st.sampled_from((True, True, True, False)))
    passes = draw(st.sampled_from((5, 10, 20, MAX_PASSES)))
    return Scenario(
        steps=steps,
        metrics=metrics,
        interval=interval,
        extra=extra,
        behaviours=behaviours,
        start_stable=start_stable,
        first_desired=draw(st.sampled_from((2, 2, 3))) if start_stable else 1,
        lag=draw(st.integers(0, 3)),
        step_seconds=draw(st.sampled_from((5.0, 10.0, 15.0, 30.0, 1.0))),
        passes=passes,
        events=tuple(draw(st.lists(st.tuples(st.integers(0, passes - 1), EVENTS), max_size=10))),
        failed_before=draw(st.sampled_from((0, 0, 5, 49))),
        v3_failed_before=draw(st.booleans()),
        history_before=draw(st.integers(0, 12)),
    )


# ---------------------------------------------------------------- driving the world


@dataclass(frozen=True)
class Pass:
    """One call of ``decide`` as the world made it, with what went in and came out."""

    index: int
    spec: api.ModelRolloutSpec
    before: api.ModelRolloutStatus
    obs: Observations
    now: datetime
    decision: Decision

    @property
    def after(self) -> api.ModelRolloutStatus:
        return self.decision.status

    @property
    def fresh_action(self) -> str | None:
        """The one-shot action this pass acts on (a value not seen before), by name."""
        raw = self.obs.action
        if not raw or raw == self.before.last_action:
            return None
        return raw.split(":", 1)[0]

    def describe(self) -> str:
        return (
            f"pass {self.index}: {self.before.phase} -> {self.after.phase}, "
            f"route {self.obs.route}, action {self.obs.action}, "
            f"actions {self.decision.actions}, message {self.after.message!r}"
        )


def apply_event(world: World, index: int, event: tuple[str, Any]) -> None:
    kind, value = event
    if kind == "desired":
        world.desired = MODELS[value]
    elif kind == "paused":
        world.spec = replace(world.spec, paused=value)
    elif kind == "hand-edit":
        # Someone edits the InferenceService (or the router reads a stale split):
        # a canary beside whatever is served now, at once.
        version, weight = value
        router = world.router
        router.stable = router.stable or V1.storage_uri
        router.canary, router.weight = MODELS[version].storage_uri, weight
    else:
        world.action = f"{value}:{index}"


def run(scenario: Scenario) -> Iterator[tuple[World, Pass]]:
    """Drive the scenario pass by pass, yielding the world after each pass."""
    world = scenario.world()
    for index in range(scenario.passes):
        for at, event in scenario.events:
            if at == index:
                apply_event(world, index, event)
        before, current_spec, now = world.status, world.spec, world.now
        decision = world.step()
        yield world, Pass(index, current_spec, before, world.observed[-1], now, decision)


def passes(scenario: Scenario) -> list[Pass]:
    return [p for _, p in run(scenario)]


def stable_alone(route: RouteObservation | None, stable: api.ModelVersionRef) -> bool:
    return (
        route is not None
        and route.stable_storage_uri == stable.storage_uri
        and route.canary_storage_uri is None
        and route.canary_weight == 0
    )


def router_actions(decision: Decision) -> list[SetWeight | Promote | Restore]:
    return [a for a in decision.actions if isinstance(a, SetWeight | Promote | Restore)]


# ---------------------------------------------------------------- 1. transitions


def test_the_table_matches_the_core() -> None:
    assert machine.ALLOWED_TRANSITIONS == ALLOWED


@given(scenarios())
def test_only_allowed_transitions(scenario: Scenario) -> None:
    for p in passes(scenario):
        assert p.after.phase in ALLOWED[p.before.phase], p.describe()


# ---------------------------------------------------------------- 2. weights


@given(scenarios())
def test_weights_stay_within_0_and_100(scenario: Scenario) -> None:
    for p in passes(scenario):
        assert 0 <= p.after.canary_weight <= api.MAX_WEIGHT, p.describe()
        for action in p.decision.actions:
            if isinstance(action, SetWeight):
                assert 0 <= action.weight <= api.MAX_WEIGHT, p.describe()


# ---------------------------------------------------------------- 3. failed ends


def settle(world: World) -> World:
    """Carry on from ``world`` with nothing new asked, until every write has landed.

    The desired model stays a failed one when it is (so the rollout stays
    Failed); otherwise the source goes back to the stable model.
    """
    stable = world.status.stable
    assert stable is not None
    desired = world.desired
    if desired.key not in world.status.failed_versions:
        desired = stable
    calm = World(
        spec=world.spec,
        desired=desired,
        now=world.now,
        router=copy.deepcopy(world.router),
        status=world.status,
        metric=world.metric,
        action=world.action,
        step_seconds=world.step_seconds,
    )
    for _ in range(3 * (world.router.lag + 1) + 2):
        calm.step()
        assert calm.status.phase in (Phase.FAILED, Phase.SUCCEEDED), calm.status.message
    for _ in range(world.router.lag + 1):
        calm.router.tick()
    return calm


@given(scenarios())
def test_every_failed_end_leaves_stable_alone_at_100_percent(scenario: Scenario) -> None:
    for world, p in run(scenario):
        stable = p.after.stable
        if p.after.phase != Phase.FAILED or stable is None:
            continue
        assert p.after.canary is None, p.describe()
        assert p.after.canary_weight == 0, p.describe()
        if p.before.phase == Phase.ROLLING_BACK:
            assert stable_alone(p.obs.route, stable), p.describe()
        if p.before.phase != Phase.FAILED or p.index == scenario.passes - 1:
            calm = settle(world)
            assert stable_alone(calm.router.observe(), stable), (p.describe(), calm.router)
            assert calm.status.canary is None
            assert calm.status.canary_weight == 0


# ---------------------------------------------------------------- 4. rollback order


@given(scenarios())
def test_a_rollback_moves_traffic_to_stable_before_restoring_the_spec(
    scenario: Scenario,
) -> None:
    for p in passes(scenario):
        if Phase.ROLLING_BACK not in (p.before.phase, p.after.phase):
            continue
        observed = p.obs.route.canary_weight if p.obs.route else 0
        for action in router_actions(p.decision):
            assert not isinstance(action, Promote), p.describe()
            if isinstance(action, SetWeight):
                assert action.weight == 0, p.describe()
            if isinstance(action, Restore):
                assert observed == 0, p.describe()


# ---------------------------------------------------------------- 5. determinism


def read_back(status: api.ModelRolloutStatus) -> api.ModelRolloutStatus:
    """The status as the operator reads it after a restart: through Kubernetes JSON."""
    return api.read_status(serde.to_json(status))


def rerun_may_move_on(p: Pass) -> bool:
    """Hand-offs the core makes on purpose over two passes with the same route.

    A phase that waits for the router (Initializing for the first model alone,
    RollingBack for the stable alone) finishes on the next pass when the route
    already shows its target; a superseded model leaves for Pending and the
    next pass starts the new one; and a promotion or rollback, which ignores
    the source while it finishes, acts on a new desired model the pass after.
    """
    after, stable, canary = p.after, p.after.stable, p.after.canary
    waited_for_nothing = (
        after.phase == Phase.INITIALIZING
        and canary is not None
        and stable_alone(p.obs.route, canary)
    ) or (
        after.phase == Phase.ROLLING_BACK
        and stable is not None
        and stable_alone(p.obs.route, stable)
    )
    superseded = after.phase == Phase.PENDING and p.before.phase != Phase.PENDING
    desired = p.obs.desired.ref if isinstance(p.obs.desired, DesiredModel) else None
    settled = desired is None or (
        (after.phase == Phase.SUCCEEDED and stable is not None and desired.key == stable.key)
        or (after.phase == Phase.FAILED and desired.key in after.failed_versions)
    )
    new_request = after.phase in AT_REST and p.before.phase not in AT_REST and not settled
    return waited_for_nothing or superseded or new_request


def measured(status: api.ModelRolloutStatus) -> dict[str, tuple[int, str | None]]:
    metrics = status.analysis.metrics if status.analysis else ()
    return {m.name: (m.count, m.measured_at) for m in metrics}


@given(scenarios())
def test_decide_is_deterministic_and_a_repeated_pass_counts_nothing_twice(
    scenario: Scenario,
) -> None:
    for p in passes(scenario):
        # The same pass again on equal inputs; the last one on the status read
        # back through JSON, as the operator sees it after a restart.
        last = p.index == scenario.passes - 1
        status = read_back(p.before) if last else replace(p.before)
        again = machine.decide(replace(p.spec), status, replace(p.obs), p.now)
        assert again == p.decision, p.describe()

        repeated = machine.decide(p.spec, p.after, p.obs, p.now).status
        first, second = measured(p.after), measured(repeated)
        newly_counted = False
        for name, (count, _) in second.items():
            first_count, measured_at = first.get(name, (0, None))
            if measured_at == rfc3339(p.now):
                assert count == first_count, (name, p.describe(), repeated)
            else:
                # Only a metric that became due as the pass entered an analysis
                # step may be counted now, and only once.
                assert count <= first_count + 1, (name, p.describe(), repeated)
                newly_counted = newly_counted or count > first_count
        if newly_counted:
            continue
        if repeated.canary == p.after.canary and p.after.current_step_index is not None:
            assert repeated.current_step_index == p.after.current_step_index, p.describe()
        if repeated.phase != p.after.phase:
            assert rerun_may_move_on(p), (p.describe(), repeated.phase, repeated.message)


# ---------------------------------------------------------------- 6. evidence


@given(scenarios())
def test_no_promotion_without_a_passing_latest_verdict(scenario: Scenario) -> None:
    for p in passes(scenario):
        entered = p.after.phase == Phase.PROMOTING and p.before.phase != Phase.PROMOTING
        if not entered or p.fresh_action in ("promote", "promote-full"):
            continue
        for spec_metric in p.spec.strategy.analysis.metrics if p.spec.strategy.analysis else ():
            if spec_metric.background:
                latest = metric_status(p.after.analysis, spec_metric.name)
                assert latest.verdict == api.Verdict.PASS, (spec_metric.name, p.describe())


# ---------------------------------------------------------------- 7. no retry unasked


@dataclass(frozen=True)
class RetryScenario:
    """A canary (or a first deployment) that is aborted, then asked for again."""

    steps: tuple[dict[str, Any], ...]
    metrics: tuple[dict[str, Any], ...]
    interval: str
    extra: dict[str, Any]
    start_stable: bool
    lag: int
    step_seconds: float
    abort_after: int
    afterwards: tuple[int, ...]
    noise: tuple[tuple[int, str], ...]


@st.composite
def retry_scenarios(draw: st.DrawFn) -> RetryScenario:
    steps, metrics, interval, extra = draw(specs_json())
    start_stable = draw(st.booleans())
    candidate = 2 if start_stable else 1
    others = (1, 3) if start_stable else (3,)
    afterwards = tuple(
        draw(st.lists(st.sampled_from((candidate, candidate, *others)), min_size=5, max_size=25))
    )
    noise = st.tuples(
        st.integers(0, len(afterwards) - 1), st.sampled_from(("promote", "promote-full", "abort"))
    )
    return RetryScenario(
        steps=steps,
        metrics=metrics,
        interval=interval,
        extra={**extra, "paused": False},
        start_stable=start_stable,
        lag=draw(st.integers(0, 3)),
        step_seconds=draw(st.sampled_from((1.0, 5.0, 10.0, 30.0))),
        abort_after=draw(st.integers(0, 4)),
        afterwards=afterwards,
        noise=tuple(draw(st.lists(noise, max_size=4))),
    )


def touches(decision: Decision, model: api.ModelVersionRef) -> bool:
    """Whether the decision sends any traffic, or the whole service, to ``model``."""
    return any(
        (isinstance(a, SetWeight) and a.canary.key == model.key)
        or (isinstance(a, Promote) and a.model.key == model.key)
        for a in decision.actions
    )


@given(retry_scenarios())
def test_a_failed_version_is_not_retried_until_asked(scenario: RetryScenario) -> None:
    candidate = V2 if scenario.start_stable else V1
    world = World(
        spec=spec(
            steps=list(scenario.steps),
            metrics=list(scenario.metrics) if scenario.metrics else None,
            interval=scenario.interval,
            **scenario.extra,
        ),
        desired=candidate,
        now=T0,
        router=SimRouter(
            stable=V1.storage_uri if scenario.start_stable else None, lag=scenario.lag
        ),
        status=(
            api.ModelRolloutStatus(phase=Phase.SUCCEEDED, stable=V1)
            if scenario.start_stable
            else api.ModelRolloutStatus()
        ),
        metric=lambda _name, _weight: PASSING,
        step_seconds=scenario.step_seconds,
    )
    # The first pass starts the rollout; abort it while it runs, at the latest
    # when a pass might be its last (an abort still counts while promoting or
    # initializing; the pass that would finish checks for it first).
    last_chance = (Phase.PROMOTING, Phase.INITIALIZING)
    world.step()
    for waited in range(MAX_PASSES):
        active = world.status.phase not in AT_REST
        if active and (waited >= scenario.abort_after or world.status.phase in last_chance):
            world.action = "abort:1"
        world.step()
        if world.status.phase in AT_REST:
            break
    assert world.status.phase == Phase.FAILED, world.status
    assert candidate.key in world.status.failed_versions

    for index, wanted in enumerate(scenario.afterwards):
        world.desired = MODELS[wanted]
        for at, action in scenario.noise:
            if at == index:
                world.action = f"{action}:noise{index}"
        decision = world.step()
        assert not touches(decision, candidate), (index, decision)
        assert world.status.canary is None or world.status.canary.key != candidate.key

    world.desired = candidate
    world.action = "retry:1"
    for _ in range(4 * (scenario.lag + 1) + 4):
        if touches(world.step(), candidate):
            break
    else:
        raise AssertionError(f"{candidate.label} was not rolled out after retry: {world.status}")
    assert candidate.key not in world.status.failed_versions
    assert world.status.canary == candidate


# ---------------------------------------------------------------- 8. bounded status


@given(scenarios())
def test_history_and_failed_versions_stay_bounded(scenario: Scenario) -> None:
    for p in passes(scenario):
        assert len(p.after.history) <= p.spec.history_limit, p.describe()
        assert len(p.after.failed_versions) <= api.MAX_FAILED_VERSIONS, p.describe()


# ---------------------------------------------------------------- 9. no advance unseen


@given(scenarios())
def test_steps_advance_only_when_the_router_shows_the_desired_split(
    scenario: Scenario,
) -> None:
    for p in passes(scenario):
        before, after = p.before, p.after
        if before.current_step_index is None or after.current_step_index is None:
            continue
        if after.current_step_index <= before.current_step_index:
            continue
        same_canary = (
            before.phase in (Phase.PROGRESSING, Phase.PAUSED)
            and before.canary is not None
            and after.canary is not None
            and before.canary.key == after.canary.key
        )
        if not same_canary:
            continue
        assert before.stable is not None
        assert before.canary is not None
        route = p.obs.route
        assert route is not None, p.describe()
        assert route.stable_storage_uri == before.stable.storage_uri, p.describe()
        assert route.canary_storage_uri == before.canary.storage_uri, p.describe()
        assert route.canary_weight == before.canary_weight, p.describe()


# ---------------------------------------------------------------- 10. spec.paused


@given(scenarios())
def test_spec_paused_holds_the_rollout_where_it_stands(scenario: Scenario) -> None:
    """While ``spec.paused`` is set nothing moves on: no step is finished and no
    promotion starts (not even on a promote request); a new canary stays at its
    first step. An abort still rolls back."""
    for p in passes(scenario):
        if not p.spec.paused:
            continue
        before, after = p.before, p.after
        if before.phase != Phase.PROMOTING:
            assert after.phase != Phase.PROMOTING, p.describe()
        same_canary = (
            before.canary is not None
            and after.canary is not None
            and before.canary.key == after.canary.key
            and before.phase in CANARY_PHASES
        )
        if same_canary and before.current_step_index is not None:
            assert after.current_step_index == before.current_step_index, p.describe()
        elif after.canary is not None and after.phase in CANARY_PHASES:
            assert after.current_step_index == 0, p.describe()


@st.composite
def paused_starts(draw: st.DrawFn) -> tuple[api.ModelRolloutSpec, RouteObservation | None]:
    steps, metrics, interval, extra = draw(specs_json())
    paused = spec(
        steps=list(steps),
        metrics=list(metrics) if metrics else None,
        interval=interval,
        **{**extra, "paused": True},
    )
    # Whatever the InferenceService shows when the canary starts: nothing, the
    # stable alone, or a split someone (or an earlier rollout) left behind.
    route = draw(
        st.sampled_from((None, RouteObservation(V1.storage_uri)))
        | st.builds(
            RouteObservation,
            st.just(V1.storage_uri),
            st.sampled_from((V2.storage_uri, V3.storage_uri)),
            st.sampled_from(WEIGHTS),
        )
    )
    return paused, route


@given(paused_starts())
def test_a_canary_starting_while_paused_stays_at_its_first_step(
    start: tuple[api.ModelRolloutSpec, RouteObservation | None],
) -> None:
    """``spec.paused`` means no traffic moves: a new model does not even start until the
    resume, whatever split the router happens to show already; stable keeps serving."""
    paused, route = start
    obs = Observations(desired=DesiredModel(V2), route=route, generation=1)
    decision = machine.decide(paused, api.ModelRolloutStatus(Phase.SUCCEEDED, stable=V1), obs, T0)
    assert decision.status.canary is None
    assert decision.status.phase == Phase.SUCCEEDED, decision.status.message
    assert "starts on resume" in (decision.status.message or "")
    assert all(a == Restore(V1) for a in decision.actions), decision.actions
    resumed = machine.decide(replace(paused, paused=False), decision.status, obs, T0)
    assert resumed.status.canary == V2


# ---------------------------------------------------------------- 11. progress deadline


@given(scenarios())
def test_the_progress_deadline_counts_only_time_off_the_desired_split(
    scenario: Scenario,
) -> None:
    """A rollback for ``progressDeadlineSeconds`` needs the router to have been
    off the desired split for that long, not a long step followed by one bad read."""
    seen: list[Pass] = []
    for p in passes(scenario):
        rollback = p.after.rollback
        if (
            p.before.phase in (Phase.PROGRESSING, Phase.PAUSED)
            and rollback is not None
            and rollback.reason == api.Reason.PROGRESS_DEADLINE_EXCEEDED
        ):
            canary = p.before.canary
            assert canary is not None
            for earlier in seen:
                within = (p.now - earlier.now).total_seconds() <= p.spec.progress_deadline_seconds
                same_canary = earlier.before.canary == canary and earlier.before.phase in (
                    Phase.PROGRESSING,
                    Phase.PAUSED,
                )
                if within and same_canary:
                    assert not shows_desired_split(earlier), (earlier.describe(), p.describe())
        seen.append(p)


def shows_desired_split(p: Pass) -> bool:
    stable, canary, route = p.before.stable, p.before.canary, p.obs.route
    return (
        route is not None
        and route.ready
        and stable is not None
        and canary is not None
        and route.stable_storage_uri == stable.storage_uri
        and route.canary_storage_uri == canary.storage_uri
        and route.canary_weight == p.before.canary_weight
    )
