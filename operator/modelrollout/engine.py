"""One reconcile pass: observe through the ports, ``decide``, carry out, report.

The engine is the only place where the pure core meets I/O. It never writes
status itself: it returns the new ``.status`` and the events, and the handler
writes both once. If an action fails, the pass raises and nothing
is written; the next pass recomputes the same decision from the same status,
which re-sends the same idempotent router calls. That is why a failed or
repeated pass never skips or repeats a step.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from modelrollout import analysis, api, durations, serde, steps, templates
from modelrollout import conditions as cond
from modelrollout.api import ModelRolloutSpec, ModelRolloutStatus, ModelVersionRef, Reason
from modelrollout.clock import Clock, SystemClock, seconds_since
from modelrollout.decision import (
    ActionType,
    DesiredModel,
    Event,
    EventType,
    Measurement,
    Observations,
    Promote,
    Restore,
    RouteObservation,
    SetWeight,
    SourceProblem,
    WriteBack,
)
from modelrollout.errors import ModelRolloutError, RouterError, SourceError
from modelrollout.gitsource.base import (
    ALLOWED_SIGNERS_KEY,
    GitSource,
    ManifestRevision,
    UntrustedCommitError,
    credentials_from_secret,
)
from modelrollout.kube.base import SecretSource
from modelrollout.machine import decide
from modelrollout.metrics.base import TemplateNotFound, TemplateSource, VectorProvider
from modelrollout.metrics.kube_templates import DEFAULT_TOKEN_KEY
from modelrollout.metrics.measure import measure_metric
from modelrollout.registry.base import Registry
from modelrollout.routing.base import Router, RouteTarget
from modelrollout.templates import TemplateError

#: The registry for a tracking URI (None: the operator's default) and a Secret's data.
RegistryFactory = Callable[[str | None, Mapping[str, str] | None], Registry]
#: The Prometheus for a MetricTemplate's provider (None: the default) and a bearer token.
MetricsFactory = Callable[[api.PrometheusProvider | None, str | None], VectorProvider]


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
    registry: RegistryFactory
    metrics: MetricsFactory
    git: GitSource | None = None
    secrets: SecretSource | None = None
    templates: TemplateSource | None = None
    clock: Clock = field(default_factory=SystemClock)
    query_timeout_seconds: float = 10.0


@dataclass(frozen=True)
class PassResult:
    status: dict[str, Any]
    events: tuple[Event, ...] = ()
    requeue_after: float | None = None
    #: The status before and after the pass as the core read and wrote them (None: the
    #: spec was unreadable), so that nothing after the pass parses the JSON again.
    typed: tuple[ModelRolloutStatus, ModelRolloutStatus] | None = None


class ActionError(ModelRolloutError):
    """An action of the decision could not be carried out; retry the pass."""

    reason = Reason.ACTION_FAILED


class InvalidInputError(ModelRolloutError):
    """What the rollout refers to cannot be used as written (a template, a reference)."""


async def reconcile(rollout: Rollout, ports: Ports) -> PassResult:
    now = ports.clock.now()
    try:
        spec = api.read_spec(rollout.spec)
    except serde.SpecError as error:
        return _invalid(rollout, str(error), now)
    status = api.read_status(rollout.status)
    try:
        observations = await observe(rollout, spec, status, ports, now)
    except InvalidInputError as error:
        return _invalid(rollout, str(error), now)
    decision = decide(spec, status, observations, now)
    target = RouteTarget(rollout.namespace, spec.target.inference_service, spec.target.predictor)
    for action in decision.actions:
        await _carry_out(action, spec, target, rollout, ports)
    new = serde.to_json(decision.status)
    return PassResult(
        status=new,
        events=decision.events,
        requeue_after=next_due(spec, decision.requeue_after),
        typed=(status, decision.status),
    )


def next_due(spec: ModelRolloutSpec, requeue_after: float | None) -> float | None:
    """When the next pass is due: when the core says, or sooner when a git source's
    ``interval`` says to look for a new commit (with or without a push webhook), as a
    GitOps source is polled; None: nothing is due."""
    source = spec.model.git
    if source is None:
        return requeue_after
    try:
        interval = durations.parse(source.interval)
    except ValueError:
        return requeue_after  # the source says so when it is read
    return interval if requeue_after is None else min(requeue_after, interval)


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
        desired=await desired_model(rollout.namespace, spec, status, ports),
        route=route,
        measurements=await measure(rollout.namespace, spec, status, route, ports, now),
        action=rollout.annotations.get(api.ACTION_ANNOTATION),
        generation=rollout.generation,
    )


async def _secret(ports: Ports, namespace: str, name: str) -> dict[str, str]:
    if ports.secrets is None:
        raise SourceError(f"Secret {name} is referenced but this operator reads no Secrets")
    return await ports.secrets.read(namespace, name)


async def registry_for(namespace: str, spec: ModelRolloutSpec, ports: Ports) -> Registry:
    settings = spec.registry
    ref = settings.secret_ref if settings else None
    credentials = await _secret(ports, namespace, ref.name) if ref else None
    return ports.registry(settings.tracking_uri if settings else None, credentials)


async def desired_model(
    namespace: str, spec: ModelRolloutSpec, status: ModelRolloutStatus, ports: Ports
) -> DesiredModel | SourceProblem:
    """What the source asks for, resolved by the registry, with its provenance, gated."""
    try:
        manifest = await _manifest(namespace, spec, ports)
        uri = manifest.model_uri if manifest else spec.model.uri
        if uri is None:
            raise SourceError("spec.model names no model")
        registry = await registry_for(namespace, spec, ports)
        ref = await registry.resolve(uri)
        if manifest is not None:
            ref = replace(
                ref,
                git_commit=manifest.commit,
                git_author=manifest.author,
                git_time=manifest.committed_at,
            )
        known = {m.key for m in (status.stable, status.canary) if m is not None}
        gates = spec.registry.gates if spec.registry else None
        if gates is None or ref.key in known:
            return DesiredModel(ref)
        return DesiredModel(ref, await registry.check_gates(ref, status.stable, gates))
    except ModelRolloutError as error:
        return SourceProblem(error.reason, str(error))


async def _manifest(
    namespace: str, spec: ModelRolloutSpec, ports: Ports
) -> ManifestRevision | None:
    source = spec.model.git
    if source is None:
        return None
    if ports.git is None:
        raise SourceError("spec.model.git is set but this operator has no git source")
    data = await _secret(ports, namespace, source.secret_ref.name) if source.secret_ref else {}
    signers = None
    if source.verify is not None:
        ref = source.verify.allowed_signers_secret_ref
        signers = (await _secret(ports, namespace, ref.name)).get(ref.key or ALLOWED_SIGNERS_KEY)
        if not signers:
            raise UntrustedCommitError(
                f"Secret {ref.name} has no allowed signers under "
                f"{ref.key or ALLOWED_SIGNERS_KEY!r}: no commit can be trusted"
            )
    credentials = credentials_from_secret(data, signers) if data or signers else None
    return await ports.git.fetch(source, credentials)


async def measure(
    namespace: str,
    spec: ModelRolloutSpec,
    status: ModelRolloutStatus,
    route: RouteObservation | None,
    ports: Ports,
    now: datetime,
) -> dict[str, Measurement]:
    """Query only the metrics that are due; the core ignores the rest anyway."""
    if status.canary is None:
        return {}
    step = steps.step_at(spec, status.current_step_index)
    out: dict[str, Measurement] = {}
    for metric in analysis.due(spec, status.analysis, step, now):
        try:
            out[metric.name] = await _measure_one(
                namespace, spec, status, metric, route, ports, now
            )
        except (TemplateError, TemplateNotFound) as error:
            raise InvalidInputError(f"metric {metric.name!r}: {error}") from error
        except ModelRolloutError as error:
            out[metric.name] = Measurement(error=str(error))
    return out


async def _measure_one(
    namespace: str,
    spec: ModelRolloutSpec,
    status: ModelRolloutStatus,
    metric: api.MetricSpec,
    route: RouteObservation | None,
    ports: Ports,
    now: datetime,
) -> Measurement:
    template = None
    token = None
    if metric.template_ref is not None:
        if ports.templates is None:
            raise TemplateNotFound("this operator reads no MetricTemplates")
        template = await ports.templates.get(namespace, metric.template_ref.name)
        ref = template.provider.prometheus.secret_ref
        if ref is not None:
            token = (await _secret(ports, namespace, ref.name)).get(ref.key or DEFAULT_TOKEN_KEY)
    analysis_spec = spec.strategy.analysis or api.AnalysisSpec()
    variables = templates.variables(
        namespace=namespace,
        inference_service=spec.target.inference_service,
        stable_revision=route.stable_revision if route else None,
        canary_revision=route.canary_revision if route else None,
        interval=metric.interval or analysis_spec.interval,
        since_canary_start_seconds=seconds_since(status.canary_started_at, now) or 0.0,
        args=metric.args,
    )
    return await measure_metric(
        metric,
        template,
        variables,
        lambda provider: ports.metrics(provider, token),
        timeout_seconds=ports.query_timeout_seconds,
    )


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
        registry = await registry_for(rollout.namespace, spec, ports)
        await registry.write_back(action, settings, rollout.key)


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
