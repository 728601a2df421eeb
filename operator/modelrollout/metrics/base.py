"""The metric provider port. Providers return numbers; judges judge them.

Every provider answers a query with samples (labels and a value) or one of the
:class:`QueryError` kinds; :class:`SampleProvider` turns samples into a
:class:`Measurement` (one number) or a vector keyed by a label, the same way
for every provider, so a fake cannot drift from the real one.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from modelrollout import api
from modelrollout.api import Reason
from modelrollout.decision import Measurement
from modelrollout.errors import MetricsError

#: How much of a rendered query goes into status evidence.
EVIDENCE_QUERY_CHARS = 240


class MetricProvider(Protocol):
    async def measure(self, query: str, timeout_seconds: float) -> Measurement:
        """Run ``query``; no result is ``Measurement()``, a failure carries ``error``."""
        ...

    async def is_online(self) -> bool: ...


class VectorProvider(MetricProvider, Protocol):
    async def vector(self, query: str, timeout_seconds: float, label: str) -> dict[str, float]:
        """One value per value of ``label`` (e.g. per ``le`` bucket); an unlabelled
        sample is keyed ``""``. Raises :class:`QueryError`."""
        ...


class TemplateSource(Protocol):
    async def get(self, namespace: str, name: str) -> api.MetricTemplateSpec:
        """The spec of MetricTemplate ``namespace/name``; raises :class:`TemplateNotFound`."""
        ...


class QueryError(MetricsError):
    """A query that gave no usable answer."""


class NoData(QueryError):  # noqa: N818 (the port's vocabulary, like kopf's NotFound)
    """The query ran and matched nothing (or only NaN)."""


class Unavailable(QueryError):  # noqa: N818 (the port's vocabulary, like kopf's NotFound)
    """The provider could not answer: connection refused, timeout, a 5xx, refused credentials."""


class BadQuery(QueryError):  # noqa: N818 (the port's vocabulary, like kopf's NotFound)
    """The provider refused the query, or its result has the wrong shape for its use."""


class TemplateNotFound(MetricsError):  # noqa: N818 (the port's vocabulary, like kopf's NotFound)
    """A metric refers to a MetricTemplate that does not exist."""

    reason = Reason.INVALID_SPEC


@dataclass(frozen=True)
class Sample:
    value: float
    labels: Mapping[str, str] = field(default_factory=dict)


def evidence_query(query: str) -> str:
    """The query for status evidence: whitespace folded, long ones truncated."""
    folded = " ".join(query.split())
    if len(folded) <= EVIDENCE_QUERY_CHARS:
        return folded
    return folded[: EVIDENCE_QUERY_CHARS - 1] + "…"


def by_label(samples: Sequence[Sample], label: str) -> dict[str, float]:
    """Samples keyed by ``label`` (all ``""`` when it is empty); NaN samples are
    dropped; nothing left is :class:`NoData`."""
    out: dict[str, float] = {}
    for sample in samples:
        if math.isnan(sample.value):
            continue
        if label and label not in sample.labels:
            raise BadQuery(f"a series has no {label!r} label; aggregate it by ({label})")
        key = sample.labels[label] if label else ""
        if key in out:
            if not label:
                raise BadQuery(too_many_series(len(samples)))
            count = sum(1 for s in samples if s.labels.get(label) == key)
            raise BadQuery(
                f"query returned {count} series with {label}={key!r}; aggregate it by ({label})"
            )
        out[key] = sample.value
    if not out:
        raise NoData("no data")
    return out


def too_many_series(count: int) -> str:
    return f"query returned {count} series; aggregate it (e.g. with sum)"


class SampleProvider(ABC):
    """``measure`` and ``vector`` on top of one ``samples`` call, the same for every provider."""

    @abstractmethod
    async def samples(self, query: str, timeout_seconds: float) -> list[Sample]:
        """The instant-vector (or scalar) result of ``query``; raises :class:`QueryError`."""

    async def measure(self, query: str, timeout_seconds: float) -> Measurement:
        evidence = {"query": evidence_query(query)}
        try:
            samples = await self.samples(query, timeout_seconds)
        except QueryError as error:
            return Measurement(error=str(error), evidence=evidence)
        evidence["samples"] = str(len(samples))
        if len(samples) > 1:
            return Measurement(error=too_many_series(len(samples)), evidence=evidence)
        if not samples:
            return Measurement(evidence=evidence)
        value = samples[0].value
        if math.isnan(value):
            return Measurement(evidence={**evidence, "result": "NaN"})
        return Measurement(value=value, evidence=evidence)

    async def vector(self, query: str, timeout_seconds: float, label: str) -> dict[str, float]:
        return by_label(await self.samples(query, timeout_seconds), label)
