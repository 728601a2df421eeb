"""A metric provider without a server: values from a JSON file.

For sandboxes, tests and the scale benchmark: the file maps a query string to a
number, ``null`` (no data) or ``{"error": "..."}``, and is re-read on every
call so a test can change what the canary "measures" while a rollout runs.
"""

from __future__ import annotations

import json
from pathlib import Path

from modelrollout.decision import Measurement


class StaticMetrics:
    def __init__(self, values: Path) -> None:
        self.values = values

    async def measure(self, query: str, timeout_seconds: float) -> Measurement:
        try:
            table = json.loads(self.values.read_text())
        except (OSError, ValueError) as error:
            return Measurement(error=f"cannot read {self.values}: {error}")
        value = table.get(query)
        if isinstance(value, dict):
            return Measurement(error=str(value.get("error", "error")))
        if value is None:
            return Measurement()
        return Measurement(value=float(value))

    async def is_online(self) -> bool:
        return self.values.exists()
