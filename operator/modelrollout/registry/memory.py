"""An in-memory model registry with MLflow's semantics, for tests and the sandbox.

:class:`MemoryStore` plays the MLflow server: registered models, versions (run id, download
URI, tags, stage, input schema), runs (metrics, tags, dataset inputs) and aliases, set up
through its methods and read back by tests. :class:`MemoryRegistry` is the same
:class:`~modelrollout.registry.core.BackedRegistry` the MLflow adapter is, over a store, so
several registries can share one store as several operators share one server. The contract
tests run one suite against both, so this fake answers as MLflow does, errors included.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from modelrollout.api import DatasetRef
from modelrollout.clock import Clock
from modelrollout.registry.core import (
    DEFAULT_CACHE_TTL_SECONDS,
    READY,
    STAGES,
    BackedRegistry,
    InputSchema,
    RegistryUnreachableError,
    RunFacts,
    VersionFacts,
    artifact_path,
    unknown_model,
    unknown_version,
    unset_alias,
)

LOCATION = "the in-memory registry"


@dataclass
class _Model:
    versions: dict[str, VersionFacts] = field(default_factory=dict)
    schemas: dict[str, InputSchema | None] = field(default_factory=dict)
    aliases: dict[str, str] = field(default_factory=dict)


class MemoryStore:
    """The registry's state; thread-safe, since the registry reads it from worker threads."""

    def __init__(self) -> None:
        self._models: dict[str, _Model] = {}
        self._runs: dict[str, RunFacts] = {}
        self._lock = threading.Lock()
        self._reachable = True
        self._run_count = 0
        #: Write calls answered (tag set, tag deleted, alias set), as a server counts requests.
        self.writes = 0

    location = LOCATION

    # ------------------------------------------------------------ set-up

    def create_model(self, name: str) -> None:
        with self._lock:
            self._models.setdefault(name, _Model())

    def log_run(
        self,
        *,
        metrics: Mapping[str, float] | None = None,
        tags: Mapping[str, str] | None = None,
        datasets: Sequence[DatasetRef] = (),
    ) -> str:
        """A finished training run; returns its id."""
        with self._lock:
            self._run_count += 1
            run_id = f"{self._run_count:032x}"
            self._runs[run_id] = RunFacts(
                run_id, dict(metrics or {}), dict(tags or {}), tuple(datasets)
            )
            return run_id

    def create_version(
        self,
        name: str,
        download_uri: str,
        *,
        run_id: str | None = None,
        source: str | None = None,
        tags: Mapping[str, str] | None = None,
        input_schema: Sequence[Mapping[str, Any]] | None = None,
        status: str = READY,
    ) -> str:
        """The next version of ``name`` (created if new), as MLflow numbers them; returns it.

        ``input_schema`` is the ``signature.inputs`` list MLflow keeps in the MLmodel file.
        """
        with self._lock:
            model = self._models.setdefault(name, _Model())
            version = str(len(model.versions) + 1)
            model.versions[version] = VersionFacts(
                name=name,
                version=version,
                download_uri=download_uri,
                run_id=run_id,
                source=source,
                tags=dict(tags or {}),
                status=status,
            )
            model.schemas[version] = (
                InputSchema.from_mlflow(input_schema) if input_schema is not None else None
            )
            return version

    def transition_stage(self, name: str, version: str, stage: str) -> None:
        with self._lock:
            facts = self._facts(name, version)
            if stage.lower() not in (*STAGES, "none"):
                raise ValueError(f"{stage!r} is not an MLflow stage")
            canonical = STAGES.get(stage.lower(), "None")
            self._models[name].versions[version] = replace(facts, stage=canonical)

    def set_reachable(self, reachable: bool) -> None:
        """Down, every call fails as it does when the MLflow server does not answer."""
        self._reachable = reachable

    # ------------------------------------------------------------ inspection

    def version_tags(self, name: str, version: str) -> dict[str, str]:
        with self._lock:
            return dict(self._facts(name, version).tags)

    def aliases(self, name: str) -> dict[str, str]:
        with self._lock:
            return dict(self._model(name).aliases)

    def versions(self, name: str) -> tuple[str, ...]:
        with self._lock:
            return tuple(self._model(name).versions)

    # ------------------------------------------------------------ the Backend protocol

    def version(self, name: str, version: str) -> VersionFacts:
        with self._answering():
            return self._facts(name, version)

    def version_by_alias(self, name: str, alias: str) -> VersionFacts:
        with self._answering():
            target = self._model(name).aliases.get(alias)
            if target is None:
                raise unset_alias(name, alias, LOCATION)
            return self._facts(name, target)

    def latest_in_stage(self, name: str, stage: str) -> VersionFacts | None:
        with self._answering():
            wanted = STAGES.get(stage.lower(), stage)
            staged = [v for v in self._model(name).versions.values() if v.stage == wanted]
            return max(staged, key=lambda v: int(v.version), default=None)

    def run(self, run_id: str) -> RunFacts | None:
        with self._answering():
            return self._runs.get(run_id)

    def input_schema(self, facts: VersionFacts) -> InputSchema | None:
        artifact_path(facts, LOCATION)
        with self._answering():
            self._facts(facts.name, facts.version)
            return self._model(facts.name).schemas.get(facts.version)

    def alias_target(self, name: str, alias: str) -> str | None:
        with self._answering():
            return self._model(name).aliases.get(alias)

    def set_version_tag(self, name: str, version: str, key: str, value: str) -> None:
        with self._answering():
            self.writes += 1
            facts = self._facts(name, version)
            self._put(replace(facts, tags={**facts.tags, key: value}))

    def delete_version_tag(self, name: str, version: str, key: str) -> None:
        with self._answering():
            self.writes += 1
            facts = self._facts(name, version)
            self._put(replace(facts, tags={k: v for k, v in facts.tags.items() if k != key}))

    def set_alias(self, name: str, alias: str, version: str) -> None:
        with self._answering():
            self.writes += 1
            self._facts(name, version)
            self._models[name].aliases[alias] = version

    # ------------------------------------------------------------ helpers

    def _answering(self) -> threading.Lock:
        """The lock to hold for one call, once the "server" is known to answer."""
        if not self._reachable:
            raise RegistryUnreachableError(f"cannot reach {LOCATION}: it is switched off")
        return self._lock

    def _model(self, name: str) -> _Model:
        model = self._models.get(name)
        if model is None:
            raise unknown_model(name, LOCATION)
        return model

    def _facts(self, name: str, version: str) -> VersionFacts:
        facts = self._model(name).versions.get(version)
        if facts is None:
            raise unknown_version(name, version, LOCATION)
        return facts

    def _put(self, facts: VersionFacts) -> None:
        self._models[facts.name].versions[facts.version] = facts


class MemoryRegistry(BackedRegistry):
    """The registry port over a :class:`MemoryStore` (a new, empty one if none is given)."""

    def __init__(
        self,
        store: MemoryStore | None = None,
        storage_map: Sequence[tuple[str, str]] = (),
        *,
        cache_ttl_seconds: float = DEFAULT_CACHE_TTL_SECONDS,
        clock: Clock | None = None,
    ) -> None:
        self.store = store or MemoryStore()
        super().__init__(self.store, storage_map, cache_ttl_seconds=cache_ttl_seconds, clock=clock)
