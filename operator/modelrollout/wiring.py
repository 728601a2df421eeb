"""The composition root: build the engine's ports from the operator's settings."""

from __future__ import annotations

from pathlib import Path

from kubernetes import client, config

from modelrollout import __version__, api
from modelrollout.decision import Measurement
from modelrollout.engine import Ports
from modelrollout.metrics.base import MetricProvider
from modelrollout.metrics.static import StaticMetrics
from modelrollout.registry.base import Registry
from modelrollout.registry.static import StaticRegistry
from modelrollout.routing.kserve_raw import RawRouter
from modelrollout.routing.kserve_serverless import ServerlessRouter
from modelrollout.settings import Settings


class NoMetrics:
    """The provider when none is configured: every query is an error, never a pass."""

    async def measure(self, query: str, timeout_seconds: float) -> Measurement:
        return Measurement(error="no metric provider is configured (MODELROLLOUT_METRICS)")

    async def is_online(self) -> bool:
        return False


def kube_client() -> client.ApiClient:
    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config()
    api_client = client.ApiClient()
    api_client.user_agent = f"modelrollout/{__version__}"
    return api_client


def registry(settings: Settings) -> Registry:
    kind, _, argument = settings.registry.partition(":")
    if kind == "static":
        return StaticRegistry(argument, settings.registry_aliases, settings.registry_journal)
    raise ValueError(f"MODELROLLOUT_REGISTRY: unknown registry {settings.registry!r}")


def metrics(settings: Settings) -> MetricProvider:
    kind, _, argument = settings.metrics.partition(":")
    if not kind:
        return NoMetrics()
    if kind == "static":
        return StaticMetrics(Path(argument))
    raise ValueError(f"MODELROLLOUT_METRICS: unknown metric provider {settings.metrics!r}")


def ports(settings: Settings) -> Ports:
    api_client = kube_client()
    return Ports(
        routers={
            api.Router.KSERVE_SERVERLESS: ServerlessRouter(api_client),
            api.Router.KSERVE_RAW: RawRouter(api_client),
        },
        registry=registry(settings),
        metrics=metrics(settings),
        query_timeout_seconds=settings.query_timeout_seconds,
    )
