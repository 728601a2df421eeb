"""A small simulated world for driving ``decide`` over many passes.

It plays the parts the engine will play for real: a router that applies the
decision's actions to an InferenceService (optionally a few passes late), a
metric source, a clock, and a person who may set one-shot actions. Tests use
it to check properties over whole rollouts rather than single passes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from modelrollout import api
from modelrollout.decision import (
    ActionType,
    Decision,
    DesiredModel,
    Measurement,
    Observations,
    Promote,
    Restore,
    RouteObservation,
    SetWeight,
    WriteBack,
)
from modelrollout.machine import decide


@dataclass
class SimRouter:
    """An InferenceService as the router sees it; writes land after ``lag`` passes."""

    stable: str | None = None
    canary: str | None = None
    weight: int = 0
    lag: int = 0
    pending: list[tuple[int, ActionType]] = field(default_factory=list)
    writes: int = 0

    def observe(self) -> RouteObservation | None:
        if self.stable is None:
            return None
        return RouteObservation(self.stable, self.canary, self.weight if self.canary else 0)

    def submit(self, actions: tuple[ActionType, ...]) -> None:
        for action in actions:
            if not isinstance(action, WriteBack):
                self.pending.append((self.lag, action))

    def tick(self) -> None:
        due = [a for delay, a in self.pending if delay <= 0]
        self.pending = [(delay - 1, a) for delay, a in self.pending if delay > 0]
        for action in due:
            self._apply(action)

    def _apply(self, action: ActionType) -> None:
        self.writes += 1
        if isinstance(action, SetWeight):
            self.stable = action.stable.storage_uri
            self.canary = action.canary.storage_uri
            self.weight = action.weight
        elif isinstance(action, Promote):
            self.stable, self.canary, self.weight = action.model.storage_uri, None, 0
        elif isinstance(action, Restore):
            self.stable, self.canary, self.weight = action.stable.storage_uri, None, 0


#: A metric's value for (metric name, observed canary weight): a number, ``None``
#: for no data, or a whole :class:`Measurement` (e.g. one carrying a provider error).
MetricFn = Callable[[str, int], float | Measurement | None]


def as_measurement(result: float | Measurement | None) -> Measurement:
    return result if isinstance(result, Measurement) else Measurement(value=result)


@dataclass
class World:
    spec: api.ModelRolloutSpec
    desired: api.ModelVersionRef
    now: datetime
    router: SimRouter = field(default_factory=SimRouter)
    status: api.ModelRolloutStatus = field(default_factory=api.ModelRolloutStatus)
    metric: MetricFn = lambda name, weight: 1.0
    action: str | None = None
    step_seconds: float = 10.0
    decisions: list[Decision] = field(default_factory=list)
    observed: list[Observations] = field(default_factory=list)
    history: list[tuple[api.ModelRolloutStatus, RouteObservation | None]] = field(
        default_factory=list
    )

    def observations(self) -> Observations:
        weight = self.router.weight if self.router.canary else 0
        names = [m.name for m in (self.spec.strategy.analysis or api.AnalysisSpec()).metrics]
        return Observations(
            desired=DesiredModel(self.desired),
            route=self.router.observe(),
            measurements={n: as_measurement(self.metric(n, weight)) for n in names},
            action=self.action,
            generation=1,
        )

    def step(self) -> Decision:
        observations = self.observations()
        decision = decide(self.spec, self.status, observations, self.now)
        self.observed.append(observations)
        self.decisions.append(decision)
        self.status = decision.status
        self.router.submit(decision.actions)
        self.router.tick()
        self.history.append((self.status, self.router.observe()))
        self.now += timedelta(seconds=self.step_seconds)
        return decision

    def run(self, passes: int) -> api.ModelRolloutStatus:
        for _ in range(passes):
            self.step()
        return self.status

    def run_until(self, *phases: api.Phase, limit: int = 500) -> api.ModelRolloutStatus:
        for _ in range(limit):
            self.step()
            if self.status.phase in phases:
                return self.status
        raise AssertionError(f"no phase in {phases} after {limit} passes: {self.status}")
