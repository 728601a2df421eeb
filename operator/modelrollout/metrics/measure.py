"""One metric's measurement: render its queries, ask the provider, shape the numbers for its judge.

- ``threshold``: one scalar query, inline or the template's ``query``.
- ``sequential``: the template's ``counts.total`` and ``counts.bad`` (or else
  ``counts.buckets``), run once per arm with ``{{ revision }}`` set to the
  canary's, then the stable's revision: ``Measurement(canary={"total": n,
  "bad": b}, stable={...})``, or bucket counts keyed by ``le``.
- ``drift``: ``counts.buckets`` per arm the same way.

A template that cannot be rendered raises :class:`TemplateError` (the engine
reports InvalidSpec); a revision KServe has not named yet, a provider error or
a malformed result becomes a measurement with an ``error`` (ERROR); no canary
data is no data (INCONCLUSIVE, never a pass). A stable arm with no data, and
no bad-event series at all, count as zero.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping

from modelrollout import api, durations, templates
from modelrollout.decision import Measurement
from modelrollout.metrics.base import NoData, QueryError, VectorProvider, evidence_query
from modelrollout.templates import MissingValue, TemplateError

ProviderFor = Callable[[api.PrometheusProvider | None], VectorProvider]

TOTAL, BAD = "total", "bad"
_ARMS = (("canary", templates.CANARY_REVISION), ("stable", templates.STABLE_REVISION))


async def measure_metric(
    metric: api.MetricSpec,
    template: api.MetricTemplateSpec | None,
    variables: Mapping[str, str],
    provider_for: ProviderFor,
    *,
    timeout_seconds: float = 10.0,
) -> Measurement:
    """Measure ``metric`` (with ``template`` when it has a ``templateRef``).

    ``variables`` is the standard set from :func:`modelrollout.templates.variables`;
    ``provider_for`` gives the provider for the template's Prometheus (None: the
    operator's default, for inline queries); ``timeout_seconds`` applies to
    inline queries, a template's queries use its provider's timeout.
    """
    settings = template.provider.prometheus if template else None
    provider = provider_for(settings)
    try:
        timeout = durations.parse(settings.timeout) if settings else timeout_seconds
    except ValueError as error:
        raise TemplateError(
            f"metric {metric.name!r}: provider.prometheus.timeout: {error}"
        ) from None
    try:
        if metric.judge == api.Judge.THRESHOLD:
            query = templates.render(_scalar_query(metric, template), variables)
            return await provider.measure(query, timeout)
        counts = _counts(metric, template)
        if metric.judge == api.Judge.SEQUENTIAL and counts.total and counts.bad:
            return await _events(provider, counts.total, counts.bad, variables, timeout)
        if counts.buckets:
            return await _buckets(provider, counts.buckets, variables, timeout)
        raise TemplateError(
            f"metric {metric.name!r}: its MetricTemplate has no counts.buckets "
            f"for the {metric.judge} judge"
        )
    except MissingValue as error:
        return Measurement(error=f"{error}: is the InferenceService reporting its revisions?")


def _scalar_query(metric: api.MetricSpec, template: api.MetricTemplateSpec | None) -> str:
    query = metric.query if template is None else template.query
    if query is None:
        raise TemplateError(
            f"metric {metric.name!r}: its MetricTemplate has no query for the threshold judge"
        )
    if any(m[1] == templates.REVISION for m in templates.PLACEHOLDER.finditer(query)):
        # Not a revision KServe has yet to name: it never has a value here, so say so.
        raise TemplateError(
            f"metric {metric.name!r}: {{{{ {templates.REVISION} }}}} is only set in count "
            f"queries; use {{{{ {templates.CANARY_REVISION} }}}} or "
            f"{{{{ {templates.STABLE_REVISION} }}}}"
        )
    return query


def _counts(metric: api.MetricSpec, template: api.MetricTemplateSpec | None) -> api.CountQueries:
    if template is None or template.counts is None:
        raise TemplateError(
            f"metric {metric.name!r}: the {metric.judge} judge needs a MetricTemplate "
            "with count queries"
        )
    return template.counts


async def _events(
    provider: VectorProvider,
    total: str,
    bad: str,
    variables: Mapping[str, str],
    timeout: float,
) -> Measurement:
    """Total and bad events per arm; the canary's total must have data."""
    rendered = {
        (arm, kind): templates.render(query, templates.for_arm(variables, revision))
        for arm, revision in _ARMS
        for kind, query in ((TOTAL, total), (BAD, bad))
    }
    evidence = {f"query.{kind}": evidence_query(rendered["canary", kind]) for kind in (TOTAL, BAD)}
    keys = list(rendered)
    results = await asyncio.gather(
        *(_single(provider, rendered[key], timeout) for key in keys), return_exceptions=True
    )
    counts: dict[tuple[str, str], float] = {}
    for key, result in zip(keys, results, strict=True):
        if isinstance(result, NoData):
            if key == ("canary", TOTAL):
                return Measurement(evidence={**evidence, "samples.canary": "0"})
            result = 0.0
        if isinstance(result, QueryError):
            return Measurement(error=f"{key[0]} {key[1]}: {result}", evidence=evidence)
        if isinstance(result, BaseException):
            raise result
        counts[key] = result
    return Measurement(
        canary={kind: counts["canary", kind] for kind in (TOTAL, BAD)},
        stable={kind: counts["stable", kind] for kind in (TOTAL, BAD)},
        evidence=evidence,
    )


async def _buckets(
    provider: VectorProvider, query: str, variables: Mapping[str, str], timeout: float
) -> Measurement:
    """Histogram (or per-class) counts per arm keyed by ``le``; the canary's must have data."""
    rendered = [templates.render(query, templates.for_arm(variables, rev)) for _, rev in _ARMS]
    evidence = {"query.buckets": evidence_query(rendered[0])}
    results = await asyncio.gather(
        *(provider.vector(text, timeout, "le") for text in rendered), return_exceptions=True
    )
    arms: dict[str, dict[str, float]] = {}
    for (arm, _), result in zip(_ARMS, results, strict=True):
        if isinstance(result, NoData):
            if arm == "canary":
                return Measurement(evidence={**evidence, "samples.canary": "0"})
            result = {}
        if isinstance(result, QueryError):
            return Measurement(error=f"{arm} buckets: {result}", evidence=evidence)
        if isinstance(result, BaseException):
            raise result
        arms[arm] = _ordered(result)
        evidence[f"samples.{arm}"] = str(len(result))
    return Measurement(canary=arms["canary"], stable=arms["stable"], evidence=evidence)


async def _single(provider: VectorProvider, query: str, timeout: float) -> float:
    (value,) = (await provider.vector(query, timeout, "")).values()
    return value


def _ordered(buckets: dict[str, float]) -> dict[str, float]:
    """Buckets by their bound, ``+Inf`` last; class labels (not numbers) by name."""
    try:
        return dict(sorted(buckets.items(), key=lambda item: float(item[0])))
    except ValueError:
        return dict(sorted(buckets.items()))
