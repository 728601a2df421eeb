"""The operator's own telemetry: Prometheus metrics and the ``/metrics``, ``/healthz`` and
``/readyz`` server (``MODELROLLOUT_METRICS_ADDRESS``).

What a pass did is read from the status it started from and the status it produced, so the
engine and the pure core stay unaware of metrics. Labels are bounded: a rollout's namespace and
name, an analysis metric's name, and enum values (phase, verdict, outcome, reason, error kind);
never a model version, a URI or a message. A deleted rollout's series are removed.

``/healthz`` answers from the operator's event loop, so an answer means the loop runs.
``/readyz`` answers 200 once the startup handler has finished and the last check that the API
server answers succeeded; the check runs in the background (``GET /version``, which needs no
RBAC grant), never per request.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
)

from modelrollout import api, serde
from modelrollout.api import GitSource as GitSourceSpec
from modelrollout.api import ModelVersionRef, RegistryGates
from modelrollout.api import WriteBack as WriteBackSpec
from modelrollout.decision import GateResult, WriteBack
from modelrollout.gitsource.base import GitCredentials, GitSource, ManifestRevision
from modelrollout.registry.base import Registry

log = logging.getLogger(__name__)

METRICS_PATH = "/metrics"
HEALTH_PATH = "/healthz"
READY_PATH = "/readyz"

ROLLOUT = ("namespace", "name")
#: The sequential judge's evidence that is a number worth a time series, by exported label.
EVIDENCE_KEYS = {"eValueHarm": "e_value_harm", "eValueWithin": "e_value_within"}
#: One pass: observing through the ports, deciding and carrying out (seconds).
DECISION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
#: A git fetch or a registry call: network round trips, sometimes a clone.
FETCH_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class Telemetry:
    """The metric objects, on a registry of their own (one per operator, one per test)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        on = self.registry
        self.rollouts = Gauge(
            "modelrollout_rollouts", "ModelRollouts handled, by phase.", ["phase"], registry=on
        )
        self.rollout_phase = Gauge(
            "modelrollout_rollout_phase",
            "1 for the phase a ModelRollout is in, 0 for the others.",
            [*ROLLOUT, "phase"],
            registry=on,
        )
        self.canary_weight = Gauge(
            "modelrollout_canary_weight",
            "Percent of the traffic the canary gets (status.canaryWeight).",
            ROLLOUT,
            registry=on,
        )
        self.verdicts = Counter(
            "modelrollout_analysis_verdicts",
            "Analysis checks, by metric and verdict.",
            [*ROLLOUT, "metric", "verdict"],
            registry=on,
        )
        self.analysis_value = Gauge(
            "modelrollout_analysis_value",
            "The value of a metric's last check (a rate, a quantile, a ratio or a PSI).",
            [*ROLLOUT, "metric"],
            registry=on,
        )
        self.evidence = Gauge(
            "modelrollout_analysis_evidence",
            "The sequential judge's e-values at the last check (the threshold is 1/alpha).",
            [*ROLLOUT, "metric", "evidence"],
            registry=on,
        )
        self.outcomes = Counter(
            "modelrollout_rollout_outcomes",
            "Rollouts finished, by outcome (Promoted, RolledBack, Aborted…) and reason.",
            [*ROLLOUT, "outcome", "reason"],
            registry=on,
        )
        self.errors = Counter(
            "modelrollout_reconcile_errors",
            "Passes that failed, by kind: action (retried) or unexpected.",
            [*ROLLOUT, "kind"],
            registry=on,
        )
        self.decision_seconds = Histogram(
            "modelrollout_decision_seconds",
            "Duration of one reconcile pass: observe, decide, carry out.",
            buckets=DECISION_BUCKETS,
            registry=on,
        )
        self.git_fetch_seconds = Histogram(
            "modelrollout_git_fetch_seconds",
            "Duration of a git source fetch, by result.",
            ["result"],
            buckets=FETCH_BUCKETS,
            registry=on,
        )
        self.registry_seconds = Histogram(
            "modelrollout_registry_request_seconds",
            "Duration of a model registry call, by operation and result.",
            ["operation", "result"],
            buckets=FETCH_BUCKETS,
            registry=on,
        )
        ProcessCollector(registry=on)
        self._phases: dict[tuple[str, str], api.Phase] = {}
        self._metrics: dict[tuple[str, str], set[str]] = {}
        for phase in api.Phase:
            self.rollouts.labels(phase.value).set(0)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)

    def series_names(self) -> frozenset[str]:
        """Every series name this registry can expose (``_total``, ``_bucket``… included)."""
        suffixes = {
            "counter": ("_total", "_created"),
            "histogram": ("_bucket", "_sum", "_count", "_created"),
            "gauge": ("",),
        }
        return frozenset(
            family.name + suffix
            for family in self.registry.collect()
            for suffix in suffixes.get(family.type, ("",))
        )

    # ------------------------------------------------------------ what a pass did

    def record_pass(
        self,
        namespace: str,
        name: str,
        before: Mapping[str, Any] | api.ModelRolloutStatus,
        after: Mapping[str, Any] | api.ModelRolloutStatus,
        seconds: float,
    ) -> None:
        """One pass went from ``before`` to ``after`` (status JSON, or as the pass read and
        wrote it) in ``seconds``."""
        self.decision_seconds.observe(seconds)
        old, new = _status(before), _status(after)
        if new is None:
            return
        key = (namespace, name)
        self._set_phase(key, new.phase)
        self.canary_weight.labels(namespace, name).set(new.canary_weight)
        checked = {m.name: m for m in (old.analysis.metrics if old and old.analysis else ())}
        for metric in new.analysis.metrics if new.analysis else ():
            self._metrics.setdefault(key, set()).add(metric.name)
            previous = checked.get(metric.name)
            if metric.measured_at is None or metric.verdict is None:
                continue
            if previous is not None and previous.measured_at == metric.measured_at:
                continue
            self.verdicts.labels(namespace, name, metric.name, metric.verdict.value).inc()
            if metric.value is not None and math.isfinite(metric.value):
                self.analysis_value.labels(namespace, name, metric.name).set(metric.value)
            for key_in_status, label in EVIDENCE_KEYS.items():
                number = _number(metric.evidence.get(key_in_status))
                if number is not None:
                    self.evidence.labels(namespace, name, metric.name, label).set(number)
        known = set(old.history) if old is not None else set()
        for entry in new.history:
            if entry not in known:
                self.outcomes.labels(namespace, name, entry.outcome.value, entry.reason.value).inc()

    def record_error(self, namespace: str, name: str, kind: str, seconds: float) -> None:
        self.decision_seconds.observe(seconds)
        self.errors.labels(namespace, name, kind).inc()

    def forget(self, namespace: str, name: str) -> None:
        """The rollout is gone: its series go too, and it no longer counts in a phase."""
        key = (namespace, name)
        if key in self._phases:
            self.rollouts.labels(self._phases.pop(key).value).dec()
        self._metrics.pop(key, None)
        labels = {"namespace": namespace, "name": name}
        for metric in (
            self.rollout_phase,
            self.canary_weight,
            self.verdicts,
            self.analysis_value,
            self.evidence,
            self.outcomes,
            self.errors,
        ):
            metric.remove_by_labels(labels)

    def _set_phase(self, key: tuple[str, str], phase: api.Phase) -> None:
        before = self._phases.get(key)
        if before != phase:
            if before is not None:
                self.rollouts.labels(before.value).dec()
            self.rollouts.labels(phase.value).inc()
            self._phases[key] = phase
        for each in api.Phase:
            self.rollout_phase.labels(*key, each.value).set(1 if each == phase else 0)

    # ------------------------------------------------------------ adapters' durations

    @contextmanager
    def timing_git_fetch(self) -> Iterator[None]:
        with _timed(lambda result, seconds: self.git_fetch_seconds.labels(result).observe(seconds)):
            yield

    @contextmanager
    def timing_registry(self, operation: str) -> Iterator[None]:
        def observe(result: str, seconds: float) -> None:
            self.registry_seconds.labels(operation, result).observe(seconds)

        with _timed(observe):
            yield


class TimedRegistry:
    """A registry whose calls are timed (a :class:`~modelrollout.registry.base.Registry`)."""

    def __init__(self, inner: Registry, telemetry: Telemetry) -> None:
        self._inner = inner
        self._telemetry = telemetry

    async def resolve(self, uri: str) -> ModelVersionRef:
        with self._telemetry.timing_registry("resolve"):
            return await self._inner.resolve(uri)

    async def check_gates(
        self, candidate: ModelVersionRef, stable: ModelVersionRef | None, gates: RegistryGates
    ) -> tuple[GateResult, ...]:
        with self._telemetry.timing_registry("check_gates"):
            return await self._inner.check_gates(candidate, stable, gates)

    async def write_back(self, outcome: WriteBack, spec: WriteBackSpec, rollout: str) -> None:
        with self._telemetry.timing_registry("write_back"):
            await self._inner.write_back(outcome, spec, rollout)


class TimedGitSource:
    """A git source whose fetches are timed (a :class:`~modelrollout.gitsource.base.GitSource`)."""

    def __init__(self, inner: GitSource, telemetry: Telemetry) -> None:
        self._inner = inner
        self._telemetry = telemetry

    async def fetch(
        self, source: GitSourceSpec, credentials: GitCredentials | None = None
    ) -> ManifestRevision:
        with self._telemetry.timing_git_fetch():
            return await self._inner.fetch(source, credentials)


@contextmanager
def _timed(observe: Callable[[str, float], None]) -> Iterator[None]:
    started = time.perf_counter()
    try:
        yield
    except BaseException:
        observe("error", time.perf_counter() - started)
        raise
    observe("success", time.perf_counter() - started)


def _status(data: Mapping[str, Any] | api.ModelRolloutStatus) -> api.ModelRolloutStatus | None:
    if isinstance(data, api.ModelRolloutStatus):
        return data
    try:
        return api.read_status(data)
    except serde.SpecError:
        return None


def _number(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


# ---------------------------------------------------------------- health


#: Checks that the API server answers; raises when it does not.
ApiProbe = Callable[[], Awaitable[object]]


class Health:
    """Liveness is implicit (an answer); readiness is cached from background checks."""

    def __init__(self, probe: ApiProbe | None = None, *, timeout_seconds: float = 5.0) -> None:
        self._probe = probe
        self._timeout = timeout_seconds
        self.started = False
        self.api_answers = probe is None
        self.problem: str | None = None if probe is None else "the API server was not checked yet"

    @property
    def ready(self) -> bool:
        return self.started and self.api_answers

    def reason(self) -> str:
        if not self.started:
            return "the operator is starting"
        return self.problem or "ready"

    async def check_api(self) -> bool:
        if self._probe is None:
            return True
        try:
            await asyncio.wait_for(self._probe(), self._timeout)
        except Exception as error:
            if self.api_answers or self.problem is None:
                log.warning("the API server does not answer: %s", type(error).__name__)
            self.api_answers = False
            # The class only: an exception's text may carry a URL with credentials.
            self.problem = f"the API server does not answer ({type(error).__name__})"
            return False
        self.api_answers, self.problem = True, None
        return True


class TelemetryServer:
    """``/metrics``, ``/healthz`` and ``/readyz`` on one address, in the operator's loop."""

    def __init__(
        self,
        telemetry: Telemetry,
        health: Health,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        check_every_seconds: float = 10.0,
    ) -> None:
        self.telemetry = telemetry
        self.health = health
        self._host = host
        self._port = port
        self._every = check_every_seconds
        self._runner: web.AppRunner | None = None
        self._checks: asyncio.Task[None] | None = None
        self._bound: int | None = None

    @property
    def port(self) -> int:
        if self._bound is None:
            raise RuntimeError("the telemetry server is not started")
        return self._bound

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get(METRICS_PATH, self._metrics)
        app.router.add_get(HEALTH_PATH, self._healthz)
        app.router.add_get(READY_PATH, self._readyz)
        return app

    async def start(self) -> None:
        runner = web.AppRunner(self.app(), access_log=None)
        await runner.setup()
        await web.TCPSite(runner, self._host, self._port).start()
        self._runner = runner
        self._bound = int(runner.addresses[0][1])
        self._checks = asyncio.create_task(self._check_forever())
        log.info("metrics and health on %s:%s", self._host, self._bound)

    async def stop(self) -> None:
        if self._checks is not None:
            self._checks.cancel()
            await asyncio.gather(self._checks, return_exceptions=True)
        if self._runner is not None:
            await self._runner.cleanup()
        self._runner = None
        self._checks = None
        self._bound = None

    async def _check_forever(self) -> None:
        while True:
            await self.health.check_api()
            await asyncio.sleep(self._every)

    async def _metrics(self, _: web.Request) -> web.Response:
        body = self.telemetry.exposition()
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _healthz(self, _: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def _readyz(self, _: web.Request) -> web.Response:
        status = 200 if self.health.ready else 503
        return web.Response(status=status, text=self.health.reason() + "\n")


def parse_address(address: str) -> tuple[str, int]:
    """``host:port`` (``[::1]:9090`` for IPv6); an empty host means every interface."""
    host, separator, port = address.rpartition(":")
    if not separator or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"MODELROLLOUT_METRICS_ADDRESS: {address!r} is not host:port")
    return host.strip("[]") or "0.0.0.0", int(port)
