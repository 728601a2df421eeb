"""The composition root: build the engine's ports from the operator's settings.

Registries and Prometheus clients are kept per (address, credentials) so their
caches and connections outlive a pass; credentials are hashed, never kept as keys.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

from kubernetes import client, config

from modelrollout import __version__, api
from modelrollout.clock import SystemClock
from modelrollout.engine import MetricsFactory, Ports, RegistryFactory
from modelrollout.errors import MetricsError, RegistryError
from modelrollout.gitsource.git import GitRepositorySource
from modelrollout.gitsource.webhook import Limits, WebhookServer
from modelrollout.kube.events import KubeEvents
from modelrollout.kube.secrets import KubeSecrets
from modelrollout.kube.status import KubeStatusWriter
from modelrollout.metrics.base import VectorProvider
from modelrollout.metrics.kube_templates import KubeTemplates
from modelrollout.metrics.prometheus import PrometheusProvider
from modelrollout.metrics.static import StaticMetrics
from modelrollout.notify import (
    Channel,
    Notifier,
    RetryPolicy,
    Severity,
    SlackChannel,
    WebhookChannel,
    file_secret,
)
from modelrollout.registry import mlflow
from modelrollout.registry.base import Registry
from modelrollout.registry.static import StaticRegistry
from modelrollout.routing.kserve import WatchedInferenceServices
from modelrollout.routing.kserve_raw import RawRouter
from modelrollout.routing.kserve_serverless import ServerlessRouter
from modelrollout.settings import Settings
from modelrollout.telemetry import (
    Health,
    Telemetry,
    TelemetryServer,
    TimedGitSource,
    TimedRegistry,
    parse_address,
)

#: What a repository URL may use on a cluster; file:// only when the settings allow it.
NETWORK_PROTOCOLS = ("https", "ssh", "git", "http")


def kube_client(connections: int | None = None) -> client.ApiClient:
    """A client of the cluster; ``connections``: how many it keeps open to the API server."""
    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config()
    configuration = client.Configuration.get_default_copy()
    if connections is not None:
        configuration.connection_pool_maxsize = connections
    api_client = client.ApiClient(configuration)
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

    limits = Limits(
        rate_per_second=settings.webhook_rate_per_second,
        burst=settings.webhook_burst,
        max_concurrent=settings.webhook_max_concurrent,
        timeout_seconds=settings.webhook_timeout_seconds,
    )
    return WebhookServer(
        settings.webhook_secret,
        on_push,
        host=host or "0.0.0.0",
        port=int(port),
        limits=limits,
    )


def watched_inference_services(settings: Settings) -> WatchedInferenceServices:
    """What the InferenceService watch delivers (handlers.py wakes a rollout only on news).

    The routers can read it instead of a GET (``ports(watched=...)``) but are not given it:
    at 1,000 rollouts on a loaded machine that made the passes per step rise from about 3 to
    18, which is not understood yet (bench/README.md). An entry older than the resync period
    is not used.
    """
    return WatchedInferenceServices(max_age=settings.resync_seconds)


def ports(
    settings: Settings,
    git: GitRepositorySource,
    watched: WatchedInferenceServices | None = None,
) -> Ports:
    api_client = kube_client(settings.api_threads)
    timeout = settings.kube_request_timeout_seconds
    return Ports(
        routers={
            api.Router.KSERVE_SERVERLESS: ServerlessRouter(
                api_client, request_timeout=timeout, watched=watched
            ),
            api.Router.KSERVE_RAW: RawRouter(api_client, request_timeout=timeout, watched=watched),
        },
        registry=registries(settings),
        metrics=providers(settings),
        git=git,
        secrets=KubeSecrets(api_client, request_timeout=timeout),
        templates=KubeTemplates(api_client, request_timeout=timeout),
        query_timeout_seconds=settings.query_timeout_seconds,
    )


def status_writer(settings: Settings) -> KubeStatusWriter:
    """Status writes for the passes kopf does not patch (the scheduled ones)."""
    return KubeStatusWriter(
        kube_client(settings.api_threads), request_timeout=settings.kube_request_timeout_seconds
    )


def events(settings: Settings) -> KubeEvents:
    return KubeEvents(
        kube_client(settings.api_threads), request_timeout=settings.kube_request_timeout_seconds
    )


def api_threads(settings: Settings) -> ThreadPoolExecutor:
    """The threads the blocking Kubernetes client's calls run in (``asyncio.to_thread``):
    one per call in flight. asyncio's default is a handful on a small machine, which with
    hundreds of rollouts queues every pass behind other passes' calls."""
    return ThreadPoolExecutor(settings.api_threads, thread_name_prefix="kube-api")


def telemetry_server(settings: Settings, telemetry: Telemetry) -> TelemetryServer | None:
    """/metrics, /healthz and /readyz, when configured; readiness asks the API server for
    ``/version`` (public to every client: no RBAC grant) in the background."""
    if not settings.metrics_address:
        return None
    host, port = parse_address(settings.metrics_address)
    version = client.VersionApi(kube_client())

    async def api_answers() -> object:
        return await asyncio.to_thread(version.get_code, _request_timeout=5)

    return TelemetryServer(telemetry, Health(api_answers), host=host, port=port)


def instrumented(ports: Ports, telemetry: Telemetry) -> Ports:
    """The same ports with git fetches and registry calls timed."""
    registry = ports.registry

    def timed_registry(tracking_uri: str | None, credentials: Mapping[str, str] | None) -> Registry:
        return TimedRegistry(registry(tracking_uri, credentials), telemetry)

    git = TimedGitSource(ports.git, telemetry) if ports.git is not None else None
    return replace(ports, registry=timed_registry, git=git)


def notifier(settings: Settings) -> Notifier | None:
    """Notifications to the configured webhooks; None when no URL file is set.

    The files are checked once here, so a wrong path fails the start with its setting's name;
    their contents are read at each delivery and never kept in the settings or a log line.
    """
    channels: list[Channel] = []
    files = {
        "MODELROLLOUT_NOTIFY_SLACK_URL_FILE": settings.notify_slack_url_file,
        "MODELROLLOUT_NOTIFY_WEBHOOK_URL_FILE": settings.notify_webhook_url_file,
        "MODELROLLOUT_NOTIFY_WEBHOOK_SIGNING_KEY_FILE": settings.notify_webhook_signing_key_file,
    }
    for name, file in files.items():
        if file is not None and not file.is_file():
            raise ValueError(f"{name}: {file} is not a readable file")
    if settings.notify_webhook_signing_key_file and not settings.notify_webhook_url_file:
        raise ValueError(
            "MODELROLLOUT_NOTIFY_WEBHOOK_SIGNING_KEY_FILE is set but "
            "MODELROLLOUT_NOTIFY_WEBHOOK_URL_FILE is not"
        )
    if settings.notify_slack_url_file:
        channels.append(SlackChannel(file_secret(settings.notify_slack_url_file)))
    if settings.notify_webhook_url_file:
        key = settings.notify_webhook_signing_key_file
        channels.append(
            WebhookChannel(
                file_secret(settings.notify_webhook_url_file),
                file_secret(key) if key else None,
            )
        )
    if not channels:
        return None
    try:
        min_severity = Severity(settings.notify_min_severity.lower())
    except ValueError:
        allowed = ", ".join(s.value for s in Severity)
        raise ValueError(
            f"MODELROLLOUT_NOTIFY_MIN_SEVERITY={settings.notify_min_severity!r}: use one of "
            f"{allowed}"
        ) from None
    return Notifier(
        channels,
        min_severity=min_severity,
        cluster=settings.notify_cluster,
        queue_size=settings.notify_queue_size,
        retry=RetryPolicy(
            attempts=settings.notify_attempts, timeout_seconds=settings.notify_timeout_seconds
        ),
    )
