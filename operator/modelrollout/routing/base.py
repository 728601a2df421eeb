"""The router port: one module per implementation (kserve-serverless, kserve-raw).

A router changes the InferenceService and reads back the split KServe reports;
the core never trusts a write until the read-back shows it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from modelrollout.api import ModelVersionRef
from modelrollout.decision import RouteObservation


@dataclass(frozen=True)
class RouteTarget:
    namespace: str
    inference_service: str
    predictor: dict[str, Any] | None = None


class Router(Protocol):
    async def observe(self, target: RouteTarget) -> RouteObservation | None:
        """The split as KServe reports it; None when the InferenceService is absent."""
        ...

    async def set_weight(
        self, target: RouteTarget, stable: ModelVersionRef, canary: ModelVersionRef, weight: int
    ) -> None:
        """Serve ``canary`` beside ``stable`` with ``weight`` percent on the canary."""
        ...

    async def promote(self, target: RouteTarget, model: ModelVersionRef) -> None:
        """Serve ``model`` alone at 100% (also how the first model is deployed)."""
        ...

    async def restore(self, target: RouteTarget, stable: ModelVersionRef) -> None:
        """Put the spec back to ``stable`` alone; called once traffic is at 0."""
        ...
