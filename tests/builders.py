"""Builders for specs, model identities and observations used across the core tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from modelrollout import api, serde
from modelrollout.decision import (
    DesiredModel,
    GateResult,
    Measurement,
    Observations,
    RouteObservation,
)

T0 = datetime(2026, 11, 27, 12, 0, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def model(version: int, name: str = "fraud", commit: str | None = None) -> api.ModelVersionRef:
    return api.ModelVersionRef(
        uri=f"models:/{name}/{version}",
        storage_uri=f"s3://models/{name}/{version}",
        name=name,
        version=str(version),
        run_id=f"run{version}",
        git_commit=commit,
    )


V1, V2, V3 = model(1), model(2), model(3)


def spec(
    steps: list[dict[str, Any]] | None = None,
    metrics: list[dict[str, Any]] | None = None,
    interval: str = "30s",
    **extra: Any,
) -> api.ModelRolloutSpec:
    """A ModelRollout spec from plain JSON, as the API server would hand it over."""
    body: dict[str, Any] = {
        "model": {"uri": "models:/fraud/2"},
        "target": {"inferenceService": "fraud"},
        "strategy": {
            "steps": steps if steps is not None else [{"setWeight": 20}, {"setWeight": 50}],
        },
    }
    if metrics is not None:
        body["strategy"]["analysis"] = {"interval": interval, "metrics": metrics}
    body.update(extra)
    return serde.from_json(api.ModelRolloutSpec, body)


def metric(name: str = "success-rate", **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": name,
        "query": f"{name}_query",
        "thresholdRange": {"min": 0.99},
    }
    body.update(extra)
    return body


def stable_only(ref: api.ModelVersionRef) -> RouteObservation:
    return RouteObservation(stable_storage_uri=ref.storage_uri)


def split(
    stable: api.ModelVersionRef, canary: api.ModelVersionRef, weight: int
) -> RouteObservation:
    return RouteObservation(
        stable_storage_uri=stable.storage_uri,
        canary_storage_uri=canary.storage_uri,
        canary_weight=weight,
    )


def wants(
    ref: api.ModelVersionRef,
    route: RouteObservation | None = None,
    gates: tuple[GateResult, ...] = (),
    **measurements: float | None,
) -> Observations:
    """Observations where the source asks for ``ref``; kwargs are metric values
    (underscores become dashes; ``None`` means no data)."""
    return Observations(
        desired=DesiredModel(ref, gates),
        route=route,
        measurements={k.replace("_", "-"): Measurement(value=v) for k, v in measurements.items()},
        generation=1,
    )


def status(**fields: Any) -> api.ModelRolloutStatus:
    return api.ModelRolloutStatus(**fields)


def stable_status(ref: api.ModelVersionRef = V1) -> api.ModelRolloutStatus:
    return api.ModelRolloutStatus(phase=api.Phase.SUCCEEDED, stable=ref)
