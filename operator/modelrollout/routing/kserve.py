"""What the two KServe routers share: the InferenceService API, its client, and pure helpers.

Each router module turns a router call into a merge patch with pure functions of the object
it read (so tests check the patches without a server); this module sends them. Creating an
absent InferenceService serves one model alone, labelled as ours, and never carries an
ownerReference: deleting a rollout must not take serving down.
"""

from __future__ import annotations

import asyncio
import copy
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import urllib3
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from modelrollout.api import ModelVersionRef
from modelrollout.decision import RouteObservation
from modelrollout.errors import RouterError
from modelrollout.routing.base import RouteTarget
from modelrollout.serde import deep_merge

GROUP = "serving.kserve.io"
VERSION = "v1beta1"
PLURAL = "inferenceservices"
KIND = "InferenceService"
API_VERSION = f"{GROUP}/{VERSION}"

MERGE_PATCH = "application/merge-patch+json"

MANAGED_BY = "modelrollout.io/managed-by"
MANAGER = "modelrollout"
#: The stable model's storage URI while a serverless canary runs: KServe's status names
#: revisions, not models, so the router keeps what the ``prev`` revision serves here.
STABLE_STORAGE_URI = "modelrollout.io/stable-storage-uri"
DEPLOYMENT_MODE = "serving.kserve.io/deploymentMode"
RAW_DEPLOYMENT = "RawDeployment"

Obj = dict[str, Any]
Patch = dict[str, Any]


# ---------------------------------------------------------------- pure helpers


def field(obj: Any, *path: str | int) -> Any:
    """``obj[path[0]][path[1]]…``, or None as soon as a step is missing or of the wrong kind."""
    for step in path:
        if isinstance(step, int):
            if not isinstance(obj, list) or not -len(obj) <= step < len(obj):
                return None
        elif not isinstance(obj, Mapping):
            return None
        obj = obj[step] if isinstance(step, int) else obj.get(step)
        if obj is None:
            return None
    return obj


def changes(obj: Mapping[str, Any], patch: Mapping[str, Any]) -> Patch:
    """``patch`` without what ``obj`` already has (a null for an absent key counts as had).

    Routers send nothing when nothing changes, so a repeated call is not even a no-op write.
    """
    result: Patch = {}
    for key, value in patch.items():
        before = obj.get(key) if isinstance(obj, Mapping) else None
        if isinstance(value, Mapping) and value:
            inner = changes(before if isinstance(before, Mapping) else {}, value)
            if inner:
                result[key] = inner
        elif value != before:
            result[key] = copy.deepcopy(value)
    return result


def predictor_with_model(predictor: Mapping[str, Any] | None, storage_uri: str) -> Obj:
    """The predictor template (or an empty one) serving ``storage_uri``."""
    return deep_merge(predictor or {}, {"model": {"storageUri": storage_uri}})


def create_body(target: RouteTarget, model: ModelVersionRef, *, raw: bool) -> Obj:
    """A new InferenceService that serves ``model`` alone, built from the target's template."""
    annotations = {MANAGED_BY: MANAGER}
    if raw:
        annotations[DEPLOYMENT_MODE] = RAW_DEPLOYMENT
    else:
        annotations[STABLE_STORAGE_URI] = model.storage_uri
    predictor = predictor_with_model(target.predictor, model.storage_uri)
    predictor.pop("canaryTrafficPercent", None)
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {
            "name": target.inference_service,
            "namespace": target.namespace,
            "labels": {MANAGED_BY: MANAGER},
            "annotations": annotations,
        },
        "spec": {"predictor": predictor},
    }


def storage_uri(predictor: Any) -> str | None:
    """Where a predictor spec loads its model from (``model.storageUri``)."""
    uri = field(predictor, "model", "storageUri")
    return uri if isinstance(uri, str) else None


def reconciled(obj: Mapping[str, Any]) -> bool:
    """Whether KServe's status describes the current spec (observedGeneration caught up)."""
    generation = field(obj, "metadata", "generation")
    return generation is not None and field(obj, "status", "observedGeneration") == generation


def condition_is_true(obj: Mapping[str, Any], kind: str) -> bool:
    for condition in field(obj, "status", "conditions") or ():
        if isinstance(condition, Mapping) and condition.get("type") == kind:
            return condition.get("status") == "True"
    return False


# ---------------------------------------------------------------- what the watch delivered


def _resource_version(obj: Mapping[str, Any]) -> int | None:
    value = field(obj, "metadata", "resourceVersion")
    return int(value) if isinstance(value, str) and value.isdigit() else None


class WatchedInferenceServices:
    """InferenceServices as the operator's watch last delivered them, and as the operator's
    own writes returned them, so that a pass reads its InferenceService without a GET.

    An object newer than the one held replaces it (resourceVersions compared as numbers when
    both are, as every kube-apiserver gives them; otherwise the later arrival wins): a watch
    event delivered after the operator's own write, but older than it, is not taken. An
    entry not refreshed for ``max_age`` seconds is not used (the next read GETs it): should
    the watch miss a change, the pass still sees it, as it did when it polled.
    """

    def __init__(self, max_age: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._max_age = max_age
        self._clock = clock
        self._held: dict[tuple[str, str], tuple[float, Mapping[str, Any]]] = {}

    def get(self, namespace: str, name: str) -> Mapping[str, Any] | None:
        """The object held, if fresh; None: unknown here (it may exist: ask the server)."""
        held = self._held.get((namespace, name))
        if held is None or self._clock() - held[0] > self._max_age:
            return None
        return held[1]

    def seen(self, obj: Mapping[str, Any]) -> bool:
        """``obj`` as the watch, a read or a write answered it; whether it is news (not the
        version held, nor older: a watch that lists again delivers what it delivered)."""
        namespace, name = field(obj, "metadata", "namespace"), field(obj, "metadata", "name")
        if not isinstance(namespace, str) or not isinstance(name, str):
            return False
        held = self._held.get((namespace, name))
        if held is not None and self._older(obj, held[1]):
            return False
        self._held[(namespace, name)] = (self._clock(), obj)
        version = field(obj, "metadata", "resourceVersion")
        return (
            held is None
            or version is None
            or version != field(held[1], "metadata", "resourceVersion")
        )

    def gone(self, namespace: str, name: str, obj: Mapping[str, Any] | None = None) -> None:
        """Deleted (``obj``: its last state, from a watch event), or answered 404."""
        held = self._held.get((namespace, name))
        if held is not None and not (obj is not None and self._older(obj, held[1])):
            del self._held[(namespace, name)]

    def __len__(self) -> int:
        return len(self._held)

    @staticmethod
    def _older(obj: Mapping[str, Any], than: Mapping[str, Any]) -> bool:
        new, old = _resource_version(obj), _resource_version(than)
        return new is not None and old is not None and new < old


# ---------------------------------------------------------------- the client


class InferenceServices:
    """InferenceServices through the sync ``kubernetes`` client, each call in a worker thread.

    Patches go out as ``application/merge-patch+json``: the sync client picks that for a dict
    body anyway, and saying it keeps a later client's default from turning them into JSON
    patches. Failures other than 404 become :class:`RouterError`, and so does a call with no
    answer within ``request_timeout`` seconds (without one, a request the server never answers
    would hold the rollout's pass forever).
    """

    def __init__(
        self,
        api_client: client.ApiClient,
        *,
        request_timeout: float = 30.0,
        watched: WatchedInferenceServices | None = None,
    ) -> None:
        self._api = client.CustomObjectsApi(api_client)
        self._timeout = request_timeout
        self._watched = watched

    async def get(self, namespace: str, name: str) -> Mapping[str, Any] | None:
        if self._watched is not None:
            held = self._watched.get(namespace, name)
            if held is not None:
                return held
        try:
            return self._seen(
                await self._call(
                    self._api.get_namespaced_custom_object, GROUP, VERSION, namespace, PLURAL, name
                )
            )
        except ApiException as error:
            if error.status == 404:
                self._gone(namespace, name)
                return None
            raise _router_error("read", namespace, name, error) from error

    async def create(self, body: Obj) -> Obj:
        namespace, name = body["metadata"]["namespace"], body["metadata"]["name"]
        try:
            return self._seen(
                await self._call(
                    self._api.create_namespaced_custom_object,
                    GROUP,
                    VERSION,
                    namespace,
                    PLURAL,
                    body,
                )
            )
        except ApiException as error:
            raise _router_error("create", namespace, name, error) from error

    async def patch(self, namespace: str, name: str, patch: Patch) -> Obj:
        try:
            return self._seen(await self._patch(namespace, name, patch))
        except ApiException as error:
            if error.status == 404:
                self._gone(namespace, name)
            raise _router_error("patch", namespace, name, error) from error

    def _seen(self, obj: Obj) -> Obj:
        if self._watched is not None:
            self._watched.seen(obj)
        return obj

    def _gone(self, namespace: str, name: str) -> None:
        if self._watched is not None:
            self._watched.gone(namespace, name)

    async def _patch(self, namespace: str, name: str, patch: Patch) -> Obj:
        return await self._call(
            self._api.patch_namespaced_custom_object,
            GROUP,
            VERSION,
            namespace,
            PLURAL,
            name,
            patch,
            _content_type=MERGE_PATCH,
        )

    async def _call(self, method: Callable[..., Any], *args: Any, **kwargs: Any) -> Obj:
        try:
            result = await asyncio.to_thread(
                method, *args, _request_timeout=self._timeout, **kwargs
            )
        except urllib3.exceptions.HTTPError as error:
            raise RouterError(f"the Kubernetes API cannot be reached: {error}") from error
        if not isinstance(result, dict):
            raise RouterError(f"the Kubernetes API answered {type(result).__name__}, not an object")
        return result


def _router_error(doing: str, namespace: str, name: str, error: ApiException) -> RouterError:
    return RouterError(
        f"cannot {doing} InferenceService {namespace}/{name}: {error.status} {error.reason}"
    )


# ---------------------------------------------------------------- the router skeleton


@dataclass(frozen=True)
class Dialect:
    """How one KServe deployment mode reads and writes a canary: pure functions."""

    raw: bool
    #: The split ``obj`` reports, as the router module's docstring maps it.
    read_split: Callable[[Mapping[str, Any]], RouteObservation]
    #: The merge patch serving the canary beside the stable ({} when already so).
    weight_patch: Callable[[Mapping[str, Any], ModelVersionRef, ModelVersionRef, int], Patch]
    #: The merge patch serving one model alone ({} when already so).
    promote_patch: Callable[[Mapping[str, Any], ModelVersionRef], Patch]
    #: The merge patch putting the spec back to the stable alone ({}: nothing to do now).
    restore_patch: Callable[[Mapping[str, Any], ModelVersionRef], Patch]


class KServeRouter:
    """The Router port over one InferenceService; subclasses name their :class:`Dialect`."""

    dialect: ClassVar[Dialect]

    def __init__(
        self,
        api_client: client.ApiClient,
        *,
        request_timeout: float = 30.0,
        watched: WatchedInferenceServices | None = None,
    ) -> None:
        self._isvcs = InferenceServices(
            api_client, request_timeout=request_timeout, watched=watched
        )

    async def observe(self, target: RouteTarget) -> RouteObservation | None:
        obj = await self._isvcs.get(target.namespace, target.inference_service)
        return None if obj is None else self.dialect.read_split(obj)

    async def set_weight(
        self, target: RouteTarget, stable: ModelVersionRef, canary: ModelVersionRef, weight: int
    ) -> None:
        # An absent InferenceService first serves the stable model alone; the next call adds
        # the canary beside it. Creating it with the canary would, in serverless mode, give the
        # canary all traffic: with no revision rolled out before, KServe does not split.
        await self._change(
            target, stable, lambda obj: self.dialect.weight_patch(obj, stable, canary, weight)
        )

    async def promote(self, target: RouteTarget, model: ModelVersionRef) -> None:
        await self._change(target, model, lambda obj: self.dialect.promote_patch(obj, model))

    async def restore(self, target: RouteTarget, stable: ModelVersionRef) -> None:
        await self._change(target, stable, lambda obj: self.dialect.restore_patch(obj, stable))

    async def _change(
        self,
        target: RouteTarget,
        model_if_absent: ModelVersionRef,
        patch_for: Callable[[Mapping[str, Any]], Patch],
    ) -> None:
        namespace, name = target.namespace, target.inference_service
        obj = await self._isvcs.get(namespace, name)
        if obj is None:
            await self._isvcs.create(create_body(target, model_if_absent, raw=self.dialect.raw))
            return
        patch = patch_for(obj)
        if patch:
            await self._isvcs.patch(namespace, name, patch)
