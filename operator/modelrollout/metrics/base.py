"""The metric provider port. Providers return numbers; judges judge them."""

from __future__ import annotations

from typing import Protocol

from modelrollout.decision import Measurement


class MetricProvider(Protocol):
    async def measure(self, query: str, timeout_seconds: float) -> Measurement:
        """Run ``query``; no result is ``Measurement()``, a failure carries ``error``."""
        ...

    async def is_online(self) -> bool: ...
