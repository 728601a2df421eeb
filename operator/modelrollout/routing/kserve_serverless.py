"""The ``kserve-serverless`` router: one predictor, ``canaryTrafficPercent``, Knative revisions.

KServe (serverless mode) makes a new Knative revision for every change of the predictor and
remembers the last one that took all traffic (``latestRolledoutRevision``). With
``canaryTrafficPercent: w`` it sends ``w`` percent to the newest revision and the rest to that
rolled-out one; without it, the newest ready revision takes everything (KServe docs: "Canary
Rollout Strategy", "Canary Rollout Example"). The router writes:

- ``set_weight(stable, canary, w)``: ``spec.predictor.model.storageUri = canary``,
  ``spec.predictor.canaryTrafficPercent = w`` and the annotation
  ``modelrollout.io/stable-storage-uri = stable`` in one patch. The annotation is written only
  with a canary, never alone: KServe copies the InferenceService's annotations into the
  revision template, so a change of it by itself would start a new revision.
- ``promote(model)``: ``storageUri = model``, ``canaryTrafficPercent`` removed (null). When the
  canary already is ``model`` no revision is made: the canary's revision takes 100%.
- ``restore(stable)``, in two calls (the engine repeats it until the split is observed):
  first ``storageUri = stable`` with ``canaryTrafficPercent: 0``, which builds a new revision of
  the stable model while the rolled-out stable revision keeps all traffic; then, once that
  revision is ready, ``canaryTrafficPercent`` removed. Removing the field at once would not be
  safe: Knative's ``latestRevision`` target follows the latest *ready* revision, which until
  the new one is up is the canary's, so the canary would get 100% for that time.
- An absent InferenceService is created serving one model alone (see ``kserve.py``).

``observe`` reads back only what KServe reports:

- no InferenceService: None;
- ready only when ``status.observedGeneration == metadata.generation``, the ``Ready``
  condition is True, ``latestReadyRevision == latestCreatedRevision`` and the traffic entry with
  ``latestRevision: true`` names that revision: the spec's revision is up and routed;
- ``canaryTrafficPercent`` unset and no ``prev`` entry: one model, ``stable = storageUri``;
- ``canaryTrafficPercent`` set: ``canary = storageUri``, ``stable`` = the annotation (KServe's
  status names revisions, not models), canary weight = the ``latestRevision`` entry's percent
  when that entry is the spec's revision, else 0 (Knative still routes that share to an older
  revision);
- ``canaryTrafficPercent`` unset while a ``prev`` entry remains: KServe has not caught up, so
  one model, not ready.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from modelrollout.api import ModelVersionRef
from modelrollout.decision import RouteObservation
from modelrollout.routing.kserve import (
    STABLE_STORAGE_URI,
    Dialect,
    KServeRouter,
    Patch,
    changes,
    condition_is_true,
    field,
    reconciled,
    storage_uri,
)

CANARY_PERCENT = "canaryTrafficPercent"


def read_split(obj: Mapping[str, Any]) -> RouteObservation:
    """The split an InferenceService reports (see the module docstring for the mapping)."""
    predictor = field(obj, "spec", "predictor") or {}
    uri = storage_uri(predictor)
    percent = predictor.get(CANARY_PERCENT)
    component = field(obj, "status", "components", "predictor") or {}
    traffic = [t for t in component.get("traffic") or () if isinstance(t, Mapping)]
    latest = next((t for t in traffic if t.get("latestRevision") is True), None)
    has_prev = any(t.get("tag") == "prev" for t in traffic)
    created = component.get("latestCreatedRevision")
    spec_routed = latest is not None and bool(created) and latest.get("revisionName") == created
    ready = (
        reconciled(obj)
        and condition_is_true(obj, "Ready")
        and component.get("latestReadyRevision") == created
        and spec_routed
    )
    latest_name = latest.get("revisionName") if latest is not None else None
    prev_name = next((t.get("revisionName") for t in traffic if t.get("tag") == "prev"), None)
    if percent is None:
        return RouteObservation(
            stable_storage_uri=uri, ready=ready and not has_prev, stable_revision=latest_name
        )
    weight = int(latest.get("percent") or 0) if latest is not None and spec_routed else 0
    annotations = field(obj, "metadata", "annotations") or {}
    return RouteObservation(
        stable_storage_uri=annotations.get(STABLE_STORAGE_URI),
        canary_storage_uri=uri,
        canary_weight=weight,
        ready=ready,
        stable_revision=prev_name,
        canary_revision=latest_name if spec_routed else None,
    )


def weight_patch(
    obj: Mapping[str, Any], stable: ModelVersionRef, canary: ModelVersionRef, weight: int
) -> Patch:
    return changes(
        obj,
        {
            "metadata": {"annotations": {STABLE_STORAGE_URI: stable.storage_uri}},
            "spec": {
                "predictor": {
                    "model": {"storageUri": canary.storage_uri},
                    CANARY_PERCENT: weight,
                }
            },
        },
    )


def promote_patch(obj: Mapping[str, Any], model: ModelVersionRef) -> Patch:
    return changes(
        obj,
        {"spec": {"predictor": {"model": {"storageUri": model.storage_uri}, CANARY_PERCENT: None}}},
    )


def restore_patch(obj: Mapping[str, Any], stable: ModelVersionRef) -> Patch:
    predictor = field(obj, "spec", "predictor") or {}
    if storage_uri(predictor) != stable.storage_uri:
        # Build the stable model's new revision behind a 0% canary: the rolled-out revision
        # keeps all traffic until the new one is ready.
        return changes(
            obj,
            {
                "spec": {
                    "predictor": {"model": {"storageUri": stable.storage_uri}, CANARY_PERCENT: 0}
                }
            },
        )
    if predictor.get(CANARY_PERCENT) is None or not _latest_revision_ready(obj):
        return {}
    return {"spec": {"predictor": {CANARY_PERCENT: None}}}


def _latest_revision_ready(obj: Mapping[str, Any]) -> bool:
    component = field(obj, "status", "components", "predictor") or {}
    created = component.get("latestCreatedRevision")
    return reconciled(obj) and bool(created) and component.get("latestReadyRevision") == created


class ServerlessRouter(KServeRouter):
    """``kserve-serverless``: KServe's serverless canary (``canaryTrafficPercent``)."""

    dialect = Dialect(
        raw=False,
        read_split=read_split,
        weight_patch=weight_patch,
        promote_patch=promote_patch,
        restore_patch=restore_patch,
    )
