"""The bad-input corpus's shared parts: what the API server does, and an engine with fakes.

- :func:`admit` is what kube-apiserver does with an object for a CRD (prune, defaults, then
  the openAPI schema and CEL rules, ``modelrollout.schema``): the stored object, or the errors.
- :class:`Bench` runs one full engine pass (``engine.reconcile``) over in-memory ports: an
  InferenceService that records every write, the in-memory MLflow registry (fraud v1 and v2,
  aliases ``champion`` -> 1 and ``challenger`` -> 2; anything else answers not-found as
  MLflow does), MetricTemplates and Secrets by name, a git source that parses the manifest
  bytes it is given, and a metric provider that records each query and answers "no data".
  Two starting points, both reached by driving the engine itself: fraud v1 stable and serving
  alone (:meth:`Bench.at_rest`), and canary v2 at 10% holding at its first step with its
  metric due (:meth:`Bench.in_canary`).
- :func:`check_untouched` is the corpus's one promise about a pass: nothing that serves
  traffic changed, the stable model is still recorded, and the input got a condition with a
  reason and a warning event.
"""

from __future__ import annotations

import asyncio
import copy
import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from modelrollout import api, engine, schema
from modelrollout.decision import EventType, RouteObservation
from modelrollout.errors import SourceError
from modelrollout.gitsource import manifest
from modelrollout.gitsource.base import GitCredentials, GitSource, ManifestRevision
from modelrollout.gitsource.inputs import check_ref, manifest_path
from modelrollout.metrics.base import Sample, SampleProvider, TemplateNotFound, VectorProvider
from modelrollout.registry.memory import MemoryRegistry, MemoryStore
from modelrollout.routing.base import RouteTarget
from modelrollout.serde import SpecError
from modelrollout.templates import TemplateError

NAMESPACE = "models"
NAME = "fraud"
MODEL = "fraud"
STORAGE = "s3://models/fraud/"
KNOWN_VERSIONS = ("1", "2")
KNOWN_ALIASES = {"champion": "1", "challenger": "2"}
STABLE_REVISION = "fraud-predictor-00001"
CANARY_REVISION = "fraud-predictor-00002"
REPOSITORY = "https://git.example.com/ml/releases.git"
MANIFEST_PATH = "models/fraud.yaml"
COMMIT = "0123456789abcdef0123456789abcdef01234567"
START = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)

#: The reasons a refused input may be given (condition and warning event).
REFUSALS = frozenset(
    {
        api.Reason.INVALID_SPEC,
        api.Reason.SOURCE_ERROR,
        api.Reason.SOURCE_UNTRUSTED,
        api.Reason.STORAGE_UNSUPPORTED,
        api.Reason.GATE_FAILED,
        api.Reason.INVALID_ACTION,
    }
)

SUCCESS_RATE = (
    'sum(rate(revision_app_request_count{namespace_name="{{ namespace }}",'
    'revision_name="{{ canaryRevision }}",response_code_class!="5xx"}[{{ interval }}]))'
)


def metric(**changes: Any) -> dict[str, Any]:
    """A threshold metric that tolerates "no data" (the recording provider's only answer)."""
    base = {"name": "success-rate", "query": SUCCESS_RATE, "thresholdRange": {"min": 0}}
    return base | {"inconclusiveLimit": 1000} | changes


def rollout_spec(version: str = "1", **changes: Any) -> dict[str, Any]:
    """A valid spec: fraud at ``version``, 10% then an indefinite pause, one inline metric."""
    spec: dict[str, Any] = {
        "model": {"uri": f"models:/{MODEL}/{version}"},
        "target": {"inferenceService": NAME},
        "strategy": {
            "steps": [{"setWeight": 10}, {"pause": {}}],
            "analysis": {"interval": "1m", "metrics": [metric()]},
        },
    }
    spec.update(changes)
    return spec


def git_spec(**source: Any) -> dict[str, Any]:
    """A valid spec whose model comes from ``models/fraud.yaml`` in git."""
    spec = rollout_spec()
    spec["model"] = {"git": {"repository": REPOSITORY, "path": MANIFEST_PATH} | source}
    return spec


def template_spec(**changes: Any) -> dict[str, Any]:
    return {
        "provider": {"prometheus": {"address": "http://prometheus.monitoring:9090"}},
        "query": SUCCESS_RATE,
    } | changes


def resource(kind: str, spec: Any, name: str = NAME) -> dict[str, Any]:
    return {
        "apiVersion": api.API_VERSION,
        "kind": kind,
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": spec,
    }


# ---------------------------------------------------------------- the API server

CRDS = Path(__file__).resolve().parents[1] / "crds"


@functools.cache
def crd_schema(kind: str) -> dict[str, Any]:
    """The served ``openAPIV3Schema`` of the CRD for ``kind`` (read-only), its CEL compiled."""
    plural = {api.ROLLOUT_KIND: api.ROLLOUT_PLURAL, api.TEMPLATE_KIND: api.TEMPLATE_PLURAL}[kind]
    crd = yaml.safe_load((CRDS / f"{plural}.{api.GROUP}.yaml").read_text(encoding="utf-8"))
    (version,) = [v for v in crd["spec"]["versions"] if v["storage"]]
    root: dict[str, Any] = version["schema"]["openAPIV3Schema"]
    # celpy raises the recursion limit whenever it builds a parser, and hypothesis refuses a
    # limit that changes while an example runs: build them all now.
    assert schema.compile_rules(root) == []
    return root


@dataclass(frozen=True)
class Admission:
    stored: dict[str, Any] | None
    errors: tuple[schema.FieldError, ...] = ()

    def names(self, path: str) -> bool:
        """Whether a refusal names ``path`` (or the object holding it, for a CEL rule there)."""
        return any(
            e.path == path or path.startswith(e.path + ".") or path.startswith(e.path + "[")
            for e in self.errors
        )


def admit(obj: Mapping[str, Any]) -> Admission:
    """What kube-apiserver stores for ``obj`` under its kind's CRD, or the errors it answers."""
    root = crd_schema(obj["kind"])
    pruned, _ = schema.prune(root, obj)
    stored = schema.apply_defaults(root, pruned)
    errors = schema.validate(root, stored)
    if errors:
        return Admission(None, tuple(errors))
    return Admission(stored)


# ---------------------------------------------------------------- the ports


@dataclass
class RecordingRouter:
    """An InferenceService named ``NAME``: reads give ``route``; every write is recorded."""

    route: RouteObservation | None = None
    writes: list[tuple[str, str, int]] = field(default_factory=list)

    async def observe(self, target: RouteTarget) -> RouteObservation | None:
        return self.route if target.inference_service == NAME else None

    async def set_weight(
        self,
        target: RouteTarget,
        stable: api.ModelVersionRef,
        canary: api.ModelVersionRef,
        weight: int,
    ) -> None:
        self.writes.append(("set_weight", canary.storage_uri, weight))

    async def promote(self, target: RouteTarget, model: api.ModelVersionRef) -> None:
        self.writes.append(("promote", model.storage_uri, 100))

    async def restore(self, target: RouteTarget, stable: api.ModelVersionRef) -> None:
        self.writes.append(("restore", stable.storage_uri, 0))


class RecordingMetrics(SampleProvider):
    """Records each query it is asked; answers "no data", which never passes."""

    def __init__(self) -> None:
        self.queries: list[str] = []

    async def samples(self, query: str, timeout_seconds: float) -> list[Sample]:
        self.queries.append(query)
        return []

    async def is_online(self) -> bool:
        return True


@dataclass
class Templates:
    """MetricTemplates by name, stored as JSON and read as ``KubeTemplates`` reads them."""

    specs: dict[str, Any] = field(default_factory=dict)

    async def get(self, namespace: str, name: str) -> api.MetricTemplateSpec:
        where = f"MetricTemplate {namespace}/{name}"
        if name not in self.specs:
            raise TemplateNotFound(f"{where} not found")
        try:
            return api.read_template(self.specs[name])
        except SpecError as error:
            raise TemplateError(f"{where}: {error}") from None


@dataclass
class Secrets:
    data: dict[str, dict[str, str]] = field(default_factory=dict)

    async def read(self, namespace: str, name: str) -> dict[str, str]:
        if name not in self.data:
            raise SourceError(f"Secret {namespace}/{name} not found")
        return self.data[name]


@dataclass
class ManifestGit:
    """A repository holding one file: the spec's path and ref are checked as the real git
    source checks them, then the bytes are parsed as the real source parses a blob."""

    files: dict[str, bytes] = field(default_factory=dict)

    async def fetch(
        self, source: api.GitSource, credentials: GitCredentials | None = None
    ) -> ManifestRevision:
        check_ref(source.ref)
        parts = manifest_path(source.path)
        data = self.files.get("/".join(parts))
        if data is None:
            raise SourceError(f"{source.path!r} not found at commit {COMMIT}")
        parsed = manifest.parse(data)
        return ManifestRevision(
            parsed.model_uri, COMMIT, "Alice <alice@example.com>", "2026-03-01T10:00:00Z"
        )


@dataclass
class FixedClock:
    moment: datetime = START

    def now(self) -> datetime:
        return self.moment


def registry_store() -> MemoryStore:
    store = MemoryStore()
    for version in KNOWN_VERSIONS:
        store.create_version(MODEL, f"{STORAGE}{version}")
    for alias, version in KNOWN_ALIASES.items():
        store.set_alias(MODEL, alias, version)
    return store


class Bench:
    """One rollout, the ports around it, and the status it starts a bad-input pass from."""

    def __init__(
        self,
        route: RouteObservation | None = None,
        status: Mapping[str, Any] | None = None,
        moment: datetime = START,
        generation: int = 1,
    ) -> None:
        self.router = RecordingRouter(route)
        self.metrics = RecordingMetrics()
        self.templates = Templates()
        self.secrets = Secrets()
        self.manifests = ManifestGit()
        self.git: GitSource = self.manifests
        self.clock = FixedClock(moment)
        self.store = registry_store()
        self.status: dict[str, Any] = copy.deepcopy(dict(status or {}))
        self.generation = generation

    def ports(self) -> engine.Ports:
        registry = MemoryRegistry(self.store, clock=self.clock)

        def metrics(provider: api.PrometheusProvider | None, token: str | None) -> VectorProvider:
            return self.metrics

        return engine.Ports(
            routers=dict.fromkeys(api.Router, self.router),
            registry=lambda tracking_uri, credentials: registry,
            metrics=metrics,
            git=self.git,
            secrets=self.secrets,
            templates=self.templates,
            clock=self.clock,
        )

    def reconcile(
        self, spec: Mapping[str, Any], annotations: Mapping[str, str] | None = None
    ) -> engine.PassResult:
        """One engine pass over ``spec`` from the current status; the status moves on."""
        rollout = engine.Rollout(
            NAMESPACE,
            NAME,
            copy.deepcopy(dict(spec)),
            copy.deepcopy(self.status),
            dict(annotations or {}),
            self.generation,
        )
        result = asyncio.run(engine.reconcile(rollout, self.ports()))
        self.status = result.status
        return result

    def serve(self, stable: str, canary: str | None = None, weight: int = 0) -> None:
        self.router.route = RouteObservation(
            stable,
            canary,
            weight if canary else 0,
            stable_revision=STABLE_REVISION,
            canary_revision=CANARY_REVISION if canary else None,
        )

    @classmethod
    def at_rest(cls) -> Bench:
        """fraud v1 stable, serving alone, the rollout Succeeded; no writes recorded."""
        bench = cls()
        spec = rollout_spec("1")
        bench.reconcile(spec)  # deploys v1 as the first stable model
        bench.serve(f"{STORAGE}1")
        bench.reconcile(spec)
        assert bench.status["phase"] == api.Phase.SUCCEEDED, bench.status
        bench.router.writes.clear()
        bench.generation = 2
        return bench

    @classmethod
    def in_canary(cls) -> Bench:
        """fraud v2 canary at 10% beside v1, holding at its first step, its metric due."""
        bench = cls.at_rest()
        spec = rollout_spec("2")
        bench.reconcile(spec)
        bench.serve(f"{STORAGE}1", f"{STORAGE}2", 10)
        bench.clock.moment += timedelta(seconds=5)
        bench.reconcile(spec)
        # No data never passes, so the canary holds at its first step.
        assert bench.status["phase"] == api.Phase.PROGRESSING, bench.status
        assert bench.status["currentStepIndex"] == 0, bench.status
        bench.clock.moment += timedelta(minutes=5)
        bench.router.writes.clear()
        bench.metrics.queries.clear()
        bench.generation = 3
        return bench

    def __repr__(self) -> str:
        return f"Bench(phase={self.status.get('phase')}, writes={self.router.writes})"

    def copy(self) -> Bench:
        """A fresh bench in the same state (ports new, status and clock copied)."""
        return Bench(self.router.route, self.status, self.clock.moment, self.generation)


def condition_reasons(status: Mapping[str, Any]) -> dict[str, tuple[str, str]]:
    return {c["type"]: (c["status"], c["reason"]) for c in status.get("conditions", [])}


def check_untouched(
    before: Mapping[str, Any],
    bench: Bench,
    result: engine.PassResult,
    reasons: frozenset[api.Reason] = REFUSALS,
) -> api.Reason:
    """The pass changed nothing that serves traffic and said why; returns the reason given."""
    assert bench.router.writes == [], f"the InferenceService was written: {bench.router.writes}"
    after = result.status
    assert after.get("stable") == before.get("stable"), after
    assert after.get("canary") == before.get("canary"), after
    assert after.get("canaryWeight") == before.get("canaryWeight"), after
    assert after.get("currentStepIndex") == before.get("currentStepIndex"), after
    given = {
        api.Reason(reason)
        for status, reason in condition_reasons(after).values()
        if status == "False" and reason in reasons
    }
    assert given, f"no condition gives a reason: {after.get('conditions')}"
    warned = {e.reason for e in result.events if e.type == EventType.WARNING}
    assert warned & given, f"no warning event for {given}: {result.events}"
    return next(iter(sorted(warned & given)))
