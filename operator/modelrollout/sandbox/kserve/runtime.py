"""The port that runs one model server per revision, and the instant one for tests.

The controller asks a runtime to ``ensure`` every revision it needs (a new revision, or the
ones taking traffic) and to ``retire`` those that no longer take traffic. The sandbox plugs in
real KServe model servers here; :class:`InstantRuntime` only keeps count.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

RevisionKey = tuple[str, str, str]  # namespace, InferenceService, revision


class RevisionRuntime(Protocol):
    async def ensure(
        self, namespace: str, isvc: str, revision: str, predictor_spec: Mapping[str, Any]
    ) -> bool:
        """Start the revision's model server if it is not running; True once it is ready."""
        ...

    async def retire(self, namespace: str, isvc: str, revision: str) -> None:
        """Stop the revision's model server (nothing happens if it is not running)."""
        ...


class InstantRuntime:
    """Nothing runs: a revision is ready once it has been ensured ``ready_after`` times before
    (0: at once), so tests can hold a revision back for a number of reconciles."""

    def __init__(self, ready_after: int = 0) -> None:
        self.ready_after = ready_after
        self.specs: dict[RevisionKey, Mapping[str, Any]] = {}
        self.retired: list[RevisionKey] = []
        self._calls: dict[RevisionKey, int] = {}

    @property
    def running(self) -> set[RevisionKey]:
        return set(self.specs)

    async def ensure(
        self, namespace: str, isvc: str, revision: str, predictor_spec: Mapping[str, Any]
    ) -> bool:
        key = (namespace, isvc, revision)
        self.specs[key] = predictor_spec
        calls = self._calls.get(key, 0)
        self._calls[key] = calls + 1
        return calls >= self.ready_after

    async def retire(self, namespace: str, isvc: str, revision: str) -> None:
        key = (namespace, isvc, revision)
        if self.specs.pop(key, None) is not None:
            self.retired.append(key)
        self._calls.pop(key, None)
