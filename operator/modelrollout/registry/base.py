"""The registry port (MLflow is the implementation)."""

from __future__ import annotations

from typing import Protocol

from modelrollout.api import ModelVersionRef, RegistryGates
from modelrollout.api import WriteBack as WriteBackSpec
from modelrollout.decision import GateResult, WriteBack


class Registry(Protocol):
    async def resolve(self, uri: str) -> ModelVersionRef:
        """``models:/name/version`` or ``models:/name@alias`` -> an immutable identity."""
        ...

    async def check_gates(
        self, candidate: ModelVersionRef, stable: ModelVersionRef | None, gates: RegistryGates
    ) -> tuple[GateResult, ...]:
        """Every configured gate's verdict on ``candidate``, before any traffic."""
        ...

    async def write_back(self, outcome: WriteBack, spec: WriteBackSpec, rollout: str) -> None:
        """Record the outcome (alias, tags); running it twice changes nothing more."""
        ...
