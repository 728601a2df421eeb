"""A metric provider without a server: answers from a JSON file.

For sandboxes, tests and the scale benchmark. The file maps a query string to
its answer and is read again whenever it changed (its size, inode or modification
time differ, or it was modified within :data:`SETTLE_SECONDS` of the last read, which
a coarse file clock could hide), so a test can change what the canary "measures"
while a rollout runs:

- a number (or a string such as ``"NaN"`` or ``"+Inf"``): one unlabelled sample;
- ``null``, or no entry: no data;
- a list of ``{"labels": {...}, "value": ...}``: an instant vector;
- ``{"error": "..."}``: the provider is unavailable; ``{"badQuery": "..."}``: the
  query is refused; ``{"delaySeconds": n, "answer": ...}``: ``answer`` after n
  seconds (a query timeout shorter than that makes it unavailable).

Answers go through the same :class:`SampleProvider` as Prometheus's, so no
data, NaN, several series and errors mean the same thing here as there
(``tests/test_metrics_contract.py`` runs one suite against both).
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path
from typing import Any

from modelrollout.metrics.base import BadQuery, Sample, SampleProvider, Unavailable

#: A file modified less than this before it was read may change again without its
#: modification time changing (the file clock is coarse): it is read again next time.
SETTLE_SECONDS = 0.1


class StaticMetrics(SampleProvider):
    def __init__(self, values: Path) -> None:
        self.values = values
        #: (size, inode, mtime_ns) of the file as last read, and what it held.
        self._read: tuple[tuple[int, int, int], dict[str, Any]] | None = None

    async def samples(self, query: str, timeout_seconds: float) -> list[Sample]:
        return await self._answer(query, self._table().get(query), timeout_seconds)

    def _table(self) -> dict[str, Any]:
        """The file's query answers; parsed again only when the file changed (a bench
        with 1,000 rollouts spent a fifth of each pass opening and parsing it)."""
        try:
            stat = os.stat(self.values)
            key = (stat.st_size, stat.st_ino, stat.st_mtime_ns)
            if self._read is not None and self._read[0] == key:
                return self._read[1]
            table = json.loads(self.values.read_text())
        except (OSError, ValueError) as error:
            raise Unavailable(f"cannot read {self.values}: {error}") from error
        if not isinstance(table, dict):
            raise Unavailable(f"{self.values} is not a JSON object of query answers")
        settled = time.time_ns() - stat.st_mtime_ns > SETTLE_SECONDS * 1e9
        self._read = (key, table) if settled else None
        return table

    async def is_online(self) -> bool:
        return self.values.exists()

    async def _answer(self, query: str, answer: Any, timeout_seconds: float) -> list[Sample]:
        if isinstance(answer, dict) and "delaySeconds" in answer:
            delay = float(answer["delaySeconds"])
            try:
                await asyncio.wait_for(asyncio.sleep(delay), timeout_seconds)
            except TimeoutError:
                raise Unavailable(
                    f"{self.values} did not answer within {timeout_seconds:g}s"
                ) from None
            return await self._answer(query, answer.get("answer"), timeout_seconds)
        try:
            return _samples(answer)
        except (TypeError, ValueError, KeyError) as error:
            raise Unavailable(f"{self.values}: cannot read the answer to {query!r}") from error


def _samples(answer: Any) -> list[Sample]:
    if answer is None:
        return []
    if isinstance(answer, dict):
        if "error" in answer:
            raise Unavailable(str(answer["error"]))
        if "badQuery" in answer:
            raise BadQuery(f"bad query: {answer['badQuery']}")
        raise ValueError("unknown answer")
    if isinstance(answer, list):
        return [
            Sample(float(item["value"]), {str(k): str(v) for k, v in item["labels"].items()})
            for item in answer
        ]
    if isinstance(answer, bool):
        raise ValueError("a boolean is no number")
    return [Sample(float(answer))]
