"""One reconcile pass: observe through the ports, ``decide``, carry out, report.

The engine is the only place where the pure core meets I/O. It never writes
status itself: it returns the new ``.status`` and the events, and the handler
writes both once. If an action fails, the pass raises and nothing
is written; the next pass recomputes the same decision from the same status,
which re-sends the same idempotent router calls. That is why a failed or
repeated pass never skips or repeats a step.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from modelrollout import analysis, api, serde, steps
from modelrollout import conditions as cond
from modelrollout.api import ModelRolloutSpec, ModelRolloutStatus, ModelVersionRef, Reason
from modelrollout.clock import Clock, SystemClock
from modelrollout.decision import (
    ActionType,
    DesiredModel,
    Event,
    EventType,
    Measurement,
    Observations,
    Promote,
    Restore,
    SetWeight,
    SourceProblem,
    WriteBack,
)
from modelrollout.errors import ModelRolloutError, RouterError
from modelrollout.gitsource.base import GitSource
from modelrollout.machine import decide
from modelrollout.metrics.base import MetricProvider
from modelrollout.registry.base import Registry
from modelrollout.routing.base import Router, RouteTarget


@dataclass(frozen=True)
class Rollout:
    """A ModelRollout as read from the API server (plain JSON parts)."""

    namespace: str
    name: str
    spec: Mapping[str, Any]
    status: Mapping[str, Any]
    annotations: Mapping[str, str] = field(default_factory=dict)
    generation: int | None = None

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True)
class Ports:
    routers: Mapping[api.Router, Router]
    registry: Registry
    metrics: MetricProvider
    git: GitSource | None = None
    clock: Clock = field(default_factory=SystemClock)
    query_timeout_seconds: float = 10.0


@dataclass(frozen=True)
class PassResult:
    status: dict[str, Any]
    events: tuple[Event, ...] = ()
    requeue_after: float | None = None


class ActionError(ModelRolloutError):
    """An action of the decision could not be carried out; retry the pass."""


async def reconcile(rollout: Rollout, ports: Ports) -> PassResult:
    now = ports.clock.now()
    try:
        spec = api.read_spec(rollout.spec)
    except serde.SpecError as error:
        return _invalid(rollout, str(error), now)
    status = api.read_status(rollout.status)
    observations = await observe(rollout, spec, status, ports, now)
    decision = decide(spec, status, observations, now)
    target = RouteTarget(rollout.namespace, spec.target.inference_service, spec.target.predictor)
    for action in decision.actions:
        await _carry_out(action, spec, target, rollout, ports)
    new = serde.to_json(decision.status)
    return PassResult(
        status=new,
        events=decision.events,
        requeue_after=decision.requeue_after,
    )


def _invalid(rollout: Rollout, message: str, now: datetime) -> PassResult:
    """A spec the typed API cannot read: say why, touch nothing else."""
    try:
        status = api.read_status(rollout.status)
    except serde.SpecError:
        status = ModelRolloutStatus()
    before = status.conditions
    conditions = cond.set_condition(
        before, api.ConditionType.READY, cond.FALSE, Reason.INVALID_SPEC, message, now
    )
    new = replace(status, conditions=conditions, message=f"invalid spec: {message}")
    events: tuple[Event, ...] = ()
    if cond.get(before, api.ConditionType.READY) != cond.get(conditions, api.ConditionType.READY):
        events = (Event(EventType.WARNING, Reason.INVALID_SPEC, message),)
    return PassResult(serde.to_json(new), events)


async def observe(
    rollout: Rollout,
    spec: ModelRolloutSpec,
    status: ModelRolloutStatus,
    ports: Ports,
    now: datetime,
) -> Observations:
    router = ports.routers[spec.target.router]
    target = RouteTarget(rollout.namespace, spec.target.inference_service, spec.target.predictor)
    try:
        route = await router.observe(target)
    except RouterError as error:
        raise ActionError(f"cannot read the InferenceService: {error}") from error
    return Observations(
        desired=await desired_model(spec, status, ports),
        route=route,
        measurements=await measure(spec, status, ports, now),
        action=rollout.annotations.get(api.ACTION_ANNOTATION),
        generation=rollout.generation,
    )


async def desired_model(
    spec: ModelRolloutSpec, status: ModelRolloutStatus, ports: Ports
) -> DesiredModel | SourceProblem:
    """What the source asks for, resolved by the registry and gated."""
    try:
        uri, commit = await _source(spec, ports)
        ref = replace(await ports.registry.resolve(uri), git_commit=commit)
        known = {m.key for m in (status.stable, status.canary) if m is not None}
        gates = spec.registry.gates if spec.registry else None
        if gates is None or ref.key in known:
            return DesiredModel(ref)
        return DesiredModel(ref, await ports.registry.check_gates(ref, status.stable, gates))
    except ModelRolloutError as error:
        return SourceProblem(error.reason, str(error))


async def _source(spec: ModelRolloutSpec, ports: Ports) -> tuple[str, str | None]:
    if spec.model.uri is not None:
        return spec.model.uri, None
    if spec.model.git is None or ports.git is None:
        raise ModelRolloutError("spec.model.git is set but this operator has no git source")
    manifest = await ports.git.fetch(spec.model.git)
    return manifest.model_uri, manifest.commit


async def measure(
    spec: ModelRolloutSpec, status: ModelRolloutStatus, ports: Ports, now: datetime
) -> dict[str, Measurement]:
    """Query only the metrics that are due; the core ignores the rest anyway."""
    if status.canary is None:
        return {}
    step = steps.step_at(spec, status.current_step_index)
    out: dict[str, Measurement] = {}
    for metric in analysis.due(spec, status.analysis, step, now):
        if metric.query is None:
            out[metric.name] = Measurement(
                error=f"templateRef {metric.template_ref.name if metric.template_ref else ''!r}: "
                "MetricTemplate references are not supported by this operator build yet"
            )
            continue
        out[metric.name] = await ports.metrics.measure(metric.query, ports.query_timeout_seconds)
    return out


async def _carry_out(
    action: ActionType,
    spec: ModelRolloutSpec,
    target: RouteTarget,
    rollout: Rollout,
    ports: Ports,
) -> None:
    router = ports.routers[spec.target.router]
    try:
        if isinstance(action, SetWeight):
            await router.set_weight(target, action.stable, action.canary, action.weight)
        elif isinstance(action, Promote):
            await router.promote(target, action.model)
        elif isinstance(action, Restore):
            await router.restore(target, action.stable)
        elif isinstance(action, WriteBack):
            await _write_back(action, spec, rollout, ports)
    except ModelRolloutError as error:
        raise ActionError(f"{type(action).__name__} failed: {error}") from error


async def _write_back(
    action: WriteBack, spec: ModelRolloutSpec, rollout: Rollout, ports: Ports
) -> None:
    if spec.registry is None:
        return
    settings = spec.registry.write_back or api.WriteBack()
    if settings.enabled:
        await ports.registry.write_back(action, settings, rollout.key)


async def release(rollout: Rollout, ports: Ports) -> str | None:
    """On deletion: traffic back to stable, then the spec back to it.

    Returns None when the InferenceService serves the stable model alone (the
    finalizer may go), or what is still being waited for.
    """
    try:
        spec = api.read_spec(rollout.spec)
        status = api.read_status(rollout.status)
    except serde.SpecError:
        return None
    stable: ModelVersionRef | None = status.stable
    if stable is None or status.canary is None:
        return None
    router = ports.routers[spec.target.router]
    target = RouteTarget(rollout.namespace, spec.target.inference_service, spec.target.predictor)
    route = await router.observe(target)
    if route is None:
        return None
    if route.canary_storage_uri is not None and route.canary_weight > 0:
        await router.set_weight(target, stable, status.canary, 0)
        return f"moving traffic back to {stable.label}"
    if route.canary_storage_uri is not None or route.stable_storage_uri != stable.storage_uri:
        await router.restore(target, stable)
        return f"restoring {stable.label} in the InferenceService spec"
    return None
