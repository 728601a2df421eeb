"""The composition root: build the engine's ports from the operator's settings.

Registries and Prometheus clients are kept per (address, credentials) so their
caches and connections outlive a pass; credentials are hashed, never kept as keys.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path

from kubernetes import client, config

from modelrollout import __version__, api
from modelrollout.clock import SystemClock
from modelrollout.engine import MetricsFactory, Ports, RegistryFactory
from modelrollout.errors import MetricsError, RegistryError
from modelrollout.gitsource.git import GitRepositorySource
from modelrollout.gitsource.webhook import WebhookServer
from modelrollout.kube.secrets import KubeSecrets
from modelrollout.metrics.base import VectorProvider
from modelrollout.metrics.kube_templates import KubeTemplates
from modelrollout.metrics.prometheus import PrometheusProvider
from modelrollout.metrics.static import StaticMetrics
from modelrollout.registry import mlflow
from modelrollout.registry.base import Registry
from modelrollout.registry.static import StaticRegistry
from modelrollout.routing.kserve_raw import RawRouter
from modelrollout.routing.kserve_serverless import ServerlessRouter
from modelrollout.settings import Settings

#: What a repository URL may use on a cluster; file:// only when the settings allow it.
NETWORK_PROTOCOLS = ("https", "ssh", "git", "http")


def kube_client() -> client.ApiClient:
    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config()
    api_client = client.ApiClient()
    api_client.user_agent = f"modelrollout/{__version__}"
    return api_client


def _fingerprint(*parts: object) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def registries(settings: Settings) -> RegistryFactory:
    kind, _, argument = settings.registry.partition(":")
    if kind == "static":
        static = StaticRegistry(argument, settings.registry_aliases, settings.registry_journal)
        return lambda tracking_uri, credentials: static
    if kind != "mlflow":
        raise ValueError(f"MODELROLLOUT_REGISTRY: unknown registry {settings.registry!r}")
    made: dict[str, Registry] = {}

    def registry(tracking_uri: str | None, credentials: Mapping[str, str] | None) -> Registry:
        uri = tracking_uri or settings.mlflow_tracking_uri
        if not uri:
            raise RegistryError(
                "no MLflow tracking URI: set spec.registry.trackingUri or the operator's "
                "MODELROLLOUT_MLFLOW_TRACKING_URI"
            )
        key = _fingerprint(uri, dict(credentials or {}))
        if key not in made:
            made[key] = mlflow.from_settings(uri, settings.storage_map, credentials)
        return made[key]

    return registry


def providers(settings: Settings) -> MetricsFactory:
    kind, _, argument = settings.metrics.partition(":")
    if kind == "static":
        static = StaticMetrics(Path(argument))
        return lambda provider, token: static
    if kind:
        raise ValueError(f"MODELROLLOUT_METRICS: unknown metric provider {settings.metrics!r}")
    made: dict[str, VectorProvider] = {}

    def prometheus(provider: api.PrometheusProvider | None, token: str | None) -> VectorProvider:
        address = provider.address if provider else settings.prometheus_url
        if not address:
            raise MetricsError(
                "no Prometheus address: the MetricTemplate names none and "
                "MODELROLLOUT_PROMETHEUS_URL is unset"
            )
        key = _fingerprint(address, token)
        if key not in made:
            # Queries are evaluated at the operator's clock, the time the core judges by.
            made[key] = PrometheusProvider(
                address, token, settings.query_timeout_seconds, clock=SystemClock()
            )
        return made[key]

    return prometheus


def git_source(settings: Settings) -> GitRepositorySource:
    allowed = NETWORK_PROTOCOLS + (("file",) if settings.git_allow_file else ())
    return GitRepositorySource(settings.git_cache, allowed_protocols=allowed)


def webhook(settings: Settings, git: GitRepositorySource) -> WebhookServer | None:
    """The push webhook, when configured: a push makes the next pass fetch at once."""
    if not settings.webhook_address:
        return None
    if not settings.webhook_secret:
        raise ValueError(
            "MODELROLLOUT_WEBHOOK_ADDRESS is set but MODELROLLOUT_WEBHOOK_SECRET is not"
        )
    host, _, port = settings.webhook_address.rpartition(":")

    def on_push(repository: str, ref: str) -> None:
        git.invalidate(repository)

    return WebhookServer(
        settings.webhook_secret,
        on_push,
        host=host or "0.0.0.0",
        port=int(port),
    )


def ports(settings: Settings, git: GitRepositorySource) -> Ports:
    api_client = kube_client()
    return Ports(
        routers={
            api.Router.KSERVE_SERVERLESS: ServerlessRouter(api_client),
            api.Router.KSERVE_RAW: RawRouter(api_client),
        },
        registry=registries(settings),
        metrics=providers(settings),
        git=git,
        secrets=KubeSecrets(api_client),
        templates=KubeTemplates(api_client),
        query_timeout_seconds=settings.query_timeout_seconds,
    )
