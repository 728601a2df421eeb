"""What every model registry here shares; a backend only reads and writes facts.

The MLflow adapter (:mod:`modelrollout.registry.mlflow`) and the in-memory registry
(:mod:`modelrollout.registry.memory`) are both a :class:`BackedRegistry` over a
:class:`Backend`, so the URI forms, the storage mapping, the gates, the write-back and the
cache are one piece of code, and the contract tests that run both against the same facts
check the only part that differs: how each backend answers.

- URIs: ``models:/name/version``, ``models:/name@alias`` and the deprecated
  ``models:/name/Stage`` (logged as a warning once per URI). ``models:/name/latest`` is
  refused: it moves with every registration, so a rollout could never say what it pinned.
- Storage: the version's download URI (never ``ModelVersion.source``, which MLflow 3 sets
  to ``models:/m-…``) goes through the storage map, first matching prefix wins; what
  comes out must be a URI KServe's storage initializer loads, or the version is refused
  with reason ``StorageUnsupportedError``.
- Cache: every read is kept ``cache_ttl_seconds`` (errors too), so a pass per second per
  rollout does not hammer the registry and an alias move is seen within the TTL. A
  write-back forgets what was kept about that model.
"""

from __future__ import annotations

import asyncio
import copy
import json
import logging
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol, TypeVar, cast
from urllib.parse import urlsplit

from modelrollout.api import (
    DatasetRef,
    Direction,
    HoldoutGate,
    ModelVersionRef,
    Outcome,
    Reason,
    RegistryGates,
)
from modelrollout.api import WriteBack as WriteBackSpec
from modelrollout.clock import Clock, SystemClock
from modelrollout.decision import GateResult, WriteBack
from modelrollout.errors import RegistryError

log = logging.getLogger(__name__)

#: The run tag MLflow fills with the training code's git commit.
SOURCE_COMMIT_TAG = "mlflow.source.git.commit"
#: Stages as MLflow spells them (matched without regard to case).
STAGES = {stage.lower(): stage for stage in ("Staging", "Production", "Archived")}
#: What KServe's storage initializer (and its OCI modelcar) can load.
LOADABLE_SCHEMES = ("gs", "s3", "hdfs", "webhdfs", "http", "https", "pvc", "hf", "oci")
READY = "READY"
#: The scheme of files served by the registry's own artifact proxy.
ARTIFACT_PROXY = "mlflow-artifacts"
DEFAULT_CACHE_TTL_SECONDS = 5.0
MAX_CACHE_ENTRIES = 1024
MAX_SCHEMA_PROBLEMS = 3

StorageMap = tuple[tuple[str, str], ...]
T = TypeVar("T")


# ---------------------------------------------------------------- errors


class InvalidModelUriError(RegistryError):
    """The URI is not one of the registry forms this operator follows."""


class UnknownModelError(RegistryError):
    """No registered model has that name."""


class UnknownVersionError(RegistryError):
    """The model exists but has no such version."""


class UnsetAliasError(RegistryError):
    """The model exists but the alias points nowhere."""


class EmptyStageError(RegistryError):
    """No version of the model is in that (deprecated) stage."""


class VersionNotReadyError(RegistryError):
    """The version exists but its registration has not finished (or failed)."""


class RegistryUnreachableError(RegistryError):
    """The registry did not answer (down, refused the connection, timed out)."""


class StorageUnsupportedError(RegistryError):
    """The version's storage URI is one KServe cannot load."""

    reason = Reason.STORAGE_UNSUPPORTED


def unknown_model(name: str, where: str) -> UnknownModelError:
    return UnknownModelError(f"model {name!r} is not registered in {where}")


def unknown_version(name: str, version: str, where: str) -> UnknownVersionError:
    return UnknownVersionError(f"model {name!r} has no version {version} in {where}")


def unset_alias(name: str, alias: str, where: str) -> UnsetAliasError:
    return UnsetAliasError(f"alias {alias!r} of model {name!r} is not set in {where}")


# ---------------------------------------------------------------- facts


@dataclass(frozen=True)
class VersionFacts:
    """A model version as the registry stores it."""

    name: str
    version: str
    download_uri: str
    run_id: str | None = None
    source: str | None = None
    tags: Mapping[str, str] = field(default_factory=dict)
    stage: str = "None"
    status: str = READY

    @property
    def label(self) -> str:
        return f"{self.name} v{self.version}"


@dataclass(frozen=True)
class RunFacts:
    """The training run behind a version: what the gates and the audit trail read."""

    run_id: str
    metrics: Mapping[str, float] = field(default_factory=dict)
    tags: Mapping[str, str] = field(default_factory=dict)
    datasets: tuple[DatasetRef, ...] = ()


@dataclass(frozen=True)
class InputColumn:
    """One input of a model signature; ``name`` is None for an unnamed tensor."""

    name: str | None
    type: str
    required: bool = True


@dataclass(frozen=True)
class InputSchema:
    columns: tuple[InputColumn, ...]

    @classmethod
    def from_mlflow(cls, inputs: Sequence[Mapping[str, Any]]) -> InputSchema:
        """From the ``signature.inputs`` list MLflow writes into a model's MLmodel file."""
        return cls(tuple(_column(spec) for spec in inputs))


def _column(spec: Mapping[str, Any]) -> InputColumn:
    rest = {k: v for k, v in spec.items() if k not in ("name", "required")}
    kind = rest.get("type")
    text = kind if isinstance(kind, str) and len(rest) == 1 else json.dumps(rest, sort_keys=True)
    name = spec.get("name")
    required = bool(spec.get("required", True))
    return InputColumn(str(name) if name is not None else None, text, required)


@dataclass(frozen=True)
class ModelDetails:
    """Everything resolved about a URI: the identity kept in status, and what it rests on."""

    ref: ModelVersionRef
    tags: Mapping[str, str]
    stage: str
    input_schema: InputSchema | None


class Backend(Protocol):
    """How a registry answers; blocking calls (the registry runs them in a thread).

    Reads raise :class:`UnknownModelError`, :class:`UnknownVersionError`,
    :class:`UnsetAliasError` or :class:`RegistryUnreachableError`; ``run`` and
    ``input_schema`` answer None for what is not there. ``location`` names the registry in
    messages and carries no secret.
    """

    @property
    def location(self) -> str: ...

    def version(self, name: str, version: str) -> VersionFacts: ...

    def version_by_alias(self, name: str, alias: str) -> VersionFacts: ...

    def latest_in_stage(self, name: str, stage: str) -> VersionFacts | None: ...

    def run(self, run_id: str) -> RunFacts | None: ...

    def input_schema(self, facts: VersionFacts) -> InputSchema | None: ...

    def alias_target(self, name: str, alias: str) -> str | None: ...

    def set_version_tag(self, name: str, version: str, key: str, value: str) -> None: ...

    def delete_version_tag(self, name: str, version: str, key: str) -> None: ...

    def set_alias(self, name: str, alias: str, version: str) -> None: ...


# ---------------------------------------------------------------- URIs and storage


@dataclass(frozen=True)
class ModelUri:
    name: str
    version: str | None = None
    alias: str | None = None
    stage: str | None = None


_MODEL_URI = re.compile(r"^models:/(?P<name>[^/@:]+)(?:/(?P<ref>[^/@]+)|@(?P<alias>[\w-]+))$")
_FORMS = "use models:/<name>/<version> or models:/<name>@<alias>"


def parse_model_uri(uri: str) -> ModelUri:
    match = _MODEL_URI.fullmatch(uri)
    if match is None:
        raise InvalidModelUriError(f"{uri!r} is not a registry model URI: {_FORMS}")
    name, ref, alias = match["name"], match["ref"], match["alias"]
    if alias is not None:
        return ModelUri(name, alias=alias)
    if re.fullmatch(r"[0-9]+", ref):
        return ModelUri(name, version=str(int(ref)))
    if ref.lower() in STAGES:
        return ModelUri(name, stage=STAGES[ref.lower()])
    if ref.lower() == "latest":
        raise InvalidModelUriError(
            f"{uri!r} follows whatever version was registered last, so a rollout could not "
            f"pin it: {_FORMS}"
        )
    raise InvalidModelUriError(
        f"{uri!r}: {ref!r} is neither a version number nor a stage; {_FORMS}"
    )


def parse_storage_map(text: str) -> StorageMap:
    """``"mlflow-artifacts:/=s3://mlflow/,file:///srv/mlruns/=pvc://mlruns/"`` -> pairs.

    Entries are separated by commas; each is split at its first ``=``.
    """
    pairs: list[tuple[str, str]] = []
    for entry in (e.strip() for e in text.split(",")):
        if not entry:
            continue
        prefix, equals, replacement = (part.strip() for part in entry.partition("="))
        if not equals or not prefix or not replacement:
            raise ValueError(
                f"storage map entry {entry!r} is not <prefix>=<replacement> "
                "(e.g. mlflow-artifacts:/=s3://mlflow/)"
            )
        pairs.append((prefix, replacement))
    return tuple(pairs)


def loadable(uri: str) -> bool:
    parts = urlsplit(uri)
    return (
        parts.scheme in LOADABLE_SCHEMES
        and bool(parts.netloc)
        and uri.startswith(f"{parts.scheme}://")
    )


def storage_uri(download_uri: str, storage_map: StorageMap, label: str) -> str:
    """The URI KServe loads ``label`` from: the download URI through the map, checked."""
    matches = (
        new + download_uri[len(old) :] for old, new in storage_map if download_uri.startswith(old)
    )
    mapped = next(matches, download_uri)
    if loadable(mapped):
        return mapped
    via = "" if mapped == download_uri else f", mapped to {mapped},"
    schemes = ", ".join(f"{scheme}://" for scheme in LOADABLE_SCHEMES)
    raise StorageUnsupportedError(
        f"{label} is stored at {download_uri}{via} which KServe cannot load; map it to a "
        f"storage URI KServe can load ({schemes}) in the registry's storage map"
    )


def artifact_path(facts: VersionFacts, location: str) -> str:
    """Where the version's files are under the registry's artifact proxy
    (``mlflow-artifacts:/<path>``); the input schema is read only from there."""
    parts = urlsplit(facts.download_uri)
    if parts.scheme != ARTIFACT_PROXY or parts.netloc:
        raise RegistryError(
            f"cannot read the input schema of {facts.label}: its files at {facts.download_uri} "
            f"are not served by {location}"
        )
    return parts.path.strip("/")


# ---------------------------------------------------------------- gates


def required_tag_gate(key: str, wanted: str, tags: Mapping[str, str]) -> GateResult:
    name = f"tag {key}"
    actual = tags.get(key)
    if actual == wanted:
        return GateResult(name, True, f"tag {key} is {wanted!r}")
    if actual is None:
        return GateResult(name, False, f"tag {key} is not set, needs {wanted!r}")
    return GateResult(name, False, f"tag {key} is {actual!r}, needs {wanted!r}")


def _number(value: float) -> str:
    return f"{value:.6g}"


def holdout_gate(
    gate: HoldoutGate,
    candidate: VersionFacts,
    candidate_run: RunFacts | None,
    stable_run: RunFacts | None,
    nothing_to_compare: str | None,
) -> GateResult:
    """The candidate's run metric against the stable's, ``max_regression`` allowed."""
    key = gate.metric
    name = f"holdout {key}"
    if candidate_run is None:
        return GateResult(name, False, f"{candidate.label} has no training run to read {key} from")
    value = candidate_run.metrics.get(key)
    if value is None or math.isnan(value):
        return GateResult(name, False, f"the run of {candidate.label} has no metric {key}")
    if nothing_to_compare is not None:
        return GateResult(name, True, f"{key} {_number(value)}; {nothing_to_compare}")
    baseline = stable_run.metrics.get(key) if stable_run else None
    if baseline is None or math.isnan(baseline):
        message = f"{key} {_number(value)}; the stable's run has no {key}: nothing to compare with"
        return GateResult(name, True, message)
    worse_by = value - baseline if gate.direction == Direction.LOWER_IS_BETTER else baseline - value
    if worse_by > gate.max_regression:
        allowance = f" by more than {_number(gate.max_regression)}" if gate.max_regression else ""
        return GateResult(
            name,
            False,
            f"{key} {_number(value)} is worse than the stable's {_number(baseline)}{allowance}",
        )
    return GateResult(
        name,
        True,
        f"{key} {_number(value)} against the stable's {_number(baseline)} "
        f"(allowed regression {_number(gate.max_regression)})",
    )


def schema_problems(candidate: InputSchema, stable: InputSchema) -> list[str]:
    """Why the candidate would refuse an input the stable accepts (empty: it would not)."""
    columns = (*candidate.columns, *stable.columns)
    if any(column.name is None for column in columns):
        return [] if candidate == stable else ["its tensor inputs differ from the stable's"]
    before = {column.name: column for column in stable.columns}
    problems: list[str] = []
    for column in candidate.columns:
        old = before.get(column.name)
        if old is None:
            if column.required:
                problems.append(
                    f"input {column.name!r} ({column.type}) is required, "
                    "and the stable's callers do not send it"
                )
        elif old.type != column.type:
            problems.append(
                f"input {column.name!r} is {column.type}, the stable's schema has {old.type}"
            )
        elif column.required and not old.required:
            problems.append(
                f"input {column.name!r} is required, the stable's schema made it optional"
            )
    return problems


SCHEMA_GATE = "input schema"


def schema_gate(
    candidate: VersionFacts,
    candidate_schema: InputSchema | None,
    stable_label: str,
    stable_schema: InputSchema | None,
) -> GateResult:
    if stable_schema is None:
        return GateResult(
            SCHEMA_GATE, True, f"{stable_label} has no input schema: nothing to compare with"
        )
    if candidate_schema is None:
        message = f"{candidate.label} has no input schema to compare with {stable_label}'s"
        return GateResult(SCHEMA_GATE, False, message)
    problems = schema_problems(candidate_schema, stable_schema)
    if not problems:
        return GateResult(SCHEMA_GATE, True, f"accepts every input {stable_label} accepts")
    shown = "; ".join(problems[:MAX_SCHEMA_PROBLEMS])
    more = len(problems) - MAX_SCHEMA_PROBLEMS
    suffix = f"; and {more} more" if more > 0 else ""
    return GateResult(SCHEMA_GATE, False, f"{shown}{suffix}")


# ---------------------------------------------------------------- write-back


@dataclass(frozen=True)
class WritePlan:
    """What a write-back leaves on the version: these tags, these gone, maybe an alias."""

    tags: Mapping[str, str]
    removed: tuple[str, ...] = ()
    alias: str | None = None


SUCCESSES = (Outcome.PROMOTED, Outcome.INITIALIZED)
ROLLBACKS = (Outcome.ROLLED_BACK, Outcome.ABORTED)


def write_plan(outcome: WriteBack, spec: WriteBackSpec, rollout: str) -> WritePlan:
    """Only values from the decision (its ``at``, never "now"), so a repeat writes the same."""
    prefix = spec.tag_prefix
    tags = {
        f"{prefix}.rollout": rollout,
        f"{prefix}.commit": outcome.model.git_commit or "",
        f"{prefix}.time": outcome.at or "",
        f"{prefix}.verdict": outcome.outcome.value,
    }
    rolled_back = f"{prefix}.rolled_back"
    if outcome.outcome in ROLLBACKS:
        reason = outcome.reason.value
        tags[rolled_back] = f"{reason}: {outcome.message}" if outcome.message else reason
        return WritePlan(tags)
    if outcome.outcome in SUCCESSES:
        # A version promoted after a retry no longer carries the old rollback's reason.
        return WritePlan(tags, removed=(rolled_back,), alias=spec.alias)
    return WritePlan(tags)


# ---------------------------------------------------------------- the registry


@dataclass(frozen=True)
class _Kept:
    until: datetime
    value: object = None
    error: RegistryError | None = None


class BackedRegistry:
    """The :class:`~modelrollout.registry.base.Registry` port over a :class:`Backend`."""

    def __init__(
        self,
        backend: Backend,
        storage_map: Sequence[tuple[str, str]] = (),
        *,
        cache_ttl_seconds: float = DEFAULT_CACHE_TTL_SECONDS,
        clock: Clock | None = None,
    ) -> None:
        self.backend = backend
        self.storage_map: StorageMap = tuple((old, new) for old, new in storage_map)
        self.cache_ttl = timedelta(seconds=cache_ttl_seconds)
        self.clock = clock or SystemClock()
        self._kept: dict[tuple[str, ...], _Kept] = {}
        self._warned: set[str] = set()

    # ------------------------------------------------------------ the port

    async def resolve(self, uri: str) -> ModelVersionRef:
        return (await self._details(uri, with_schema=False)).ref

    async def describe(self, uri: str) -> ModelDetails:
        """``resolve`` plus the version's tags, stage and input schema."""
        return await self._details(uri, with_schema=True)

    async def check_gates(
        self, candidate: ModelVersionRef, stable: ModelVersionRef | None, gates: RegistryGates
    ) -> tuple[GateResult, ...]:
        facts = await self._version(*_identity(candidate))
        results = [
            required_tag_gate(key, wanted, facts.tags)
            for key, wanted in sorted(gates.required_tags.items())
        ]
        stable_facts, nothing = await self._stable(stable)
        if gates.holdout:
            candidate_run = await self._run(facts.run_id)
            stable_run = await self._run(stable_facts.run_id) if stable_facts else None
            results += [
                holdout_gate(gate, facts, candidate_run, stable_run, nothing)
                for gate in gates.holdout
            ]
        if gates.schema_compatibility:
            results.append(await self._schema_gate(facts, stable_facts, nothing))
        return tuple(results)

    async def write_back(self, outcome: WriteBack, spec: WriteBackSpec, rollout: str) -> None:
        if not spec.enabled:
            return
        name, version = _identity(outcome.model)
        plan = write_plan(outcome, spec, rollout)
        try:
            await asyncio.to_thread(self._apply, name, version, plan)
        finally:
            self._forget(name)

    # ------------------------------------------------------------ resolving

    async def _details(self, uri: str, *, with_schema: bool) -> ModelDetails:
        parsed = parse_model_uri(uri)
        facts = await self._lookup(uri, parsed)
        if facts.status != READY:
            raise VersionNotReadyError(
                f"{facts.label} is not ready in {self.backend.location} (status {facts.status})"
            )
        run = await self._run(facts.run_id)
        ref = ModelVersionRef(
            uri=uri,
            storage_uri=storage_uri(facts.download_uri, self.storage_map, facts.label),
            name=facts.name,
            version=facts.version,
            run_id=facts.run_id,
            source_commit=(run.tags.get(SOURCE_COMMIT_TAG) or None) if run else None,
            datasets=tuple(sorted(run.datasets, key=_dataset_order)) if run else (),
        )
        schema = await self._schema(facts) if with_schema else None
        return ModelDetails(ref, dict(facts.tags), facts.stage, schema)

    async def _lookup(self, uri: str, parsed: ModelUri) -> VersionFacts:
        name = parsed.name
        if parsed.version is not None:
            return await self._version(name, parsed.version)
        if parsed.alias is not None:
            alias = parsed.alias
            return await self._kept_or(
                ("alias", name, alias), lambda: self.backend.version_by_alias(name, alias)
            )
        stage = cast(str, parsed.stage)
        self._warn_stage(uri, name)
        found = await self._kept_or(
            ("stage", name, stage), lambda: self.backend.latest_in_stage(name, stage)
        )
        if found is None:
            raise EmptyStageError(
                f"no version of model {name!r} is in stage {stage!r} in {self.backend.location}"
            )
        return found

    def _warn_stage(self, uri: str, name: str) -> None:
        if uri in self._warned:
            return
        if len(self._warned) >= MAX_CACHE_ENTRIES:
            self._warned.clear()
        self._warned.add(uri)
        log.warning(
            "%s names a model stage; MLflow deprecated stages: use an alias such as "
            "models:/%s@champion instead",
            uri,
            name,
        )

    async def _version(self, name: str, version: str) -> VersionFacts:
        return await self._kept_or(
            ("version", name, version), lambda: self.backend.version(name, version)
        )

    async def _run(self, run_id: str | None) -> RunFacts | None:
        if not run_id:
            return None
        return await self._kept_or(("run", run_id), lambda: self.backend.run(run_id))

    async def _schema(self, facts: VersionFacts) -> InputSchema | None:
        return await self._kept_or(
            ("schema", facts.name, facts.version), lambda: self.backend.input_schema(facts)
        )

    # ------------------------------------------------------------ gates

    async def _stable(
        self, stable: ModelVersionRef | None
    ) -> tuple[VersionFacts | None, str | None]:
        """The stable version's facts, or why there is nothing to compare with."""
        if stable is None:
            return None, "no stable version: nothing to compare with"
        if not stable.name or not stable.version:
            return None, f"the stable model {stable.uri} is not a registry version"
        try:
            return await self._version(stable.name, stable.version), None
        except (UnknownModelError, UnknownVersionError):
            return None, f"{stable.label} is no longer in {self.backend.location}"

    async def _schema_gate(
        self, facts: VersionFacts, stable: VersionFacts | None, nothing: str | None
    ) -> GateResult:
        if stable is None:
            return GateResult(SCHEMA_GATE, True, nothing or "")
        try:
            candidate_schema = await self._schema(facts)
            stable_schema = await self._schema(stable)
        except RegistryUnreachableError:
            raise
        except RegistryError as error:
            return GateResult(SCHEMA_GATE, False, f"cannot read the input schemas: {error}")
        return schema_gate(facts, candidate_schema, stable.label, stable_schema)

    # ------------------------------------------------------------ write-back

    def _apply(self, name: str, version: str, plan: WritePlan) -> None:
        """Write only what differs from what the registry holds now (read afresh)."""
        try:
            current = self.backend.version(name, version)
        except (UnknownModelError, UnknownVersionError) as error:
            # Retrying cannot bring a deleted version back; the rollout's own status and
            # history still record the outcome.
            log.warning("write-back skipped: %s", error)
            return
        for key, value in plan.tags.items():
            if current.tags.get(key) != value:
                self.backend.set_version_tag(name, version, key, value)
        for key in plan.removed:
            if key in current.tags:
                self.backend.delete_version_tag(name, version, key)
        if plan.alias and self.backend.alias_target(name, plan.alias) != version:
            self.backend.set_alias(name, plan.alias, version)
            log.info("alias %s of model %s now points to version %s", plan.alias, name, version)

    # ------------------------------------------------------------ the cache

    async def _kept_or(self, key: tuple[str, ...], read: Callable[[], T]) -> T:
        now = self.clock.now()
        kept = self._kept.get(key)
        if kept is not None and kept.until > now:
            if kept.error is not None:
                raise copy.copy(kept.error)
            return cast(T, kept.value)
        try:
            value = await asyncio.to_thread(read)
        except RegistryError as error:
            self._keep(key, _Kept(now + self.cache_ttl, error=error), now)
            raise
        self._keep(key, _Kept(now + self.cache_ttl, value=value), now)
        return value

    def _keep(self, key: tuple[str, ...], kept: _Kept, now: datetime) -> None:
        if kept.until <= now:
            return
        if len(self._kept) >= MAX_CACHE_ENTRIES:
            self._kept = {k: v for k, v in self._kept.items() if v.until > now}
        while len(self._kept) >= MAX_CACHE_ENTRIES:
            del self._kept[next(iter(self._kept))]
        self._kept[key] = kept

    def _forget(self, name: str) -> None:
        self._kept = {k: v for k, v in self._kept.items() if k[0] == "run" or k[1] != name}


def _dataset_order(dataset: DatasetRef) -> tuple[str, str, str]:
    return dataset.name, dataset.digest or "", dataset.source or ""


def _identity(model: ModelVersionRef) -> tuple[str, str]:
    if not model.name or not model.version:
        raise RegistryError(f"{model.uri} is not a registry model version (no name and version)")
    return model.name, model.version
