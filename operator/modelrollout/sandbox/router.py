"""The sandbox's ingress: split predictions for an InferenceService across its revisions.

Requests name the InferenceService by a path prefix (no Host header games, so curl and
Locust need nothing special)::

    POST /<namespace>/<isvc>/v1/models/<isvc>:predict   {"instances": [[...], ...]}

The router reads the InferenceService through the ``isvcs`` callable it is given
(``(namespace, name) -> dict | None``) on every request, picks a revision with a seeded RNG by
the weights KServe's status shows, and proxies to that revision's model server, whose base URL
comes from the ``endpoints`` callable (``ProcessRuntime.endpoints``). Weights:

- serverless: ``status.components.predictor.traffic[*]`` (``revisionName``, ``percent``);
- RawDeployment: ``status.canaryStatuses[*].trafficPercent`` for each canary, the rest for the
  predictor; each slot's serving revision comes from the local controller's bookkeeping in
  ``status.annotations`` (see :mod:`modelrollout.sandbox.kserve.revisions`). The metrics
  label a raw revision by its Deployment (``<isvc>-<name>-predictor``), as the raw routing
  adapter names revisions.

``GET /metrics`` exports, in the Prometheus text format, Knative queue-proxy's
``revision_app_request_count`` (counter, no ``_total`` suffix, as queue-proxy exports it) and
``revision_app_request_latencies`` (histogram, milliseconds) with queue-proxy's labels, and
``modelrollout_prediction_value`` (histogram of predicted values per revision). Unknown
InferenceServices, or ones without a ready revision, answer 404 and 503 and count nothing.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp import web
from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import Metric
from prometheus_client.registry import Collector

from modelrollout.sandbox.kserve import revisions
from modelrollout.sandbox.kserve.runtime import RevisionKey
from modelrollout.sandbox.modelserver import LOOPBACK

IsvcSource = Callable[[str, str], Mapping[str, Any] | None]
Endpoints = Callable[[], Mapping[RevisionKey, str]]

# Knative's default latency distribution (milliseconds).
LATENCY_BUCKETS_MS = (
    5, 10, 20, 40, 60, 80, 100, 150, 200, 250, 300, 350, 400, 450, 500,
    600, 700, 800, 900, 1000, 2000, 5000, 10000,
)  # fmt: skip
# load_diabetes targets run from 25 to 346.
PREDICTION_BUCKETS = tuple(float(v) for v in range(25, 351, 25))

_COUNT_LABELS = (
    "namespace_name",
    "service_name",
    "configuration_name",
    "revision_name",
    "pod_name",
    "container_name",
    "response_code",
    "response_code_class",
)
_LATENCY_LABELS = (
    "namespace_name",
    "service_name",
    "configuration_name",
    "revision_name",
    "pod_name",
    "response_code",
    "response_code_class",
)


@dataclass(frozen=True)
class Target:
    """One revision taking ``percent`` of an InferenceService's traffic."""

    revision: str  # the runtime's revision name (endpoint key)
    label: str  # revision_name in the metrics
    configuration: str
    percent: int


def targets(isvc: Mapping[str, Any]) -> list[Target]:
    """The revisions the status sends traffic to, with their percent (positive only)."""
    status = isvc.get("status") or {}
    name = isvc["metadata"]["name"]
    if revisions.deployment_mode(isvc) == revisions.RAW_DEPLOYMENT:
        return _raw_targets(isvc)
    component = (status.get("components") or {}).get(revisions.PREDICTOR) or {}
    found = []
    for entry in component.get("traffic") or ():
        revision, percent = entry.get("revisionName"), int(entry.get("percent") or 0)
        if isinstance(revision, str) and percent > 0:
            found.append(Target(revision, revision, f"{name}-predictor", percent))
    return found


def _raw_targets(isvc: Mapping[str, Any]) -> list[Target]:
    book = revisions.read_book(isvc)
    statuses = {c.get("name"): c for c in (isvc.get("status") or {}).get("canaryStatuses") or ()}
    found, canary_total = [], 0
    for variant, slot in revisions.canaries(isvc):
        percent = int((statuses.get(variant) or {}).get("trafficPercent") or 0)
        if percent > 0 and slot in book.serving:
            found.append(Target(book.serving[slot], slot, slot, percent))
            canary_total += percent
    slot = revisions.predictor_slot(isvc)
    if slot in book.serving and canary_total < 100:
        found.insert(0, Target(book.serving[slot], slot, slot, 100 - canary_total))
    return found


def choose(found: list[Target], rng: random.Random) -> Target:
    """One target, drawn by percent."""
    total = sum(t.percent for t in found)
    point = rng.random() * total
    for target in found:
        point -= target.percent
        if point < 0:
            return target
    return found[-1]


class _RequestCounter(Collector):
    """``revision_app_request_count`` as queue-proxy names it (prometheus_client would add
    ``_total`` to a Counter)."""

    def __init__(self) -> None:
        self.counts: dict[tuple[str, ...], float] = {}

    def inc(self, labels: tuple[str, ...]) -> None:
        self.counts[labels] = self.counts.get(labels, 0.0) + 1.0

    def collect(self) -> Iterator[Metric]:
        metric = Metric(
            "revision_app_request_count",
            "The number of requests that are routed to user-container",
            "counter",
        )
        for labels, value in sorted(self.counts.items()):
            metric.add_sample(
                "revision_app_request_count", dict(zip(_COUNT_LABELS, labels, strict=True)), value
            )
        yield metric


class Router:
    """The aiohttp application and its metrics (see the module docstring)."""

    def __init__(
        self,
        isvcs: IsvcSource,
        endpoints: Endpoints,
        *,
        seed: int | None = None,
        upstream_timeout: float = 30.0,
    ) -> None:
        self.isvcs = isvcs
        self.endpoints = endpoints
        self.rng = random.Random(seed)
        self.upstream_timeout = upstream_timeout
        self.registry = CollectorRegistry()
        self._counter = _RequestCounter()
        self.registry.register(self._counter)
        self._latency = Histogram(
            "revision_app_request_latencies",
            "The response time in millisecond",
            _LATENCY_LABELS,
            buckets=LATENCY_BUCKETS_MS,
            registry=self.registry,
        )
        self._predictions = Histogram(
            "modelrollout_prediction_value",
            "Predicted values, per revision",
            ("namespace_name", "revision_name"),
            buckets=PREDICTION_BUCKETS,
            registry=self.registry,
        )
        self._session: aiohttp.ClientSession | None = None

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_post("/{namespace}/{isvc}/v1/models/{verb}", self._predict)
        app.cleanup_ctx.append(self._client)
        return app

    async def _client(self, _: web.Application) -> Any:
        timeout = aiohttp.ClientTimeout(total=self.upstream_timeout)
        # A new connection per request: uvicorn may close a kept-alive one after an error
        # answer, and a reused closed connection would show up as a 502 nobody caused.
        connector = aiohttp.TCPConnector(force_close=True)
        async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
            self._session = session
            yield
        self._session = None

    async def _metrics(self, _: web.Request) -> web.Response:
        body = generate_latest(self.registry)
        return web.Response(body=body, headers={"Content-Type": "text/plain; version=0.0.4"})

    async def _predict(self, request: web.Request) -> web.Response:
        namespace, name = request.match_info["namespace"], request.match_info["isvc"]
        if request.match_info["verb"] != f"{name}:predict":
            return _error(404, f"no model {request.match_info['verb']!r} here")
        isvc = self.isvcs(namespace, name)
        if isvc is None:
            return _error(404, f"InferenceService {namespace}/{name} not found")
        split = targets(isvc)
        if not split:
            return _error(503, f"InferenceService {namespace}/{name} has no ready revision")
        target = choose(split, self.rng)
        base = self.endpoints().get((namespace, name, target.revision))
        if base is None:
            return _error(503, f"revision {target.revision} has no model server")
        body = await request.read()
        started = time.perf_counter()
        assert self._session is not None
        try:
            async with self._session.post(
                f"{base}/v1/models/{name}:predict",
                data=body,
                headers={"Content-Type": "application/json"},
            ) as upstream:
                code, payload = upstream.status, await upstream.read()
        except (aiohttp.ClientError, TimeoutError) as error:
            code, payload = 502, json.dumps({"error": type(error).__name__}).encode()
        elapsed_ms = (time.perf_counter() - started) * 1000.0
        self._record(namespace, name, target, code, elapsed_ms, payload)
        return web.Response(
            status=code,
            body=payload,
            headers={"Content-Type": "application/json", "X-Revision": target.revision},
        )

    def _record(
        self,
        namespace: str,
        name: str,
        target: Target,
        code: int,
        elapsed_ms: float,
        payload: bytes,
    ) -> None:
        pod = f"{target.label}-deployment-sandbox"
        common = (namespace, f"{name}-predictor", target.configuration, target.label, pod)
        code_class = f"{code // 100}xx"
        self._counter.inc((*common, "queue-proxy", str(code), code_class))
        self._latency.labels(*common, str(code), code_class).observe(elapsed_ms)
        if code != 200:
            return
        try:
            predictions = json.loads(payload).get("predictions") or []
        except (ValueError, AttributeError):
            return
        histogram = self._predictions.labels(namespace, target.label)
        for value in predictions:
            if isinstance(value, int | float) and not isinstance(value, bool):
                histogram.observe(float(value))


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


async def serve(router: Router, port: int) -> web.AppRunner:
    """Start the router on 127.0.0.1:``port``; clean up the returned runner to stop it."""
    runner = web.AppRunner(router.app())
    await runner.setup()
    await web.TCPSite(runner, LOOPBACK, port).start()
    return runner
