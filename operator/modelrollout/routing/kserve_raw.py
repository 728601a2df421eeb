"""The ``kserve-raw`` router: KServe's RawDeployment mode, a canary as ``spec.canary[]``.

In RawDeployment mode each predictor spec is a Deployment of its own, named after the
predictor's ``name`` (KServe 0.21's API reference for ``spec.canary``): ``spec.predictor``
serves the stable model and ``spec.canary[0]`` the canary, with ``trafficPercent`` of the
requests. The router writes:

- ``set_weight(stable, canary, w)``: ``spec.predictor.model.storageUri = stable`` and
  ``spec.canary = [{predictor: P, trafficPercent: w}]``, where ``P`` is the stable predictor
  with ``storageUri = canary`` and ``name`` = the canary's variant name (``v<version>``, or a
  digest of its storage URI when it has no version), so the canary runs the same runtime and
  resources; its container is named ``kserve-container`` unless the predictor names it, as
  KServe's schema for a canary requires;
- ``promote(model)``: ``spec.predictor`` becomes the canary's predictor (its name included)
  when the canary serves ``model``, which KServe documents as promoting without a restart: the
  canary's Deployment becomes the predictor's. Otherwise ``storageUri = model``. Either way
  ``spec.canary`` is removed;
- ``restore(stable)``: ``spec.predictor.model.storageUri = stable``, ``spec.canary`` removed;
- an absent InferenceService is created serving one model alone, with the annotation
  ``serving.kserve.io/deploymentMode: RawDeployment``.

``observe`` reads back:

- no InferenceService: None;
- ``stable`` = ``spec.predictor``'s storage URI, ``canary`` = ``spec.canary[0]``'s, if any;
- canary weight = ``trafficPercent`` of the ``status.canaryStatuses`` entry named like the
  canary (KServe names it after the canary's predictor) while the spec has a canary, else 0;
- ready when ``status.observedGeneration == metadata.generation``, the ``Ready`` condition is
  True and, with a canary, that entry says ``ready``.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from typing import Any

from modelrollout.api import ModelVersionRef
from modelrollout.decision import RouteObservation
from modelrollout.routing.kserve import (
    Dialect,
    KServeRouter,
    Patch,
    changes,
    condition_is_true,
    field,
    reconciled,
    storage_uri,
)
from modelrollout.serde import deep_merge, merge_patch

CONTAINER_NAME = "kserve-container"
_NOT_DNS = re.compile(r"[^a-z0-9-]+")


def variant_name(model: ModelVersionRef) -> str:
    """A DNS-label name for ``model``'s canary Deployment: ``v<version>``, else a digest."""
    version = _NOT_DNS.sub("-", (model.version or "").lower()).strip("-")
    if version and len(version) <= 20:
        return f"v{version}"
    return "m" + hashlib.sha256(model.storage_uri.encode()).hexdigest()[:10]


def read_split(obj: Mapping[str, Any]) -> RouteObservation:
    """The split an InferenceService reports (see the module docstring for the mapping)."""
    stable = storage_uri(field(obj, "spec", "predictor"))
    canary = field(obj, "spec", "canary", 0)
    ready = reconciled(obj) and condition_is_true(obj, "Ready")
    isvc = field(obj, "metadata", "name")
    stable_name = field(obj, "spec", "predictor", "name")
    # KServe names a raw deployment after the InferenceService and its predictor's name.
    stable_revision = f"{isvc}-{stable_name}-predictor" if stable_name else f"{isvc}-predictor"
    if not isinstance(canary, Mapping):
        return RouteObservation(
            stable_storage_uri=stable, ready=ready, stable_revision=stable_revision
        )
    name = field(canary, "predictor", "name")
    statuses = [s for s in field(obj, "status", "canaryStatuses") or () if isinstance(s, Mapping)]
    if name:
        status = next((s for s in statuses if s.get("name") == name), {})
    else:
        status = statuses[0] if statuses else {}
    return RouteObservation(
        stable_storage_uri=stable,
        canary_storage_uri=storage_uri(canary.get("predictor")),
        canary_weight=int(status.get("trafficPercent") or 0),
        ready=ready and status.get("ready") is True,
        stable_revision=stable_revision,
        canary_revision=f"{isvc}-{name or 'canary-0'}-predictor",
    )


def weight_patch(
    obj: Mapping[str, Any], stable: ModelVersionRef, canary: ModelVersionRef, weight: int
) -> Patch:
    stable_predictor = deep_merge(
        field(obj, "spec", "predictor") or {}, {"model": {"storageUri": stable.storage_uri}}
    )
    canary_predictor = deep_merge(
        stable_predictor,
        {"name": variant_name(canary), "model": {"storageUri": canary.storage_uri}},
    )
    canary_predictor.pop("canaryTrafficPercent", None)
    canary_predictor["model"].setdefault("name", CONTAINER_NAME)
    entry = {"predictor": canary_predictor, "trafficPercent": weight}
    return changes(
        obj,
        {"spec": {"predictor": {"model": {"storageUri": stable.storage_uri}}, "canary": [entry]}},
    )


def promote_patch(obj: Mapping[str, Any], model: ModelVersionRef) -> Patch:
    predictor = field(obj, "spec", "predictor") or {}
    canary = next(
        (
            c["predictor"]
            for c in field(obj, "spec", "canary") or ()
            if isinstance(c, Mapping) and storage_uri(c.get("predictor")) == model.storage_uri
        ),
        None,
    )
    if canary is None:
        return restore_patch(obj, model)
    return {"spec": {"predictor": merge_patch(predictor, canary), "canary": None}}


def restore_patch(obj: Mapping[str, Any], stable: ModelVersionRef) -> Patch:
    return changes(
        obj, {"spec": {"predictor": {"model": {"storageUri": stable.storage_uri}}, "canary": None}}
    )


class RawRouter(KServeRouter):
    """``kserve-raw``: a canary Deployment beside the stable one (``spec.canary[]``)."""

    dialect = Dialect(
        raw=True,
        read_split=read_split,
        weight_patch=weight_patch,
        promote_patch=promote_patch,
        restore_patch=restore_patch,
    )
