# mypy: disallow-untyped-calls=False
# (MLflow's stores and REST helpers carry no annotations; everything here is annotated.)
"""The MLflow model registry: :class:`MlflowRegistry`, and :func:`from_settings` to build one.

Only ``mlflow-skinny`` is needed. What the registry does (URI forms, storage mapping, gates,
write-back, cache) is :mod:`modelrollout.registry.core`; this module is how MLflow answers.

Credentials are per client, with no environment variable and no lock. ``MlflowClient``
cannot take credentials of its own: every request it sends reads ``MLFLOW_TRACKING_TOKEN``,
``MLFLOW_TRACKING_USERNAME`` and ``MLFLOW_TRACKING_PASSWORD`` from the process environment
(``mlflow.utils.credentials.get_default_host_creds``), so rollouts with different Secrets
would have to take turns with ``os.environ``. The two REST stores ``MlflowClient`` wraps for
an ``http(s)://`` tracking URI (tracking and model registry) take a ``get_host_creds``
callable instead, so :class:`MlflowBackend` builds those stores itself with a callable that
returns this registry's own ``MlflowHostCreds``: the same requests ``MlflowClient`` sends,
with this rollout's credentials. The MLmodel file (for the input schema) is read through the
server's artifact proxy with the same credentials. Credentials never reach a log line or a
message: a tracking URI with credentials in it is refused, and messages name the URI only.

Retries and timeouts of those requests follow MLflow's process-wide, non-secret
``MLFLOW_HTTP_REQUEST_MAX_RETRIES``, ``MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR`` and
``MLFLOW_HTTP_REQUEST_TIMEOUT``. MLflow's defaults (7 retries with backoff, 120 s) suit a
batch job, not a pass per second, so :func:`from_settings` sets shorter ones
(:data:`HTTP_DEFAULTS`) unless the environment already has them.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlsplit

import yaml
from mlflow.entities.model_registry import ModelVersion, ModelVersionTag
from mlflow.exceptions import MlflowException, RestException
from mlflow.store.model_registry.rest_store import RestStore as ModelRegistryStore
from mlflow.store.tracking.rest_store import RestStore as TrackingStore
from mlflow.utils.rest_utils import MlflowHostCreds, http_request

from modelrollout.api import DatasetRef
from modelrollout.clock import Clock
from modelrollout.errors import RegistryError
from modelrollout.registry.core import (
    DEFAULT_CACHE_TTL_SECONDS,
    BackedRegistry,
    InputSchema,
    RegistryUnreachableError,
    RunFacts,
    VersionFacts,
    artifact_path,
    parse_storage_map,
    unknown_model,
    unknown_version,
    unset_alias,
)

#: Set by :func:`from_settings` unless already in the environment.
HTTP_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
}
#: Secret keys read as credentials: short names, or MLflow's own variable names.
TOKEN_KEYS = ("token", "MLFLOW_TRACKING_TOKEN")
USERNAME_KEYS = ("username", "MLFLOW_TRACKING_USERNAME")
PASSWORD_KEYS = ("password", "MLFLOW_TRACKING_PASSWORD")

NOT_FOUND = "RESOURCE_DOES_NOT_EXIST"
INVALID_PARAMETER = "INVALID_PARAMETER_VALUE"
REFUSED = ("UNAUTHENTICATED", "PERMISSION_DENIED")
MAX_CAUSE_CHARS = 200
MAX_CAUSE_DEPTH = 10


@dataclass(frozen=True)
class Credentials:
    """A bearer token, or a user name and password; shown by no repr."""

    token: str | None = field(default=None, repr=False)
    username: str | None = field(default=None, repr=False)
    password: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.token and (self.username or self.password):
            raise ValueError(
                "MLflow credentials: give a token or a username and password, not both"
            )
        if bool(self.username) != bool(self.password):
            raise ValueError("MLflow credentials: a username needs a password, and the reverse")

    @classmethod
    def from_mapping(cls, data: Mapping[str, str]) -> Credentials:
        """From a Secret's data: ``token``, or ``username`` and ``password`` (or the
        ``MLFLOW_TRACKING_*`` names); other keys are ignored."""

        def first(keys: tuple[str, ...]) -> str | None:
            return next((data[key] for key in keys if data.get(key)), None)

        return cls(first(TOKEN_KEYS), first(USERNAME_KEYS), first(PASSWORD_KEYS))


class _NoSuchRunError(RegistryError):
    """A version's run is gone: the version has no provenance, which is no error."""


class MlflowBackend:
    """The :class:`~modelrollout.registry.core.Backend` that asks an MLflow server."""

    def __init__(self, tracking_uri: str, credentials: Credentials | None = None) -> None:
        parts = urlsplit(tracking_uri)
        if parts.username is not None or parts.password is not None:
            raise ValueError(
                "the MLflow tracking URI carries credentials; put them in the registry's "
                "Secret instead"
            )
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"the MLflow tracking URI must be http(s)://…, not {tracking_uri!r}")
        self.tracking_uri = tracking_uri.rstrip("/")
        creds = credentials or Credentials()
        host = MlflowHostCreds(
            self.tracking_uri, username=creds.username, password=creds.password, token=creds.token
        )
        self._host = host
        self._models = ModelRegistryStore(lambda: host)
        self._runs = TrackingStore(lambda: host)

    @property
    def location(self) -> str:
        return f"MLflow at {self.tracking_uri}"

    # ------------------------------------------------------------ reads

    def version(self, name: str, version: str) -> VersionFacts:
        with self._answering({NOT_FOUND: lambda: self._missing_version(name, version)}):
            found: ModelVersion = self._models.get_model_version(name, version)
        return self._facts(found)

    def version_by_alias(self, name: str, alias: str) -> VersionFacts:
        where = self.location
        with self._answering(
            {
                NOT_FOUND: lambda: unknown_model(name, where),
                INVALID_PARAMETER: lambda: unset_alias(name, alias, where),
            }
        ):
            found: ModelVersion = self._models.get_model_version_by_alias(name, alias)
        return self._facts(found)

    def latest_in_stage(self, name: str, stage: str) -> VersionFacts | None:
        with self._answering({NOT_FOUND: lambda: unknown_model(name, self.location)}):
            found: list[ModelVersion] = self._models.get_latest_versions(name, [stage])
        if not found:
            return None
        return self._facts(max(found, key=lambda v: int(v.version)))

    def run(self, run_id: str) -> RunFacts | None:
        try:
            with self._answering({NOT_FOUND: _NoSuchRunError}):
                run = self._runs.get_run(run_id)
        except _NoSuchRunError:
            return None
        datasets: list[DatasetRef] = []
        for given in run.inputs.dataset_inputs if run.inputs else ():
            dataset = given.dataset
            ref = DatasetRef(dataset.name, dataset.digest or None, _source(dataset.source))
            if ref not in datasets:
                datasets.append(ref)
        return RunFacts(
            run_id=run_id,
            metrics=dict(run.data.metrics),
            tags=dict(run.data.tags),
            datasets=tuple(datasets),
        )

    def input_schema(self, facts: VersionFacts) -> InputSchema | None:
        path = artifact_path(facts, self.location)
        endpoint = f"/api/2.0/mlflow-artifacts/artifacts/{quote(path)}/MLmodel"
        try:
            answer = http_request(self._host, endpoint, "GET")
        except MlflowException as error:
            raise self._unreachable(error) from error
        if answer.status_code == 404:
            return None
        if answer.status_code != 200:
            raise RegistryError(
                f"{self.location} would not give the MLmodel file of {facts.label} "
                f"(HTTP {answer.status_code})"
            )
        return _schema_of(answer.text, facts.label)

    def alias_target(self, name: str, alias: str) -> str | None:
        with self._answering({NOT_FOUND: lambda: unknown_model(name, self.location)}):
            model = self._models.get_registered_model(name)
        target: str | None = dict(model.aliases or {}).get(alias)
        return target

    # ------------------------------------------------------------ writes

    def set_version_tag(self, name: str, version: str, key: str, value: str) -> None:
        with self._answering({NOT_FOUND: lambda: self._missing_version(name, version)}):
            self._models.set_model_version_tag(name, version, ModelVersionTag(key, value))

    def delete_version_tag(self, name: str, version: str, key: str) -> None:
        with self._answering({NOT_FOUND: lambda: self._missing_version(name, version)}):
            self._models.delete_model_version_tag(name, version, key)

    def set_alias(self, name: str, alias: str, version: str) -> None:
        with self._answering({NOT_FOUND: lambda: self._missing_version(name, version)}):
            self._models.set_registered_model_alias(name, alias, version)

    # ------------------------------------------------------------ helpers

    def _facts(self, found: ModelVersion) -> VersionFacts:
        name, version = found.name, str(found.version)
        with self._answering({NOT_FOUND: lambda: self._missing_version(name, version)}):
            download_uri: str = self._models.get_model_version_download_uri(name, version)
        return VersionFacts(
            name=name,
            version=version,
            download_uri=download_uri,
            run_id=found.run_id or None,
            source=found.source or None,
            tags=dict(found.tags or {}),
            stage=found.current_stage or "None",
            status=found.status or "READY",
        )

    def _missing_version(self, name: str, version: str) -> RegistryError:
        """MLflow says the same for an unknown model and an unknown version: ask which."""
        with self._answering({NOT_FOUND: lambda: unknown_model(name, self.location)}):
            self._models.get_registered_model(name)
        return unknown_version(name, version, self.location)

    @contextmanager
    def _answering(
        self, missing: Mapping[str, Callable[[], RegistryError]] | None = None
    ) -> Iterator[None]:
        """MLflow's exceptions as the registry errors the engine turns into conditions."""
        try:
            yield
        except RestException as error:
            make = (missing or {}).get(error.error_code)
            if make is not None:
                raise make() from error
            if error.error_code in REFUSED:
                raise RegistryError(
                    f"{self.location} refused the credentials: {error.message}"
                ) from error
            raise RegistryError(f"{self.location} answered: {error.message}") from error
        except MlflowException as error:
            raise self._unreachable(error) from error

    def _unreachable(self, error: MlflowException) -> RegistryError:
        if error.error_code in REFUSED:
            return RegistryError(f"{self.location} refused the credentials ({error.error_code})")
        return RegistryUnreachableError(f"cannot reach {self.location}: {_root_cause(error)}")


class MlflowRegistry(BackedRegistry):
    """The registry port over an MLflow tracking server, with per-client credentials."""

    def __init__(
        self,
        tracking_uri: str,
        storage_map: Sequence[tuple[str, str]] = (),
        *,
        token: str | None = None,
        username: str | None = None,
        password: str | None = None,
        cache_ttl_seconds: float = DEFAULT_CACHE_TTL_SECONDS,
        clock: Clock | None = None,
    ) -> None:
        backend = MlflowBackend(tracking_uri, Credentials(token, username, password))
        super().__init__(backend, storage_map, cache_ttl_seconds=cache_ttl_seconds, clock=clock)

    def __repr__(self) -> str:
        return f"MlflowRegistry({self.backend.location})"


def from_settings(
    tracking_uri: str, storage_map: str, credentials: Mapping[str, str] | None
) -> MlflowRegistry:
    """The registry for one tracking URI: ``storage_map`` as :func:`parse_storage_map` reads
    it, ``credentials`` a Secret's data (see :meth:`Credentials.from_mapping`)."""
    for name, value in HTTP_DEFAULTS.items():
        os.environ.setdefault(name, value)
    creds = Credentials.from_mapping(credentials or {})
    return MlflowRegistry(
        tracking_uri,
        parse_storage_map(storage_map),
        token=creds.token,
        username=creds.username,
        password=creds.password,
    )


def _source(text: str | None) -> str | None:
    """A dataset source as a person reads it: MLflow stores JSON such as ``{"url": …}``."""
    if not text:
        return None
    try:
        data: Any = json.loads(text)
    except ValueError:
        return text
    if isinstance(data, dict):
        for key in ("url", "uri", "path"):
            if isinstance(data.get(key), str):
                return str(data[key])
    return text


def _schema_of(mlmodel: str, label: str) -> InputSchema | None:
    try:
        document: Any = yaml.safe_load(mlmodel)
        signature = document.get("signature") if isinstance(document, dict) else None
        inputs = signature.get("inputs") if isinstance(signature, dict) else None
        if not inputs:
            return None
        columns = json.loads(inputs) if isinstance(inputs, str) else inputs
        return InputSchema.from_mlflow(columns)
    except (yaml.YAMLError, ValueError, AttributeError, TypeError) as error:
        message = f"the MLmodel file of {label} has an unreadable signature: {error}"
        raise RegistryError(message) from error


def _root_cause(error: BaseException) -> str:
    """The innermost cause (e.g. ``[Errno 111] Connection refused``), not MLflow's wrapping."""
    inner = error
    for _ in range(MAX_CAUSE_DEPTH):
        nxt = inner.__cause__ or inner.__context__
        if nxt is None:
            break
        inner = nxt
    text = str(inner) or type(inner).__name__
    return text if len(text) <= MAX_CAUSE_CHARS else text[: MAX_CAUSE_CHARS - 1] + "…"
